"""Names vulture (scripts/deadcode.py) cannot see being used; one line each, with the reason.

Vulture reads this file as code that "uses" the names; it is never imported.
"""
# ruff: noqa: B018, F821

_.batch_count  # Campaign column: stored at fan-out (how many batches; a column, kept in the row)
_.article_char_budget  # RenderedEmail: how far the articles were shortened (render report)
_.show_section  # WeChat article unit: read by templates/wechat/article.html
_.autocommit  # the tracking DBAPI connection's attribute, set (psycopg autocommit mode)
_.last_used_at  # ApiToken column: written on each use, kept for the admin
_.lifetime  # dnspython Resolver attribute, set (the resolver reads it)
_.background  # Starlette Response attribute, set (runs the task after the response)
# issue 18's sending policy, public helpers not called yet at the time of writing
_.known_domains  # delivery/providers.py ProviderTable
_.mark_up  # delivery/relays.py: a relay back in service
_.delivered_today  # delivery/warmup.py
_.check_spread  # delivery/windows.py
_.spread_rate_per_hour  # delivery/windows.py
_.fetch_access_token  # wechatpy's client calls this hook to get a token
send_optin  # subscribers/optin.py: for imports and the CLI (issue 13, not called yet)
