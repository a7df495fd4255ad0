"""What every console page shares: the signed-in unit of work, rendering, forms and errors.

A console request runs in one transaction exactly like an API request, with the same
services and the same scoping helper; only the way in (the session cookie, CSRF from a
header or a form field) and the way out (HTML instead of JSON) differ.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, unquote, urlencode

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from starlette.datastructures import FormData

from boughs.accounts import service as accounts
from boughs.accounts.models import Account
from boughs.auth import sessions
from boughs.authz.permissions import Permission
from boughs.authz.scope import Scope, scope_of
from boughs.context import Ctx
from boughs.db import Database
from boughs.kit.clock import Clock
from boughs.kit.errors import BoughsError, Forbidden, NotFound, Unauthorized
from boughs.kit.money import exponent, to_major
from boughs.kit.secrets import box_for
from boughs.middleware import request_id_var

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
FOCUS_COOKIE = "boughs_focus"
FLASH_COOKIE = "boughs_flash"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

templates = Jinja2Templates(directory=TEMPLATES)


def _money(amount: int | None, currency: str | None) -> str:
    if amount is None or currency is None:
        return "—"
    return f"{to_major(amount, currency):,.{exponent(currency)}f} {currency}"


def _when(value: datetime | date | None, with_time: bool = True) -> str:
    if value is None:
        return "—"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC" if with_time else "%Y-%m-%d")
    return value.isoformat()


templates.env.filters["money"] = _money
templates.env.filters["when"] = _when
templates.env.filters["urlquote"] = lambda value: quote(str(value), safe="")


class LoginRequired(Exception):
    """No usable session: the browser goes to the login page and comes back afterwards."""


class Rendered(Exception):
    """A finished answer that must not commit: a form shown again with its errors.

    Raising it rolls the unit of work back (a service may have written before it found
    the problem); the console route then sends the response as it is.
    """

    def __init__(self, response: Response) -> None:
        super().__init__("rendered")
        self.response = response


@dataclass
class Console:
    """One signed-in console request: its unit of work and what the frame shows."""

    request: Request
    ctx: Ctx
    csrf_token: str
    scope: Scope

    @property
    def is_htmx(self) -> bool:
        return self.request.headers.get("hx-request") == "true"

    def can(self, permission: Permission, account: Account | None = None) -> bool:
        """Whether the actor holds ``permission`` on ``account`` (or anywhere, without one)."""
        if account is not None:
            return self.scope.allows(account.path, permission)
        if self.scope.whole_provider:
            return permission in self.scope.permissions_at("")
        return any(self.scope.allows(g.path, permission) for g in self.scope.grants)

    def can_provider(self, permission: Permission) -> bool:
        """Provider-level work (catalog, bill runs, every account) is for staff."""
        return self.scope.whole_provider and permission in self.scope.permissions_at("")


async def _csrf_from(request: Request) -> str | None:
    header = request.headers.get(sessions.CSRF_HEADER)
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        value = (await request.form()).get("csrf_token")
        return value if isinstance(value, str) else None
    return None


async def console_unit(request: Request) -> AsyncIterator[Console]:
    db: Database = request.app.state.db
    clock: Clock = request.app.state.clock
    cookie = request.cookies.get(sessions.SESSION_COOKIE)
    if not cookie:
        raise LoginRequired()
    write = request.method not in SAFE_METHODS
    async with db.transaction(write=write) as session:
        try:
            actor = await sessions.authenticate(session, cookie, clock.now(), unsafe=False, csrf_token=None)
        except Unauthorized as error:
            raise LoginRequired() from error
        assert actor.session_id is not None
        csrf_token = await sessions.csrf_token_of(session, actor.session_id)
        if write:
            sent = await _csrf_from(request)
            if not (sent and hmac.compare_digest(sent.encode(), csrf_token.encode())):
                raise Forbidden(
                    detail="The form came without this session's CSRF token.",
                    fix="reload the page and submit the form again",
                )
        raw_account = str(request.path_params.get("account_id", ""))
        ctx = Ctx(
            session=session,
            clock=clock,
            actor=actor,
            request_id=request_id_var.get(),
            acting_account_id=int(raw_account) if raw_account.isdigit() else None,
            secrets=box_for(request.app.state.settings.secret_key),
        )
        yield Console(request=request, ctx=ctx, csrf_token=csrf_token, scope=await scope_of(ctx))
        if getattr(request.state, "roll_back", False):
            # A rejected form or an error page: nothing the attempt wrote is kept.
            await session.rollback()


ConsoleDep = Annotated[Console, Depends(console_unit, scope="function")]


def _login_redirect(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    url = "/login?" + urlencode({"next": target})
    if request.headers.get("hx-request") == "true":
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def error_page(request: Request, error: BoughsError) -> Response:
    """A domain error outside a form: the problem in words, with the page's status."""
    context = {"error": error, "request_id": request_id_var.get()}
    if request.headers.get("hx-request") == "true":
        response = templates.TemplateResponse(
            request, "partials/flash_error.html", context, status_code=error.status
        )
        response.headers["HX-Retarget"] = "#flash"
        response.headers["HX-Reswap"] = "innerHTML"
        return response
    return templates.TemplateResponse(request, "error.html", context, status_code=error.status)


class ConsoleRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handle_for_browser(request: Request) -> Response:
            try:
                return await handle(request)
            except LoginRequired:
                return _login_redirect(request)
            except Rendered as rendered:
                request.state.roll_back = True
                return rendered.response
            except BoughsError as error:
                request.state.roll_back = True
                return error_page(request, error)

        return handle_for_browser


def console_router(prefix: str = "") -> APIRouter:
    """The router every console module uses; console pages stay out of the API's schema."""
    return APIRouter(prefix=prefix, route_class=ConsoleRoute, include_in_schema=False)


# ---- the frame around every page -------------------------------------------------


@dataclass(frozen=True)
class NavItem:
    label: str
    href: str
    section: str


def navigation(con: Console) -> list[tuple[str, list[NavItem]]]:
    """The sidebar: what this actor may open, by domain."""
    staff = con.scope.whole_provider
    groups: list[tuple[str, list[NavItem]]] = [
        ("Overview", [NavItem("Dashboard", "/", "dashboard")]),
        ("Accounts", [NavItem("Accounts", "/accounts", "accounts")]),
    ]
    if staff:
        groups[1][1].append(NavItem("Account tree", "/accounts/tree", "tree"))
        groups[1][1].append(NavItem("Dual Device Users", "/dual-device-users", "dual-device-users"))
        groups.append(
            (
                "Catalog",
                [
                    NavItem("Plans", "/plans", "plans"),
                    NavItem("Meters", "/meters", "meters"),
                    NavItem("Routers", "/routers", "routers"),
                    NavItem("IPv4 pools", "/ip-pools", "ip-pools"),
                    NavItem("Ports", "/ports", "ports"),
                ],
            )
        )
        groups.append(
            (
                "Billing",
                [
                    NavItem("Bill runs", "/bill-runs", "bill-runs"),
                    NavItem("Invoices", "/invoices", "invoices"),
                ],
            )
        )
        groups.append(("System", [NavItem("Operations", "/operations", "operations")]))
    return groups


async def focus_account(con: Console, account: Account | None) -> Account | None:
    """The account in the header: the page's own, else the last one opened, else the user's own."""
    if account is not None:
        return account
    raw = con.request.cookies.get(FOCUS_COOKIE, "")
    candidates = [int(raw)] if raw.isdigit() else []
    if not con.scope.whole_provider:
        candidates += [g.account_id for g in con.scope.grants]
    for account_id in candidates:
        try:
            return await accounts.get(con.ctx, account_id)
        except NotFound:
            continue
    return None


