"""Child connections (seed 000): a child account and its internet service as one thing.

The form creates both in one unit of work: nothing here commits, and any error raised on
the way (a login in use, an address outside the pools, a plan not offered) rolls the whole
request back, the account included. Errors name the form's fields (``username``, not the
service's ``login``), so a client can show them beside the input the operator typed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from boughs.accounts import inheritance
from boughs.accounts import repository as accounts_repository
from boughs.accounts import service as accounts
from boughs.accounts.models import Account
from boughs.accounts.repository import AccountFilter
from boughs.accounts.schemas import AccountCreate, AccountUpdate
from boughs.authz.permissions import Permission
from boughs.authz.scope import require, scope_of
from boughs.catalog import service as catalog
from boughs.catalog.models import PlanKind
from boughs.context import Ctx
from boughs.kit.clock import local_date
from boughs.kit.errors import BoughsError, Conflict, FieldProblem, InvalidInput, NotFound
from boughs.kit.pagination import PageOf, check_limit, id_cursor, page_of
from boughs.services import changes
from boughs.services import connections_repository as repository
from boughs.services import service as services
from boughs.services.connections_schemas import ChildConnectionCreate, ChildConnectionUpdate, DualDeviceKind
from boughs.services.models import Ipv4Mode, Service
from boughs.services.schemas import ServiceCreate, ServiceUpdate

# The service's (and the account's) field names, as the form calls them.
_FORM_FIELDS = {
    "login": "username",
    "password": "password",
    "ipv4_address": "ip_address",
    "ipv4_mode": "ip_address",
    "mac_addresses": "mac_address",
    "plan_id": "plan_id",
    "name": "label",
    "expiry_date": "expiry_date",
    "invoice_mode": "invoice_mode",
}


def _form_field(name: str) -> str:
    # "mac_addresses.0" is the form's one mac_address.
    head = name.split(".", 1)[0]
    return _FORM_FIELDS.get(head, name)


def _renamed(error: BoughsError) -> BoughsError:
    if not error.errors:
        return error
    problems = [FieldProblem(_form_field(p.field), p.message, p.fix) for p in error.errors]
    detail = error.detail
    for before, after in zip(error.errors, problems, strict=True):
        if before.field != after.field and detail.startswith(f"{before.field}:"):
            detail = f"{after.field}:{detail[len(before.field) + 1 :]}"
    return replace(error, errors=problems, detail=detail)


@contextmanager
def _in_form_terms() -> Iterator[None]:
    """Errors of the account and service rules, renamed to the form's fields."""
    try:
        yield
    except ValidationError as exc:
        # The service's own input model refused a value (a MAC in an unknown notation).
        from boughs.middleware import validation_problem

        raise _renamed(validation_problem(RequestValidationError(exc.errors()))) from None
    except BoughsError as exc:
        raise _renamed(exc) from None


def connection_not_found(account_id: int, child_id: int) -> NotFound:
    return NotFound(
        detail=f"Account {account_id} has no child connection {child_id}.",
        fix=f"list them: GET /api/v1/accounts/{account_id}/child-connections",
    )


# --- creating ----------------------------------------------------------------------------


async def _check_expiry(ctx: Ctx, chain: Sequence[Account], provider_timezone: str, data: Any) -> None:
    if data.expiry_date is None:
        return
    timezone = inheritance.resolve(chain, "timezone", provider_timezone).value
    today = local_date(ctx.now(), timezone)
    if data.expiry_date < today:
        raise InvalidInput.on_field(
            "expiry_date",
            f"{data.expiry_date.isoformat()} is in the past (today is {today.isoformat()} in {timezone})",
            "give today or a later date, or leave it blank to inherit the parent's expiry",
        )


async def _internet_plan(ctx: Ctx, account: Account, plan_id: int) -> None:
    with _in_form_terms():
        plan = await catalog.plan_for_account(ctx, account, plan_id, "plan_id")
    if plan.kind != PlanKind.internet.value:
        raise InvalidInput.on_field(
            "plan_id",
            f"plan {plan_id} ({plan.name}) is a {plan.kind} plan, not an internet plan",
            "choose an internet plan: GET /api/v1/plans?kind=internet",
        )


def _address_fields(ip_address: str | None) -> dict[str, Any]:
    # Without an address of its own the connection takes one from a dynamic pool at login.
    if ip_address is None:
        return {"ipv4_mode": Ipv4Mode.dynamic.value, "ipv4_address": None}
    return {"ipv4_mode": Ipv4Mode.permanent.value, "ipv4_address": ip_address}


