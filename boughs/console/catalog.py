"""Console pages: the provider's catalog — plans and their offers, meters, routers, IPv4 pools
and ports with the accounts they are shared with.

Every page is for provider staff; the catalog services decide which staff roles may change
what (owner and admins), so a support user reads the pages and is refused at the first change.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, cast

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ValidationError

from boughs.accounts import service as accounts
from boughs.accounts.models import Account
from boughs.accounts.repository import AccountFilter
from boughs.authz.permissions import Permission
from boughs.authz.scope import require
from boughs.catalog import repository
from boughs.catalog import service as catalog
from boughs.catalog.models import (
    CapAction,
    ChildBillingMode,
    IpPool,
    Offer,
    PayPeriod,
    Plan,
    PlanKind,
    PoolKind,
    Port,
    Router,
)
from boughs.catalog.schemas import (
    IpPoolCreate,
    IpPoolUpdate,
    PlanCreate,
    PlanUpdate,
    PortCreate,
    PortUpdate,
    RouterCreate,
    RouterType,
    RouterUpdate,
)
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
from boughs.kit.errors import BoughsError, FieldProblem, Forbidden, InvalidInput, NotFound
from boughs.kit.money import parse_major, to_major
from boughs.providers import repository as providers
from boughs.services.models import Service
from boughs.usage import service as usage
from boughs.usage.models import Aggregation
from boughs.usage.schemas import MeterCreate, MeterUpdate

router = console_router()

BYTES_PER_GB = Decimal(10**9)
METERS_PER_PAGE = 100


# --- shared pieces -----------------------------------------------------------------------------


def _staff_only(con: Console) -> None:
    if not con.scope.whole_provider:
        raise Forbidden(
            detail="The catalog belongs to the provider: only provider staff open these pages.",
            fix="ask the provider's staff about plans and network resources",
        )


async def _manager(con: Console) -> None:
    """Forms that change the catalog are for staff who manage the provider (as its services
    require): others are refused before the form is read."""
    _staff_only(con)
    await require(con.ctx, "", Permission.manage_provider, "change the provider's catalog")


def _context(con: Console, **values: Any) -> dict[str, Any]:
    return {"may_change": con.can_provider(Permission.manage_provider), **values}


def _choices(values: type[Any]) -> list[tuple[str, str]]:
    return [(v.value, v.value.replace("_", " ")) for v in values]


def _errors(
    values: Mapping[str, Any],
    error: BoughsError | ValidationError,
    renamed: Mapping[str, str] | None = None,
    folded: Sequence[str] = (),
) -> FormState:
    """Errors keyed by the form's own field names: a schema field the form shows under another
    name is renamed, and errors inside a nested field (usage_charges.0.tiers) are folded onto it."""
    if isinstance(error, Forbidden):
        raise error  # not the form's fault: this role may not do it at all (the 403 page)
    state = form_errors(dict(values), error)
    renamed = renamed or {}
    pinned: dict[str, str] = {}
    for name, message in state.errors.items():
        target = renamed.get(name, name)
        if name == "form" and ": " in message:
            # A whole-model check names its field at the start of its message.
            named, rest = message.split(": ", 1)
            if named in values or named in renamed or named in _FORM_FIELDS:
                target, message = renamed.get(named, named), rest
        for outer in folded:
            if name.startswith(outer + "."):
                target, message = outer, f"{name.removeprefix(outer + '.')}: {message}"
        pinned[target] = f"{pinned[target]}; {message}" if target in pinned else message
    state.errors = pinned
    return state


_FORM_FIELDS = {"unique_property", "counts_toward_cap"}


def _invalid(problems: list[FieldProblem]) -> None:
    if problems:
        raise InvalidInput(detail="Some fields need attention.", fix=problems[0].fix, errors=problems)


async def _account_ref(con: Console, raw: str, field: str) -> Account:
    """An account named by its id or its external id, among those the actor can reach."""
    if raw.isdigit():
        try:
            return await accounts.get(con.ctx, int(raw))
        except NotFound:
            pass
    found = await accounts.list_accounts(con.ctx, AccountFilter(q=raw), None, 5)
    for account in found.items:
        if account.external_id == raw:
            return account
    raise InvalidInput.on_field(
        field,
        f"no account has the id or external id '{raw}'",
        "give an account id (like 42) or its external id",
    )


async def _form(request: Request) -> dict[str, Any]:
    return form_values(await request.form())


def _delete_context(
    con: Console, *, what: str, action: str, back: str, removed: list[str], kept: list[str], blocked: str = ""
) -> dict[str, Any]:
    return _context(con, what=what, action=action, back=back, removed=removed, kept=kept, blocked=blocked)


async def _delete(
    con: Console, context: dict[str, Any], section: str, remove: Any, done_url: str, done: str
) -> Response:
    """Run a deletion; a refusal (still in use) shows the confirmation again with the reason."""
    try:
        await remove()
    except BoughsError as error:
        context["error"] = error
        raise await reject(
            con, "catalog/delete.html", None, context, status=error.status, section=section
        ) from None
    return redirect(con, done_url, flash=done)


# --- plans -------------------------------------------------------------------------------------

PLAN_SORTS: dict[str, Any] = {
    "name": Plan.name,
    "kind": Plan.kind,
    "price": Plan.price_amount,
    "created": Plan.id,
}
OFFER_SORTS: dict[str, Any] = {"account": Account.name, "offered": Offer.id}
PLAN_RENAMED = {"price_amount": "price", "data_cap_bytes": "data_cap_gb"}
PLAN_NULLABLE = (
    "download_rate", "upload_rate", "data_cap_bytes", "cap_action", "throttle_download_rate",
    "throttle_upload_rate", "child_billing_mode",
)  # fmt: skip


def _plan_form_choices() -> dict[str, Any]:
    return {
        "kinds": _choices(PlanKind),
        "periods": _choices(PayPeriod),
        "cap_actions": _choices(CapAction),
        "billing_modes": [
            (ChildBillingMode.parent_breakdown.value, "pool the subtree's usage, one section per child"),
            (ChildBillingMode.parent_summary.value, "pool the subtree's usage, charges summed"),
            (ChildBillingMode.child.value, "rate each child's usage alone"),
        ],
    }


async def _plan_data(con: Console, values: Mapping[str, Any]) -> dict[str, Any]:
    """The plan's fields from the form: money from major units, the cap from GB, charges from JSON."""
    problems: list[FieldProblem] = []
    data: dict[str, Any] = {name: values.get(name) for name in PLAN_NULLABLE if name != "data_cap_bytes"}
    for name in ("name", "kind", "pay_period", "currency"):
        if name in values:
            data[name] = values[name]
    # Blank clears the description and means one device, on a new plan and an edited one alike.
    data["description"] = values.get("description", "")
    data["device_allowance"] = values.get("device_allowance", 1)
    data["public"] = checkbox(values, "public")
    data["pooled_cap"] = checkbox(values, "pooled_cap")
    currency = (
        values.get("currency") or (await providers.get(con.ctx.session, con.ctx.provider_id)).default_currency
    )
    if "price" in values:
        try:
            data["price_amount"] = parse_major(
                values["price"], str(currency).upper(), "price", example="25 or 25.00"
            )
        except InvalidInput as error:
            problems.extend(error.errors)
    data["data_cap_bytes"] = None
    if values.get("data_cap_gb"):
        try:
            data["data_cap_bytes"] = int(Decimal(values["data_cap_gb"]) * BYTES_PER_GB)
        except (InvalidOperation, ValueError):
            problems.append(FieldProblem("data_cap_gb", "is not a number", "write it in GB, like 100 or 2.5"))
    data["usage_charges"] = []
    if values.get("usage_charges"):
        try:
            data["usage_charges"] = json.loads(values["usage_charges"])
        except ValueError as error:
            problems.append(
                FieldProblem(
                    "usage_charges", f"is not valid JSON ({error})", "write a JSON list, like the example"
                )
            )
    _invalid(problems)
    return data


