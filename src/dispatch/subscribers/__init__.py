"""Subscribers and lists: storage rules, CSV import/export, opt-in, unsubscribe, suppression.

The CLI, the web admin and the delivery engine all go through `dispatch.subscribers.service`.
"""
