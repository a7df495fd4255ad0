"""Console pages: accounts.

The searchable list, the tree that opens one level at a time, the account's Overview and
Child accounts tabs, the three ways to add a child (a connection, seed 000; a child account,
seed 002; a subaccount with its administrators, seed 003) and the Dual Device Users view.
Every change goes through the accounts, child-connections and memberships services, which
check the actor's role again inside the transaction; the pages only hide what a role may
not do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, cast

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlalchemy import ColumnElement, Select

from boughs.accounts import inheritance
from boughs.accounts import repository as accounts_repository
from boughs.accounts import service as accounts
from boughs.accounts.models import Account, AccountStatus, InvoiceMode, ParentAccess
from boughs.accounts.repository import AccountFilter, Chain
from boughs.accounts.schemas import AccountCreate, AccountUpdate, MoveRequest, RenewRequest
from boughs.authz.permissions import Permission
from boughs.authz.scope import require
from boughs.billing.terms import rate_text
from boughs.catalog import service as catalog
from boughs.catalog.models import PlanKind
from boughs.console.frame import (
    Console,
    ConsoleDep,
    FormState,
    checkbox,
    console_router,
    form_errors,
    form_values,
    fragment,
    page,
    redirect,
    reject,
)
from boughs.console.lists import ListQuery, fetch_page
from boughs.kit.errors import BoughsError, Forbidden, InvalidInput, NotFound
from boughs.kit.money import to_major
from boughs.kit.pagination import MAX_LIMIT
from boughs.kit.periods import Period
from boughs.memberships import service as memberships
from boughs.services import connections, connections_repository
from boughs.services.connections_schemas import ChildConnectionCreate, ChildConnectionUpdate, DualDeviceKind

router = console_router()

# Children a tree node loads at a time; a "more" link fetches the next ones.
TREE_PAGE = 50
ACCOUNT = "account"
STATUS_OPTIONS = [(s.value, s.value.capitalize()) for s in AccountStatus]
INVOICE_MODE_OPTIONS = [
    (InvoiceMode.with_parent.value, "With parent — on the parent's invoice"),
    (InvoiceMode.separate.value, "Separate — its own invoices"),
]
PARENT_ACCESS_OPTIONS = [
    (ParentAccess.manage.value, "Manage — the parent's users manage it"),
    (ParentAccess.view.value, "View — the parent's users only see it"),
    (ParentAccess.none.value, "None — hidden from the parent's users"),
]
PERIOD_OPTIONS = [(p.value, p.value) for p in Period]
DEPTH_OPTIONS = [("0", "0 (top level)")] + [(str(d), str(d)) for d in range(1, 10)]
DUAL_DEVICE_KINDS = [
    (DualDeviceKind.children.value, "With child accounts"),
    (DualDeviceKind.companion.value, "Plan allows a companion device"),
]
# "created" orders by id: ids grow with creation and are indexed, created_at is not.
LIST_SORTS: dict[str, ColumnElement[Any]] = {
    "name": Account.name.expression,
    "created": Account.id.expression,
    "status": Account.status.expression,
}
BY_ID = Account.id.expression


# ---- shared pieces ---------------------------------------------------------------------


def _whole_number(lq: ListQuery, name: str) -> int | None:
    raw = lq.filters.get(name)
    if raw is None:
        return None
    if not raw.isdigit():
        raise InvalidInput.on_field(name, f"{raw!r} is not a whole number", f"give {name} as 0, 1, 2 …")
    return int(raw)


async def _managed(con: Console, account_id: int, doing: str) -> Account:
    """The account, when the actor may manage it: forms are for those who may submit them."""
    account = await accounts.get(con.ctx, account_id)
    await require(con.ctx, account.path, Permission.manage_accounts, doing)
    return account


def _refused(error: BoughsError) -> bool:
    """Errors that are an answer in themselves, not a form to correct."""
    return isinstance(error, Forbidden | NotFound)


@dataclass(frozen=True)
class Source:
    """Where an effective value comes from, in words, with the ancestor's name when visible."""

    text: str
    account_id: int | None = None
    name: str | None = None


def _source(kind: str, account_id: int | None, own_id: int, names: Mapping[int, str]) -> Source:
    if kind == "own" or (account_id is not None and account_id == own_id):
        return Source("own")
    if kind == "inherited" and account_id is not None:
        # An ancestor above the actor's reach stays nameless: never upward.
        name = names.get(account_id)
        return Source("inherited from" if name else "inherited from a parent account", account_id, name)
    if kind == "provider":
        return Source("provider default")
    if kind == "public":
        return Source("public plan")
    return Source("not set")


def _visible_names(con: Console, chain: Sequence[Account]) -> dict[int, str]:
    return {a.id: a.name for a in chain if con.scope.covers_path(a.path)}


# ---- the list --------------------------------------------------------------------------