def _plan_prefill(plan: Plan) -> FormState:
    values: dict[str, Any] = {
        name: getattr(plan, name)
        for name in (
            "name",
            "kind",
            "description",
            "currency",
            "pay_period",
            "device_allowance",
            *PLAN_NULLABLE,
        )
    }
    values["price"] = str(to_major(plan.price_amount, plan.currency))
    values["data_cap_gb"] = str(Decimal(plan.data_cap_bytes) / BYTES_PER_GB) if plan.data_cap_bytes else None
    values["usage_charges"] = json.dumps(plan.usage_charges, indent=2) if plan.usage_charges else ""
    for name in ("public", "pooled_cap"):
        values[name] = "on" if getattr(plan, name) else ""
    values["retired"] = "on" if plan.retired_at else ""
    # A non-empty dict makes the checkbox macro read the values rather than its default.
    values["_"] = "prefill"
    return FormState(values={k: v for k, v in values.items() if v is not None})


@router.get("/plans", response_class=HTMLResponse)
async def plans(con: ConsoleDep) -> HTMLResponse:
    _staff_only(con)
    lq = ListQuery.parse(
        con.request.query_params, sorts=list(PLAN_SORTS), default_sort="name", filters=["kind", "state"]
    )
    conditions = []
    if lq.filters.get("kind"):
        conditions.append(Plan.kind == lq.filters["kind"])
    if lq.filters.get("state") == "live":
        conditions.append(Plan.retired_at.is_(None))
    elif lq.filters.get("state") == "retired":
        conditions.append(Plan.retired_at.is_not(None))
    statement = repository.search_statement(Plan, con.scope, lq.q, conditions)
    pg = await fetch_page(con.ctx.session, statement, lq, PLAN_SORTS, Plan.id.expression)
    filters = [
        ("kind", "Kind", _choices(PlanKind)),
        ("state", "State", [("live", "live"), ("retired", "retired")]),
    ]
    return await page(con, "catalog/plans.html", _context(con, pg=pg, filters=filters), section="plans")