async def create(ctx: Ctx, parent_id: int, data: ChildConnectionCreate) -> tuple[Account, Service]:
    """The child account and its internet service, or (on any error) neither."""
    found = await accounts_repository.chain_of(ctx.session, await scope_of(ctx), parent_id)
    if found is None:
        raise accounts.not_found(parent_id)
    parent = found.account
    await require(ctx, parent.path, Permission.manage_accounts, "create child connections")
    await require(ctx, parent.path, Permission.manage_services, "create child connections")
    with _in_form_terms():
        # accounts.create holds the rules of children: the subaccounts feature, the depth cap.
        child = await accounts.create(
            ctx,
            AccountCreate(
                name=data.label,
                parent_id=parent.id,
                expiry_date=data.expiry_date,
                invoice_mode=data.invoice_mode,
                # One operator action by someone who manages the parent: the child takes
                # the parent's acceptance, and only when there is one to take.
                preaccept_agreements=accounts.agreements_of(parent)["complete"],
            ),
        )
    if not accounts.agreements_of(parent)["complete"]:
        raise Conflict(
            detail=f"Account {parent.id} has not accepted the MSA and AUP, so its child connections "
            "cannot be provisioned.",
            fix=f"an administrator accepts them first: POST /api/v1/accounts/{parent.id}/agreements",
        )
    status = inheritance.effective_status(found.accounts, ctx.now(), found.provider_timezone)
    if status["blocked"]:
        raise Conflict(
            detail=f"Account {parent.id} is {status['value']}: a new connection under it could not be used.",
            fix=f"restore account {status['source_account_id']} first (unsuspend or renew it)",
        )
    await _check_expiry(ctx, found.accounts, found.provider_timezone, data)
    await _internet_plan(ctx, parent, data.plan_id)
    with _in_form_terms():
        service = await services.create(
            ctx,
            child.id,
            ServiceCreate.model_validate(
                {
                    "plan_id": data.plan_id,
                    "login": data.username,
                    "password": data.password,
                    "mac_addresses": [data.mac_address] if data.mac_address else [],
                    **_address_fields(data.ip_address),
                }
            ),
        )
    return child, service


# --- reading -----------------------------------------------------------------------------


ConnectionsPage = PageOf[dict[str, Any]]


def _row(
    chain: Sequence[Account],
    child: Account,
    service: repository.ConnectionService | None,
    provider_timezone: str,
    now: datetime,
) -> dict[str, Any]:
    full = [*chain, child]
    expiry = inheritance.resolve(full, "expiry_date")
    return {
        "account_id": child.id,
        "label": child.name,
        "status": inheritance.effective_status(full, now, provider_timezone)["value"],
        "username": service.login if service else None,
        "plan": {"id": service.plan_id, "name": service.plan_name} if service else None,
        "effective_expiry": expiry.as_dict(),
        "invoice_mode": child.invoice_mode,
        "service_id": service.service_id if service else None,
        "ip_address": service.ipv4_address if service else None,
        "mac_address": service.mac_addresses[0] if service and service.mac_addresses else None,
    }


async def list_connections(ctx: Ctx, account_id: int, cursor: str | None, limit: int) -> ConnectionsPage:
    """The parent's Connections tab: a fixed number of queries per page, however many children."""
    check_limit(limit)
    after = id_cursor(cursor)
    scope = await scope_of(ctx)
    found = await accounts_repository.chain_of(ctx.session, scope, account_id)
    if found is None:
        raise accounts.not_found(account_id)
    children = await accounts_repository.list_by_id(
        ctx.session, scope, AccountFilter(parent_id=account_id), after, limit + 1
    )
    page = page_of(children, limit)
    children = page.items
    next_cursor = page.next_cursor
    served = await repository.first_internet_services(ctx.session, ctx.provider_id, [c.id for c in children])
    now = ctx.now()
    rows = [_row(found.accounts, c, served.get(c.id), found.provider_timezone, now) for c in children]
    return ConnectionsPage(rows, next_cursor)


async def _connection(ctx: Ctx, account_id: int, child_id: int) -> tuple[accounts_repository.Chain, Account]:
    """The parent's chain and the child; a child of another account is answered as missing."""
    scope = await scope_of(ctx)
    found = await accounts_repository.chain_of(ctx.session, scope, account_id)
    if found is None:
        raise accounts.not_found(account_id)
    child = await accounts_repository.get(ctx.session, scope, child_id)
    if child is None or child.parent_id != found.account.id:
        raise connection_not_found(account_id, child_id)
    return found, child


async def get(ctx: Ctx, account_id: int, child_id: int) -> dict[str, Any]:
    found, child = await _connection(ctx, account_id, child_id)
    served = await repository.first_internet_services(ctx.session, ctx.provider_id, [child.id])
    return _row(found.accounts, child, served.get(child.id), found.provider_timezone, ctx.now())


# --- changing ----------------------------------------------------------------------------

_SERVICE_FIELDS = ("plan_id", "ip_address", "mac_address")


