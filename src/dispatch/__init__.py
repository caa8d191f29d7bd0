"""dispatch: deliver a published newsletter issue by email and WeChat, tracked per recipient."""

__version__ = "0.1.0"