@router.get("/plans/new", response_class=HTMLResponse)
async def new_plan(con: ConsoleDep) -> HTMLResponse:
    await _manager(con)
    form = FormState(values={"kind": "internet", "pay_period": "month", "device_allowance": 1})
    context = _context(con, form=form, **_plan_form_choices())
    return await page(con, "catalog/plan_new.html", context, section="plans")


@router.post("/plans/new", response_class=HTMLResponse)
async def create_plan(con: ConsoleDep) -> Response:
    await _manager(con)
    values = await _form(con.request)
    try:
        created = await catalog.create_plan(con.ctx, PlanCreate.model_validate(await _plan_data(con, values)))
    except (ValidationError, BoughsError) as error:
        form = _errors(values, error, PLAN_RENAMED, folded=["usage_charges"])
        context = _context(con, form=form, **_plan_form_choices())
        raise await reject(con, "catalog/plan_new.html", None, context, section="plans") from None
    return redirect(con, f"/plans/{created.id}", flash=f"Plan {created.name} created.")


async def _plan_page(
    con: Console, plan: Plan, *, form: FormState | None = None, offer_form: FormState | None = None
) -> dict[str, Any]:
    lq = ListQuery.parse(con.request.query_params, sorts=["account", "offered"], default_sort="account")
    offers = await fetch_page(
        con.ctx.session,
        repository.offers_statement(con.scope, plan.id),
        lq,
        OFFER_SORTS,
        Offer.id.expression,
        scalars=False,
    )
    used = await repository.plan_use(con.ctx.session, con.ctx.provider_id, plan.id)
    return _context(
        con,
        plan=plan,
        offers=offers,
        used=used,
        form=form or _plan_prefill(plan),
        offer_form=offer_form,
        **_plan_form_choices(),
    )


@router.get("/plans/{plan_id}", response_class=HTMLResponse)
async def plan_page(con: ConsoleDep, plan_id: int) -> HTMLResponse:
    _staff_only(con)
    plan = await catalog.get_visible_plan(con.ctx, plan_id)
    return await page(con, "catalog/plan.html", await _plan_page(con, plan), section="plans")


@router.post("/plans/{plan_id}", response_class=HTMLResponse)
async def update_plan(con: ConsoleDep, plan_id: int) -> Response:
    await _manager(con)
    plan = await catalog.get_visible_plan(con.ctx, plan_id)
    values = await _form(con.request)
    try:
        data = await _plan_data(con, values)
        # The create schema says "required" for a blank field the update schema would skip.
        PlanCreate.model_validate(data)
        if data.get("currency") is None:
            data.pop("currency", None)
        data["retired"] = checkbox(values, "retired")
        await catalog.update_plan(con.ctx, plan.id, PlanUpdate.model_validate(data))
    except (ValidationError, BoughsError) as error:
        values["_"] = "submitted"
        form = _errors(values, error, PLAN_RENAMED, folded=["usage_charges"])
        context = await _plan_page(con, plan, form=form)
        raise await reject(con, "catalog/plan.html", None, context, section="plans") from None
    return redirect(con, f"/plans/{plan.id}", flash="Plan saved.")


@router.post("/plans/{plan_id}/offers", response_class=HTMLResponse)
async def offer_plan(con: ConsoleDep, plan_id: int) -> Response:
    await _manager(con)
    plan = await catalog.get_visible_plan(con.ctx, plan_id)
    values = await _form(con.request)
    try:
        if not values.get("account"):
            raise InvalidInput.on_field("account", "is required", "give the account's id or external id")
        account = await _account_ref(con, str(values["account"]), "account")
        await catalog.add_offer(con.ctx, plan.id, account.id)
    except BoughsError as error:
        offer_form = _errors(values, error, {"account_id": "account"})
        context = await _plan_page(con, plan, offer_form=offer_form)
        raise await reject(con, "catalog/plan.html", None, context, section="plans") from None
    return redirect(
        con, f"/plans/{plan.id}", flash=f"Plan {plan.name} offered to {account.name} and its subtree."
    )


