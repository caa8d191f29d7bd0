"""Bounces and complaints that arrive after the send.

`parse` reads one inbound message into a `BounceResult`; `record` ties it to its delivery
(VERP token, Message-ID, then address) and acts on it (suppress, count, unsubscribe); the
ways in are `mailbox` (IMAP/POP3 poller), `intake` (SMTP/LMTP server), `webhooks` (SES, generic
signed JSON) and `dispatch bounces ingest` (files).
"""
