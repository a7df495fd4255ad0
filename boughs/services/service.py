"""The rules of services (seed 004): adding, editing, discounts, manual status, secrets.

Every status change goes through ``lifecycle``; this module decides what an operator may
ask for. Reads are scoped to the actor; every write re-checks ``services.manage`` on the
service's account. A service with a login or permanent address holds it while it is not
archived: the check here gives a clear answer, the database's partial unique indexes
(``uq_services_live_login``, ``uq_services_live_ipv4_address``) make it true under races.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy.exc import IntegrityError

from boughs.accounts import inheritance
from boughs.accounts import repository as accounts_repository
from boughs.accounts import service as accounts
from boughs.accounts.models import Account
from boughs.audit import service as audit
from boughs.authz.permissions import Permission
from boughs.authz.scope import require, scope_of
from boughs.catalog import service as catalog
from boughs.catalog.models import Plan, PlanKind
from boughs.context import Ctx
from boughs.kit.clock import local_date
from boughs.kit.errors import Conflict, InvalidInput, NotFound
from boughs.kit.pagination import PageOf, check_limit, id_cursor, page_of
from boughs.kit.secrets import SecretUnreadable
from boughs.services import lifecycle, repository
from boughs.services.models import (
    Ipv4Mode,
    Service,
    ServiceDiscount,
    ServiceStatus,
    ServiceStatusChange,
    StatusReason,
)
from boughs.services.repository import ServiceFilter
from boughs.services.schemas import (
    DiscountCreate,
    DiscountOut,
    ServiceCreate,
    ServiceOut,
    ServiceUpdate,
)
from boughs.usage import repository as usage_repository

ENTITY = "service"
# What an audit event shows of a service: everything but the sealed password.
AUDITED = (
    "account_id", "plan_id", "description", "quantity", "unit", "unit_price_amount", "pay_period",
    "start_date", "end_date", "status", "status_reason", "waits_on_service_id", "router_id", "login",
    "ipv4_mode", "ipv4_address", "additional_networks", "ipv4_pool_id", "mac_addresses", "port_id",
    "geo_address", "latitude", "longitude",
)  # fmt: skip
# Options only an internet plan has; the others answer 422 naming the field.
INTERNET_ONLY = (
    "router_id", "login", "password", "ipv4_address", "additional_networks", "ipv4_pool",
    "mac_addresses", "port_id",
)  # fmt: skip

# The internet options, as create and update take them.
_OPTION_NAMES = (
    "router_id", "login", "ipv4_mode", "ipv4_address", "additional_networks", "ipv4_pool",
    "mac_addresses", "port_id",
)  # fmt: skip

# The statuses an operator may move a service to, from each status. Pending is where a
# service starts to wait on another, never where one is sent back to; archived services
# come back only when their login and address are still free.
MANUAL_TRANSITIONS: dict[str, frozenset[str]] = {
    ServiceStatus.pending: frozenset({"active", "disabled", "stopped", "archived"}),
    ServiceStatus.active: frozenset({"disabled", "stopped", "archived"}),
    ServiceStatus.disabled: frozenset({"active", "stopped", "archived"}),
    ServiceStatus.stopped: frozenset({"active", "disabled", "archived"}),
    ServiceStatus.archived: frozenset({"active", "disabled", "stopped"}),
}

MAC_NOTATIONS = "aa:bb:cc:dd:ee:ff, AA-BB-CC-DD-EE-FF, aabb.ccdd.eeff or aabbccddeeff"
_MAC_FORMS = (
    re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$"),
    re.compile(r"^[0-9a-f]{2}(-[0-9a-f]{2}){5}$"),
    re.compile(r"^[0-9a-f]{4}(\.[0-9a-f]{4}){2}$"),
    re.compile(r"^[0-9a-f]{12}$"),
)


def normalise_mac(value: str, field: str) -> str:
    """A MAC in any common notation, as lowercase colon-separated pairs; 422 naming ``field``."""
    text = value.strip().lower()
    if not any(form.match(text) for form in _MAC_FORMS):
        raise InvalidInput.on_field(
            field, f"'{value}' is not a MAC address in a known notation", f"write it as {MAC_NOTATIONS}"
        )
    digits = re.sub(r"[^0-9a-f]", "", text)
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def snapshot(service: Service) -> dict[str, Any]:
    found = {name: getattr(service, name) for name in AUDITED}
    found["has_own_password"] = service.password_sealed is not None
    return found


def not_found(service_id: int) -> NotFound:
    return NotFound(
        detail=f"There is no service {service_id}.",
        fix="check the id; you can only reach services of accounts in your own scope",
    )


async def _found(ctx: Ctx, service_id: int) -> tuple[Service, Account]:
    found = await repository.get(ctx.session, await scope_of(ctx), service_id)
    if found is None:
        raise not_found(service_id)
    return found


async def get(ctx: Ctx, service_id: int) -> Service:
    """A service in the actor's scope; missing and out-of-scope ids answer the same 404."""
    return (await _found(ctx, service_id))[0]


