"""The admin's pages: the exemption queue and the policy editor. Every change goes through the same
service calls as the admin API, audited under the signed-in account (``account:<name>``)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from demotrace.collector.accounts import Account, Role
from demotrace.collector.errors import BadRequest, Conflict, NotFound, PayloadTooLarge, WideningNotConfirmed
from demotrace.collector.exemptions import ExemptionService
from demotrace.collector.portal.auth import checked_form, require_role
from demotrace.collector.portal.render import render

AdminAccount = Annotated[Account, Depends(require_role(Role.ADMIN))]

# What a redirect after a change may say: fixed texts, chosen by key (nothing from the URL is shown).
NOTICES = {
    "approved": (
        "ok",
        "Exemption approved: the person's devices stop recording at their next policy refresh.",
    ),
    "denied": ("ok", "Exemption denied."),
    "policy_saved": ("ok", "Policy saved: devices pick it up at their next policy refresh."),
    "revoked": ("ok", "Device revoked: its uploads are refused from now on."),
    "already_decided": ("warn", "That request was already decided."),
    "no_such": ("error", "There is no such request or device."),
}


def notices_of(request: Request) -> list[tuple[str, str]]:
    key = request.query_params.get("done")
    return [NOTICES[key]] if key in NOTICES else []


def redirect_with(path: str, notice: str) -> RedirectResponse:
    return RedirectResponse(f"{path}?{urlencode({'done': notice})}", status_code=303)


def add_admin_pages(app: FastAPI, exemptions: ExemptionService) -> None:
    @app.get("/admin/exemptions", include_in_schema=False)
    async def exemption_queue(request: Request, account: AdminAccount) -> Response:
        requests = await run_in_threadpool(exemptions.list_requests, None)
        pending = [r for r in requests if r["status"] == "requested"]
        decided = sorted(
            (r for r in requests if r["status"] != "requested"),
            key=lambda r: float(r["decided_at"] or 0),  # type: ignore[arg-type]
            reverse=True,
        )
        return render(
            request,
            "admin_exemptions.html",
            account,
            title="Exemptions",
            pending=pending,
            decided=decided[:100],
            notices=notices_of(request),
        )

    @app.post("/admin/exemptions/{request_id}/{decision}", include_in_schema=False)
    async def decide(request: Request, request_id: int, decision: str, account: AdminAccount) -> Response:
        await checked_form(request)
        if decision not in ("approve", "deny"):
            return redirect_with("/admin/exemptions", "no_such")
        try:
            await run_in_threadpool(exemptions.decide, request_id, decision == "approve", account.actor)
        except NotFound:
            return redirect_with("/admin/exemptions", "no_such")
        except Conflict:
            return redirect_with("/admin/exemptions", "already_decided")
        return redirect_with("/admin/exemptions", "approved" if decision == "approve" else "denied")

    def policy_page(
        request: Request,
        account: Account,
        text: str,
        *,
        error: str | None = None,
        widening: str | None = None,
        status: int = 200,
    ) -> Response:
        _current, source, updated_at = exemptions.fleet_policy_text()
        notices = notices_of(request)
        if error:
            notices.append(("error", error))
        return render(
            request,
            "admin_policy.html",
            account,
            status_code=status,
            title="Policy",
            policy_text=text,
            source=source,
            updated_at=updated_at,
            widening=widening,
            notices=notices,
        )

    @app.get("/admin/policy", include_in_schema=False)
    async def policy_editor(request: Request, account: AdminAccount) -> Response:
        text, _source, _updated_at = await run_in_threadpool(exemptions.fleet_policy_text)
        return await run_in_threadpool(policy_page, request, account, text)

    @app.post("/admin/policy", include_in_schema=False)
    async def save_policy(request: Request, account: AdminAccount) -> Response:
        form = await checked_form(request)
        text = form.get("policy", "").replace("\r\n", "\n")
        confirm = form.get("confirm_widening") == "yes"
        try:
            await run_in_threadpool(exemptions.set_fleet_policy, text.encode(), account.actor, confirm)
        except WideningNotConfirmed as refused:
            widening = refused.message
            return await run_in_threadpool(
                lambda: policy_page(request, account, text, widening=widening, status=409)
            )
        except (BadRequest, PayloadTooLarge) as refused:
            message = refused.message
            return await run_in_threadpool(
                lambda: policy_page(request, account, text, error=message, status=400)
            )
        return redirect_with("/admin/policy", "policy_saved")