@router.get("/accounts", response_class=HTMLResponse)
async def account_list(con: ConsoleDep, request: Request) -> HTMLResponse:
    lq = ListQuery.parse(
        request.query_params,
        sorts=list(LIST_SORTS),
        default_sort="name",
        filters=["status", "depth", "parent"],
    )
    status = lq.filters.get("status")
    if status is not None and status not in {s.value for s in AccountStatus}:
        raise InvalidInput.on_field("status", f"{status!r} is not a status", "use active, suspended …")
    parent_id = _whole_number(lq, "parent")
    parent = await accounts.get(con.ctx, parent_id) if parent_id is not None else None
    f = AccountFilter(q=lq.q or None, status=status, depth=_whole_number(lq, "depth"), parent_id=parent_id)
    statement = accounts_repository.filtered(con.scope, f)
    found = await fetch_page(con.ctx.session, statement, lq, LIST_SORTS, BY_ID)
    parent_ids = {a.parent_id for a in found.items if a.parent_id is not None}
    parents = await accounts_repository.get_many(con.ctx.session, con.scope, list(parent_ids))
    return await page(
        con,
        "accounts/list.html",
        {
            "pg": found,
            "lq": lq,
            "parent": parent,
            "parent_names": {p.id: p.name for p in parents},
            "status_options": STATUS_OPTIONS,
            "depth_options": DEPTH_OPTIONS,
            "may_create": con.can_provider(Permission.manage_provider),
        },
        section="accounts",
    )


# ---- new top-level account -------------------------------------------------------------


def _emails(raw: Any) -> list[str]:
    """Administrators typed one per line, or separated by commas or spaces."""
    text = " ".join(raw) if isinstance(raw, list) else str(raw or "")
    return [part for part in text.replace(",", " ").split() if part]


def _account_create_values(values: dict[str, Any], **fixed: Any) -> dict[str, Any]:
    data = {k: v for k, v in values.items() if k not in ("administrators", "agreements", "subaccounts")}
    data["administrators"] = _emails(values.get("administrators"))
    return {**data, **fixed}


async def _new_account_form(
    con: Console, kind: str, parent: Account | None, form: FormState | None = None
) -> dict[str, Any]:
    return {
        "kind": kind,
        "account": parent,
        "tab": "children",
        "form": form or FormState(values={"invoice_mode": InvoiceMode.separate.value}),
        "invoice_mode_options": INVOICE_MODE_OPTIONS,
    }


@router.get("/accounts/new", response_class=HTMLResponse)
async def new_top_level_form(con: ConsoleDep) -> HTMLResponse:
    await require(con.ctx, "", Permission.manage_provider, "create top-level accounts")
    return await page(
        con, "accounts/new_account.html", await _new_account_form(con, "top", None), section="accounts"
    )


@router.post("/accounts/new", response_class=HTMLResponse)
async def new_top_level(con: ConsoleDep) -> Response:
    await require(con.ctx, "", Permission.manage_provider, "create top-level accounts")
    values = form_values(await con.request.form())
    data = _account_create_values(values, features={"subaccounts": checkbox(values, "subaccounts")})
    return await _create_account(con, "top", None, values, data)


async def _create_account(
    con: Console, kind: str, parent: Account | None, values: dict[str, Any], data: dict[str, Any]
) -> Response:
    """Create through the memberships service: administrators become members or invitations."""
    try:
        created, added = await memberships.create_account(con.ctx, AccountCreate.model_validate(data))
    except (ValidationError, BoughsError) as error:
        if isinstance(error, BoughsError) and _refused(error):
            raise
        context = await _new_account_form(con, kind, parent)
        raise await reject(
            con, "accounts/new_account.html", form_errors(values, error), context,
            account=parent, section=ACCOUNT if parent else "accounts",
        ) from None  # fmt: skip
    invitations = [a["invitation"] for a in added if a.get("invitation")]
    what = {"top": "account", "child": "child account", "subaccount": "subaccount"}[kind]
    if invitations:
        # The links are secrets shown once: the page that shows them is the answer to the POST.
        base = str(con.request.base_url).rstrip("/")
        return await page(
            con,
            "accounts/created.html",
            {
                "created": created,
                "account": created,
                "tab": "overview",
                "what": what,
                "invitations": [{**i, "url": base + i["link"]} for i in invitations],
                "members": [a["membership"] for a in added if a.get("membership")],
            },
            status=201,
            account=created,
            section=ACCOUNT,
        )
    return redirect(con, f"/accounts/{created.id}", flash=f"Created {what} {created.name}.")


# ---- the tree --------------------------------------------------------------------------


async def _tree_nodes(con: Console, nodes: Sequence[Account]) -> dict[str, Any]:
    counts = await accounts_repository.child_counts(con.ctx.session, con.scope, [a.id for a in nodes])
    return {"nodes": nodes, "counts": counts}