async def update(ctx: Ctx, account_id: int, child_id: int, data: ChildConnectionUpdate) -> dict[str, Any]:
    found, child = await _connection(ctx, account_id, child_id)
    changes = data.model_dump(exclude_unset=True)
    await require(ctx, child.path, Permission.manage_accounts, "change this connection")
    service_changes = {k: v for k, v in changes.items() if k in _SERVICE_FIELDS}
    served = None
    if service_changes:
        await require(ctx, child.path, Permission.manage_services, "change this connection's service")
        served = (await repository.first_internet_services(ctx.session, ctx.provider_id, [child.id])).get(
            child.id
        )
        if served is None:
            raise Conflict(
                detail=f"Child account {child.id} has no internet service to change.",
                fix=f"add one first: POST /api/v1/accounts/{child.id}/services",
            )
    account_changes = {
        ("name" if k == "label" else k): v
        for k, v in changes.items()
        if k in ("label", "expiry_date", "invoice_mode")
    }
    if account_changes.get("expiry_date") is not None:
        await _check_expiry(ctx, [*found.accounts, child], found.provider_timezone, data)
    if account_changes:
        with _in_form_terms():
            await accounts.update(ctx, child.id, AccountUpdate.model_validate(account_changes))
    if served is not None:
        if "plan_id" in service_changes and service_changes["plan_id"] != served.plan_id:
            await _internet_plan(ctx, child, service_changes["plan_id"])
            with _in_form_terms():
                await _change_plan(ctx, served.service_id, service_changes["plan_id"])
        options: dict[str, Any] = {}
        if "ip_address" in service_changes:
            options.update(_address_fields(service_changes["ip_address"]))
        if "mac_address" in service_changes:
            mac = service_changes["mac_address"]
            options["mac_addresses"] = [mac] if mac else []
        if options:
            with _in_form_terms():
                await services.update(ctx, served.service_id, ServiceUpdate.model_validate(options))
    return await get(ctx, account_id, child_id)


async def _change_plan(ctx: Ctx, service_id: int, plan_id: int) -> None:
    """A plan change now, through the one place that records its proration for billing."""
    await changes.change_plan(ctx, service_id, changes.ChangePlanRequest(plan_id=plan_id))


async def suspend(ctx: Ctx, account_id: int, child_id: int, reason: str) -> dict[str, Any]:
    """This connection only: its siblings and its parent keep their status."""
    _, child = await _connection(ctx, account_id, child_id)
    await accounts.suspend(ctx, child.id, reason)
    return await get(ctx, account_id, child_id)


async def unsuspend(ctx: Ctx, account_id: int, child_id: int, reason: str) -> dict[str, Any]:
    _, child = await _connection(ctx, account_id, child_id)
    await accounts.unsuspend(ctx, child.id, reason)
    return await get(ctx, account_id, child_id)


async def deletion_report(ctx: Ctx, account_id: int, child_id: int) -> dict[str, Any]:
    """What deleting the connection would remove and keep: the confirmation to show."""
    _, child = await _connection(ctx, account_id, child_id)
    return await accounts.deletion_report(ctx, child.id)


async def delete(ctx: Ctx, account_id: int, child_id: int) -> dict[str, Any]:
    """Permanent (seed 000): the child account goes, its services with it."""
    _, child = await _connection(ctx, account_id, child_id)
    return await accounts.delete(ctx, child.id)


# --- dual device users -------------------------------------------------------------------


async def dual_device_users(
    ctx: Ctx, kind: DualDeviceKind, cursor: str | None, limit: int
) -> ConnectionsPage:
    """Customers with child accounts, and customers whose plan allows a companion device.

    Devices in use are the MAC addresses registered on those services: what the operator
    has locked them to. Live sessions would be a better count, and come with RADIUS
    accounting; until then a registered device is the one the plan counts against.
    """
    check_limit(limit)
    after = id_cursor(cursor)
    scope = await scope_of(ctx)
    found = await repository.dual_device_accounts(ctx.session, scope, kind.value, after, limit + 1)
    page = page_of(found, limit, lambda pair: pair[0])
    found = page.items
    next_cursor = page.next_cursor
    ids = [account_id for account_id, _ in found]
    kids = await repository.child_counts(ctx.session, scope, ids)
    allowance: dict[int, int] = {}
    in_use: dict[int, int] = {}
    for account_id, devices, macs in await repository.companion_services(ctx.session, ctx.provider_id, ids):
        allowance[account_id] = allowance.get(account_id, 0) + devices
        in_use[account_id] = in_use.get(account_id, 0) + len(macs)
    rows = [
        {
            "account_id": account_id,
            "name": name,
            "child_count": kids.get(account_id, 0),
            "companion_allowed": account_id in allowance,
            "device_allowance": allowance.get(account_id),
            "devices_in_use": in_use.get(account_id) if account_id in allowance else None,
        }
        for account_id, name in found
    ]
    return ConnectionsPage(rows, next_cursor)
