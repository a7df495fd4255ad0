"""The services' requests and checks for the authorization matrix (tests/authz/test_matrix.py).

The target of a cell is an account; the service acted on is the one the matrix world made
on it (``world.service_ids``). The matrix module imports this one, so its helpers are read
at call time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from tests.authz.matrix_world import ACTORS, ActorSpec, World

API = "/api/v1"
MISSING = 987_654_321


def _m() -> Any:
    from tests.authz import test_matrix

    return test_matrix


def _name_of(world: World, account_id: int) -> str:
    return {v: k for k, v in world.ids.items()}[account_id]


def _service_id(world: World, account_id: int | None) -> int:
    return world.service_ids[_name_of(world, account_id)] if account_id else MISSING


def on_service(suffix: str = "", body: Any = None) -> Any:
    """The target account's service (a missing id for "missing")."""

    async def fill(world: World, actor: str, account_id: int | None) -> Any:
        return _m().Request(f"{API}/services/{_service_id(world, account_id)}{suffix}", body)

    return fill


async def on_discount(world: World, actor: str, account_id: int | None) -> Any:
    """A discount of the target account's service."""
    if account_id is None:
        return _m().Request(f"{API}/services/{MISSING}/discounts/{MISSING}")
    discount_id = await world.discount_on(_name_of(world, account_id))
    return _m().Request(f"{API}/services/{_service_id(world, account_id)}/discounts/{discount_id}")


async def new_service(world: World, actor: str, account_id: int | None) -> Any:
    """A service on the public plan of the actor's own provider."""
    body = {"plan_id": world.plan_ids[ACTORS[actor].provider], "description": "matrix"}
    return _m().Request(f"{API}/accounts/{account_id or MISSING}/services", body)


def lists_services(expected: Callable[[str | None], set[str]]) -> Any:
    """The answer lists exactly the services of ``expected(target)`` within the actor's scope."""

    def check(world: World, actor: ActorSpec, target: str | None, response: httpx.Response) -> str | None:
        by_service = {v: k for k, v in world.service_ids.items()}
        seen = {item["id"] for item in response.json()["items"]}
        want = {world.service_ids[name] for name in expected(target) & _m().scope_names(actor)}
        # Staff also see services of earlier builds of the world; members see only their own.
        if seen & set(by_service) != want or (not actor.staff_role and seen - set(by_service)):
            return (
                f"listed services of {sorted(by_service.get(i, str(i)) for i in seen)}, "
                f"expected {sorted(by_service[i] for i in want)}"
            )
        return None

    return check


def only_target(target: str | None) -> set[str]:
    return {target} if target else set()