@router.get("/accounts/tree", response_class=HTMLResponse)
async def account_tree(con: ConsoleDep, cursor: str | None = None) -> HTMLResponse:
    if con.scope.whole_provider:
        found = await accounts.list_accounts(con.ctx, AccountFilter(top_level=True), cursor, TREE_PAGE)
        roots, next_cursor = found.items, found.next_cursor
    else:
        # A member's tree starts at the accounts of their memberships (the outermost ones).
        granted = await accounts_repository.get_many(
            con.ctx.session, con.scope, [g.account_id for g in con.scope.grants]
        )
        roots = sorted(
            (a for a in granted if not any(o.id != a.id and a.path.startswith(o.path) for o in granted)),
            key=lambda a: (a.name.lower(), a.id),
        )
        next_cursor = None
    context = {**await _tree_nodes(con, roots), "more_url": None}
    if next_cursor:
        context["more_url"] = f"/accounts/tree?cursor={next_cursor}"
    if con.is_htmx and cursor:
        return fragment(con, "accounts/_tree_nodes.html", context)
    return await page(con, "accounts/tree.html", context, section="tree")


@router.get("/accounts/{account_id}/tree-children", response_class=HTMLResponse)
async def tree_children(con: ConsoleDep, account_id: int, cursor: str | None = None) -> HTMLResponse:
    found = await accounts.children(con.ctx, account_id, cursor, TREE_PAGE)
    context = {**await _tree_nodes(con, found.items), "more_url": None}
    if found.next_cursor:
        context["more_url"] = f"/accounts/{account_id}/tree-children?cursor={found.next_cursor}"
    return fragment(con, "accounts/_tree_nodes.html", context)


# ---- overview --------------------------------------------------------------------------


@dataclass(frozen=True)
class EffectiveRow:
    key: str
    label: str
    value: str
    source: Source | None


def _payment_method_text(value: Mapping[str, Any] | None) -> str:
    if not value:
        return "None"
    four = f" ···{value['last_four']}" if value.get("last_four") else ""
    return f"{value.get('label') or value.get('kind')}{four}"


def _effective_rows(
    effective: Mapping[str, Any], own_id: int, names: Mapping[int, str]
) -> list[EffectiveRow]:
    def src(item: Mapping[str, Any]) -> Source:
        return _source(item["source"], item["source_account_id"], own_id, names)

    status = effective["status"]
    status_text = str(status["value"]).capitalize()
    if status.get("reason") == inheritance.UNPAID:
        status_text += " — an invoice is overdue"
    status_source = None
    if status["blocked"] and status["source_account_id"] is not None:
        kind = "own" if status["source_account_id"] == own_id else "inherited"
        status_source = _source(kind, status["source_account_id"], own_id, names)
    expiry = effective["expiry_date"]
    billing = effective["billing_details"]
    tax = effective["tax_rate"]
    owner = effective["invoice_owner"]
    owner_id = owner["value"]
    owner_name = "this account" if owner_id == own_id else names.get(owner_id, "a parent account")
    rows = [
        EffectiveRow("status", "Status", status_text, status_source),
        EffectiveRow(
            "expiry",
            "Expiry",
            f"Expires {expiry['value'].isoformat()}" if expiry["value"] else "No expiry",
            src(expiry) if expiry["value"] else None,
        ),
        EffectiveRow("timezone", "Timezone", str(effective["timezone"]["value"]), src(effective["timezone"])),
        EffectiveRow("currency", "Currency", str(effective["currency"]["value"]), src(effective["currency"])),
        EffectiveRow(
            "billing-address", "Billing address", billing["address"]["value"] or "—", src(billing["address"])
        ),
        EffectiveRow("tax-id", "Tax id", billing["tax_id"]["value"] or "—", src(billing["tax_id"])),
        EffectiveRow(
            "billing-email", "Billing email", billing["email"]["value"] or "—", src(billing["email"])
        ),
        EffectiveRow(
            "payment-method",
            "Payment method",
            _payment_method_text(effective["payment_method"]["value"]),
            src(effective["payment_method"]),
        ),
        EffectiveRow(
            "tax-rate",
            "Tax rate",
            "Exempt" if tax["value"]["exempt"] else f"{tax['value']['rate']} %",
            src(tax),
        ),
        EffectiveRow(
            "net-terms", "Net terms", f"{effective['net_terms']['value']} days", src(effective["net_terms"])
        ),
        EffectiveRow("invoice-owner", "Invoice owner", f"Billed on the invoice of {owner_name}", src(owner)),
    ]
    # Nothing set anywhere up the tree: say so once, without a source.
    return [
        EffectiveRow(r.key, r.label, "Not set", None) if r.source and r.source.text == "not set" else r
        for r in rows
    ]