async def _chain(ctx: Ctx, account_id: int) -> accounts_repository.Chain:
    found = await accounts_repository.chain_of(ctx.session, await scope_of(ctx), account_id)
    if found is None:
        raise accounts.not_found(account_id)
    return found


def _require_open(chain: accounts_repository.Chain, ctx: Ctx) -> None:
    """Services are added only to an active account (itself and its ancestors unblocked)."""
    account = chain.account
    status = inheritance.effective_status(chain.accounts, ctx.now(), chain.provider_timezone)
    if status["blocked"]:
        source = status["source_account_id"]
        whence = "" if source == account.id else f" through account {source}"
        raise Conflict(
            detail=f"Account {account.id} is {status['value']}{whence}; "
            "services are added only to active accounts.",
            fix=f"unsuspend or renew it first (GET /api/v1/accounts/{account.id}/effective shows why)",
        )
    accounts.require_agreements(account)


def _today(chain: accounts_repository.Chain, ctx: Ctx) -> date:
    timezone = inheritance.resolve(chain.accounts, "timezone", chain.provider_timezone).value
    return local_date(ctx.now(), timezone)


# --- checking options ---------------------------------------------------------------------


@dataclass
class Options:
    """The internet options a service will have, checked and normalised."""

    router_id: int | None
    login: str | None
    ipv4_mode: str
    ipv4_address: str | None
    additional_networks: list[str]
    ipv4_pool_id: int | None
    mac_addresses: list[str]
    port_id: int | None


