"""The editor's desk: versions of an issue's source (saved, compared, restored), their review
(draft → submitted → approved, or back to draft with comments) and the one send guard every
door (CLI, API, web page, the scheduler) asks before an issue reaches real lists.

Plain Python over the database, like dispatch.delivery: the web and the CLI only call it.
"""