@router.get("/accounts/{account_id}", response_class=HTMLResponse)
async def overview(con: ConsoleDep, account_id: int) -> HTMLResponse:
    account = await accounts.get(con.ctx, account_id)
    effective = await accounts.effective(con.ctx, account_id)
    chain = await accounts.ancestors(con.ctx, account_id)
    names = {**_visible_names(con, chain), account.id: account.name}
    counts = await accounts_repository.child_counts(con.ctx.session, con.scope, [account.id])
    offers = [
        {**offer, "from": _source(offer["source"], offer["source_account_id"], account.id, names)}
        for offer in effective["offers"]
    ]
    parent = chain[-1] if chain and chain[-1].id == account.parent_id else None
    return await page(
        con,
        "accounts/overview.html",
        {
            "account": account,
            "tab": "overview",
            "parent": parent,
            "effective_rows": _effective_rows(effective, account.id, names),
            "agreements": effective["agreements"],
            "offers": offers,
            "child_count": counts.get(account.id, 0),
            "tax_rate": rate_text(account.tax_rate_ppm) if account.tax_rate_ppm is not None else None,
            "may_manage": con.can(Permission.manage_accounts, account),
            "may_detach": account.parent_id is not None and con.can_provider(Permission.manage_provider),
        },
        account=account,
        section=ACCOUNT,
    )


# ---- edit ------------------------------------------------------------------------------

# The form's fields: (name, nullable). A blank nullable field means "inherit" (null).
EDIT_FIELDS: tuple[tuple[str, bool], ...] = (
    ("name", False), ("external_id", True), ("description", False), ("contact_email", True),
    ("technical_contact_email", True), ("expiry_date", True), ("invoice_mode", False),
    ("parent_access", False), ("timezone", True), ("currency", True), ("billing_address", True),
    ("billing_tax_id", True), ("billing_email", True), ("tax_rate", True), ("net_terms_days", True),
    ("billing_anchor_day", False),
)  # fmt: skip


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _edit_values(account: Account) -> dict[str, Any]:
    values = {name: _text(getattr(account, name)) for name, _ in EDIT_FIELDS if name != "tax_rate"}
    values["tax_rate"] = rate_text(account.tax_rate_ppm) if account.tax_rate_ppm is not None else ""
    values["tax_exempt"] = "on" if account.tax_exempt else ""
    values["subaccounts"] = "on" if account.features.get("subaccounts") else ""
    return values


def _edit_context(con: Console, account: Account) -> dict[str, Any]:
    return {
        "account": account,
        "tab": "overview",
        "invoice_mode_options": INVOICE_MODE_OPTIONS,
        "parent_access_options": PARENT_ACCESS_OPTIONS,
        "may_set_features": con.can_provider(Permission.manage_provider),
    }


@router.get("/accounts/{account_id}/edit", response_class=HTMLResponse)
async def edit_form(con: ConsoleDep, account_id: int) -> HTMLResponse:
    account = await _managed(con, account_id, "change this account")
    context = {**_edit_context(con, account), "form": FormState(values=_edit_values(account))}
    return await page(con, "accounts/edit.html", context, account=account, section=ACCOUNT)


@router.post("/accounts/{account_id}/edit", response_class=HTMLResponse)
async def edit(con: ConsoleDep, account_id: int) -> Response:
    account = await _managed(con, account_id, "change this account")
    form = await con.request.form()
    values = form_values(form)
    current = _edit_values(account)
    # Only what the operator changed is sent, so an untouched field never trips a rule;
    # a field the form did not show (parent access at the top level) is not a change.
    changes: dict[str, Any] = {}
    for name, nullable in EDIT_FIELDS:
        if name not in form:
            continue
        typed = str(values.get(name, ""))
        if typed != current[name]:
            changes[name] = typed if typed or not nullable else None
    if checkbox(values, "tax_exempt") != account.tax_exempt:
        changes["tax_exempt"] = checkbox(values, "tax_exempt")
    if con.can_provider(Permission.manage_provider) and checkbox(values, "subaccounts") != bool(
        account.features.get("subaccounts")
    ):
        changes["features"] = {**account.features, "subaccounts": checkbox(values, "subaccounts")}
    if not changes:
        return redirect(con, f"/accounts/{account.id}", flash="Nothing changed.")
    try:
        await accounts.update(con.ctx, account.id, AccountUpdate.model_validate(changes))
    except (ValidationError, BoughsError) as error:
        if isinstance(error, BoughsError) and _refused(error):
            raise
        raise await reject(
            con, "accounts/edit.html", form_errors(values, error), _edit_context(con, account),
            account=account, section=ACCOUNT,
        ) from None  # fmt: skip
    return redirect(con, f"/accounts/{account.id}", flash=f"Saved {values.get('name', account.name)}.")


# ---- status, renewal, move, detach -----------------------------------------------------


