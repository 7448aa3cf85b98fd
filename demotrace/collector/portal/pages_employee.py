"""The employee's pages (``/me``): my devices and pauses, my sessions with their frames and actions,
download or delete my data, ask for an exemption, and what we capture. Thin: every page is one or two
calls into MyData / PauseService with the signed-in account's person id, never an id from the URL
alone (MyData answers NotFound for anything not theirs, and so do these pages: a 404 page).
"""

from __future__ import annotations

import datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from demotrace.collector.accounts import Account, Role
from demotrace.collector.capture_notice import capture_notice
from demotrace.collector.errors import BadRequest, Conflict, NotFound
from demotrace.collector.exemptions import ExemptionService
from demotrace.collector.my_archive import archive_name, stream_archive
from demotrace.collector.my_data import MyData
from demotrace.collector.portal.auth import checked_form, require_role
from demotrace.collector.portal.render import render, templates

EmployeeAccount = Annotated[Account, Depends(require_role(Role.EMPLOYEE))]
FRAMES_PER_PAGE = 12
PAUSE_CHOICES = (5, 15, 30, 60)

# What a redirect after a change may say: fixed texts chosen by key (nothing from the URL is shown).
NOTICES = {
    "pause_asked": ("ok", "Pause asked: your devices pause at their next policy refresh (within a minute)."),
    "resume_asked": ("ok", "Resume asked: your devices record again at their next policy refresh."),
    "session_deleted": (
        "ok",
        "The session is deleted from the server, and from every dataset built from now on.",
    ),
    "all_deleted": ("ok", "Everything the server held about you is deleted."),
    "exemption_asked": ("ok", "Your request is sent: an administrator will decide."),
    "not_confirmed": ("warn", "Nothing was deleted: tick the box to confirm."),
}


def _clock(seconds: float | None) -> str:
    """A moment to the second (pauses and actions happen seconds apart)."""
    if seconds is None:
        return "—"
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


templates.env.filters["clock"] = _clock


def notices_of(request: Request) -> list[tuple[str, str]]:
    key = request.query_params.get("done")
    return [NOTICES[key]] if key in NOTICES else []


def redirect_with(path: str, notice: str) -> RedirectResponse:
    return RedirectResponse(f"{path}?{urlencode({'done': notice})}", status_code=303)


def person_of(account: Account) -> str:
    """The person whose data this account may see; an account linked to nobody sees nothing."""
    if account.person_id is None:
        raise NotFound("this account is not linked to a person: ask an administrator")
    return account.person_id


def _not_found(request: Request, account: Account, message: str) -> Response:
    return render(request, "error.html", account, status_code=404, title="Not found", message=message)


