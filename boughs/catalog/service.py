"""The rules of the catalog: what may be sold to whom, and on which network resources."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any, TypeVar

from boughs.accounts import repository as repository_accounts
from boughs.accounts import service as accounts
from boughs.accounts.models import Account
from boughs.audit import service as audit
from boughs.authz.permissions import Permission
from boughs.authz.scope import require, scope_of
from boughs.catalog import repository
from boughs.catalog.models import (
    CapAction,
    IpPool,
    Offer,
    Plan,
    PlanKind,
    PoolKind,
    Port,
    PricingModel,
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
    RouterUpdate,
)
from boughs.context import Ctx
from boughs.kit.errors import Conflict, FieldProblem, Forbidden, InvalidInput, NotFound
from boughs.kit.pagination import PageOf, check_limit, id_cursor, page_of
from boughs.kit.paths import ids_of
from boughs.kit.secrets import SecretUnreadable
from boughs.providers import repository as providers
from boughs.services.models import Service

Named = TypeVar("Named", Plan, Router, IpPool, Port)

# --- checks other domains make before they use the catalog ------------------------------


def plan_not_found(plan_id: int) -> NotFound:
    return NotFound(
        detail=f"There is no plan {plan_id}.", fix="check the id: GET /api/v1/plans lists the plans"
    )


async def get_plan(ctx: Ctx, plan_id: int) -> Plan:
    """The provider's plan, whoever asks (checks on an actor's behalf use plan_for_account)."""
    plan = await repository.get(ctx.session, Plan, ctx.provider_id, plan_id)
    if plan is None:
        raise plan_not_found(plan_id)
    return plan


async def plan_for_account(ctx: Ctx, account: Account, plan_id: int, field: str = "plan_id") -> Plan:
    """A live plan the account may take: public, or offered to it or one of its ancestors."""
    plan = await repository.get(ctx.session, Plan, ctx.provider_id, plan_id)
    if plan is None:
        raise InvalidInput.on_field(
            field, f"there is no plan {plan_id}", "give the id of a plan offered to this account"
        )
    if plan.retired_at is not None:
        raise InvalidInput.on_field(
            field,
            f"plan {plan_id} ({plan.name}) is retired and takes no new subscribers",
            "choose a live plan offered to this account",
        )
    if not await repository.plan_available(ctx.session, ctx.provider_id, plan.id, ids_of(account.path)):
        raise InvalidInput.on_field(
            field,
            f"plan {plan_id} ({plan.name}) is not offered to account {account.id}",
            f"choose a plan offered to it (GET /api/v1/plans?account_id={account.id}), or offer this one "
            f"first: POST /api/v1/plans/{plan_id}/offers with account_id {account.id}",
        )
    return plan


def _pool_hint(account: Account) -> str:
    return (
        f"use a pool account {account.id} may use: the provider's, its own, or one an ancestor shares "
        f"with descendants (GET /api/v1/ip-pools)"
    )


async def check_permanent_address(
    ctx: Ctx, account: Account, address: str, field: str = "ipv4_address"
) -> IpPool:
    """The permanent pool an address lies in; whether a service already holds it is not checked."""
    try:
        ip = ipaddress.IPv4Address(address)
    except (ipaddress.AddressValueError, ValueError):
        raise InvalidInput.on_field(
            field, f"'{address}' is not an IPv4 address", "write it in dotted form, like 192.0.2.10"
        ) from None
    for pool in await repository.usable_pools(ctx.session, account, PoolKind.permanent.value):
        network = ipaddress.IPv4Network(pool.cidr)
        if ip not in network:
            continue
        if network.prefixlen < 31 and ip in (network.network_address, network.broadcast_address):
            what = "network" if ip == network.network_address else "broadcast"
            raise InvalidInput.on_field(
                field,
                f"{ip} is the {what} address of pool {pool.name} ({pool.cidr})",
                f"choose one from {network.network_address + 1} to {network.broadcast_address - 1}",
            )
        return pool
    raise InvalidInput.on_field(
        field, f"{ip} lies in no permanent pool account {account.id} may use", _pool_hint(account)
    )


async def check_dynamic_pool(ctx: Ctx, account: Account, pool_id: int, field: str = "ipv4_pool") -> IpPool:
    pool = await repository.get(ctx.session, IpPool, ctx.provider_id, pool_id)
    if pool is None or not await repository.is_usable(ctx.session, IpPool, account, pool.id):
        raise InvalidInput.on_field(
            field, f"there is no pool {pool_id} account {account.id} may use", _pool_hint(account)
        )
    if pool.kind != PoolKind.dynamic.value:
        raise InvalidInput.on_field(
            field,
            f"pool {pool_id} ({pool.name}) is a {pool.kind} pool",
            "name a dynamic pool, or leave it out to take any dynamic pool",
        )
    return pool


async def check_port(ctx: Ctx, account: Account, port_id: int, field: str = "port_id") -> Port:
    port = await repository.get(ctx.session, Port, ctx.provider_id, port_id)
    if port is None or not await repository.is_usable(ctx.session, Port, account, port.id):
        raise InvalidInput.on_field(
            field,
            f"there is no port {port_id} account {account.id} may use",
            "use the provider's port, the account's own, or one an ancestor shares with descendants "
            "(GET /api/v1/ports)",
        )
    return port


async def check_router(ctx: Ctx, router_id: int, field: str = "router_id") -> Router:
    found = await repository.get(ctx.session, Router, ctx.provider_id, router_id)
    if found is None:
        raise InvalidInput.on_field(
            field,
            f"there is no router {router_id}",
            "give the id of a router: GET /api/v1/routers lists them",
        )
    return found


async def offers_of(ctx: Ctx, chain: Sequence[Account]) -> list[dict[str, Any]]:
    """Every live plan available to the last account of the chain (root first), and whence."""
    account = chain[-1]
    chain_ids = [a.id for a in chain]
    out = []
    for plan, offered_to in await repository.available_plans(ctx.session, ctx.provider_id, chain_ids):
        source = "public" if offered_to is None else "own" if offered_to == account.id else "inherited"
        out.append(
            {
                "plan_id": plan.id,
                "name": plan.name,
                "kind": plan.kind,
                "source": source,
                "source_account_id": offered_to,
            }
        )
    return out


# --- shared pieces -------------------------------------------------------------------------

Catalogued = Plan | Router | IpPool | Port


async def _require_provider(ctx: Ctx, doing: str) -> None:
    # The catalog is the provider's: no account role reaches it, whatever the account.
    await require(ctx, "", Permission.manage_provider, doing)


def _snapshot(row: Catalogued, names: Sequence[str]) -> dict[str, Any]:
    return {name: getattr(row, name) for name in names}


async def _check_name_free(ctx: Ctx, model: type[Named], name: str, own_id: int | None) -> None:
    existing = await repository.get_by_name(ctx.session, model, ctx.provider_id, name)
    if existing is not None and existing.id != own_id:
        raise Conflict.on_field(
            "name", f"'{name}' is already the name of another {_WHAT[model]}", "choose another name"
        )


_WHAT: dict[type[Any], str] = {Plan: "plan", Router: "router", IpPool: "pool", Port: "port"}


async def _record(
    ctx: Ctx,
    row: Catalogued,
    action: str,
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    account_id: int | None = None,
) -> None:
    await audit.record(
        ctx,
        entity=_WHAT[type(row)] if type(row) is not IpPool else "ip_pool",
        entity_id=row.id,
        action=action,
        account_id=account_id,
        before=before,
        after=after,
    )


def _in_use(what: str, count: int, fix: str) -> Conflict:
    noun = "service uses" if count == 1 else "services use"
    return Conflict(detail=f"{count} {noun} this {what}.", fix=fix)


# --- plans ---------------------------------------------------------------------------------

PLAN_AUDITED = (
    "name", "kind", "description", "price_amount", "currency", "pay_period", "public",
    "download_rate", "upload_rate", "data_cap_bytes", "cap_action", "pooled_cap", "throttle_download_rate",
    "throttle_upload_rate", "device_allowance", "usage_charges", "child_billing_mode", "retired_at",
)  # fmt: skip
INTERNET_ONLY = (
    "download_rate", "upload_rate", "data_cap_bytes", "cap_action",
    "throttle_download_rate", "throttle_upload_rate",
)  # fmt: skip


def _plan_problems(values: dict[str, Any]) -> list[FieldProblem]:
    """What is wrong with a plan as it would be stored, each problem naming its field."""
    problems: list[FieldProblem] = []
    if values["kind"] != PlanKind.internet.value:
        for name in INTERNET_ONLY:
            if values.get(name) is not None:
                problems.append(
                    FieldProblem(name, f"only internet plans have it, and this is a {values['kind']} plan",
                                 "leave it out (null), or make the plan kind internet")
                )  # fmt: skip
        if values.get("pooled_cap"):
            problems.append(
                FieldProblem("pooled_cap", f"only internet plans have a data cap ({values['kind']} here)",
                             "leave it false, or make the plan kind internet")
            )  # fmt: skip
        if values.get("device_allowance", 1) != 1:
            problems.append(
                FieldProblem("device_allowance", f"only internet plans allow more than one device, and this "
                             f"is a {values['kind']} plan", "set it to 1, or make the plan kind internet")
            )  # fmt: skip
        return problems + _usage_problems(values)
    cap, action = values.get("data_cap_bytes"), values.get("cap_action")
    if values.get("pooled_cap") and cap is None:
        problems.append(
            FieldProblem("pooled_cap", "pools a data cap, and this plan has none",
                         "set data_cap_bytes and cap_action, or leave pooled_cap false")
        )  # fmt: skip
    if cap is not None and action is None:
        problems.append(
            FieldProblem("cap_action", "is required with a data cap",
                         "say what happens at the cap: 'disable' or 'throttle'")
        )  # fmt: skip
    if cap is None and action is not None:
        problems.append(
            FieldProblem("cap_action", "needs a data cap", "set data_cap_bytes, or leave cap_action out")
        )
    throttled = action == CapAction.throttle.value
    for name in ("throttle_download_rate", "throttle_upload_rate"):
        if throttled and values.get(name) is None:
            problems.append(
                FieldProblem(
                    name, "is required when cap_action is throttle", "give the throttled rate in kbit/s"
                )
            )
        if not throttled and values.get(name) is not None:
            problems.append(
                FieldProblem(name, "only applies when cap_action is throttle",
                             "leave it out, or set cap_action to throttle")
            )  # fmt: skip
    return problems + _usage_problems(values)


def _usage_problems(values: dict[str, Any]) -> list[FieldProblem]:
    problems: list[FieldProblem] = []
    if values.get("child_billing_mode") and not values.get("usage_charges"):
        problems.append(
            FieldProblem("child_billing_mode", "pools the subtree's usage but the plan has no usage charges",
                         "add usage_charges for the meters to pool, or leave child_billing_mode null")
        )  # fmt: skip
    seen: set[str] = set()
    for i, charge in enumerate(values.get("usage_charges") or []):
        at = f"usage_charges.{i}"
        model, tiers = charge["model"], charge["tiers"]
        if charge["meter"] in seen:
            problems.append(
                FieldProblem(f"{at}.meter", f"meter '{charge['meter']}' is charged twice",
                             "give each meter one usage charge")
            )  # fmt: skip
        seen.add(charge["meter"])
        needs = {
            PricingModel.per_unit.value: {"unit_price"},
            PricingModel.graduated.value: {"tiers"},
            PricingModel.volume.value: {"tiers"},
            PricingModel.package.value: {"package_size", "package_amount"},
        }[model]
        for name in ("unit_price", "tiers", "package_size", "package_amount"):
            present = bool(charge[name]) if name == "tiers" else charge[name] is not None
            if name in needs and not present:
                problems.append(
                    FieldProblem(f"{at}.{name}", f"is required by the {model} model",
                                 _MODEL_FIX[model])
                )  # fmt: skip
            elif name not in needs and present:
                problems.append(
                    FieldProblem(f"{at}.{name}", f"is not used by the {model} model",
                                 f"leave it out; {_MODEL_FIX[model]}")
                )  # fmt: skip
        if tiers:
            problems += _tier_problems(f"{at}.tiers", tiers)
    return problems


_TIERS = "tiers: [{up_to, unit_price, flat_amount}, …], the last with up_to null"
_MODEL_FIX = {
    PricingModel.per_unit.value: "per_unit needs unit_price (a decimal string, like '0.05') only",
    PricingModel.graduated.value: f"graduated needs {_TIERS}",
    PricingModel.volume.value: f"volume needs {_TIERS}",
    PricingModel.package.value: "package needs package_size (units per package) and package_amount "
    "(minor units)",
}


def _tier_problems(at: str, tiers: list[dict[str, Any]]) -> list[FieldProblem]:
    fix = "list tiers by ascending up_to, every one with an up_to except the last, whose up_to is null"
    last = len(tiers) - 1
    previous = 0
    for i, tier in enumerate(tiers):
        up_to = tier["up_to"]
        if up_to is None and i != last:
            return [FieldProblem(at, f"tier {i} has no up_to but is not the last tier", fix)]
        if up_to is not None and i == last:
            return [FieldProblem(at, "the last tier must have up_to null, so every quantity is priced", fix)]
        if up_to is not None:
            if up_to <= previous:
                return [FieldProblem(at, f"tier {i} ends at {up_to}, not above the tier before it", fix)]
            previous = up_to
    return []


def _refuse(problems: list[FieldProblem]) -> None:
    if problems:
        raise InvalidInput(
            detail="; ".join(f"{p.field}: {p.message}" for p in problems),
            fix=problems[0].fix,
            errors=problems,
        )


async def get_visible_plan(ctx: Ctx, plan_id: int) -> Plan:
    plan = await repository.get_visible(ctx.session, Plan, await scope_of(ctx), plan_id)
    if plan is None:
        raise plan_not_found(plan_id)
    return plan


async def list_plans(
    ctx: Ctx,
    *,
    kind: str | None,
    account_id: int | None,
    include_retired: bool,
    cursor: str | None,
    limit: int,
) -> PageOf[Plan]:
    check_limit(limit)
    after = id_cursor(cursor)
    available_to = None
    if account_id is not None:
        account = await accounts.get(ctx, account_id)
        available_to = ids_of(account.path)
    f = repository.PlanFilter(kind=kind, include_retired=include_retired, available_to=available_to)
    rows = await repository.list_plans(ctx.session, await scope_of(ctx), f, after, limit + 1)
    return page_of(rows, limit)


async def create_plan(ctx: Ctx, data: PlanCreate) -> Plan:
    await _require_provider(ctx, "create plans")
    values = data.model_dump(mode="json")
    values["usage_charges"] = [c.stored() for c in data.usage_charges]
    if values["currency"] is None:
        values["currency"] = (await providers.get(ctx.session, ctx.provider_id)).default_currency
    _refuse(_plan_problems(values))
    await _check_name_free(ctx, Plan, data.name, None)
    now = ctx.now()
    plan = Plan(provider_id=ctx.provider_id, created_at=now, updated_at=now, retired_at=None, **values)
    ctx.session.add(plan)
    await ctx.session.flush()
    await _record(ctx, plan, "created", after=_snapshot(plan, PLAN_AUDITED))
    return plan


async def update_plan(ctx: Ctx, plan_id: int, data: PlanUpdate) -> Plan:
    plan = await get_visible_plan(ctx, plan_id)
    await _require_provider(ctx, "change plans")
    changes = data.model_dump(mode="json", exclude_unset=True)
    if data.usage_charges is not None:
        changes["usage_charges"] = [c.stored() for c in data.usage_charges]
    retired = changes.pop("retired", None)
    values = {**_snapshot(plan, PLAN_AUDITED), **changes}
    _refuse(_plan_problems(values))
    if "name" in changes:
        await _check_name_free(ctx, Plan, changes["name"], plan.id)
    before = _snapshot(plan, PLAN_AUDITED)
    for name, value in changes.items():
        setattr(plan, name, value)
    if retired is True and plan.retired_at is None:
        plan.retired_at = ctx.now()
    elif retired is False:
        plan.retired_at = None
    old, new = audit.changed(before, _snapshot(plan, PLAN_AUDITED))
    if new:
        plan.updated_at = ctx.now()
        await ctx.session.flush()
        action = "retired" if set(new) == {"retired_at"} and plan.retired_at else "updated"
        await _record(ctx, plan, action, before=old, after=new)
    return plan


async def delete_plan(ctx: Ctx, plan_id: int) -> None:
    plan = await get_visible_plan(ctx, plan_id)
    await _require_provider(ctx, "delete plans")
    used = await repository.plan_use(ctx.session, ctx.provider_id, plan.id)
    if used:
        raise Conflict(
            detail=f"Plan {plan.id} ({plan.name}) is used by {used} service(s) or scheduled change(s).",
            fix=f"retire it instead, so it takes no new subscribers: PATCH /api/v1/plans/{plan.id} "
            'with {"retired": true}',
        )
    await _record(ctx, plan, "deleted", before=_snapshot(plan, PLAN_AUDITED))
    await repository.delete_row(ctx.session, plan)


# --- offers --------------------------------------------------------------------------------


async def list_offers(ctx: Ctx, plan_id: int) -> list[dict[str, Any]]:
    plan = await get_visible_plan(ctx, plan_id)
    return [
        {
            "plan_id": offer.plan_id,
            "account_id": offer.account_id,
            "account_name": account.name,
            "created_by_user_id": offer.created_by_user_id,
            "created_at": offer.created_at,
        }
        for offer, account in await repository.list_offers(ctx.session, await scope_of(ctx), plan.id)
    ]


async def _may_offer(ctx: Ctx, plan: Plan, account: Account, doing: str) -> None:
    """Staff offer any plan to anyone; a reseller passes on what its own account already has."""
    scope = await scope_of(ctx)
    if scope.allows("", Permission.manage_provider):
        return
    await require(ctx, account.path, Permission.manage_accounts, doing)
    parent_chain = ids_of(account.path)[:-1]
    if not parent_chain or not await repository.plan_available(
        ctx.session, ctx.provider_id, plan.id, parent_chain
    ):
        raise Forbidden(
            detail=f"Plan {plan.id} is not available to the parent of account {account.id}, "
            "so you cannot pass it on.",
            fix="you can offer the plans your own accounts were offered; ask the provider for this one",
        )


async def _offer_target(ctx: Ctx, account_id: int) -> Account:
    account = await repository_accounts.get(ctx.session, await scope_of(ctx), account_id)
    if account is None:
        raise InvalidInput.on_field(
            "account_id", f"there is no account {account_id}", "give the id of an account you manage"
        )
    return account


async def add_offer(ctx: Ctx, plan_id: int, account_id: int) -> dict[str, Any]:
    plan = await get_visible_plan(ctx, plan_id)
    account = await _offer_target(ctx, account_id)
    await _may_offer(ctx, plan, account, "offer plans to this account")
    if plan.retired_at is not None:
        raise Conflict(
            detail=f"Plan {plan.id} ({plan.name}) is retired and takes no new subscribers.",
            fix=f"bring it back first (PATCH /api/v1/plans/{plan.id} with retired false), "
            "or offer a live plan",
        )
    if await repository.get_offer(ctx.session, plan.id, account.id) is not None:
        raise Conflict.on_field(
            "account_id",
            f"plan {plan.id} is already offered to account {account.id}",
            "nothing to do; DELETE the offer first to make it again",
        )
    offer = Offer(
        provider_id=ctx.provider_id,
        plan_id=plan.id,
        account_id=account.id,
        created_by_user_id=ctx.actor.user_id,
        created_at=ctx.now(),
    )
    ctx.session.add(offer)
    await ctx.session.flush()
    await _record(ctx, plan, "offered", after={"account_id": account.id}, account_id=account.id)
    return {
        "plan_id": plan.id,
        "account_id": account.id,
        "account_name": account.name,
        "created_by_user_id": offer.created_by_user_id,
        "created_at": offer.created_at,
    }


async def remove_offer(ctx: Ctx, plan_id: int, account_id: int) -> None:
    plan = await get_visible_plan(ctx, plan_id)
    account = await repository_accounts.get(ctx.session, await scope_of(ctx), account_id)
    offer = await repository.get_offer(ctx.session, plan.id, account_id) if account is not None else None
    if account is None or offer is None:
        raise NotFound(
            detail=f"Plan {plan_id} is not offered to account {account_id}.",
            fix=f"GET /api/v1/plans/{plan_id}/offers lists its offers",
        )
    await _may_offer(ctx, plan, account, "withdraw offers from this account")
    await repository.delete_offer(ctx.session, offer)
    await _record(ctx, plan, "offer_withdrawn", before={"account_id": account.id}, account_id=account.id)


# --- routers -------------------------------------------------------------------------------

ROUTER_AUDITED = ("name", "address", "type", "description")


def router_not_found(router_id: int) -> NotFound:
    return NotFound(
        detail=f"There is no router {router_id}.", fix="check the id: GET /api/v1/routers lists them"
    )


async def get_router(ctx: Ctx, router_id: int) -> Router:
    found = await repository.get_visible(ctx.session, Router, await scope_of(ctx), router_id)
    if found is None:
        raise router_not_found(router_id)
    return found


async def list_routers(ctx: Ctx, cursor: str | None, limit: int) -> PageOf[Router]:
    check_limit(limit)
    after = id_cursor(cursor)
    return page_of(
        await repository.list_rows(ctx.session, Router, await scope_of(ctx), after, limit + 1), limit
    )


async def create_router(ctx: Ctx, data: RouterCreate) -> Router:
    await _require_provider(ctx, "add routers")
    await _check_name_free(ctx, Router, data.name, None)
    now = ctx.now()
    found = Router(
        provider_id=ctx.provider_id,
        name=data.name,
        address=data.address,
        type=data.type.value,
        description=data.description,
        radius_secret_sealed=ctx.secrets.seal(data.radius_secret),
        created_at=now,
        updated_at=now,
    )
    ctx.session.add(found)
    await ctx.session.flush()
    await _record(ctx, found, "created", after=_snapshot(found, ROUTER_AUDITED))
    return found


async def update_router(ctx: Ctx, router_id: int, data: RouterUpdate) -> Router:
    found = await get_router(ctx, router_id)
    await _require_provider(ctx, "change routers")
    changes = data.model_dump(mode="json", exclude_unset=True)
    if "name" in changes:
        await _check_name_free(ctx, Router, changes["name"], found.id)
    secret = changes.pop("radius_secret", None)
    before = _snapshot(found, ROUTER_AUDITED)
    for name, value in changes.items():
        setattr(found, name, value)
    old, new = audit.changed(before, _snapshot(found, ROUTER_AUDITED))
    if secret is not None:
        found.radius_secret_sealed = ctx.secrets.seal(secret)
        # That it changed, never what it is.
        new["radius_secret_changed"] = True
    if new:
        found.updated_at = ctx.now()
        await ctx.session.flush()
        await _record(ctx, found, "updated", before=old, after=new)
    return found


async def reveal_router_secret(ctx: Ctx, router_id: int) -> str:
    found = await get_router(ctx, router_id)
    await _require_provider(ctx, "see RADIUS secrets")
    try:
        secret = ctx.secrets.unseal(found.radius_secret_sealed)
    except SecretUnreadable:
        raise Conflict(
            detail=f"The RADIUS secret of router {found.id} was sealed with another secret key.",
            fix=f"set a new one: PATCH /api/v1/routers/{found.id} with radius_secret",
        ) from None
    await _record(ctx, found, "secret_revealed")
    return secret


async def delete_router(ctx: Ctx, router_id: int) -> None:
    found = await get_router(ctx, router_id)
    await _require_provider(ctx, "delete routers")
    used = await repository.services_using(ctx.session, ctx.provider_id, Service.router_id, found.id)
    if used:
        raise _in_use("router", used, "move those services to another router first, then delete it")
    await _record(ctx, found, "deleted", before=_snapshot(found, ROUTER_AUDITED))
    await repository.delete_row(ctx.session, found)


# --- IPv4 pools and ports ------------------------------------------------------------------

POOL_AUDITED = ("name", "cidr", "kind", "owner_account_id", "shared_with_descendants")
PORT_AUDITED = ("name", "location", "speed", "owner_account_id", "shared_with_descendants")
MIN_PREFIX, MAX_PREFIX = 8, 32


def parse_cidr(cidr: str) -> ipaddress.IPv4Network:
    """A strict network: 192.0.2.0/24, not 192.0.2.7/24, from /8 to /32."""
    try:
        loose = ipaddress.IPv4Network(cidr, strict=False)
    except ValueError:
        raise InvalidInput.on_field(
            "cidr", f"'{cidr}' is not an IPv4 network", "write it as address/prefix, like 192.0.2.0/24"
        ) from None
    if "/" not in cidr:
        raise InvalidInput.on_field(
            "cidr", f"'{cidr}' has no prefix length", f"write it with one, like {loose.network_address}/24"
        )
    if loose.network_address != ipaddress.IPv4Address(cidr.split("/")[0]):
        raise InvalidInput.on_field("cidr", f"{cidr} has host bits set", f"give the network itself: {loose}")
    if not MIN_PREFIX <= loose.prefixlen <= MAX_PREFIX:
        raise InvalidInput.on_field(
            "cidr",
            f"a /{loose.prefixlen} pool is outside the allowed sizes",
            f"use a prefix length from /{MIN_PREFIX} to /{MAX_PREFIX}",
        )
    return loose


async def _owner(ctx: Ctx, owner_account_id: int | None) -> Account | None:
    if owner_account_id is None:
        return None
    owner = await repository_accounts.get(ctx.session, await scope_of(ctx), owner_account_id)
    if owner is None:
        raise InvalidInput.on_field(
            "owner_account_id",
            f"there is no account {owner_account_id}",
            "give the id of an existing account, or null for the provider's own",
        )
    return owner


async def _check_no_overlap(ctx: Ctx, network: ipaddress.IPv4Network, own_id: int | None) -> None:
    for pool in await repository.pools_of(ctx.session, ctx.provider_id):
        if pool.id != own_id and network.overlaps(ipaddress.IPv4Network(pool.cidr)):
            raise Conflict.on_field(
                "cidr",
                f"{network} overlaps pool {pool.id} ({pool.name}, {pool.cidr})",
                "choose a network that no other pool of the provider covers, or change that pool",
            )


def pool_not_found(pool_id: int) -> NotFound:
    return NotFound(
        detail=f"There is no IPv4 pool {pool_id}.", fix="check the id: GET /api/v1/ip-pools lists them"
    )


async def get_pool(ctx: Ctx, pool_id: int) -> IpPool:
    pool = await repository.get_visible(ctx.session, IpPool, await scope_of(ctx), pool_id)
    if pool is None:
        raise pool_not_found(pool_id)
    return pool


async def list_pools(ctx: Ctx, kind: str | None, cursor: str | None, limit: int) -> PageOf[IpPool]:
    check_limit(limit)
    after = id_cursor(cursor)
    conditions = [IpPool.kind == kind] if kind else []
    rows = await repository.list_rows(ctx.session, IpPool, await scope_of(ctx), after, limit + 1, conditions)
    return page_of(rows, limit)


async def _pool_use(ctx: Ctx, pool: IpPool) -> int:
    network = ipaddress.IPv4Network(pool.cidr)
    held = sum(1 for a in await repository.live_addresses(ctx.session, ctx.provider_id)
               if ipaddress.IPv4Address(a) in network)  # fmt: skip
    return held + await repository.services_using(ctx.session, ctx.provider_id, Service.ipv4_pool_id, pool.id)


async def create_pool(ctx: Ctx, data: IpPoolCreate) -> IpPool:
    await _require_provider(ctx, "add IPv4 pools")
    network = parse_cidr(data.cidr)
    owner = await _owner(ctx, data.owner_account_id)
    await _check_name_free(ctx, IpPool, data.name, None)
    await _check_no_overlap(ctx, network, None)
    now = ctx.now()
    pool = IpPool(
        provider_id=ctx.provider_id,
        name=data.name,
        cidr=str(network),
        kind=data.kind.value,
        owner_account_id=owner.id if owner else None,
        shared_with_descendants=data.shared_with_descendants,
        created_at=now,
        updated_at=now,
    )
    ctx.session.add(pool)
    await ctx.session.flush()
    await _record(ctx, pool, "created", after=_snapshot(pool, POOL_AUDITED), account_id=pool.owner_account_id)
    return pool


async def update_pool(ctx: Ctx, pool_id: int, data: IpPoolUpdate) -> IpPool:
    pool = await get_pool(ctx, pool_id)
    await _require_provider(ctx, "change IPv4 pools")
    changes = data.model_dump(mode="json", exclude_unset=True)
    if "cidr" in changes:
        changes["cidr"] = str(parse_cidr(changes["cidr"]))
    if "owner_account_id" in changes:
        await _owner(ctx, changes["owner_account_id"])
    if "name" in changes:
        await _check_name_free(ctx, IpPool, changes["name"], pool.id)
    reshaped = [k for k in ("cidr", "kind") if k in changes and changes[k] != getattr(pool, k)]
    if "cidr" in reshaped:
        await _check_no_overlap(ctx, ipaddress.IPv4Network(changes["cidr"]), pool.id)
    if reshaped:
        used = await _pool_use(ctx, pool)
        if used:
            raise Conflict.on_field(
                reshaped[0],
                f"{used} service(s) hold addresses of this pool or draw from it",
                "move those services to another pool first, or add a new pool instead",
            )
    before = _snapshot(pool, POOL_AUDITED)
    for name, value in changes.items():
        setattr(pool, name, value)
    old, new = audit.changed(before, _snapshot(pool, POOL_AUDITED))
    if new:
        pool.updated_at = ctx.now()
        await ctx.session.flush()
        await _record(ctx, pool, "updated", before=old, after=new, account_id=pool.owner_account_id)
    return pool


async def delete_pool(ctx: Ctx, pool_id: int) -> None:
    pool = await get_pool(ctx, pool_id)
    await _require_provider(ctx, "delete IPv4 pools")
    used = await _pool_use(ctx, pool)
    if used:
        raise Conflict(
            detail=f"{used} service(s) hold addresses of pool {pool.id} ({pool.cidr}) or draw from it.",
            fix="move those services to another pool first, then delete it",
        )
    await _record(
        ctx, pool, "deleted", before=_snapshot(pool, POOL_AUDITED), account_id=pool.owner_account_id
    )
    await repository.delete_row(ctx.session, pool)


def port_not_found(port_id: int) -> NotFound:
    return NotFound(detail=f"There is no port {port_id}.", fix="check the id: GET /api/v1/ports lists them")


async def get_port(ctx: Ctx, port_id: int) -> Port:
    port = await repository.get_visible(ctx.session, Port, await scope_of(ctx), port_id)
    if port is None:
        raise port_not_found(port_id)
    return port


async def list_ports(ctx: Ctx, cursor: str | None, limit: int) -> PageOf[Port]:
    check_limit(limit)
    after = id_cursor(cursor)
    rows = await repository.list_rows(ctx.session, Port, await scope_of(ctx), after, limit + 1)
    return page_of(rows, limit)


async def create_port(ctx: Ctx, data: PortCreate) -> Port:
    await _require_provider(ctx, "add ports")
    owner = await _owner(ctx, data.owner_account_id)
    await _check_name_free(ctx, Port, data.name, None)
    now = ctx.now()
    port = Port(
        provider_id=ctx.provider_id,
        name=data.name,
        location=data.location,
        speed=data.speed,
        owner_account_id=owner.id if owner else None,
        shared_with_descendants=data.shared_with_descendants,
        created_at=now,
        updated_at=now,
    )
    ctx.session.add(port)
    await ctx.session.flush()
    await _record(ctx, port, "created", after=_snapshot(port, PORT_AUDITED), account_id=port.owner_account_id)
    return port


async def update_port(ctx: Ctx, port_id: int, data: PortUpdate) -> Port:
    port = await get_port(ctx, port_id)
    await _require_provider(ctx, "change ports")
    changes = data.model_dump(mode="json", exclude_unset=True)
    if "owner_account_id" in changes:
        await _owner(ctx, changes["owner_account_id"])
    if "name" in changes:
        await _check_name_free(ctx, Port, changes["name"], port.id)
    before = _snapshot(port, PORT_AUDITED)
    for name, value in changes.items():
        setattr(port, name, value)
    old, new = audit.changed(before, _snapshot(port, PORT_AUDITED))
    if new:
        port.updated_at = ctx.now()
        await ctx.session.flush()
        await _record(ctx, port, "updated", before=old, after=new, account_id=port.owner_account_id)
    return port


async def delete_port(ctx: Ctx, port_id: int) -> None:
    port = await get_port(ctx, port_id)
    await _require_provider(ctx, "delete ports")
    used = await repository.services_using(ctx.session, ctx.provider_id, Service.port_id, port.id)
    if used:
        raise _in_use("port", used, "move those services to another port first, then delete it")
    await _record(
        ctx, port, "deleted", before=_snapshot(port, PORT_AUDITED), account_id=port.owner_account_id
    )
    await repository.delete_row(ctx.session, port)