@router.post("/accounts/{account_id}/suspend", response_class=HTMLResponse)
async def suspend(con: ConsoleDep, account_id: int) -> Response:
    reason = str(form_values(await con.request.form()).get("reason", ""))
    account = await accounts.suspend(con.ctx, account_id, reason)
    return redirect(con, f"/accounts/{account.id}", flash=f"Suspended {account.name}.")


@router.post("/accounts/{account_id}/unsuspend", response_class=HTMLResponse)
async def unsuspend(con: ConsoleDep, account_id: int) -> Response:
    reason = str(form_values(await con.request.form()).get("reason", ""))
    account = await accounts.unsuspend(con.ctx, account_id, reason)
    return redirect(
        con, f"/accounts/{account.id}", flash=f"Unsuspended {account.name}: it is {account.status}."
    )


def _renew_context(account: Account) -> dict[str, Any]:
    return {"account": account, "tab": "overview", "period_options": PERIOD_OPTIONS}


@router.get("/accounts/{account_id}/renew", response_class=HTMLResponse)
async def renew_form(con: ConsoleDep, account_id: int) -> HTMLResponse:
    account = await _managed(con, account_id, "renew this account")
    context = {**_renew_context(account), "form": FormState(values={"count": "1"})}
    return await page(con, "accounts/renew.html", context, account=account, section=ACCOUNT)


@router.post("/accounts/{account_id}/renew", response_class=HTMLResponse)
async def renew(con: ConsoleDep, account_id: int) -> Response:
    account = await _managed(con, account_id, "renew this account")
    values = form_values(await con.request.form())
    data = {k: values[k] for k in ("expiry_date", "period", "count") if k in values}
    try:
        renewed = await accounts.renew(con.ctx, account.id, RenewRequest.model_validate(data))
    except (ValidationError, BoughsError) as error:
        if isinstance(error, BoughsError) and _refused(error):
            raise
        raise await reject(
            con, "accounts/renew.html", form_errors(values, error), _renew_context(account),
            account=account, section=ACCOUNT,
        ) from None  # fmt: skip
    expiry = renewed.expiry_date.isoformat() if renewed.expiry_date else "—"
    return redirect(con, f"/accounts/{account.id}", flash=f"Renewed {account.name} until {expiry}.")


def _move_context(con: Console, account: Account) -> dict[str, Any]:
    return {
        "account": account,
        "tab": "overview",
        "may_top_level": con.can_provider(Permission.manage_provider),
    }


@router.get("/accounts/{account_id}/move", response_class=HTMLResponse)
async def move_form(con: ConsoleDep, account_id: int) -> HTMLResponse:
    account = await _managed(con, account_id, "move this account")
    context = {**_move_context(con, account), "form": FormState(values={"where": "parent"})}
    return await page(con, "accounts/move.html", context, account=account, section=ACCOUNT)


@router.post("/accounts/{account_id}/move", response_class=HTMLResponse)
async def move(con: ConsoleDep, account_id: int) -> Response:
    account = await _managed(con, account_id, "move this account")
    values = form_values(await con.request.form())
    to_top = values.get("where") == "top"
    try:
        if not to_top and "parent_id" not in values:
            raise InvalidInput.on_field(
                "parent_id", "enter the id of the new parent", "the id is shown on the parent's page"
            )
        request = MoveRequest.model_validate({"parent_id": None if to_top else values["parent_id"]})
        moved = await accounts.move(con.ctx, account.id, request.parent_id)
    except (ValidationError, BoughsError) as error:
        if isinstance(error, BoughsError) and _refused(error):
            raise
        raise await reject(
            con, "accounts/move.html", form_errors(values, error), _move_context(con, account),
            account=account, section=ACCOUNT,
        ) from None  # fmt: skip
    where = "to the top level" if moved.parent_id is None else f"under account {moved.parent_id}"
    return redirect(con, f"/accounts/{moved.id}", flash=f"Moved {moved.name} {where}.")


@router.post("/accounts/{account_id}/detach", response_class=HTMLResponse)
async def detach(con: ConsoleDep, account_id: int) -> Response:
    """Remove child (seed 001): the account leaves its parent and bills on its own."""
    account = await accounts.get(con.ctx, account_id)
    parent_id = account.parent_id
    await accounts.move(con.ctx, account.id, None)
    target = f"/accounts/{parent_id}/children" if parent_id is not None else f"/accounts/{account.id}"
    flash = f"{account.name} is now a top-level account with its own billing."
    return redirect(con, target, flash=flash)


# ---- delete ----------------------------------------------------------------------------


def _deletion_lines(report: Mapping[str, Any], account: Account) -> tuple[list[str], list[str]]:
    removed, kept = report["removed"], report["kept"]
    gone = [
        f"The account {account.name} (id {account.id}) and its {removed['parent_links']} parent-link "
        "history record(s)",
        f"{removed['services']} service(s), with their status history, discounts and scheduled changes",
        f"{removed['usage_events']} usage event(s) and the account's own usage totals",
    ]
    stays = [
        f"{kept['audit_events']} audit event(s), including the one that records this deletion",
        f"{kept['issued_invoices']} issued invoice(s), with the bill-to details anonymised",
        f"{kept['payments']} payment(s)",
        "What its usage added to its ancestors' totals",
    ]
    return gone, stays