@router.post("/plans/{plan_id}/offers/{account_id}/withdraw", response_class=HTMLResponse)
async def withdraw_offer(con: ConsoleDep, plan_id: int, account_id: int) -> Response:
    await _manager(con)
    await catalog.remove_offer(con.ctx, plan_id, account_id)
    return redirect(con, f"/plans/{plan_id}", flash="Offer withdrawn; services already on the plan keep it.")


async def _plan_delete_context(con: Console, plan: Plan) -> dict[str, Any]:
    used = await repository.plan_use(con.ctx.session, con.ctx.provider_id, plan.id)
    offers = await repository.offer_count(con.ctx.session, con.ctx.provider_id, plan.id)
    blocked = (
        f"{used} service(s) or scheduled change(s) use this plan, so it cannot be deleted. "
        "Retire it instead (edit the plan, tick “Retired”): its subscribers keep it and no one new takes it."
        if used
        else ""
    )
    return _delete_context(
        con,
        what=f"plan {plan.name}",
        action=f"/plans/{plan.id}/delete",
        back=f"/plans/{plan.id}",
        removed=[
            f"The plan {plan.name} ({plan.kind}, {plan.pay_period})",
            f"Its {offers} offer(s) to accounts",
        ],
        kept=["The audit history of the plan and its offers", "Invoices already issued with its charges"],
        blocked=blocked,
    )


@router.get("/plans/{plan_id}/delete", response_class=HTMLResponse)
async def confirm_delete_plan(con: ConsoleDep, plan_id: int) -> HTMLResponse:
    await _manager(con)
    plan = await catalog.get_visible_plan(con.ctx, plan_id)
    return await page(con, "catalog/delete.html", await _plan_delete_context(con, plan), section="plans")


@router.post("/plans/{plan_id}/delete", response_class=HTMLResponse)
async def delete_plan(con: ConsoleDep, plan_id: int) -> Response:
    await _manager(con)
    plan = await catalog.get_visible_plan(con.ctx, plan_id)
    context = await _plan_delete_context(con, plan)
    name = plan.name
    return await _delete(
        con,
        context,
        "plans",
        lambda: catalog.delete_plan(con.ctx, plan_id),
        "/plans",
        f"Plan {name} deleted.",
    )


# --- meters ------------------------------------------------------------------------------------


def _meter_choices() -> dict[str, Any]:
    return {"aggregations": _choices(Aggregation)}


@router.get("/meters", response_class=HTMLResponse)
async def meters(con: ConsoleDep, cursor: str | None = None) -> HTMLResponse:
    _staff_only(con)
    found = await usage.list_meters(con.ctx, cursor, METERS_PER_PAGE)
    context = _context(con, meters=found.items, next_cursor=found.next_cursor, first=cursor is None)
    return await page(con, "catalog/meters.html", context, section="meters")


@router.get("/meters/new", response_class=HTMLResponse)
async def new_meter(con: ConsoleDep) -> HTMLResponse:
    await _manager(con)
    form = FormState(values={"aggregation": "sum", "precision": 0})
    return await page(
        con, "catalog/meter.html", _context(con, form=form, **_meter_choices()), section="meters"
    )


@router.post("/meters/new", response_class=HTMLResponse)
async def create_meter(con: ConsoleDep) -> Response:
    await _manager(con)
    values = await _form(con.request)
    try:
        data = {**values, "counts_toward_cap": checkbox(values, "counts_toward_cap")}
        created = await usage.create_meter(con.ctx, MeterCreate.model_validate(data))
    except (ValidationError, BoughsError) as error:
        context = _context(con, form=_errors(values, error), **_meter_choices())
        raise await reject(con, "catalog/meter.html", None, context, section="meters") from None
    return redirect(con, "/meters", flash=f"Meter {created.code} created.")


def _meter_prefill(meter: Any) -> FormState:
    values = {name: getattr(meter, name) for name in ("name", "unit", "description")}
    values["counts_toward_cap"] = "on" if meter.counts_toward_cap else ""
    return FormState(values=values)


@router.get("/meters/{meter_id}", response_class=HTMLResponse)
async def meter_page(con: ConsoleDep, meter_id: int) -> HTMLResponse:
    _staff_only(con)
    meter = await usage.get_meter(con.ctx, meter_id)
    context = _context(con, meter=meter, form=_meter_prefill(meter), **_meter_choices())
    return await page(con, "catalog/meter.html", context, section="meters")


