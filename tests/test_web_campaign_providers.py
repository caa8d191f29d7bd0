"""Issue 12: the campaign page shows sent / deferred / bounced per receiving provider, the
provider's throttle state and why a running campaign waits."""

from __future__ import annotations

from test_web_support import login, make_user

pytest_plugins = ["test_web_support"]


def test_campaign_page_per_provider_and_throttle_state(
    client, engine, settings, redis_url, redis_prefix
):
    from sqlalchemy import update
    from sqlalchemy.orm import Session

    from dispatch.config import set_settings
    from dispatch.delivery import campaigns
    from dispatch.delivery.queue import ListQueue
    from dispatch.delivery.throttle import provider_throttle
    from dispatch.models import Campaign, Delivery
    from test_delivery_support import make_issue, make_list_with

    settings = settings.replace(redis_url=redis_url, redis_key_prefix=redis_prefix)
    set_settings(settings)
    make_user(engine, "editor")
    login(client, "editor@example.org")
    with Session(engine, expire_on_commit=False) as session:
        issue = make_issue(session)
        members = make_list_with(
            session, "members", ["a@qq.com", "b@qq.com", "c@163.com", "d@gmail.com"]
        )
        campaign, _ = campaigns.create_or_get(
            session, issue_id=issue.id, channel="email", list_ids=[members]
        )
        session.commit()
        campaigns.start(engine, settings, campaign.id, ListQueue())
        session.execute(update(Delivery).where(Delivery.provider == "qq").values(status="sent"))
        session.execute(
            update(Delivery).where(Delivery.provider == "netease").values(status="deferred")
        )
        session.execute(update(Campaign).values(waiting_reason="every relay's daily quota is used"))
        session.commit()
    provider_throttle(settings).throttled("netease", "421 HL:IFC too many mails")
    try:
        page = client.get(f"/admin/campaigns/{campaign.id}")
        assert page.status_code == 200
        table = page.text.split('id="provider-progress"')[1].split("</table>")[0]
        rows = {r.split("</td>")[0].split("<td>")[-1]: r for r in table.split("<tr>")[2:]}
        assert set(rows) == {"qq", "netease", "gmail"}
        assert "<td>2</td>" in rows["qq"]  # two sent
        assert "HL:IFC" in rows["netease"] and (
            "退避" in rows["netease"] or "backing off" in rows["netease"]
        )
        assert "daily quota" in page.text.split('id="waiting-reason"')[1]
        api = client.get(f"/api/campaigns/{campaign.id}/progress").json()
        netease = next(p for p in api["providers"] if p["provider"] == "netease")
        assert netease["deferred"] == 1 and netease["throttle"]["state"] == "backoff"
    finally:
        provider_throttle(settings).clear("netease")