@router.get("/accounts/{account_id}/delete", response_class=HTMLResponse)
async def delete_confirmation(con: ConsoleDep, account_id: int) -> HTMLResponse:
    account = await _managed(con, account_id, "delete this account")
    report = await accounts.deletion_report(con.ctx, account.id)
    removed, kept = _deletion_lines(report, account)
    return await page(
        con,
        "accounts/delete.html",
        {"account": account, "tab": "overview", "report": report, "removed": removed, "kept": kept},
        account=account,
        section=ACCOUNT,
    )


@router.post("/accounts/{account_id}/delete", response_class=HTMLResponse)
async def delete(con: ConsoleDep, account_id: int) -> Response:
    account = await accounts.get(con.ctx, account_id)
    name, parent_id = account.name, account.parent_id
    await accounts.delete(con.ctx, account.id)
    parent = await accounts_repository.get(con.ctx.session, con.scope, parent_id) if parent_id else None
    target = f"/accounts/{parent.id}/children" if parent is not None else "/accounts"
    return redirect(con, target, flash=f"Deleted {name} permanently.")


# ---- child accounts / connections ------------------------------------------------------


@dataclass(frozen=True)
class ChildRow:
    account: Account
    status: str
    username: str | None
    plan: str | None
    service_id: int | None
    expiry: date | None
    expiry_source: Source | None
    may_manage: bool


async def _child_rows(con: Console, chain: Chain, children: Sequence[Account]) -> list[ChildRow]:
    """Each child as its parent's Connections tab shows it, in a fixed number of queries."""
    served = await connections_repository.first_internet_services(
        con.ctx.session, con.ctx.provider_id, [c.id for c in children]
    )
    names = _visible_names(con, chain.accounts)
    now = con.ctx.now()
    rows = []
    for child in children:
        full = [*chain.accounts, child]
        expiry = inheritance.resolve(full, "expiry_date")
        service = served.get(child.id)
        rows.append(
            ChildRow(
                account=child,
                status=inheritance.effective_status(full, now, chain.provider_timezone)["value"],
                username=service.login if service else None,
                plan=service.plan_name if service else None,
                service_id=service.service_id if service else None,
                expiry=expiry.value,
                expiry_source=_source(expiry.source, expiry.source_account_id, child.id, names)
                if expiry.value
                else None,
                may_manage=con.can(Permission.manage_accounts, child),
            )
        )
    return rows


async def _chain(con: Console, account_id: int) -> Chain:
    found = await accounts_repository.chain_of(con.ctx.session, con.scope, account_id)
    if found is None:
        raise accounts.not_found(account_id)
    return found


@router.get("/accounts/{account_id}/children", response_class=HTMLResponse)
async def children(con: ConsoleDep, request: Request, account_id: int) -> HTMLResponse:
    chain = await _chain(con, account_id)
    account = chain.account
    lq = ListQuery.parse(
        request.query_params, sorts=list(LIST_SORTS), default_sort="name", filters=["status"]
    )
    status = lq.filters.get("status")
    f = AccountFilter(q=lq.q or None, status=status, parent_id=account.id)
    found = await fetch_page(
        con.ctx.session, accounts_repository.filtered(con.scope, f), lq, LIST_SORTS, BY_ID
    )
    # accounts.create holds the rule; the page only avoids offering what it would refuse.
    may_have_children = con.scope.whole_provider or bool(account.features.get("subaccounts"))
    may_manage = con.can(Permission.manage_accounts, account)
    return await page(
        con,
        "accounts/children.html",
        {
            "account": account,
            "tab": "children",
            "pg": found,
            "lq": lq,
            "rows": await _child_rows(con, chain, found.items),
            "status_options": STATUS_OPTIONS,
            "may_create": may_manage and may_have_children,
            "no_children_allowed": may_manage and not may_have_children,
            "may_connect": may_manage and may_have_children and con.can(Permission.manage_services, account),
            "may_detach": con.can_provider(Permission.manage_provider),
        },
        account=account,
        section=ACCOUNT,
    )


@router.post("/accounts/{account_id}/children/{child_id}/suspend", response_class=HTMLResponse)
async def suspend_child(con: ConsoleDep, account_id: int, child_id: int) -> Response:
    row = await connections.suspend(con.ctx, account_id, child_id, "")
    return redirect(con, f"/accounts/{account_id}/children", flash=f"Suspended {row['label']}.")


