"""The catalog's rows and rules for the authorization matrix (tests/authz/test_matrix.py).

Each fill makes a fresh row in the target account's provider, tied to the target: a plan
offered to it, a pool or port it owns and shares down. The rules read the matrix's own
helpers at call time (that module imports this one).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from boughs.catalog.models import IpPool, Offer, Plan, Port, Router
from boughs.kit.secrets import default_box
from tests.authz.matrix_world import ACCOUNTS, A, ActorSpec, World, ancestors_of

API = "/api/v1"
MISSING = 987_654_321
_serial = itertools.count(1)


@dataclass(frozen=True)
class Request:
    path: str
    body: Any = None


def _m() -> Any:
    from tests.authz import test_matrix

    return test_matrix


def _name_of(world: World, account_id: int) -> str:
    return {v: k for k, v in world.ids.items()}[account_id]


def _provider_id(world: World, account: str) -> int:
    return world.tenants[ACCOUNTS[account].provider].provider_id


# --- rows ------------------------------------------------------------------------------------


async def _plan(world: World, provider_id: int, offered_to: list[int], public: bool = False) -> int:
    now = world.clock.now()
    async with world.db.transaction() as session:
        plan = Plan(
            provider_id=provider_id, kind="internet", name=f"matrix plan {next(_serial)}",
            description="", price_amount=100, currency="USD", pay_period="month", public=public,
            device_allowance=1, usage_charges=[], created_at=now, updated_at=now,
        )  # fmt: skip
        session.add(plan)
        await session.flush()
        for account_id in offered_to:
            session.add(
                Offer(provider_id=provider_id, plan_id=plan.id, account_id=account_id, created_at=now)
            )
        return plan.id


def _parent_id(world: World, account: str) -> list[int]:
    parent = ACCOUNTS[account].parent
    return [world.ids[parent]] if parent else []


def plan_offered(suffix: str = "", body: Any = None) -> Any:
    """A plan offered to the target account."""

    async def fill(world: World, actor: str, account_id: int | None) -> Request:
        if account_id is None:
            return Request(f"{API}/plans/{MISSING}{suffix}", body)
        name = _name_of(world, account_id)
        plan_id = await _plan(world, _provider_id(world, name), [account_id])
        return Request(f"{API}/plans/{plan_id}{suffix}", body)

    return fill


async def offer_to_target(world: World, actor: str, account_id: int | None) -> Request:
    """A plan offered to the target's parent (nowhere for a top-level target), offered on to it."""
    if account_id is None:
        return Request(f"{API}/plans/{MISSING}/offers", {"account_id": MISSING})
    name = _name_of(world, account_id)
    plan_id = await _plan(world, _provider_id(world, name), _parent_id(world, name))
    return Request(f"{API}/plans/{plan_id}/offers", {"account_id": account_id})


async def withdraw_from_target(world: World, actor: str, account_id: int | None) -> Request:
    """A plan offered to the target and to its parent; the target's offer is withdrawn."""
    if account_id is None:
        return Request(f"{API}/plans/{MISSING}/offers/{MISSING}")
    name = _name_of(world, account_id)
    plan_id = await _plan(world, _provider_id(world, name), [account_id, *_parent_id(world, name)])
    return Request(f"{API}/plans/{plan_id}/offers/{account_id}")


async def router_of_a(
    world: World, actor: str, ref: int | None, suffix: str = "", body: Any = None
) -> Request:
    if ref is None:
        return Request(f"{API}/routers/{MISSING}{suffix}", body)
    now = world.clock.now()
    async with world.db.transaction() as session:
        row = Router(
            provider_id=world.tenants[A].provider_id, name=f"matrix nas {next(_serial)}",
            address="192.0.2.1", type="other", description="",
            radius_secret_sealed=default_box().seal("matrix"), created_at=now, updated_at=now,
        )  # fmt: skip
        session.add(row)
        await session.flush()
        return Request(f"{API}/routers/{row.id}{suffix}", body)


def router(suffix: str = "", body: Any = None) -> Any:
    async def fill(world: World, actor: str, ref: int | None) -> Request:
        return await router_of_a(world, actor, ref, suffix, body)

    return fill


def owned(kind: str, body: Any = None) -> Any:
    """A pool or port the target owns and shares with its descendants."""

    async def fill(world: World, actor: str, account_id: int | None) -> Request:
        path = "ip-pools" if kind == "pool" else "ports"
        if account_id is None:
            return Request(f"{API}/{path}/{MISSING}", body)
        name = _name_of(world, account_id)
        now = world.clock.now()
        n = next(_serial)
        common = {
            "provider_id": _provider_id(world, name), "name": f"matrix {kind} {n}",
            "owner_account_id": account_id, "shared_with_descendants": True,
            "created_at": now, "updated_at": now,
        }  # fmt: skip
        async with world.db.transaction() as session:
            row: IpPool | Port
            if kind == "pool":
                row = IpPool(cidr=f"10.{n // 256 % 256}.{n % 256}.0/24", kind="permanent", **common)
            else:
                row = Port(location="", **common)
            session.add(row)
            await session.flush()
            return Request(f"{API}/{path}/{row.id}", body)

    return fill