@router.post("/meters/{meter_id}", response_class=HTMLResponse)
async def update_meter(con: ConsoleDep, meter_id: int) -> Response:
    await _manager(con)
    meter = await usage.get_meter(con.ctx, meter_id)
    values = await _form(con.request)
    try:
        data = {name: values.get(name, "") for name in ("name", "unit", "description")}
        data["counts_toward_cap"] = checkbox(values, "counts_toward_cap")
        await usage.update_meter(con.ctx, meter.id, MeterUpdate.model_validate(data))
    except (ValidationError, BoughsError) as error:
        context = _context(con, meter=meter, form=_errors(values, error), **_meter_choices())
        raise await reject(con, "catalog/meter.html", None, context, section="meters") from None
    return redirect(con, "/meters", flash=f"Meter {meter.code} saved.")


# --- routers -----------------------------------------------------------------------------------

ROUTER_SORTS: dict[str, Any] = {
    "name": Router.name,
    "address": Router.address,
    "type": Router.type,
    "created": Router.id,
}


def _router_choices() -> dict[str, Any]:
    return {"types": [(t.value, t.value) for t in RouterType]}


@router.get("/routers", response_class=HTMLResponse)
async def routers(con: ConsoleDep) -> HTMLResponse:
    _staff_only(con)
    lq = ListQuery.parse(con.request.query_params, sorts=list(ROUTER_SORTS), default_sort="name")
    pg = await fetch_page(
        con.ctx.session,
        repository.search_statement(Router, con.scope, lq.q),
        lq,
        ROUTER_SORTS,
        Router.id.expression,
    )
    used = await repository.services_using_each(
        con.ctx.session, con.ctx.provider_id, Service.router_id, [r.id for r in pg.items]
    )
    return await page(con, "catalog/routers.html", _context(con, pg=pg, used=used), section="routers")


@router.get("/routers/new", response_class=HTMLResponse)
async def new_router(con: ConsoleDep) -> HTMLResponse:
    await _manager(con)
    context = _context(con, form=FormState(values={"type": "mikrotik"}), **_router_choices())
    return await page(con, "catalog/router.html", context, section="routers")


@router.post("/routers/new", response_class=HTMLResponse)
async def create_router(con: ConsoleDep) -> Response:
    await _manager(con)
    values = await _form(con.request)
    try:
        created = await catalog.create_router(con.ctx, RouterCreate.model_validate(values))
    except (ValidationError, BoughsError) as error:
        context = _context(con, form=_errors(_without_secret(values), error), **_router_choices())
        raise await reject(con, "catalog/router.html", None, context, section="routers") from None
    return redirect(con, f"/routers/{created.id}", flash=f"Router {created.name} added.")


def _without_secret(values: Mapping[str, Any]) -> dict[str, Any]:
    # A secret typed into a rejected form is not sent back into the page.
    return {k: v for k, v in values.items() if k != "radius_secret"}


async def _router_page(con: Console, found: Router, form: FormState | None = None) -> dict[str, Any]:
    used = await repository.services_using(con.ctx.session, con.ctx.provider_id, Service.router_id, found.id)
    prefill = FormState(values={n: getattr(found, n) for n in ("name", "address", "type", "description")})
    return _context(con, found=found, used=used, form=form or prefill, **_router_choices())


@router.get("/routers/{router_id}", response_class=HTMLResponse)
async def router_page(con: ConsoleDep, router_id: int) -> HTMLResponse:
    _staff_only(con)
    found = await catalog.get_router(con.ctx, router_id)
    return await page(con, "catalog/router.html", await _router_page(con, found), section="routers")


@router.post("/routers/{router_id}", response_class=HTMLResponse)
async def update_router(con: ConsoleDep, router_id: int) -> Response:
    await _manager(con)
    found = await catalog.get_router(con.ctx, router_id)
    values = await _form(con.request)
    try:
        data = {name: values.get(name, "") for name in ("name", "address", "type", "description")}
        if values.get("radius_secret"):
            data["radius_secret"] = values["radius_secret"]
        await catalog.update_router(con.ctx, found.id, RouterUpdate.model_validate(data))
    except (ValidationError, BoughsError) as error:
        context = await _router_page(con, found, _errors(_without_secret(values), error))
        raise await reject(con, "catalog/router.html", None, context, section="routers") from None
    return redirect(con, f"/routers/{found.id}", flash="Router saved.")