@router.post("/accounts/{account_id}/children/{child_id}/unsuspend", response_class=HTMLResponse)
async def unsuspend_child(con: ConsoleDep, account_id: int, child_id: int) -> Response:
    row = await connections.unsuspend(con.ctx, account_id, child_id, "")
    return redirect(
        con, f"/accounts/{account_id}/children", flash=f"Unsuspended {row['label']}: it is {row['status']}."
    )


async def _internet_plans(con: Console, account: Account) -> list[tuple[str, str]]:
    """Internet plans the account may take: public, or offered to it or an ancestor."""
    found = await catalog.list_plans(
        con.ctx, kind=PlanKind.internet.value, account_id=account.id, include_retired=False,
        cursor=None, limit=MAX_LIMIT,
    )  # fmt: skip
    return [
        (str(p.id), f"{p.name} — {to_major(p.price_amount, p.currency):,} {p.currency} / {p.pay_period}")
        for p in found.items
    ]


async def _connection_context(
    con: Console, parent: Account, editing: dict[str, Any] | None
) -> dict[str, Any]:
    return {
        "account": parent,
        "tab": "children",
        "editing": editing,
        "plan_options": await _internet_plans(con, parent),
        "invoice_mode_options": INVOICE_MODE_OPTIONS,
    }


@router.get("/accounts/{account_id}/children/new-connection", response_class=HTMLResponse)
async def new_connection_form(con: ConsoleDep, account_id: int) -> HTMLResponse:
    parent = await _managed(con, account_id, "create child connections")
    context = await _connection_context(con, parent, None)
    context["form"] = FormState(values={"invoice_mode": InvoiceMode.with_parent.value})
    return await page(con, "accounts/connection_form.html", context, account=parent, section=ACCOUNT)


@router.post("/accounts/{account_id}/children/new-connection", response_class=HTMLResponse)
async def new_connection(con: ConsoleDep, account_id: int) -> Response:
    parent = await _managed(con, account_id, "create child connections")
    values = form_values(await con.request.form())
    try:
        child, _ = await connections.create(con.ctx, parent.id, ChildConnectionCreate.model_validate(values))
    except (ValidationError, BoughsError) as error:
        if isinstance(error, BoughsError) and _refused(error):
            raise
        context = await _connection_context(con, parent, None)
        raise await reject(
            con, "accounts/connection_form.html", form_errors(values, error), context,
            account=parent, section=ACCOUNT,
        ) from None  # fmt: skip
    return redirect(
        con,
        f"/accounts/{child.id}",
        flash=f"Created connection {child.name} (username {values['username']}).",
    )


def _connection_values(row: Mapping[str, Any]) -> dict[str, str]:
    expiry = row["effective_expiry"]
    return {
        "label": row["label"],
        "plan_id": _text(row["plan"]["id"]) if row["plan"] else "",
        "ip_address": _text(row["ip_address"]),
        "mac_address": _text(row["mac_address"]),
        # Only the child's own expiry is its to edit; a blank one inherits.
        "expiry_date": _text(expiry["value"]) if expiry["source"] == "own" else "",
        "invoice_mode": row["invoice_mode"],
    }


@router.get("/accounts/{account_id}/children/{child_id}/edit", response_class=HTMLResponse)
async def edit_connection_form(con: ConsoleDep, account_id: int, child_id: int) -> HTMLResponse:
    row = await connections.get(con.ctx, account_id, child_id)
    child = await _managed(con, child_id, "change this connection")
    parent = await accounts.get(con.ctx, account_id)
    context = await _connection_context(con, parent, row)
    context["form"] = FormState(values=_connection_values(row))
    context["child"] = child
    return await page(con, "accounts/connection_form.html", context, account=parent, section=ACCOUNT)


@router.post("/accounts/{account_id}/children/{child_id}/edit", response_class=HTMLResponse)
async def edit_connection(con: ConsoleDep, account_id: int, child_id: int) -> Response:
    row = await connections.get(con.ctx, account_id, child_id)
    await _managed(con, child_id, "change this connection")
    form = await con.request.form()
    values = form_values(form)
    current = _connection_values(row)
    fields = ("label", "expiry_date", "invoice_mode") + (
        ("plan_id", "ip_address", "mac_address") if row["service_id"] else ()
    )
    changes: dict[str, Any] = {}
    for name in fields:
        if name not in form:
            continue
        typed = str(values.get(name, ""))
        if typed != current[name]:
            # Blank: inherit the expiry, a dynamic address, no device lock.
            changes[name] = typed or (None if name in ("expiry_date", "ip_address", "mac_address") else "")
    if not changes:
        return redirect(con, f"/accounts/{account_id}/children", flash="Nothing changed.")
    try:
        await connections.update(con.ctx, account_id, child_id, ChildConnectionUpdate.model_validate(changes))
    except (ValidationError, BoughsError) as error:
        if isinstance(error, BoughsError) and _refused(error):
            raise
        parent = await accounts.get(con.ctx, account_id)
        context = await _connection_context(con, parent, row)
        context["child"] = await accounts.get(con.ctx, child_id)
        raise await reject(
            con, "accounts/connection_form.html", form_errors(values, error), context,
            account=parent, section=ACCOUNT,
        ) from None  # fmt: skip
    return redirect(
        con, f"/accounts/{account_id}/children", flash=f"Saved {values.get('label', row['label'])}."
    )


