"""The usage routes' requests, rules and checks for the authorization matrix (tests/authz/test_matrix.py).

Meters are the provider's catalog: every signed-in user of the provider reads them, only its
owner and admins change them. Usage is read like the account (or service) it belongs to.
Reporting usage is a batch answered per event: the request itself is allowed to anyone signed in,
and each event is accepted where the actor may manage services, rejected naming its role where it
may only read, and rejected exactly as a nonexistent account where it cannot reach the account.
"""

from __future__ import annotations

import itertools
import re
from datetime import timedelta
from typing import Any

import httpx

from boughs.usage import repository
from boughs.usage.models import Meter
from tests.authz.matrix_world import A, ActorSpec, B, World

API = "/api/v1"
MISSING = 987_654_321
METER = "matrix-data"

_serial = itertools.count(1)


def _m() -> Any:
    from tests.authz import test_matrix

    return test_matrix


async def _meter(world: World, provider: str, code: str = METER) -> int:
    """The provider's meter with this code, made on first use."""
    async with world.db.transaction() as session:
        ctx = world.staff_ctx(session, provider)
        found = (await repository.meters_by_code(session, ctx.provider_id, [code])).get(code)
        if found is not None:
            return found.id
        now = world.clock.now()
        meter = Meter(
            provider_id=ctx.provider_id, code=code, name="Matrix data", unit="bytes", aggregation="sum",
            precision=0, counts_toward_cap=False, description="", created_at=now, updated_at=now,
        )  # fmt: skip
        session.add(meter)
        await session.flush()
        return meter.id


# --- meters --------------------------------------------------------------------------------------


def new_meter(world: World) -> dict[str, Any]:
    return {"code": f"matrix-new-{next(_serial)}", "name": "New", "unit": "calls", "aggregation": "count"}


def meter(suffix: str = "", body: Any = None) -> Any:
    """A fresh meter of the tenant's provider for every call (a missing id for "missing")."""

    async def fill(world: World, actor: str, ref: int | None) -> Any:
        if ref is None:
            return _m().Request(f"{API}/meters/{MISSING}{suffix}", body)
        meter_id = await _meter(world, A, f"matrix-{next(_serial)}")
        return _m().Request(f"{API}/meters/{meter_id}{suffix}", body)

    return fill


def meter_read(actor: ActorSpec, target: str | None) -> Any:
    m = _m()
    if not actor.authenticated:
        return m.UNAUTHORIZED
    return m.OK if actor.provider == A else m.HIDDEN


def meter_write(actor: ActorSpec, target: str | None) -> Any:
    m = _m()
    expect = meter_read(actor, target)
    if expect != m.OK:
        return expect
    return m.OK if m.provider_staff(actor) else m.FORBIDDEN


# --- usage queries -------------------------------------------------------------------------------

WINDOW = "from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z"


def account_usage() -> Any:
    async def fill(world: World, actor: str, account_id: int | None) -> Any:
        for provider in (A, B):
            await _meter(world, provider)
        return _m().Request(
            f"{API}/accounts/{account_id or MISSING}/usage?meter={METER}&scope=subtree&{WINDOW}"
        )

    return fill


def service_usage() -> Any:
    async def fill(world: World, actor: str, account_id: int | None) -> Any:
        for provider in (A, B):
            await _meter(world, provider)
        by_id = {v: k for k, v in world.ids.items()}
        service_id = world.service_ids[by_id[account_id]] if account_id else MISSING
        return _m().Request(f"{API}/services/{service_id}/usage?meter={METER}&{WINDOW}")

    return fill


# --- reporting usage -----------------------------------------------------------------------------


def report(subject: str) -> Any:
    """Two events: one for the target account (or its service), one for a nonexistent one."""

    async def fill(world: World, actor: str, account_id: int | None) -> Any:
        await _meter(world, A)
        await _meter(world, B)
        target = account_id or MISSING
        if subject == "service_id" and account_id:
            target = world.service_ids[{v: k for k, v in world.ids.items()}[account_id]]
        at = (world.clock.now() - timedelta(hours=1)).isoformat()
        events = [
            {
                "id": f"matrix-{next(_serial)}",
                "meter": METER,
                "quantity": "1",
                "timestamp": at,
                subject: value,
            }
            for value in (target, MISSING)
        ]
        return _m().Request(f"{API}/usage-events", {"events": events})

    return fill


def report_usage(actor: ActorSpec, target: str | None) -> Any:
    m = _m()
    return m.OK if actor.authenticated else m.UNAUTHORIZED


def reported(world: World, actor: ActorSpec, target: str | None, response: httpx.Response) -> str | None:
    """The target's event: accepted, refused for the role, or refused as if it did not exist."""
    m = _m()
    assert target is not None
    mine, missing = response.json()["results"]
    if missing["status"] != "rejected":
        return f"an event for a nonexistent subject was {missing['status']}"
    if m.may(actor, target, m.SERVICES):
        return None if mine["status"] == "accepted" else f"expected accepted, got {mine}"
    if mine["status"] != "rejected":
        return f"expected rejected, got {mine}"
    if m.in_scope(actor, target):
        return None if "role" in mine["reason"] else f"the reason does not name the role: {mine['reason']}"

    if re.sub(r"\d+", "<id>", mine["reason"]) != re.sub(r"\d+", "<id>", missing["reason"]):
        return f"differs from a nonexistent subject: {mine['reason']!r} vs {missing['reason']!r}"
    return None