def _blank(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == Ipv4Mode.none


def _networks(values: Sequence[str]) -> list[str]:
    out: list[str] = []
    for i, raw in enumerate(values):
        try:
            network = ipaddress.IPv4Network(raw.strip(), strict=True)
        except (ipaddress.AddressValueError, ipaddress.NetmaskValueError, ValueError):
            raise InvalidInput.on_field(
                f"additional_networks.{i}",
                f"'{raw}' is not an IPv4 network in CIDR form with its host bits clear",
                "write it as network/prefix, like 198.51.100.0/28",
            ) from None
        if str(network) not in out:
            out.append(str(network))
    return out


def _macs(values: Sequence[str], field: str = "mac_addresses") -> list[str]:
    out: list[str] = []
    for i, raw in enumerate(values):
        mac = normalise_mac(raw, f"{field}.{i}")
        if mac not in out:
            out.append(mac)
    return out


async def _check_options(
    ctx: Ctx,
    account: Account,
    plan: Plan,
    wanted: dict[str, Any],
    touched: set[str],
    current: Service | None,
) -> Options:
    """Check the options a service will have. ``wanted`` holds every option's new value
    (``ipv4_pool`` as "any", an id or None); the catalog is asked only about ``touched``
    ones, so an edit is not refused for what it leaves alone."""
    if plan.kind != PlanKind.internet:
        for name in (*INTERNET_ONLY, "ipv4_mode"):
            if name in touched and not _blank(wanted.get(name)):
                raise InvalidInput.on_field(
                    name,
                    f"only internet plans have it; plan {plan.id} ({plan.name}) is a {plan.kind} plan",
                    "leave it out",
                )
    mode = str(wanted["ipv4_mode"])
    address, pool, networks = wanted["ipv4_address"], wanted["ipv4_pool"], wanted["additional_networks"]
    if mode == Ipv4Mode.permanent and address is None:
        raise InvalidInput.on_field(
            "ipv4_address", "is required when ipv4_mode is permanent", "give the address the service keeps"
        )
    if mode != Ipv4Mode.permanent and address is not None:
        what = (
            "a permanent IP on a dynamic service"
            if mode == Ipv4Mode.dynamic
            else "only for ipv4_mode permanent"
        )
        raise InvalidInput.on_field(
            "ipv4_address", f"is {what}", "set ipv4_mode to permanent, or send ipv4_address: null"
        )
    if mode != Ipv4Mode.permanent and networks:
        raise InvalidInput.on_field(
            "additional_networks",
            "are only routed to a service with a permanent address",
            "set ipv4_mode to permanent, or send additional_networks: []",
        )
    if mode != Ipv4Mode.dynamic and pool is not None:
        raise InvalidInput.on_field(
            "ipv4_pool", "is only for ipv4_mode dynamic", "set ipv4_mode to dynamic, or send ipv4_pool: null"
        )
    if address is not None and "ipv4_address" in touched:
        await catalog.check_permanent_address(ctx, account, address)
        address = str(ipaddress.IPv4Address(address))
    pool_id = pool if isinstance(pool, int) else None
    if pool_id is not None and "ipv4_pool" in touched:
        await catalog.check_dynamic_pool(ctx, account, pool_id)
    if "router_id" in touched and wanted["router_id"] is not None:
        await catalog.check_router(ctx, wanted["router_id"])
    if "port_id" in touched and wanted["port_id"] is not None:
        await catalog.check_port(ctx, account, wanted["port_id"])
    login = wanted["login"] or None
    return Options(
        router_id=wanted["router_id"],
        login=login,
        ipv4_mode=mode,
        ipv4_address=address,
        additional_networks=_networks(networks) if "additional_networks" in touched else list(networks),
        ipv4_pool_id=pool_id,
        mac_addresses=_macs(wanted["mac_addresses"])
        if "mac_addresses" in touched
        else wanted["mac_addresses"],
        port_id=wanted["port_id"],
    )


async def _check_free(ctx: Ctx, login: str | None, address: str | None, except_id: int | None) -> None:
    """A live service's login and permanent address are its own within the provider."""
    if login is not None:
        holder = await repository.live_holder(ctx.session, ctx.provider_id, "login", login, except_id)
        if holder is not None:
            raise Conflict.on_field(
                "login",
                f"'{login}' is already the login of service {holder.id}",
                "choose another login, or archive the service that holds it",
            )
    if address is not None:
        holder = await repository.live_holder(
            ctx.session, ctx.provider_id, "ipv4_address", address, except_id
        )
        if holder is not None:
            raise Conflict.on_field(
                "ipv4_address",
                f"{address} is already assigned to service {holder.id}",
                "choose a free address from the pool, or archive the service that holds it",
            )


def _taken(exc: IntegrityError) -> Conflict | None:
    """A lost race on a live login or address, answered as the pre-check would answer it."""
    text = str(exc.orig)
    for column, what in (("login", "login"), ("ipv4_address", "address")):
        if f"uq_services_live_{column}" in text or f"services.{column}" in text:
            error = Conflict.on_field(
                column, f"this {what} was just taken by another live service", f"choose another {what}"
            )
            assert isinstance(error, Conflict)
            return error
    return None


async def _flush(ctx: Ctx) -> None:
    try:
        await ctx.session.flush()
    except IntegrityError as exc:
        raise (_taken(exc) or exc) from None


def _check_dates(start: date, end: date | None, field: str = "end_date") -> None:
    if end is not None and end < start:
        raise InvalidInput.on_field(
            field,
            f"{end.isoformat()} is before the start date {start.isoformat()}",
            "give an end date on or after the start date, or null for no end",
        )


def _percent_bp(percent: Decimal) -> int:
    return int(percent * 100)


def _check_discount(
    d: DiscountCreate, start: date, end: date | None, prefix: str = ""
) -> tuple[date, date | None]:
    """A discount lies within its service's dates; returns its (start, end)."""
    d_start = d.start_date or start
    if d_start < start:
        raise InvalidInput.on_field(
            f"{prefix}start_date",
            f"{d_start.isoformat()} is before the service starts ({start.isoformat()})",
            "start the discount on or after the service's start date",
        )
    if end is not None and d_start > end:
        raise InvalidInput.on_field(
            f"{prefix}start_date",
            f"{d_start.isoformat()} is after the service ends ({end.isoformat()})",
            "start the discount within the service's dates",
        )
    _check_dates(d_start, d.end_date, f"{prefix}end_date")
    if end is not None and d.end_date is not None and d.end_date > end:
        raise InvalidInput.on_field(
            f"{prefix}end_date",
            f"{d.end_date.isoformat()} is after the service ends ({end.isoformat()})",
            "end the discount on or before the service's end date, or null to end with it",
        )
    return d_start, d.end_date


def _new_discount(
    ctx: Ctx, service: Service, d: DiscountCreate, start: date, end: date | None
) -> ServiceDiscount:
    return ServiceDiscount(
        provider_id=service.provider_id,
        service_id=service.id,
        percent_bp=_percent_bp(d.percent),
        start_date=start,
        end_date=end,
        description=d.description,
        created_at=ctx.now(),
    )


def _discount_snapshot(d: ServiceDiscount) -> dict[str, Any]:
    return {
        "id": d.id,
        "percent": str(_percent(d.percent_bp)),
        "start_date": d.start_date,
        "end_date": d.end_date,
        "description": d.description,
    }


def _percent(bp: int) -> Decimal:
    return (Decimal(bp) / 100).quantize(Decimal("0.01"))


def _seal(ctx: Ctx, password: str | None) -> str | None:
    return ctx.secrets.seal(password) if password else None


# --- creating, editing, deleting ------------------------------------------------------------


async def create(ctx: Ctx, account_id: int, data: ServiceCreate) -> Service:
    """Add a service to an active account whose agreements are accepted (seed 004)."""
    chain = await _chain(ctx, account_id)
    account = chain.account
    await require(ctx, account.path, Permission.manage_services, "add services to this account")
    _require_open(chain, ctx)
    plan = await catalog.plan_for_account(ctx, account, data.plan_id)
    start = data.start_date or _today(chain, ctx)
    _check_dates(start, data.end_date)
    discounts = [
        _check_discount(d, start, data.end_date, f"discounts.{i}.") for i, d in enumerate(data.discounts)
    ]
    fields = data.model_dump()
    options = await _check_options(ctx, account, plan, fields, {*_OPTION_NAMES, "password"}, None)

    status, reason = data.status.value, StatusReason.manual.value
    if data.waits_on_service_id is not None:
        if data.status != ServiceStatus.pending:
            raise InvalidInput.on_field(
                "waits_on_service_id",
                "only a pending service waits on another",
                "set status to pending, or leave waits_on_service_id out",
            )
        other = await repository.get_in_tree(
            ctx.session, await scope_of(ctx), data.waits_on_service_id, account.root_id
        )
        if other is None or other.status == ServiceStatus.archived:
            why = (
                "is archived and will never activate" if other else "is not a service of this account's tree"
            )
            raise InvalidInput.on_field(
                "waits_on_service_id",
                f"service {data.waits_on_service_id} {why}",
                "name a live service of this account or of its tree",
            )
        reason = StatusReason.waiting.value
    if status != ServiceStatus.archived:
        await _check_free(ctx, options.login, options.ipv4_address, None)

    now = ctx.now()
    service = Service(
        provider_id=ctx.provider_id,
        account_id=account.id,
        plan_id=plan.id,
        description=data.description,
        quantity=data.quantity,
        unit=data.unit or None,
        unit_price_amount=data.unit_price_amount,
        pay_period=data.pay_period.value if data.pay_period else None,
        start_date=start,
        end_date=data.end_date,
        status=status,
        status_reason=reason,
        status_changed_at=now,
        waits_on_service_id=data.waits_on_service_id,
        router_id=options.router_id,
        login=options.login,
        password_sealed=_seal(ctx, data.password),
        ipv4_mode=options.ipv4_mode,
        ipv4_address=options.ipv4_address,
        additional_networks=options.additional_networks,
        ipv4_pool_id=options.ipv4_pool_id,
        mac_addresses=options.mac_addresses,
        port_id=options.port_id,
        geo_address=data.geo_address or None,
        latitude=data.latitude,
        longitude=data.longitude,
        created_at=now,
        updated_at=now,
    )
    ctx.session.add(service)
    await _flush(ctx)
    await lifecycle.record_created(ctx, service)
    added = [
        _new_discount(ctx, service, d, s, e) for d, (s, e) in zip(data.discounts, discounts, strict=True)
    ]
    ctx.session.add_all(added)
    await _flush(ctx)
    await audit.record(
        ctx, entity=ENTITY, entity_id=service.id, action="created", account_id=account.id,
        after={**snapshot(service), "discounts": [_discount_snapshot(d) for d in added]},
    )  # fmt: skip
    return service


def _current_options(service: Service) -> dict[str, Any]:
    return {
        "router_id": service.router_id,
        "login": service.login,
        "ipv4_mode": service.ipv4_mode,
        "ipv4_address": service.ipv4_address,
        "additional_networks": list(service.additional_networks),
        "ipv4_pool": service.ipv4_pool_id,
        "mac_addresses": list(service.mac_addresses),
        "port_id": service.port_id,
    }


async def update(ctx: Ctx, service_id: int, data: ServiceUpdate) -> Service:
    """PATCH: what is sent is checked as on create, together with what it leaves alone."""
    service, account = await _found(ctx, service_id)
    await require(ctx, account.path, Permission.manage_services, "change this service")
    changes = data.model_dump(exclude_unset=True)
    if "plan_id" in changes:
        raise InvalidInput.on_field(
            "plan_id",
            "the plan is not changed by an edit: a plan change implies proration",
            f"POST /api/v1/services/{service.id}/change-plan (now or on a date)",
        )
    if "status" in changes:
        raise InvalidInput.on_field(
            "status",
            "the status is not changed by an edit: each change is recorded with its reason",
            f"POST /api/v1/services/{service.id}/status with the status and a note",
        )
    plan = (await repository.plans(ctx.session, ctx.provider_id, [service.plan_id]))[service.plan_id]
    start = changes.get("start_date", service.start_date)
    end = changes.get("end_date", service.end_date)
    if "start_date" in changes or "end_date" in changes:
        _check_dates(start, end)
        await _check_existing_discounts(ctx, service, start, end)

    wanted = {**_current_options(service), **{k: v for k, v in changes.items() if k in _OPTION_NAMES}}
    if "ipv4_pool" in changes and changes["ipv4_pool"] == "any":
        wanted["ipv4_pool"] = None
    touched = {k for k in changes if k in _OPTION_NAMES} | ({"password"} & set(changes))
    if "password" in changes:
        wanted["password"] = changes["password"]
    options = await _check_options(ctx, account, plan, wanted, touched, service)
    if "ipv4_pool" in changes and changes["ipv4_pool"] == "any" and options.ipv4_mode != Ipv4Mode.dynamic:
        raise InvalidInput.on_field(
            "ipv4_pool", "is only for ipv4_mode dynamic", "set ipv4_mode to dynamic, or send ipv4_pool: null"
        )
    if service.status != ServiceStatus.archived:
        await _check_free(
            ctx,
            options.login if options.login != service.login else None,
            options.ipv4_address if options.ipv4_address != service.ipv4_address else None,
            service.id,
        )

    before = snapshot(service)
    for name in ("description", "quantity", "unit_price_amount", "latitude", "longitude"):
        if name in changes:
            setattr(service, name, changes[name])
    if "unit" in changes:
        service.unit = changes["unit"] or None
    if "geo_address" in changes:
        service.geo_address = changes["geo_address"] or None
    if "pay_period" in changes:
        service.pay_period = changes["pay_period"].value if changes["pay_period"] else None
    service.start_date, service.end_date = start, end
    service.router_id, service.login, service.port_id = options.router_id, options.login, options.port_id
    service.ipv4_mode, service.ipv4_address = options.ipv4_mode, options.ipv4_address
    service.additional_networks, service.ipv4_pool_id = options.additional_networks, options.ipv4_pool_id
    service.mac_addresses = options.mac_addresses
    if "password" in changes:
        service.password_sealed = _seal(ctx, changes["password"])
    service.updated_at = ctx.now()
    await _flush(ctx)
    old, new = audit.changed(before, snapshot(service))
    if "password" in changes:
        # That it changed, never what it is.
        old["password"], new["password"] = "(unchanged)", "(changed)"
    if new:
        await audit.record(
            ctx, entity=ENTITY, entity_id=service.id, action="updated",
            account_id=service.account_id, before=old, after=new,
        )  # fmt: skip
    return service


async def _check_existing_discounts(ctx: Ctx, service: Service, start: date, end: date | None) -> None:
    """New service dates must still hold every discount."""
    discounts = (await repository.discounts_of(ctx.session, ctx.provider_id, [service.id]))[service.id]
    for d in discounts:
        if d.start_date < start:
            raise InvalidInput.on_field(
                "start_date",
                f"discount {d.id} starts {d.start_date.isoformat()}, before {start.isoformat()}",
                f"start the service on or before {d.start_date.isoformat()}, or remove the discount first",
            )
        if end is not None and (d.start_date > end or (d.end_date or end) > end):
            raise InvalidInput.on_field(
                "end_date",
                f"discount {d.id} runs past {end.isoformat()}",
                "end the service after its discounts, or remove the discount first",
            )


async def delete(ctx: Ctx, service_id: int) -> None:
    """Remove the service with its history and discounts (archive it to keep them).

    Its usage stays in its account's and the subtrees' totals, unattributed to a service.
    """
    service, account = await _found(ctx, service_id)
    await require(ctx, account.path, Permission.manage_services, "delete this service")
    await audit.record(
        ctx, entity=ENTITY, entity_id=service.id, action="deleted",
        account_id=service.account_id, before=snapshot(service),
    )  # fmt: skip
    await usage_repository.forget_service(ctx.session, ctx.provider_id, service.id)
    await repository.delete_service(ctx.session, service)
    ctx.session.expunge(service)


# --- status ------------------------------------------------------------------------------------


async def change_status(ctx: Ctx, service_id: int, status: ServiceStatus, note: str = "") -> Service:
    """An operator's status change (reason manual); allowed moves are ``MANUAL_TRANSITIONS``.

    Asking for the status a service has for another reason (stopped because of the
    account, disabled by its cap) makes it the operator's: the automatic return no
    longer undoes it. Active on a blocked account lands as stopped (account).
    """
    service, account = await _found(ctx, service_id)
    await require(ctx, account.path, Permission.manage_services, "change this service's status")
    target = status.value
    if target == ServiceStatus.pending:
        raise Conflict.on_field(
            "status",
            "a service is only pending while it waits on another, from when it is added",
            "choose active, disabled, stopped or archived",
        )
    if service.status == target:
        if service.status_reason == StatusReason.manual:
            raise Conflict.on_field(
                "status", f"service {service.id} is already {target}", "ask for another status"
            )
    elif target not in MANUAL_TRANSITIONS[service.status]:
        allowed = ", ".join(sorted(MANUAL_TRANSITIONS[service.status]))
        raise Conflict.on_field(
            "status",
            f"a {service.status} service cannot be made {target} by hand",
            f"choose one of {allowed}",
        )
    if service.status == ServiceStatus.archived:
        await _check_free(ctx, service.login, service.ipv4_address, service.id)
    try:
        await lifecycle.set_status(ctx, service, target, StatusReason.manual.value, note)
        await ctx.session.flush()
    except IntegrityError as exc:
        raise (_taken(exc) or exc) from None
    return service


async def status_history(
    ctx: Ctx, service_id: int, cursor: str | None, limit: int
) -> PageOf[ServiceStatusChange]:
    check_limit(limit)
    service = await get(ctx, service_id)
    rows = await repository.history(ctx.session, service, id_cursor(cursor), limit + 1)
    return page_of(rows, limit)


# --- lists ---------------------------------------------------------------------------------------


async def list_services(ctx: Ctx, f: ServiceFilter, cursor: str | None, limit: int) -> PageOf[Service]:
    """Services in the actor's scope, oldest first."""
    check_limit(limit)
    rows = await repository.list_by_id(ctx.session, await scope_of(ctx), f, id_cursor(cursor), limit + 1)
    return page_of(rows, limit)


async def list_for_account(
    ctx: Ctx, account_id: int, status: str | None, plan_id: int | None, cursor: str | None, limit: int
) -> PageOf[Service]:
    await accounts.get(ctx, account_id)
    f = ServiceFilter(account_id=account_id, status=status, plan_id=plan_id)
    return await list_services(ctx, f, cursor, limit)


# --- discounts ----------------------------------------------------------------------------------


async def list_discounts(ctx: Ctx, service_id: int) -> list[ServiceDiscount]:
    service = await get(ctx, service_id)
    return (await repository.discounts_of(ctx.session, ctx.provider_id, [service.id]))[service.id]


async def add_discount(ctx: Ctx, service_id: int, data: DiscountCreate) -> ServiceDiscount:
    service, account = await _found(ctx, service_id)
    await require(ctx, account.path, Permission.manage_services, "add discounts to this service")
    start, end = _check_discount(data, service.start_date, service.end_date)
    discount = _new_discount(ctx, service, data, start, end)
    ctx.session.add(discount)
    await ctx.session.flush()
    await audit.record(
        ctx, entity=ENTITY, entity_id=service.id, action="discount_added",
        account_id=service.account_id, after=_discount_snapshot(discount),
    )  # fmt: skip
    return discount


async def remove_discount(ctx: Ctx, service_id: int, discount_id: int) -> None:
    service, account = await _found(ctx, service_id)
    await require(ctx, account.path, Permission.manage_services, "remove discounts of this service")
    discount = await repository.get_discount(ctx.session, service, discount_id)
    if discount is None:
        raise NotFound(
            detail=f"There is no discount {discount_id} on service {service.id}.",
            fix=f"GET /api/v1/services/{service.id}/discounts lists them",
        )
    await audit.record(
        ctx, entity=ENTITY, entity_id=service.id, action="discount_removed",
        account_id=service.account_id, before=_discount_snapshot(discount),
    )  # fmt: skip
    await repository.delete_discount(ctx.session, discount)
    ctx.session.expunge(discount)


def discount_out(d: ServiceDiscount) -> DiscountOut:
    return DiscountOut(
        id=d.id,
        service_id=d.service_id,
        percent=_percent(d.percent_bp),
        start_date=d.start_date,
        end_date=d.end_date,
        description=d.description,
        created_at=d.created_at,
    )


# --- secrets ---------------------------------------------------------------------------------


def _unseal(ctx: Ctx, sealed: str, what: str) -> str:
    try:
        return ctx.secrets.unseal(sealed)
    except SecretUnreadable:
        raise Conflict(
            detail=f"The {what} was sealed with another BOUGHS_SECRET_KEY and cannot be read.",
            fix="set the password again",
        ) from None


async def reveal_password(ctx: Ctx, service_id: int) -> tuple[str | None, Literal["own", "account"]]:
    """The password a service uses, and whence; audited without the secret."""
    service, account = await _found(ctx, service_id)
    await require(ctx, account.path, Permission.manage_services, "see this service's password")
    source: Literal["own", "account"] = "own" if service.password_sealed is not None else "account"
    sealed = service.password_sealed if source == "own" else account.service_password_sealed
    password = _unseal(ctx, sealed, "password") if sealed is not None else None
    await audit.record(
        ctx, entity=ENTITY, entity_id=service.id, action="password_revealed",
        account_id=service.account_id, after={"source": source, "present": password is not None},
    )  # fmt: skip
    return password, source


async def set_account_password(ctx: Ctx, account_id: int, password: str | None) -> Account:
    """The account's main service password, used by its services without their own."""
    account = await accounts.get(ctx, account_id)
    await require(ctx, account.path, Permission.manage_services, "set this account's service password")
    had = account.service_password_sealed is not None
    account.service_password_sealed = _seal(ctx, password)
    account.updated_at = ctx.now()
    await ctx.session.flush()
    await audit.record(
        ctx, entity=accounts.ENTITY, entity_id=account.id,
        action="service_password_set" if password else "service_password_cleared",
        account_id=account.id, before={"has_service_password": had},
        after={"has_service_password": account.service_password_sealed is not None},
    )  # fmt: skip
    return account


# --- answers ---------------------------------------------------------------------------------


async def to_out_many(ctx: Ctx, services: Sequence[Service]) -> list[ServiceOut]:
    """Answers for services, with their plan, discounts and where their password comes from."""
    plans = await repository.plans(ctx.session, ctx.provider_id, [s.plan_id for s in services])
    owners = await repository.accounts(ctx.session, ctx.provider_id, [s.account_id for s in services])
    discounts = await repository.discounts_of(ctx.session, ctx.provider_id, [s.id for s in services])
    out = []
    for s in services:
        plan, owner = plans[s.plan_id], owners[s.account_id]
        own = s.password_sealed is not None
        pool: int | Literal["any"] | None = None
        if s.ipv4_mode == Ipv4Mode.dynamic:
            pool = s.ipv4_pool_id if s.ipv4_pool_id is not None else "any"
        out.append(
            ServiceOut(
                **{name: getattr(s, name) for name in AUDITED if name != "ipv4_pool_id"},
                id=s.id,
                plan_name=plan.name,
                plan_kind=plan.kind,
                status_changed_at=s.status_changed_at,
                cap_resets_at=s.cap_resets_at,
                throttled_until=s.throttled_until
                if s.throttled_until is not None and s.throttled_until > ctx.now()
                else None,
                has_password=own or owner.service_password_sealed is not None,
                password_source="own" if own else "account",
                ipv4_pool=pool,
                discounts=[discount_out(d) for d in discounts[s.id]],
                created_at=s.created_at,
                updated_at=s.updated_at,
            )
        )
    return out


async def to_out(ctx: Ctx, service: Service) -> ServiceOut:
    """The answer for one service (``to_out_many`` for a list: three queries in all)."""
    return (await to_out_many(ctx, [service]))[0]


async def status_counts(ctx: Ctx) -> dict[str, int]:
    """How many services of the accounts the actor can reach have each status (the dashboard)."""
    return await repository.count_by_status(ctx.session, await scope_of(ctx))
