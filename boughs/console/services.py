"""Console pages: an account's services, and each service's page (seed 004).

Every change goes through the same service functions as the API (``boughs.services``,
``boughs.usage.caps``); these routes only turn forms into their schemas and show what the
services answer. The service page holds several small forms, so each form's fields carry
a prefix (``discount_``, ``schedule_``…): their ids stay unique, and an error lands beside
the field of the form that was sent.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import QueryableAttribute

from boughs.accounts import service as accounts
from boughs.accounts.models import Account
from boughs.authz.permissions import Permission
from boughs.authz.scope import require
from boughs.catalog import service as catalog
from boughs.catalog.models import PayPeriod, Plan, PlanKind
from boughs.console.frame import (
    Console,
    ConsoleDep,
    FormState,
    checkbox,
    console_router,
    form_errors,
    form_values,
    page,
    redirect,
    reject,
)
from boughs.console.lists import ListQuery, fetch_page
from boughs.console.usage import format_quantity
from boughs.kit.errors import BoughsError, Conflict, InvalidInput
from boughs.kit.money import exponent, parse_major, to_major
from boughs.services import changes, repository
from boughs.services import service as services
from boughs.services.changes import ChangePlanRequest, SchedulableStatus, ScheduledChangeCreate
from boughs.services.models import Ipv4Mode, Service, ServiceStatus
from boughs.services.schemas import (
    DiscountCreate,
    ServiceCreate,
    ServiceOut,
    ServiceUpdate,
    StatusChangeRequest,
)
from boughs.usage import caps
from boughs.usage.schemas import TopUpCreate

router = console_router()
T = TypeVar("T")

SORTS: dict[str, QueryableAttribute[Any]] = {
    "id": Service.id,
    "plan": Plan.name,
    "status": Service.status,
    "login": Service.login,
    "start_date": Service.start_date,
    "end_date": Service.end_date,
}
REASONS = {
    "manual": "chosen by a user",
    "account": "the account is blocked",
    "cap": "data cap reached",
    "waiting": "waiting on another service",
    "scheduled": "by a scheduled change",
    "activated_with": "activated with the service it waited on",
    "cap_reset": "a new period began after the data cap",
    "top_up": "a top-up lifted the data cap",
}
# Where the schemas' field names differ from what the forms ask for.
FIELD_ALIASES = {"unit_price_amount": "unit_price", "bytes": "amount"}
TOP_UP_UNITS = {"GB": 10**9, "MB": 10**6, "bytes": 1}
PAGE_ROWS = 20
# Form fields shared by the add and edit forms, as ServiceCreate / ServiceUpdate name them.
TEXT_FIELDS = ("description", "unit", "geo_address")
OPTIONAL_FIELDS = (
    "quantity", "pay_period", "start_date", "end_date", "router_id", "login", "ipv4_mode",
    "ipv4_address", "port_id", "latitude", "longitude",
)  # fmt: skip
INTERNET_FIELDS = (
    "router_id", "login", "password", "ipv4_mode", "ipv4_address", "additional_networks", "ipv4_pool",
    "mac_addresses", "port_id",
)  # fmt: skip


def reason_text(reason: str, waits_on: int | None = None) -> str:
    if reason == "waiting" and waits_on is not None:
        return f"waiting on service {waits_on}"
    return REASONS.get(reason, reason)


# --- turning form values into the schemas' input ---------------------------------------------


def minor_units(raw: Any, currency: str, field: str) -> int:
    """A price typed in major units (12.50) as minor units of ``currency``; 422 on ``field``."""
    return parse_major(raw, currency, field)


def major_units(amount: int, currency: str) -> str:
    """Minor units as the forms and messages write them: 1250 USD → 12.50."""
    return f"{to_major(amount, currency):.{exponent(currency)}f}"


def _split_list(raw: Any) -> list[str]:
    return [part for part in re.split(r"[\s,]+", str(raw)) if part]


def _pool(raw: Any) -> Any:
    text = str(raw).strip()
    return int(text) if text.isdigit() else text


def _service_input(values: Mapping[str, Any], currency: str) -> dict[str, Any]:
    """What the add form sent, as ServiceCreate reads it (blank fields left out)."""
    data: dict[str, Any] = {}
    for name in ("plan_id", "status", "waits_on_service_id", "password", *TEXT_FIELDS, *OPTIONAL_FIELDS):
        if name in values:
            data[name] = values[name]
    if "unit_price" in values:
        data["unit_price_amount"] = minor_units(values["unit_price"], currency, "unit_price")
    if "additional_networks" in values:
        data["additional_networks"] = _split_list(values["additional_networks"])
    if "mac_addresses" in values:
        data["mac_addresses"] = values["mac_addresses"]
    if "ipv4_pool" in values:
        data["ipv4_pool"] = _pool(values["ipv4_pool"])
    return data


def _on_form(error: BoughsError | ValidationError) -> bool:
    """Whether an error belongs beside a form's fields; refusals (403, 404) get their own page."""
    if isinstance(error, ValidationError):
        return True
    return isinstance(error, InvalidInput | Conflict) or bool(error.errors)