def create_owned(kind: str) -> Any:
    async def fill(world: World, actor: str, account_id: int | None) -> Request:
        n = next(_serial)
        body: dict[str, Any] = {"name": f"matrix new {kind} {n}", "owner_account_id": account_id or MISSING}
        if kind == "pool":
            body |= {"cidr": f"172.{16 + n // 256 % 16}.{n % 256}.0/24", "kind": "dynamic"}
        return Request(f"{API}/{'ip-pools' if kind == 'pool' else 'ports'}", body)

    return fill


def new_plan(world: World) -> dict[str, Any]:
    return {"name": f"matrix new plan {next(_serial)}", "kind": "voice", "price_amount": 1}


def new_router(world: World) -> dict[str, Any]:
    return {
        "name": f"matrix new nas {next(_serial)}",
        "address": "192.0.2.1",
        "type": "other",
        "radius_secret": "x",
    }


# --- rules -----------------------------------------------------------------------------------


def _reaches(actor: ActorSpec, account: str) -> bool:
    """A member sees what is offered (or shared) at its grant, above it, or below it."""
    m = _m()
    if m.in_scope(actor, account):
        return True
    if actor.grant is None or ACCOUNTS[account].provider != actor.provider:
        return False
    return account in ancestors_of(actor.grant[0])


def _staff_here(actor: ActorSpec, account: str) -> bool:
    return bool(actor.staff_role) and ACCOUNTS[account].provider == actor.provider


def plan_read(actor: ActorSpec, target: str | None) -> Any:
    m = _m()
    assert target is not None
    if not actor.authenticated:
        return m.UNAUTHORIZED
    return m.OK if _staff_here(actor, target) or _reaches(actor, target) else m.HIDDEN


def plan_write(actor: ActorSpec, target: str | None) -> Any:
    m = _m()
    expect = plan_read(actor, target)
    if expect != m.OK:
        return expect
    return m.OK if m.provider_staff(actor) else m.FORBIDDEN


def _plan_at_parent_visible(actor: ActorSpec, target: str, also_target: bool) -> bool:
    if _staff_here(actor, target):
        return True
    parent = ACCOUNTS[target].parent
    return (also_target and _reaches(actor, target)) or (parent is not None and _reaches(actor, parent))


def offer_create(actor: ActorSpec, target: str | None) -> Any:
    """Staff offer anything; an account admin passes on what the target's parent has."""
    m = _m()
    assert target is not None
    if not actor.authenticated:
        return m.UNAUTHORIZED
    if not _plan_at_parent_visible(actor, target, also_target=False):
        return m.HIDDEN
    if not m.in_scope(actor, target):
        return m.Expect(422, "account_id")
    if m.provider_staff(actor):
        return m.OK
    if not m.may(actor, target, m.ACCOUNTS_) or ACCOUNTS[target].parent is None:
        return m.FORBIDDEN
    return m.OK


def offer_delete(actor: ActorSpec, target: str | None) -> Any:
    m = _m()
    assert target is not None
    if not actor.authenticated:
        return m.UNAUTHORIZED
    if not _plan_at_parent_visible(actor, target, also_target=True):
        return m.HIDDEN
    if not m.in_scope(actor, target):
        return m.Expect(404)  # the plan is visible; the offer to an account out of scope is not
    if m.provider_staff(actor):
        return m.OK
    if not m.may(actor, target, m.ACCOUNTS_) or ACCOUNTS[target].parent is None:
        return m.FORBIDDEN
    return m.OK


def router_read(actor: ActorSpec, target: str | None) -> Any:
    """Routers are the provider's staff's business: members see none."""
    m = _m()
    if not actor.authenticated:
        return m.UNAUTHORIZED
    return m.OK if actor.staff_role and actor.provider == A else m.HIDDEN


def router_write(actor: ActorSpec, target: str | None) -> Any:
    m = _m()
    expect = router_read(actor, target)
    if expect != m.OK:
        return expect
    return m.OK if m.provider_staff(actor) else m.FORBIDDEN


def owned_read(actor: ActorSpec, target: str | None) -> Any:
    """A pool or port the target owns and shares: staff, and members at, above or below it."""
    return plan_read(actor, target)


def owned_write(actor: ActorSpec, target: str | None) -> Any:
    return plan_write(actor, target)


def owned_create(actor: ActorSpec, target: str | None) -> Any:
    m = _m()
    assert target is not None
    if not actor.authenticated:
        return m.UNAUTHORIZED
    if not m.provider_staff(actor):
        return m.FORBIDDEN
    return m.OK if m.in_scope(actor, target) else m.Expect(422, "owner_account_id")
