"""Names vulture (scripts/deadcode.py) cannot see being used; one line each, with the reason.

Vulture reads this file as code that "uses" the names; it is never imported.
"""
# ruff: noqa: B018, F821

_.article_char_budget  # RenderedEmail: how far the articles were shortened (render report)
_.show_section  # WeChat article unit: read by templates/wechat/article.html
# issue 18's sending policy, public helpers not called yet at the time of writing
_.known_domains  # delivery/providers.py ProviderTable
_.mark_up  # delivery/relays.py: a relay back in service
_.delivered_today  # delivery/warmup.py
_.check_spread  # delivery/windows.py
_.spread_rate_per_hour  # delivery/windows.py
_.fetch_access_token  # wechatpy's client calls this hook to get a token
send_optin  # subscribers/optin.py: for imports and the CLI (issue 13, not called yet)
ConfirmationChannel  # channels/__init__.py registers it by its import path (a string)
_.blocks_of  # content/model.py ListBlock: read by templates/email and templates/wechat
_.has_header  # content/model.py Table: read by templates/email and templates/wechat