def _state(values: dict[str, Any], error: BoughsError | ValidationError, prefix: str = "") -> FormState:
    """The form again: errors keyed by the form's own field names (``unit_price_amount`` is typed
    as ``unit_price``; ``mac_addresses.1`` belongs beside ``mac_addresses``)."""
    found = form_errors({}, error)
    state = FormState(values=values, message=found.message)
    for key, message in found.errors.items():
        name = key.split(".")[0]
        state.errors.setdefault(prefix + FIELD_ALIASES.get(name, name), message)
    return state


def _unprefixed(values: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    return {k.removeprefix(prefix): v for k, v in values.items() if k.startswith(prefix)}


# --- what the pages show ----------------------------------------------------------------------


async def _account_plans(con: Console, account: Account) -> list[Plan]:
    """The live plans offered to the account (or an ancestor), and the public ones."""
    found = await catalog.list_plans(
        con.ctx, kind=None, account_id=account.id, include_retired=False, cursor=None, limit=500
    )
    return list(found.items)


def _plan_options(plans: list[Plan]) -> list[tuple[int, str]]:
    def label(p: Plan) -> str:
        price = f"{major_units(p.price_amount, p.currency)} {p.currency}"
        return f"{p.name} · {p.kind} · {price} per {p.pay_period}"

    return [(p.id, label(p)) for p in plans]


async def _network_options(con: Console) -> dict[str, Any]:
    """Routers, dynamic pools and ports the actor may pick from (members see fewer)."""
    routers = (await catalog.list_routers(con.ctx, None, 500)).items if con.scope.whole_provider else []
    pools = (await catalog.list_pools(con.ctx, "dynamic", None, 500)).items
    ports = (await catalog.list_ports(con.ctx, None, 500)).items
    return {
        "router_options": [(r.id, f"{r.name} ({r.address})") for r in routers],
        "pool_options": [("any", "Any pool"), *[(p.id, f"{p.name} ({p.cidr})") for p in pools]],
        "port_options": [(p.id, p.name) for p in ports],
        "ipv4_mode_options": [(m.value, m.value.title()) for m in Ipv4Mode],
        "pay_period_options": [(p.value, p.value.title()) for p in PayPeriod],
    }


async def _require_manage(con: Console, account: Account, doing: str) -> None:
    await require(con.ctx, account.path, Permission.manage_services, doing)


def _agreements_missing(account: Account) -> bool:
    return account.msa_accepted_at is None or account.aup_accepted_at is None


# --- the Services tab -------------------------------------------------------------------------


@router.get("/accounts/{account_id}/services")
async def account_services(con: ConsoleDep, account_id: int) -> HTMLResponse:
    account = await accounts.get(con.ctx, account_id)
    lq = ListQuery.parse(con.request.query_params, sorts=list(SORTS), default_sort="id", filters=["status"])
    status = lq.filters.get("status")
    if status is not None and status not in ServiceStatus.__members__:
        raise InvalidInput.on_field(
            "status", f"'{status}' is not a service status", "choose one from the status filter"
        )
    statement = repository.account_services_statement(con.scope, account.id, status, lq.q)
    rows = await fetch_page(con.ctx.session, statement, lq, SORTS, Service.id, scalars=False)
    context = {
        "account": account,
        "tab": "services",
        "pg": rows,
        "lq": lq,
        "base": f"/accounts/{account.id}/services",
        "status_options": [(s.value, s.value.title()) for s in ServiceStatus],
        "can_manage": con.can(Permission.manage_services, account),
        "agreements_missing": _agreements_missing(account),
        "reason_text": reason_text,
    }
    return await page(con, "services/list.html", context, account=account, section="account")


async def _new_context(con: Console, account: Account) -> dict[str, Any]:
    plans = await _account_plans(con, account)
    return {
        "account": account,
        "tab": "services",
        "plans": plans,
        "plan_options": _plan_options(plans),
        "status_options": [(s.value, s.value.title()) for s in ServiceStatus],
        "agreements_missing": _agreements_missing(account),
        **await _network_options(con),
    }


@router.get("/accounts/{account_id}/services/new")
async def new_service_form(con: ConsoleDep, account_id: int) -> HTMLResponse:
    account = await accounts.get(con.ctx, account_id)
    await _require_manage(con, account, "add services")
    context = await _new_context(con, account)
    context["form"] = FormState(values={"quantity": "1", "status": "active", "ipv4_mode": "none"})
    return await page(con, "services/new.html", context, account=account, section="account")


@router.post("/accounts/{account_id}/services/new")
async def add_service(con: ConsoleDep, account_id: int) -> Response:
    account = await accounts.get(con.ctx, account_id)
    await _require_manage(con, account, "add services")
    values = form_values(await con.request.form())
    context = await _new_context(con, account)
    plans = {str(p.id): p for p in context["plans"]}
    currency = plans[values["plan_id"]].currency if values.get("plan_id") in plans else "USD"
    try:
        body = ServiceCreate.model_validate(_service_input(values, currency))
        # A lost race on a login fails at the flush: the savepoint keeps the session usable.
        async with con.ctx.session.begin_nested():
            created = await services.create(con.ctx, account.id, body)
    except (BoughsError, ValidationError) as error:
        if not _on_form(error):
            raise
        state = _state(values, error)
        refused_for_agreements = (
            isinstance(error, Conflict) and not error.errors and _agreements_missing(account)
        )
        if refused_for_agreements and isinstance(error, BoughsError):
            # The service's fix names the API; the page says where to accept them instead.
            state.message = error.detail
        context["refused_for_agreements"] = refused_for_agreements
        raise await reject(
            con, "services/new.html", state, context, account=account, section="account"
        ) from None
    return redirect(con, f"/services/{created.id}", flash=f"Service {created.id} added.")


# --- one service ------------------------------------------------------------------------------


async def _service_context(con: Console, service: Service, states: dict[str, FormState]) -> dict[str, Any]:
    account = await accounts.get(con.ctx, service.account_id)
    out = await services.to_out(con.ctx, service)
    plan = await catalog.get_plan(con.ctx, service.plan_id)
    params = con.request.query_params
    history = await services.status_history(con.ctx, service.id, params.get("history_cursor"), PAGE_ROWS)
    scheduled = await changes.list_scheduled(con.ctx, service.id, params.get("changes_cursor"), PAGE_ROWS)
    capped = plan.data_cap_bytes is not None and plan.cap_action is not None
    can_manage = con.can(Permission.manage_services, account)
    plans = await _account_plans(con, account)
    allowed = services.MANUAL_TRANSITIONS[service.status]
    # Asking for the status a service has for another reason takes it over by hand.
    taken_over = {service.status} if service.status_reason != "manual" else set()
    transitions = [s.value for s in ServiceStatus if s.value in allowed or s.value in taken_over]
    return {
        "account": account,
        "tab": "services",
        "service": service,
        "out": out,
        "plan": plan,
        "history": history,
        "scheduled": scheduled,
        "cap": await caps.state(con.ctx, service.id) if capped else None,
        "top_ups": await caps.list_top_ups(con.ctx, service.id) if capped else [],
        "can_manage": can_manage,
        "plan_options": _plan_options(plans) if can_manage else [],
        "status_options": [(s, s.title()) for s in transitions],
        "schedule_status_options": [(s.value, s.title()) for s in SchedulableStatus],
        "top_up_unit_options": [(unit, unit) for unit in TOP_UP_UNITS],
        "plan_names": {p.id: p.name for p in plans},
        "states": states,
        "reason_text": reason_text,
        "format_quantity": format_quantity,
    }


@router.get("/services/{service_id}")
async def service_page(con: ConsoleDep, service_id: int) -> HTMLResponse:
    service = await services.get(con.ctx, service_id)
    context = await _service_context(con, service, {})
    return await page(con, "services/detail.html", context, account=context["account"], section="account")


async def _attempt(
    con: Console, service_id: int, prefix: str, action: Callable[[Service, dict[str, Any]], Awaitable[T]]
) -> T:
    """Run one of the service page's forms. Bad input shows the page again (422) with the errors
    beside this form's fields; the savepoint undoes whatever the attempt wrote before failing,
    so the page shows the service as it is stored."""
    service = await services.get(con.ctx, service_id)
    await _require_manage(con, await accounts.get(con.ctx, service.account_id), "change this service")
    values = form_values(await con.request.form())
    try:
        async with con.ctx.session.begin_nested():
            return await action(service, _unprefixed(values, prefix))
    except (BoughsError, ValidationError) as error:
        if not _on_form(error):
            raise
        state = _state(values, error, prefix)
    context = await _service_context(con, await services.get(con.ctx, service_id), {prefix: state})
    raise await reject(
        con, "services/detail.html", state, context, account=context["account"], section="account"
    )


def _price(data: dict[str, Any], currency: str) -> None:
    """The typed ``unit_price`` (major units) as the schemas' ``unit_price_amount``."""
    if "unit_price" in data:
        data["unit_price_amount"] = minor_units(data.pop("unit_price"), currency, "unit_price")


@router.post("/services/{service_id}/discounts")
async def add_discount(con: ConsoleDep, service_id: int) -> Response:
    async def add(service: Service, data: dict[str, Any]) -> Decimal:
        body = DiscountCreate.model_validate(data)
        await services.add_discount(con.ctx, service.id, body)
        return body.percent

    percent = await _attempt(con, service_id, "discount_", add)
    return redirect(con, f"/services/{service_id}", flash=f"Discount of {percent}% added.")


@router.post("/services/{service_id}/discounts/{discount_id}/delete")
async def remove_discount(con: ConsoleDep, service_id: int, discount_id: int) -> Response:
    await services.remove_discount(con.ctx, service_id, discount_id)
    return redirect(con, f"/services/{service_id}", flash=f"Discount {discount_id} removed.")


@router.post("/services/{service_id}/change-plan")
async def change_plan(con: ConsoleDep, service_id: int) -> Response:
    async def move(service: Service, data: dict[str, Any]) -> str:
        _price(data, (await catalog.get_plan(con.ctx, service.plan_id)).currency)
        _, change = await changes.change_plan(con.ctx, service.id, ChangePlanRequest.model_validate(data))
        credit = major_units(change.credit_amount, change.currency)
        charge = major_units(change.charge_amount, change.currency)
        return f"credit {credit}, charge {charge} {change.currency} for the rest of this period"

    money = await _attempt(con, service_id, "change_", move)
    return redirect(con, f"/services/{service_id}", flash=f"Plan changed ({money}).")


@router.post("/services/{service_id}/scheduled-changes")
async def schedule_change(con: ConsoleDep, service_id: int) -> Response:
    async def schedule(service: Service, data: dict[str, Any]) -> str:
        back_to_plan_price = checkbox(data, "plan_price")
        data.pop("plan_price", None)
        if back_to_plan_price and "unit_price" in data:
            raise InvalidInput.on_field(
                "unit_price", "give a price or go back to the plan's price, not both", "clear one of them"
            )
        _price(data, (await catalog.get_plan(con.ctx, service.plan_id)).currency)
        if back_to_plan_price:
            data["unit_price_amount"] = None
        body = ScheduledChangeCreate.model_validate(data)
        change = await changes.schedule_change(con.ctx, service.id, body)
        return change.effective_date.isoformat()

    day = await _attempt(con, service_id, "schedule_", schedule)
    return redirect(con, f"/services/{service_id}", flash=f"Change scheduled for {day}.")


@router.post("/services/{service_id}/scheduled-changes/{change_id}/cancel")
async def cancel_scheduled_change(con: ConsoleDep, service_id: int, change_id: int) -> Response:
    await changes.cancel_scheduled(con.ctx, service_id, change_id)
    return redirect(con, f"/services/{service_id}", flash=f"Scheduled change {change_id} cancelled.")


@router.post("/services/{service_id}/status")
async def change_status(con: ConsoleDep, service_id: int) -> Response:
    async def set_status(service: Service, data: dict[str, Any]) -> str:
        body = StatusChangeRequest.model_validate(data)
        changed = await services.change_status(con.ctx, service.id, body.status, body.note)
        if changed.status == body.status:
            return changed.status
        return f"{changed.status} ({reason_text(changed.status_reason)})"

    landed = await _attempt(con, service_id, "status_", set_status)
    return redirect(con, f"/services/{service_id}", flash=f"Service {service_id} is now {landed}.")


@router.post("/services/{service_id}/top-ups")
async def add_top_up(con: ConsoleDep, service_id: int) -> Response:
    async def top_up(service: Service, data: dict[str, Any]) -> int:
        unit = data.pop("unit", "GB")
        if unit not in TOP_UP_UNITS:
            raise InvalidInput.on_field("unit", f"'{unit}' is not a unit here", "choose GB, MB or bytes")
        amount = data.pop("amount", "")
        try:
            count = Decimal(str(amount)) * TOP_UP_UNITS[unit]
        except InvalidOperation:
            raise InvalidInput.on_field(
                "amount", f"'{amount}' is not a number", "write it like 5 or 1.5"
            ) from None
        if not count.is_finite() or count != count.to_integral_value():
            raise InvalidInput.on_field("amount", "is not a whole number of bytes", "give fewer decimals")
        body = TopUpCreate.model_validate({**data, "bytes": int(count)})
        return (await caps.add_top_up(con.ctx, service.id, body)).bytes

    added = await _attempt(con, service_id, "topup_", top_up)
    return redirect(
        con, f"/services/{service_id}", flash=f"Added {format_quantity(added, 'bytes')} to this period's cap."
    )


# --- editing and deleting -----------------------------------------------------------------------


def _edit_values(out: ServiceOut, currency: str) -> dict[str, Any]:
    """The form's starting values: what the service has now, as the form writes it."""
    values: dict[str, Any] = {
        name: getattr(out, name)
        for name in (*TEXT_FIELDS, *OPTIONAL_FIELDS)
        if getattr(out, name) is not None
    }
    if out.unit_price_amount is not None:
        values["unit_price"] = major_units(out.unit_price_amount, currency)
    values["additional_networks"] = ", ".join(out.additional_networks)
    values["mac_addresses"] = ", ".join(out.mac_addresses)
    values["ipv4_pool"] = "" if out.ipv4_pool is None else str(out.ipv4_pool)
    return {k: str(v) for k, v in values.items()}


def _update_input(values: Mapping[str, Any], out: ServiceOut, plan: Plan) -> ServiceUpdate:
    """The form as a PATCH: only what differs from the service is sent (and so checked and audited)."""
    if "quantity" not in values:
        raise InvalidInput.on_field("quantity", "is required", "enter a whole number of at least 1")
    if "start_date" not in values:
        raise InvalidInput.on_field("start_date", "is required", "enter the day the service starts")
    names = [*TEXT_FIELDS, *OPTIONAL_FIELDS, "unit_price_amount"]
    internet = plan.kind == PlanKind.internet
    if internet:
        names += ["additional_networks", "mac_addresses", "ipv4_pool"]
    else:
        names = [n for n in names if n not in INTERNET_FIELDS]
    wanted = _service_input(values, plan.currency)
    desired: dict[str, Any] = {name: wanted.get(name) for name in names}
    desired["description"] = desired["description"] or ""
    if internet:
        desired["ipv4_mode"] = desired["ipv4_mode"] or Ipv4Mode.none.value
        desired["additional_networks"] = desired["additional_networks"] or []
        desired["mac_addresses"] = desired["mac_addresses"] or []
    typed = ServiceUpdate.model_validate(desired)
    current = out.model_dump()
    changed = {name: getattr(typed, name) for name in names if getattr(typed, name) != current.get(name)}
    if internet and "password" in values:
        changed["password"] = values["password"]
    if internet and checkbox(values, "clear_password"):
        changed["password"] = None
    return ServiceUpdate.model_validate(changed)


async def _edit_context(con: Console, service: Service) -> dict[str, Any]:
    account = await accounts.get(con.ctx, service.account_id)
    await _require_manage(con, account, "edit services")
    plan = await catalog.get_plan(con.ctx, service.plan_id)
    out = await services.to_out(con.ctx, service)
    return {
        "account": account,
        "tab": "services",
        "service": service,
        "out": out,
        "plan": plan,
        "internet": plan.kind == PlanKind.internet,
        **await _network_options(con),
    }


@router.get("/services/{service_id}/edit")
async def edit_service_form(con: ConsoleDep, service_id: int) -> HTMLResponse:
    service = await services.get(con.ctx, service_id)
    context = await _edit_context(con, service)
    context["form"] = FormState(values=_edit_values(context["out"], context["plan"].currency))
    return await page(con, "services/edit.html", context, account=context["account"], section="account")


@router.post("/services/{service_id}/edit")
async def edit_service(con: ConsoleDep, service_id: int) -> Response:
    service = await services.get(con.ctx, service_id)
    values = form_values(await con.request.form())
    context = await _edit_context(con, service)
    try:
        body = _update_input(values, context["out"], context["plan"])
        async with con.ctx.session.begin_nested():
            await services.update(con.ctx, service.id, body)
    except (BoughsError, ValidationError) as error:
        if not _on_form(error):
            raise
        raise await reject(
            con,
            "services/edit.html",
            _state(values, error),
            context,
            account=context["account"],
            section="account",
        ) from None
    return redirect(con, f"/services/{service_id}", flash=f"Service {service_id} saved.")


@router.get("/services/{service_id}/delete")
async def delete_service_form(con: ConsoleDep, service_id: int) -> HTMLResponse:
    """What deleting removes and what it keeps, before anything is removed."""
    service = await services.get(con.ctx, service_id)
    account = await accounts.get(con.ctx, service.account_id)
    await _require_manage(con, account, "delete services")
    context = {
        "account": account,
        "tab": "services",
        "service": service,
        "out": await services.to_out(con.ctx, service),
        "history_count": await repository.history_count(con.ctx.session, service),
        "scheduled_count": len((await changes.list_scheduled(con.ctx, service.id, None, 500)).items),
        "top_up_count": len(await caps.list_top_ups(con.ctx, service.id)),
    }
    return await page(con, "services/delete.html", context, account=account, section="account")


@router.post("/services/{service_id}/delete")
async def delete_service(con: ConsoleDep, service_id: int) -> Response:
    service = await services.get(con.ctx, service_id)
    account_id = service.account_id
    await services.delete(con.ctx, service.id)
    return redirect(con, f"/accounts/{account_id}/services", flash=f"Service {service_id} deleted.")