@router.post("/routers/{router_id}/reveal-secret", response_class=HTMLResponse)
async def reveal_router_secret(con: ConsoleDep, router_id: int) -> HTMLResponse:
    await _manager(con)
    secret = await catalog.reveal_router_secret(con.ctx, router_id)
    if con.is_htmx:
        return fragment(con, "catalog/_secret.html", {"secret": secret})
    found = await catalog.get_router(con.ctx, router_id)
    context = await _router_page(con, found)
    context["secret"] = secret
    return await page(con, "catalog/router.html", context, section="routers")


async def _router_delete_context(con: Console, found: Router) -> dict[str, Any]:
    used = await repository.services_using(con.ctx.session, con.ctx.provider_id, Service.router_id, found.id)
    return _delete_context(
        con,
        what=f"router {found.name}",
        action=f"/routers/{found.id}/delete",
        back=f"/routers/{found.id}",
        removed=[f"The router {found.name} ({found.address})", "Its sealed RADIUS secret"],
        kept=["The audit history of the router"],
        blocked=f"{used} service(s) use this router: move them to another router first." if used else "",
    )


@router.get("/routers/{router_id}/delete", response_class=HTMLResponse)
async def confirm_delete_router(con: ConsoleDep, router_id: int) -> HTMLResponse:
    await _manager(con)
    found = await catalog.get_router(con.ctx, router_id)
    return await page(con, "catalog/delete.html", await _router_delete_context(con, found), section="routers")


@router.post("/routers/{router_id}/delete", response_class=HTMLResponse)
async def delete_router(con: ConsoleDep, router_id: int) -> Response:
    await _manager(con)
    found = await catalog.get_router(con.ctx, router_id)
    context, name = await _router_delete_context(con, found), found.name
    remove = lambda: catalog.delete_router(con.ctx, router_id)  # noqa: E731
    return await _delete(con, context, "routers", remove, "/routers", f"Router {name} deleted.")


# --- IPv4 pools and ports: owned by the provider or an account, maybe shared below it ----------

POOL_SORTS: dict[str, Any] = {
    "name": IpPool.name,
    "cidr": IpPool.cidr,
    "kind": IpPool.kind,
    "created": IpPool.id,
}
PORT_SORTS: dict[str, Any] = {
    "name": Port.name,
    "location": Port.location,
    "speed": Port.speed,
    "created": Port.id,
}
OWNED_RENAMED = {"owner_account_id": "owner"}


async def _owner_of(con: Console, values: Mapping[str, Any]) -> int | None:
    raw = str(values.get("owner", "")).strip()
    return (await _account_ref(con, raw, "owner")).id if raw else None


async def _owned_list(
    con: Console, model: type[IpPool] | type[Port], sorts: Mapping[str, Any], filters: Sequence[str]
) -> dict[str, Any]:
    lq = ListQuery.parse(con.request.query_params, sorts=list(sorts), default_sort="name", filters=filters)
    conditions = [model.kind == lq.filters["kind"]] if model is IpPool and lq.filters.get("kind") else []
    if lq.filters.get("sharing") == "provider":
        conditions.append(model.owner_account_id.is_(None))
    elif lq.filters.get("sharing") == "shared":
        conditions.append(model.owner_account_id.is_not(None) & model.shared_with_descendants.is_(True))
    elif lq.filters.get("sharing") == "own":
        conditions.append(model.owner_account_id.is_not(None) & model.shared_with_descendants.is_(False))
    statement = repository.search_statement(cast(Any, model), con.scope, lq.q, conditions)
    pg = await fetch_page(con.ctx.session, statement, lq, sorts, model.id.expression)
    owners = await repository.accounts_named(
        con.ctx.session, con.scope, [row.owner_account_id for row in pg.items if row.owner_account_id]
    )
    column = Service.ipv4_pool_id if model is IpPool else Service.port_id
    used = await repository.services_using_each(
        con.ctx.session, con.ctx.provider_id, column, [r.id for r in pg.items]
    )
    return _context(con, pg=pg, owners=owners, used=used)


SHARING_FILTER = (
    "sharing",
    "Sharing",
    [("provider", "provider-wide"), ("shared", "account and its subtree"), ("own", "one account only")],
)


async def _owned_page(con: Console, row: IpPool | Port, form: FormState | None = None) -> dict[str, Any]:
    owner = None
    if row.owner_account_id is not None:
        owner = (await repository.accounts_named(con.ctx.session, con.scope, [row.owner_account_id])).get(
            row.owner_account_id
        )
    if form is None:
        names = ("name", "cidr", "kind") if isinstance(row, IpPool) else ("name", "location", "speed")
        values: dict[str, Any] = {n: getattr(row, n) for n in names if getattr(row, n) is not None}
        values["owner"] = owner.external_id or owner.id if owner else ""
        values["shared_with_descendants"] = "on" if row.shared_with_descendants else ""
        values["_"] = "prefill"
        form = FormState(values=values)
    return _context(con, row=row, owner=owner, form=form, pool_kinds=_choices(PoolKind))


