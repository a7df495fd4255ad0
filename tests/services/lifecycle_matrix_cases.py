"""The lifecycle and change routes' requests for the authorization matrix (tests/authz/test_matrix.py).

The service acted on is the one the matrix world made on the target account.
"""

from __future__ import annotations

import itertools
from datetime import date
from typing import Any

from boughs.services.models import ServiceScheduledChange
from tests.authz.matrix_world import ACCOUNTS, World
from tests.services import services_matrix_cases as services

API = "/api/v1"
MISSING = 987_654_321
# Every allowed cell asks for a price the service does not have yet, so each one changes something.
_prices = itertools.count(1001)


def _request(path: str, body: Any = None) -> Any:
    return services._m().Request(path, body)


async def change_plan(world: World, actor: str, account_id: int | None) -> Any:
    """The plan the service has, at a new price: allowed wherever managing services is."""
    if account_id is None:
        return _request(f"{API}/services/{MISSING}/change-plan", {"plan_id": MISSING})
    name = services._name_of(world, account_id)
    body = {"plan_id": world.plan_ids[ACCOUNTS[name].provider], "unit_price_amount": next(_prices)}
    return _request(f"{API}/services/{world.service_ids[name]}/change-plan", body)


async def _pending_change(world: World, name: str) -> int:
    provider = ACCOUNTS[name].provider
    async with world.db.transaction() as session:
        ctx = world.staff_ctx(session, provider)
        change = ServiceScheduledChange(
            provider_id=ctx.provider_id, service_id=world.service_ids[name], effective_date=date(2026, 3, 1),
            quantity=2, state="pending", outcome="", created_at=world.clock.now(),
        )  # fmt: skip
        session.add(change)
        await session.flush()
        return change.id


async def cancel_scheduled(world: World, actor: str, account_id: int | None) -> Any:
    """A pending scheduled change of the target's service."""
    if account_id is None:
        return _request(f"{API}/services/{MISSING}/scheduled-changes/{MISSING}")
    name = services._name_of(world, account_id)
    change_id = await _pending_change(world, name)
    return _request(f"{API}/services/{world.service_ids[name]}/scheduled-changes/{change_id}")
