"""Console pages of an account's people and paperwork: Users, Agreements and Activity tabs,
and accepting an invitation (public: the invitee has no session until the link is used)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from boughs.accounts import repository as accounts_repository
from boughs.accounts import service as accounts
from boughs.accounts.models import Account
from boughs.audit import repository as audit_repository
from boughs.audit import service as audit
from boughs.auth import invitations, sessions, throttle
from boughs.auth import repository as users
from boughs.auth import service as auth
from boughs.auth.api import Public
from boughs.auth.passwords import MIN_PASSWORD_LENGTH
from boughs.authz.permissions import Permission
from boughs.authz.scope import require
from boughs.console.frame import (
    FLASH_COOKIE,
    Console,
    ConsoleDep,
    FormState,
    checkbox,
    console_router,
    error_page,
    form_errors,
    form_values,
    page,
    redirect,
    reject,
    templates,
)
from boughs.context import Ctx
from boughs.kit.errors import BoughsError, Conflict, InvalidInput, NotFound
from boughs.memberships import service as memberships
from boughs.memberships.models import AccountRole
from boughs.memberships.schemas import MembershipCreate
from boughs.middleware import request_id_var

router = console_router()

PublicDep = Annotated[Public, Depends(Public)]

USERS = "members/users.html"
AGREEMENTS = "members/agreements.html"
ACTIVITY = "members/activity.html"
INVITATION = "members/invitation.html"

ROLE_OPTIONS = [
    (AccountRole.admin.value, "Admin — everything, including users and child accounts"),
    (AccountRole.billing.value, "Billing — invoices, payments and payment methods"),
    (AccountRole.technical.value, "Technical — services, devices and SIMs"),
    (AccountRole.viewer.value, "Viewer — sees everything, changes nothing"),
]
# What the audit log is about; the filter offers these (a free value is refused by nothing,
# it simply finds no rows).
AUDIT_ENTITIES = (
    "account", "membership", "invitation", "user", "service", "payment_method", "payment",
    "invoice", "credit_note", "dunning_hold", "session", "api_token",
)  # fmt: skip
ACTIVITY_PAGE_SIZES = (25, 50, 100)
DIFF_VALUE_WIDTH = 60


def _invitation_url(request: Request, link: str) -> str:
    """The console page that accepts the invitation, as a full address the inviter can send."""
    token = link.rsplit("/", 1)[-1]
    return str(request.base_url).rstrip("/") + f"/invitations/{quote(token, safe='')}"


# ---- Users ----------------------------------------------------------------------------


async def _users_context(con: Console, account: Account) -> dict[str, Any]:
    return {
        "account": account,
        "tab": "users",
        "members": await memberships.list_for_account(con.ctx, account.id),
        "invitations": await memberships.pending_invitations(con.ctx, account.id),
        "roles": ROLE_OPTIONS,
        "may_manage": con.can(Permission.manage_members, account),
    }


@router.get("/accounts/{account_id}/users", response_class=HTMLResponse)
async def users_tab(con: ConsoleDep, account_id: int) -> HTMLResponse:
    account = await accounts.get(con.ctx, account_id)
    context = await _users_context(con, account)
    return await page(con, USERS, context, account=account, section="account")


@router.post("/accounts/{account_id}/users", response_model=None)
async def add_user(con: ConsoleDep, account_id: int) -> Response:
    account = await accounts.get(con.ctx, account_id)
    await require(con.ctx, account.path, Permission.manage_members, "manage this account's users")
    values = form_values(await con.request.form())
    try:
        data = MembershipCreate.model_validate(values)
        added = await memberships.add(con.ctx, account.id, str(data.email), data.role)
    except (ValidationError, InvalidInput, Conflict) as error:
        context = await _users_context(con, account)
        raise await reject(
            con, USERS, form_errors(values, error), context, account=account, section="account"
        ) from error
    users_url = f"/accounts/{account.id}/users"
    if added.get("membership"):
        member = added["membership"]
        return redirect(
            con, users_url, flash=f"{member['email']} now has the {member['role']} role on {account.name}."
        )
    # The link's secret is shown only here, once: no redirect, so it never sits in a cookie.
    invitation = added["invitation"]
    context = await _users_context(con, account)
    context["invited"] = {**invitation, "url": _invitation_url(con.request, invitation["link"])}
    return await page(con, USERS, context, account=account, section="account")


@router.post("/accounts/{account_id}/users/{membership_id}/remove", response_model=None)
async def remove_user(con: ConsoleDep, account_id: int, membership_id: int) -> Response:
    account = await accounts.get(con.ctx, account_id)
    members = await memberships.list_for_account(con.ctx, account.id)
    member = next((m for m in members if m["id"] == membership_id), None)
    if member is None:
        raise NotFound(
            detail=f"{account.name} has no membership {membership_id}.",
            fix="reload the Users tab; someone may have removed it already",
        )
    await memberships.remove(con.ctx, membership_id)
    return redirect(
        con, f"/accounts/{account.id}/users", flash=f"{member['email']} was removed from {account.name}."
    )


# ---- Agreements (seed 002) ------------------------------------------------------------


async def _agreements_context(con: Console, account: Account) -> dict[str, Any]:
    state = accounts.agreements_of(account)
    accepted_by: dict[int, str] = {}
    for key in ("msa_accepted_by", "aup_accepted_by"):
        user_id = state[key]
        if user_id is not None and user_id not in accepted_by:
            user = await users.user_by_id(con.ctx.session, con.ctx.provider_id, user_id)
            accepted_by[user_id] = user.email if user else f"user {user_id} (deleted)"
    return {
        "account": account,
        "tab": "agreements",
        "agreements": state,
        "accepted_by": accepted_by,
        "may_accept": con.can(Permission.manage_accounts, account),
    }


@router.get("/accounts/{account_id}/agreements", response_class=HTMLResponse)
async def agreements_tab(con: ConsoleDep, account_id: int) -> HTMLResponse:
    account = await accounts.get(con.ctx, account_id)
    context = await _agreements_context(con, account)
    return await page(con, AGREEMENTS, context, account=account, section="account")


@router.post("/accounts/{account_id}/agreements", response_model=None)
async def accept_agreements(con: ConsoleDep, account_id: int) -> Response:
    account = await accounts.get(con.ctx, account_id)
    values = form_values(await con.request.form())
    try:
        await accounts.accept_agreements(
            con.ctx, account.id, msa=checkbox(values, "msa"), aup=checkbox(values, "aup")
        )
    except InvalidInput as error:
        context = await _agreements_context(con, account)
        raise await reject(
            con, AGREEMENTS, form_errors(values, error), context, account=account, section="account"
        ) from error
    return redirect(con, f"/accounts/{account.id}/agreements", flash="Agreements accepted.")


# ---- Activity: the audit log ------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    field: str
    before: str
    after: str


def _compact(value: Any) -> str:
    if value is None:
        return "—"
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= DIFF_VALUE_WIDTH else text[: DIFF_VALUE_WIDTH - 1] + "…"


def _changes(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[Change]:
    """Each field the event touched, once, with its value before and after."""
    old, new = before or {}, after or {}
    keys = list(old) + [k for k in new if k not in old]
    return [
        Change(k, _compact(old[k]) if k in old else "", _compact(new[k]) if k in new else "")
        for k in keys
        if k not in old or k not in new or old[k] != new[k]
    ]


def _whole_number(raw: str | None, name: str) -> int | None:
    if raw is None or raw == "":
        return None
    if not raw.isdigit():
        raise InvalidInput.on_field(name, "is not a whole number", "follow the page links instead")
    return int(raw)


@router.get("/accounts/{account_id}/activity", response_class=HTMLResponse)
async def activity_tab(con: ConsoleDep, account_id: int) -> HTMLResponse:
    account = await accounts.get(con.ctx, account_id)
    params = con.request.query_params
    entity = params.get("entity", "").strip() or None
    older_than = _whole_number(params.get("before"), "before")
    per_page = _whole_number(params.get("per_page"), "per_page") or ACTIVITY_PAGE_SIZES[0]
    if per_page not in ACTIVITY_PAGE_SIZES:
        raise InvalidInput.on_field(
            "per_page", f"{per_page} rows is not offered", f"use one of {ACTIVITY_PAGE_SIZES}"
        )
    # Newest first, paged by id (the log only grows, so a page never shifts under the reader).
    rows = await audit_repository.in_subtree(
        con.ctx.session, con.ctx.provider_id, account.path,
        actor_user_id=None, entity=entity, since=None, until=None,
        before_id=older_than, limit=per_page + 1,
    )  # fmt: skip
    events = rows[:per_page]
    named = await accounts_repository.get_many(
        con.ctx.session, con.scope, list({e.account_id for e in events if e.account_id is not None})
    )
    context = {
        "account": account,
        "tab": "activity",
        "events": [(e, _changes(e.before, e.after)) for e in events],
        "account_names": {a.id: a.name for a in named},
        "entities": AUDIT_ENTITIES,
        "entity": entity or "",
        "per_page": per_page,
        "is_first_page": older_than is None,
        "older_than": events[-1].id if len(rows) > per_page else None,
    }
    return await page(con, ACTIVITY, context, account=account, section="account")


# ---- Accepting an invitation (public) -------------------------------------------------


@dataclass(frozen=True)
class InvitationView:
    email: str
    role: str
    expires_at: datetime
    # A user with this email exists already: they confirm with their own password.
    existing_user: bool


async def _usable_invitation(public: Public, token: str) -> InvitationView:
    """The invitation behind the link, or the error that says why the link cannot be used."""
    async with public.db.transaction(write=False) as session:
        invitation = await invitations.usable(session, token, public.clock.now())
        existing = await users.user_by_email(session, invitation.email)
    return InvitationView(invitation.email, invitation.role, invitation.expires_at, existing is not None)


def _invitation_form(
    request: Request,
    token: str,
    invitation: InvitationView,
    state: FormState | None = None,
    status: int = 200,
) -> HTMLResponse:
    context = {
        "token": token,
        "invitation": invitation,
        "form": state or FormState(),
        "min_password_length": MIN_PASSWORD_LENGTH,
    }
    return templates.TemplateResponse(request, INVITATION, context, status_code=status)


@router.get("/invitations/{token}", response_class=HTMLResponse)
async def invitation_page(public: PublicDep, token: str) -> HTMLResponse:
    return _invitation_form(public.request, token, await _usable_invitation(public, token))


@router.post("/invitations/{token}", response_model=None)
async def accept_invitation(
    public: PublicDep,
    token: str,
    name: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    confirm_password: Annotated[str, Form()] = "",
) -> Response:
    invitation = await _usable_invitation(public, token)
    state = FormState(values={"name": name})
    if not password:
        state.errors["password"] = "Enter a password."
    elif not invitation.existing_user and password != confirm_password:
        state.errors["confirm_password"] = "does not match the password — type the same password twice"
    if state.errors:
        state.message = "Some fields need attention."
        return _invitation_form(public.request, token, invitation, state, status=422)
    try:
        accepted = await invitations.accept(
            public.db, public.clock, token, name=name, password=password, address=public.address
        )
    except throttle.TooManyAttempts as error:
        state.message = f"{error.detail} {error.fix}"
        response = _invitation_form(public.request, token, invitation, state, status=429)
        response.headers["Retry-After"] = str(error.retry_after)
        return response
    except (NotFound, invitations.Gone) as error:
        return error_page(public.request, error)
    except BoughsError as error:
        state = form_errors({"name": name}, error)
        if state.errors:
            state.message = "Some fields need attention."
        return _invitation_form(public.request, token, invitation, state, status=error.status)
    async with public.db.transaction() as session:
        user = accepted.user
        ctx = Ctx(
            session=session, clock=public.clock, actor=auth.actor_for(user), request_id=request_id_var.get()
        )
        issued = await sessions.start(session, user, ctx.now())
        await audit.record(
            ctx,
            entity="session",
            entity_id=issued.row.id,
            action="logged_in",
            account_id=None,
            after={"expires_at": issued.row.expires_at, "address": public.address, "via": "invitation"},
        )
    role = accepted.invitation.role
    signed_in = RedirectResponse(f"/accounts/{accepted.invitation.account_id}", status_code=303)
    sessions.set_cookie(signed_in, public.request, issued)
    welcome = f"Welcome, {user.name or user.email}: you now have the {role} role on this account."
    signed_in.set_cookie(FLASH_COOKIE, quote(welcome), path="/", httponly=True, samesite="lax", max_age=60)
    return signed_in