POOL_FIELDS: dict[str, Any] = {"name": "", "cidr": "", "kind": ""}
# A blank field in the form clears it (or, if it is required, is refused), never leaves it as it was.
PORT_FIELDS: dict[str, Any] = {"name": "", "location": "", "speed": None}


async def _owned_submit(
    con: Console, values: Mapping[str, Any], blanks: Mapping[str, Any], schema: type[BaseModel]
) -> Any:
    data: dict[str, Any] = {name: values.get(name, blank) for name, blank in blanks.items()}
    data["owner_account_id"] = await _owner_of(con, values)
    data["shared_with_descendants"] = checkbox(values, "shared_with_descendants")
    return schema.model_validate(data)


def _sharing_words(row: IpPool | Port, owner: Account | None) -> str:
    if row.owner_account_id is None:
        return "the provider's: every account may use it"
    who = owner.name if owner else f"account {row.owner_account_id}"
    return f"{who} and every account below it" if row.shared_with_descendants else f"{who} only"


async def _owned_delete_context(con: Console, row: IpPool | Port, what: str, base: str) -> dict[str, Any]:
    column = Service.ipv4_pool_id if isinstance(row, IpPool) else Service.port_id
    used = await repository.services_using(con.ctx.session, con.ctx.provider_id, column, row.id)
    owners = await repository.accounts_named(con.ctx.session, con.scope, [row.owner_account_id or 0])
    return _delete_context(
        con,
        what=f"{what} {row.name}",
        action=f"{base}/{row.id}/delete",
        back=f"{base}/{row.id}",
        removed=[
            f"The {what} {row.name}, used by {_sharing_words(row, owners.get(row.owner_account_id or 0))}"
        ],
        kept=[f"The audit history of the {what}", "The accounts that used it (they lose access to it)"],
        blocked=f"{used} service(s) use this {what}: move them first." if used else "",
    )


@router.get("/ip-pools", response_class=HTMLResponse)
async def pools(con: ConsoleDep) -> HTMLResponse:
    _staff_only(con)
    context = await _owned_list(con, IpPool, POOL_SORTS, ["kind", "sharing"])
    context["filters"] = [("kind", "Kind", _choices(PoolKind)), SHARING_FILTER]
    context["sharing_words"] = _sharing_words
    return await page(con, "catalog/pools.html", context, section="ip-pools")


@router.get("/ip-pools/new", response_class=HTMLResponse)
async def new_pool(con: ConsoleDep) -> HTMLResponse:
    await _manager(con)
    context = _context(
        con, row=None, form=FormState(values={"kind": "dynamic"}), pool_kinds=_choices(PoolKind)
    )
    return await page(con, "catalog/pool.html", context, section="ip-pools")


@router.post("/ip-pools/new", response_class=HTMLResponse)
async def create_pool(con: ConsoleDep) -> Response:
    await _manager(con)
    values = await _form(con.request)
    try:
        data = await _owned_submit(con, values, POOL_FIELDS, IpPoolCreate)
        created = await catalog.create_pool(con.ctx, data)
    except (ValidationError, BoughsError) as error:
        context = _context(
            con, row=None, form=_errors(values, error, OWNED_RENAMED), pool_kinds=_choices(PoolKind)
        )
        raise await reject(con, "catalog/pool.html", None, context, section="ip-pools") from None
    return redirect(con, f"/ip-pools/{created.id}", flash=f"Pool {created.name} added.")


@router.get("/ip-pools/{pool_id}", response_class=HTMLResponse)
async def pool_page(con: ConsoleDep, pool_id: int) -> HTMLResponse:
    _staff_only(con)
    row = await catalog.get_pool(con.ctx, pool_id)
    context = await _owned_page(con, row)
    context["sharing"] = _sharing_words(row, context["owner"])
    return await page(con, "catalog/pool.html", context, section="ip-pools")


@router.post("/ip-pools/{pool_id}", response_class=HTMLResponse)
async def update_pool(con: ConsoleDep, pool_id: int) -> Response:
    await _manager(con)
    row = await catalog.get_pool(con.ctx, pool_id)
    values = await _form(con.request)
    try:
        data = await _owned_submit(con, values, POOL_FIELDS, IpPoolUpdate)
        await catalog.update_pool(con.ctx, row.id, data)
    except (ValidationError, BoughsError) as error:
        context = await _owned_page(con, row, _errors(values, error, OWNED_RENAMED))
        context["sharing"] = _sharing_words(row, context["owner"])
        raise await reject(con, "catalog/pool.html", None, context, section="ip-pools") from None
    return redirect(con, f"/ip-pools/{row.id}", flash="Pool saved.")