@router.get("/accounts/{account_id}/children/new-account", response_class=HTMLResponse)
async def new_child_account_form(con: ConsoleDep, account_id: int) -> HTMLResponse:
    parent = await _managed(con, account_id, "create child accounts")
    form = FormState(values={"agreements": "preaccept", "invoice_mode": InvoiceMode.separate.value})
    context = await _new_account_form(con, "child", parent, form)
    return await page(con, "accounts/new_account.html", context, account=parent, section=ACCOUNT)


@router.post("/accounts/{account_id}/children/new-account", response_class=HTMLResponse)
async def new_child_account(con: ConsoleDep, account_id: int) -> Response:
    parent = await _managed(con, account_id, "create child accounts")
    values = form_values(await con.request.form())
    if values.get("agreements") not in ("preaccept", "leave"):
        problem = InvalidInput.on_field(
            "agreements", "choose whether to accept the MSA and AUP now", "pick one of the two options"
        )
        context = await _new_account_form(con, "child", parent)
        raise await reject(
            con, "accounts/new_account.html", form_errors(values, problem), context,
            account=parent, section=ACCOUNT,
        )  # fmt: skip
    data = _account_create_values(
        values, parent_id=parent.id, preaccept_agreements=values["agreements"] == "preaccept"
    )
    return await _create_account(con, "child", parent, values, data)


@router.get("/accounts/{account_id}/children/new-subaccount", response_class=HTMLResponse)
async def new_subaccount_form(con: ConsoleDep, account_id: int) -> HTMLResponse:
    parent = await _managed(con, account_id, "create subaccounts")
    context = await _new_account_form(con, "subaccount", parent)
    return await page(con, "accounts/new_account.html", context, account=parent, section=ACCOUNT)


@router.post("/accounts/{account_id}/children/new-subaccount", response_class=HTMLResponse)
async def new_subaccount(con: ConsoleDep, account_id: int) -> Response:
    parent = await _managed(con, account_id, "create subaccounts")
    values = form_values(await con.request.form())
    if not _emails(values.get("administrators")):
        problem = InvalidInput.on_field(
            "administrators", "name at least one administrator", "enter their email addresses, one per line"
        )
        context = await _new_account_form(con, "subaccount", parent)
        raise await reject(
            con, "accounts/new_account.html", form_errors(values, problem), context,
            account=parent, section=ACCOUNT,
        )  # fmt: skip
    data = _account_create_values(values, parent_id=parent.id)
    return await _create_account(con, "subaccount", parent, values, data)


# ---- dual device users -----------------------------------------------------------------


@router.get("/dual-device-users", response_class=HTMLResponse)
async def dual_device_users(con: ConsoleDep, request: Request) -> HTMLResponse:
    lq = ListQuery.parse(
        request.query_params, sorts=["name", "created"], default_sort="name", filters=["kind"]
    )
    kind = lq.filters.get("kind", DualDeviceKind.all.value)
    if kind not in {k.value for k in DualDeviceKind}:
        raise InvalidInput.on_field("kind", f"{kind!r} is not offered", "use children or companion")
    statement = accounts_repository.dual_device_statement(con.scope, kind, lq.q or None)
    # fetch_page's annotation takes one-column selects; these rows are (id, name, external id).
    rows_statement = cast("Select[Any]", statement)
    sorts = {"name": LIST_SORTS["name"], "created": BY_ID}
    found = await fetch_page(con.ctx.session, rows_statement, lq, sorts, BY_ID, scalars=False)
    ids = [row[0] for row in found.items]
    kids = await connections_repository.child_counts(con.ctx.session, con.scope, ids)
    allowance: dict[int, int] = {}
    in_use: dict[int, int] = {}
    for account_id, devices, macs in await connections_repository.companion_services(
        con.ctx.session, con.ctx.provider_id, ids
    ):
        allowance[account_id] = allowance.get(account_id, 0) + devices
        in_use[account_id] = in_use.get(account_id, 0) + len(macs)
    rows = [
        {
            "account_id": account_id,
            "name": name,
            "external_id": external_id,
            "child_count": kids.get(account_id, 0),
            "device_allowance": allowance.get(account_id),
            "devices_in_use": in_use.get(account_id),
        }
        for account_id, name, external_id in found.items
    ]
    return await page(
        con,
        "accounts/dual_device_users.html",
        {"pg": found, "lq": lq, "rows": rows, "kind_options": DUAL_DEVICE_KINDS},
        section="dual-device-users",
    )
