"""Signing in and out of the console."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from boughs.audit import service as audit
from boughs.auth import service as auth
from boughs.auth import sessions, throttle
from boughs.auth.api import Public
from boughs.console.frame import ConsoleDep, console_router, templates
from boughs.context import Ctx
from boughs.kit.errors import BoughsError
from boughs.middleware import request_id_var

router = console_router()


def _safe_next(target: str | None) -> str:
    """Only a path on this site: a login link must not send the user elsewhere."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _login_form(
    request: Request, next_url: str, email: str = "", error: str = "", status: int = 200
) -> HTMLResponse:
    return templates.TemplateResponse(
        request,
        "login.html",
        {"next_url": next_url, "email": email, "error": error},
        status_code=status,
    )


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, next: str = "/") -> HTMLResponse:
    return _login_form(request, _safe_next(next))


@router.post("/login", response_model=None)
async def login(
    public: Annotated[Public, Depends(Public)],
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    target = _safe_next(next)
    if not email.strip() or not password:
        missing = "Enter your email address." if not email.strip() else "Enter your password."
        return _login_form(public.request, target, email, missing, status=422)
    try:
        user = await auth.sign_in(public.db, public.clock, email, password, public.address)
    except throttle.TooManyAttempts as error:
        response = _login_form(public.request, target, email, error.detail + " " + error.fix, status=429)
        response.headers["Retry-After"] = str(error.retry_after)
        return response
    except BoughsError as error:
        return _login_form(public.request, target, email, error.detail, status=error.status)
    async with public.db.transaction() as session:
        ctx = Ctx(
            session=session, clock=public.clock, actor=auth.actor_for(user), request_id=request_id_var.get()
        )
        issued = await sessions.start(session, user, ctx.now())
        await throttle.clear_email(session, user.email)
        await audit.record(
            ctx,
            entity="session",
            entity_id=issued.row.id,
            action="logged_in",
            account_id=None,
            after={"expires_at": issued.row.expires_at, "address": public.address, "via": "console"},
        )
    redirect = RedirectResponse(target, status_code=303)
    sessions.set_cookie(redirect, public.request, issued)
    return redirect


@router.post("/logout", response_model=None)
async def logout(con: ConsoleDep) -> Response:
    session_id = con.ctx.actor.session_id
    assert session_id is not None
    await sessions.end(con.ctx.session, session_id, con.ctx.now())
    await audit.record(con.ctx, entity="session", entity_id=session_id, action="logged_out", account_id=None)
    response = RedirectResponse("/login", status_code=303)
    sessions.clear_cookie(response, con.request)
    return response