@router.get("/ip-pools/{pool_id}/delete", response_class=HTMLResponse)
async def confirm_delete_pool(con: ConsoleDep, pool_id: int) -> HTMLResponse:
    await _manager(con)
    row = await catalog.get_pool(con.ctx, pool_id)
    context = await _owned_delete_context(con, row, "IPv4 pool", "/ip-pools")
    return await page(con, "catalog/delete.html", context, section="ip-pools")


@router.post("/ip-pools/{pool_id}/delete", response_class=HTMLResponse)
async def delete_pool(con: ConsoleDep, pool_id: int) -> Response:
    await _manager(con)
    row = await catalog.get_pool(con.ctx, pool_id)
    context, name = await _owned_delete_context(con, row, "IPv4 pool", "/ip-pools"), row.name
    remove = lambda: catalog.delete_pool(con.ctx, pool_id)  # noqa: E731
    return await _delete(con, context, "ip-pools", remove, "/ip-pools", f"Pool {name} deleted.")


@router.get("/ports", response_class=HTMLResponse)
async def ports(con: ConsoleDep) -> HTMLResponse:
    _staff_only(con)
    context = await _owned_list(con, Port, PORT_SORTS, ["sharing"])
    context["filters"] = [SHARING_FILTER]
    context["sharing_words"] = _sharing_words
    return await page(con, "catalog/ports.html", context, section="ports")


@router.get("/ports/new", response_class=HTMLResponse)
async def new_port(con: ConsoleDep) -> HTMLResponse:
    await _manager(con)
    return await page(con, "catalog/port.html", _context(con, row=None, form=None), section="ports")


@router.post("/ports/new", response_class=HTMLResponse)
async def create_port(con: ConsoleDep) -> Response:
    await _manager(con)
    values = await _form(con.request)
    try:
        data = await _owned_submit(con, values, PORT_FIELDS, PortCreate)
        created = await catalog.create_port(con.ctx, data)
    except (ValidationError, BoughsError) as error:
        context = _context(con, row=None, form=_errors(values, error, OWNED_RENAMED))
        raise await reject(con, "catalog/port.html", None, context, section="ports") from None
    return redirect(con, f"/ports/{created.id}", flash=f"Port {created.name} added.")


@router.get("/ports/{port_id}", response_class=HTMLResponse)
async def port_page(con: ConsoleDep, port_id: int) -> HTMLResponse:
    _staff_only(con)
    row = await catalog.get_port(con.ctx, port_id)
    context = await _owned_page(con, row)
    context["sharing"] = _sharing_words(row, context["owner"])
    return await page(con, "catalog/port.html", context, section="ports")


@router.post("/ports/{port_id}", response_class=HTMLResponse)
async def update_port(con: ConsoleDep, port_id: int) -> Response:
    await _manager(con)
    row = await catalog.get_port(con.ctx, port_id)
    values = await _form(con.request)
    try:
        data = await _owned_submit(con, values, PORT_FIELDS, PortUpdate)
        await catalog.update_port(con.ctx, row.id, data)
    except (ValidationError, BoughsError) as error:
        context = await _owned_page(con, row, _errors(values, error, OWNED_RENAMED))
        context["sharing"] = _sharing_words(row, context["owner"])
        raise await reject(con, "catalog/port.html", None, context, section="ports") from None
    return redirect(con, f"/ports/{row.id}", flash="Port saved.")


@router.get("/ports/{port_id}/delete", response_class=HTMLResponse)
async def confirm_delete_port(con: ConsoleDep, port_id: int) -> HTMLResponse:
    await _manager(con)
    row = await catalog.get_port(con.ctx, port_id)
    context = await _owned_delete_context(con, row, "port", "/ports")
    return await page(con, "catalog/delete.html", context, section="ports")


@router.post("/ports/{port_id}/delete", response_class=HTMLResponse)
async def delete_port(con: ConsoleDep, port_id: int) -> Response:
    await _manager(con)
    row = await catalog.get_port(con.ctx, port_id)
    context, name = await _owned_delete_context(con, row, "port", "/ports"), row.name
    remove = lambda: catalog.delete_port(con.ctx, port_id)  # noqa: E731
    return await _delete(con, context, "ports", remove, "/ports", f"Port {name} deleted.")
