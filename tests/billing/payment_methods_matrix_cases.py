"""The payment-method routes' requests for the authorization matrix (tests/authz/test_matrix.py).

A method is read like the account it belongs to and written with ``billing.manage`` there
(account admin and billing roles; staff owner, admin and billing). The method acted on is a
fresh one made on the target account for every cell, so deleting it never changes the world.
"""

from __future__ import annotations

import itertools
from typing import Any

from boughs.billing.models import PaymentMethod
from tests.authz.matrix_world import ACCOUNTS, World

API = "/api/v1"
MISSING = 987_654_321

_serial = itertools.count(1)


def _m() -> Any:
    from tests.authz import test_matrix

    return test_matrix


def new_method(world: World) -> dict[str, Any]:
    return {
        "kind": "card",
        "label": f"Matrix card {next(_serial)}",
        "last_four": "4242",
        "token_reference": "tok_matrix",
        "shared_with_children": True,
    }


async def _method_on(world: World, account_id: int) -> int:
    name = {v: k for k, v in world.ids.items()}[account_id]
    provider_id = world.tenants[ACCOUNTS[name].provider].provider_id
    async with world.db.transaction() as session:
        now = world.clock.now()
        method = PaymentMethod(
            provider_id=provider_id, account_id=account_id, kind="manual", label="Matrix",
            is_default=False, shared_with_children=False, created_at=now, updated_at=now,
        )  # fmt: skip
        session.add(method)
        await session.flush()
        return method.id


def on_methods(*, create: bool = False) -> Any:
    """The target's payment-method list; with ``create``, a new card for it."""

    async def fill(world: World, actor: str, account_id: int | None) -> Any:
        body = new_method(world) if create else None
        return _m().Request(f"{API}/accounts/{account_id or MISSING}/payment-methods", body)

    return fill


def on_method(body: Any = None) -> Any:
    """A fresh method of the target account (missing ids for "missing")."""

    async def fill(world: World, actor: str, account_id: int | None) -> Any:
        if account_id is None:
            return _m().Request(f"{API}/accounts/{MISSING}/payment-methods/{MISSING}", body)
        method_id = await _method_on(world, account_id)
        return _m().Request(f"{API}/accounts/{account_id}/payment-methods/{method_id}", body)

    return fill