def add_employee_pages(app: FastAPI, data: MyData, exemptions: ExemptionService) -> None:
    pauses = data.pauses

    @app.get("/me", include_in_schema=False)
    async def my_overview(request: Request, account: EmployeeAccount) -> Response:
        if account.person_id is None:
            return _not_found(
                request, account, "This account is not linked to a person: ask an administrator."
            )
        devices = await run_in_threadpool(data.devices, account.person_id)
        sessions = await run_in_threadpool(data.sessions, account.person_id)
        policy = await run_in_threadpool(exemptions.fleet_policy)
        return render(
            request,
            "me_overview.html",
            account,
            title="My data",
            devices=devices,
            sessions=sessions[:5],
            session_count=len(sessions),
            pause_choices=[m for m in PAUSE_CHOICES if m <= policy.pause_max_minutes]
            or [policy.pause_max_minutes],
            pause_max=policy.pause_max_minutes,
            notices=notices_of(request),
        )

    @app.post("/me/pause", include_in_schema=False)
    async def pause(request: Request, account: EmployeeAccount) -> Response:
        form = await checked_form(request)
        try:
            minutes = float(form.get("minutes", ""))
        except ValueError:
            minutes = None
        await run_in_threadpool(pauses.request, person_of(account), "pause", minutes, account.actor)
        return redirect_with("/me", "pause_asked")

    @app.post("/me/resume", include_in_schema=False)
    async def resume(request: Request, account: EmployeeAccount) -> Response:
        await checked_form(request)
        await run_in_threadpool(pauses.request, person_of(account), "resume", None, account.actor)
        return redirect_with("/me", "resume_asked")

    @app.get("/me/pauses", include_in_schema=False)
    async def pause_history(request: Request, account: EmployeeAccount) -> Response:
        person = person_of(account)
        names = {str(d["device_id"]): str(d["name"]) for d in await run_in_threadpool(data.devices, person)}
        history = await run_in_threadpool(pauses.history, person, names)
        return render(request, "me_pauses.html", account, title="My pauses", history=history)

    @app.get("/me/sessions", include_in_schema=False)
    async def my_sessions(request: Request, account: EmployeeAccount) -> Response:
        sessions = await run_in_threadpool(data.sessions, person_of(account))
        return render(
            request,
            "me_sessions.html",
            account,
            title="My sessions",
            sessions=sessions,
            notices=notices_of(request),
        )

    @app.get("/me/sessions/{device_id}/{session_id}", include_in_schema=False)
    async def my_session(
        request: Request, device_id: str, session_id: str, account: EmployeeAccount, page: int = 1
    ) -> Response:
        person = person_of(account)
        try:
            view = await run_in_threadpool(data.session, person, device_id, session_id)
        except NotFound:
            return _not_found(request, account, "There is no such session among yours.")
        pages = max(1, -(-len(view.frames) // FRAMES_PER_PAGE))
        page = min(max(1, page), pages)
        shown = view.frames[(page - 1) * FRAMES_PER_PAGE : page * FRAMES_PER_PAGE]
        frames = await run_in_threadpool(data.frames_with_boxes, person, shown)
        return render(
            request,
            "me_session.html",
            account,
            title="Session",
            view=view,
            frames=frames,
            page=page,
            pages=pages,
            # Where each action's screenshot is: its page of frames.
            frame_pages={frame.frame_id: i // FRAMES_PER_PAGE + 1 for i, frame in enumerate(view.frames)},
        )

    @app.post("/me/sessions/{device_id}/{session_id}/delete", include_in_schema=False)
    async def delete_session(
        request: Request, device_id: str, session_id: str, account: EmployeeAccount
    ) -> Response:
        await checked_form(request)
        try:
            await run_in_threadpool(
                data.delete_session, person_of(account), device_id, session_id, account.actor
            )
        except NotFound:
            return _not_found(request, account, "There is no such session among yours.")
        return redirect_with("/me/sessions", "session_deleted")

    @app.get("/me/frames/{frame_id}.png", include_in_schema=False)
    async def frame_png(frame_id: str, account: EmployeeAccount) -> Response:
        try:
            png = await run_in_threadpool(data.frame_png, person_of(account), frame_id)
        except NotFound:
            return Response("no such frame", status_code=404, media_type="text/plain")
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, no-store"})

    @app.get("/me/download", include_in_schema=False)
    async def download(account: EmployeeAccount) -> Response:
        person = person_of(account)
        return StreamingResponse(
            stream_archive(data, person),  # a plain iterator: Starlette runs it on the thread pool
            media_type="application/zip",
            headers={
                "Content-Disposition": f'attachment; filename="{archive_name(person)}"',
                "Cache-Control": "private, no-store",
            },
        )

    @app.get("/me/delete", include_in_schema=False)
    async def delete_page(request: Request, account: EmployeeAccount) -> Response:
        sessions = await run_in_threadpool(data.sessions, person_of(account))
        return render(
            request,
            "me_delete.html",
            account,
            title="Delete my data",
            sessions=len(sessions),
            notices=notices_of(request),
        )

    @app.post("/me/delete", include_in_schema=False)
    async def delete_everything(request: Request, account: EmployeeAccount) -> Response:
        form = await checked_form(request)
        if form.get("confirm") != "yes":
            return redirect_with("/me/delete", "not_confirmed")
        await run_in_threadpool(data.delete_everything, person_of(account), account.actor)
        return redirect_with("/me", "all_deleted")

    @app.get("/me/exemption", include_in_schema=False)
    async def exemption_page(request: Request, account: EmployeeAccount) -> Response:
        return await _exemption_page(request, account, [])

    async def _exemption_page(
        request: Request, account: Account, errors: list[tuple[str, str]], reason: str = ""
    ) -> Response:
        history = await run_in_threadpool(data.exemptions, person_of(account))
        return render(
            request,
            "me_exemption.html",
            account,
            status_code=400 if errors else 200,
            title="Exemption",
            history=list(reversed(history)),
            open_request=any(r.status in ("requested", "approved") for r in history),
            reason=reason,
            notices=errors or notices_of(request),
        )

    @app.post("/me/exemption", include_in_schema=False)
    async def ask_exemption(request: Request, account: EmployeeAccount) -> Response:
        form = await checked_form(request)
        reason = form.get("reason", "")
        try:
            await run_in_threadpool(
                data.request_exemption,
                person_of(account),
                reason,
                form.get("delete_collected") == "yes",
                account.actor,
            )
        except (BadRequest, Conflict) as error:
            return await _exemption_page(request, account, [("error", error.message)], reason)
        return redirect_with("/me/exemption", "exemption_asked")

    @app.get("/me/what-we-capture", include_in_schema=False)
    async def what_we_capture(request: Request, account: EmployeeAccount) -> Response:
        policy = await run_in_threadpool(exemptions.fleet_policy)
        return render(
            request, "me_capture.html", account, title="What we capture", sections=capture_notice(policy)
        )
