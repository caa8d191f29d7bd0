"""The deliverability page: the doctor's findings per sending domain and 30 days of signals.

The doctor's last report is read from data_dir (what sends consult too); "check now" runs it
again, for admins, in a worker thread (it asks DNS and probes the relay).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from dispatch.config import ConfigError
from dispatch.deliverability.doctor import MESSAGES as DOCTOR
from dispatch.deliverability.doctor import load_report, run_doctor, save_report
from dispatch.deliverability.stats import overview
from dispatch.delivery import warmup
from dispatch.web.auth import AdminUser, EditorUser
from dispatch.web.deps import DbSession
from dispatch.web.templating import render_page, request_locale
from dispatch.web.texts import TEXTS

router = APIRouter(prefix="/admin", include_in_schema=False)


@router.get("/deliverability")
def deliverability_page(request: Request, principal: EditorUser, session: DbSession) -> Response:
    settings = request.app.state.settings
    locale = request_locale(request)
    report = load_report(settings)
    checks = []
    if report is not None:
        for check in report.get("checks", []):
            checks.append(
                {
                    "label": check["label"].get(locale, check["label"]["en"]),
                    "status": check["status"],
                    "status_text": DOCTOR.get(f"status.{check['status']}", locale),
                    "reason": check["reason"].get(locale, check["reason"]["en"]),
                    "record": check.get("record") if check["status"] != "pass" else None,
                }
            )
    domains = [settings.from_address.rpartition("@")[2].lower()]
    if settings.dkim_domain and settings.dkim_domain.lower() not in domains:
        domains.append(settings.dkim_domain.lower())
    plans = [
        {
            "domain": domain,
            "rows": [
                {**row, "state_text": TEXTS.get(f"warmup_state_{row['state']}", locale)}
                for row in warmup.schedule(session, settings, domain)
            ],
        }
        for domain in domains
        if warmup.under_warmup(settings, domain)
    ]
    flash = {}
    if request.query_params.get("msg") == "checked":
        flash = {"flash": TEXTS.get("deliv_checked", locale), "flash_kind": "ok"}
    elif request.query_params.get("msg") == "check_failed":
        flash = {"flash": TEXTS.get("deliv_check_failed", locale), "flash_kind": ""}
    return render_page(
        request,
        "admin/deliverability.html",
        {
            "domains": domains,
            "report": report,
            "checks": checks,
            "doctor_status": (
                DOCTOR.get(f"status.{report['status']}", locale) if report is not None else None
            ),
            "stats": overview(session, settings),
            "plans": plans,
            "thresholds": {
                "bounce": f"{settings.reputation_max_bounce_rate:.0%}",
                "complaint": f"{settings.reputation_max_complaint_rate:.1%}",
            },
            **flash,
        },
    )


@router.post("/deliverability/check")
async def deliverability_check(request: Request, principal: AdminUser) -> Response:
    settings = request.app.state.settings

    def check() -> None:
        save_report(settings, run_doctor(settings))

    try:
        await run_in_threadpool(check)
    except (ConfigError, OSError):
        return RedirectResponse("/admin/deliverability?msg=check_failed", status_code=303)
    return RedirectResponse("/admin/deliverability?msg=checked", status_code=303)