async def page(
    con: Console,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
    account: Account | None = None,
    section: str = "",
) -> HTMLResponse:
    """A whole page, or only its content when HTMX asks for a fragment of it."""
    values: dict[str, Any] = dict(context or {})
    focus = await focus_account(con, account)
    crumbs = await accounts.ancestors(con.ctx, focus.id) if focus is not None else []
    flash = con.request.cookies.get(FLASH_COOKIE)
    values.update(
        con=con,
        actor=con.ctx.actor,
        csrf_token=con.csrf_token,
        nav=navigation(con),
        section=section,
        focus=focus,
        crumbs=crumbs,
        flash=unquote(flash) if flash else None,
        Permission=Permission,
    )
    response = templates.TemplateResponse(con.request, template, values, status_code=status)
    if account is not None:
        response.set_cookie(FOCUS_COOKIE, str(account.id), path="/", httponly=True, samesite="lax")
    if flash:
        response.delete_cookie(FLASH_COOKIE, path="/")
    return response


def fragment(
    con: Console, template: str, context: Mapping[str, Any] | None = None, status: int = 200
) -> HTMLResponse:
    """A piece of a page for HTMX to swap in: no frame around it."""
    values = dict(context or {})
    values.update(con=con, csrf_token=con.csrf_token, Permission=Permission)
    return templates.TemplateResponse(con.request, template, values, status_code=status)


def redirect(con: Console, url: str, flash: str | None = None) -> Response:
    """After a change: go to ``url`` (HTMX follows HX-Redirect), with a one-time message."""
    response: Response
    if con.is_htmx:
        response = Response(status_code=204, headers={"HX-Redirect": url})
    else:
        response = RedirectResponse(url, status_code=303)
    if flash:
        response.set_cookie(FLASH_COOKIE, quote(flash), path="/", httponly=True, samesite="lax", max_age=60)
    return response


# ---- forms -------------------------------------------------------------------------


@dataclass
class FormState:
    """What a form shows: the values as typed and the errors beside each field."""

    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    message: str = ""

    def value(self, name: str, default: Any = "") -> Any:
        return self.values.get(name, default)

    def error(self, name: str) -> str:
        return self.errors.get(name, "")


def form_values(form: FormData) -> dict[str, Any]:
    """A submitted form as a dict: blank fields dropped, repeated fields as lists."""
    values: dict[str, Any] = {}
    for key in form:
        if key == "csrf_token":
            continue
        items = [v for v in form.getlist(key) if isinstance(v, str)]
        if len(items) > 1:
            values[key] = [v for v in items if v != ""]
        elif items and items[0].strip() != "":
            values[key] = items[0].strip()
    return values


def _dotted(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body",) and not isinstance(p, int)]
    return ".".join(parts)


def form_errors(values: dict[str, Any], error: BoughsError | ValidationError) -> FormState:
    """Field errors from a rejected submission, keyed by the field's name in the form."""
    state = FormState(values=values)
    if isinstance(error, ValidationError):
        for item in error.errors():
            name = _dotted(tuple(item["loc"])) or "form"
            message = str(item["msg"]).removeprefix("Value error, ")
            state.errors.setdefault(name, message)
        state.message = "Some fields need attention."
        return state
    for problem in error.errors:
        text = problem.message + (f" — {problem.fix}" if problem.fix else "")
        state.errors.setdefault(problem.field, text)
    state.message = error.detail + (f" ({error.fix})" if error.fix and not error.errors else "")
    return state


async def reject(
    con: Console,
    template: str,
    state: FormState | None,
    context: Mapping[str, Any] | None = None,
    *,
    status: int = 422,
    account: Account | None = None,
    section: str = "",
) -> Rendered:
    """The form again with its errors (422 unless told), and nothing the attempt wrote kept.

    ``state`` None: the context already carries the form to show.
    """
    values = dict(context or {})
    if state is not None:
        values["form"] = state
    return Rendered(await page(con, template, values, status=status, account=account, section=section))


def checkbox(values: Mapping[str, Any], name: str) -> bool:
    return str(values.get(name, "")).lower() in {"on", "true", "1", "yes"}
