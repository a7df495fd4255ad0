"""Services follow their account's block, and pending services activate with another (seed 004)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from boughs.accounts import service as accounts
from boughs.accounts.schemas import RenewRequest
from boughs.kit.errors import Conflict
from boughs.services import lifecycle
from boughs.services import service as services
from boughs.services.models import ServiceStatus
from tests.services.lifecycle_support import history, make_account, make_plan, make_service, state

ACTIVE, STOPPED, DISABLED = "active", "stopped", "disabled"


@pytest.fixture
async def tree(ctx_factory):  # type: ignore[no-untyped-def]
    """Root → Parent → Child → Grandchild, each with one active service; a plan for all."""
    async with ctx_factory() as ctx:
        plan = await make_plan(ctx, "Basic")
        ids: dict[str, int] = {}
        parent_id = None
        for name in ("Root", "Parent", "Child", "Grandchild"):
            ids[name] = await make_account(ctx, name, parent_id)
            parent_id = ids[name]
        svc = {name: await make_service(ctx, account_id, plan.id) for name, account_id in ids.items()}
        return {"plan": plan.id, "accounts": ids, "services": svc}


async def states(ctx_factory, tree) -> dict[str, tuple[str, str]]:  # type: ignore[no-untyped-def]
    async with ctx_factory() as ctx:
        return {name: await state(ctx, sid) for name, sid in tree["services"].items()}


async def test_suspending_a_parent_stops_the_subtree_and_unsuspending_brings_back_only_those(
    ctx_factory, tree
) -> None:  # type: ignore[no-untyped-def]
    a, s = tree["accounts"], tree["services"]
    async with ctx_factory() as ctx:
        # An operator stops the grandchild's service by hand before the block.
        await services.change_status(ctx, s["Grandchild"], ServiceStatus.stopped)
        await accounts.suspend(ctx, a["Parent"])
    got = await states(ctx_factory, tree)
    assert got["Root"] == (ACTIVE, "manual")
    assert got["Parent"] == got["Child"] == (STOPPED, "account")
    assert got["Grandchild"] == (STOPPED, "manual")

    async with ctx_factory() as ctx:
        await accounts.unsuspend(ctx, a["Parent"])
    got = await states(ctx_factory, tree)
    assert got["Parent"] == got["Child"] == (ACTIVE, "account")
    assert got["Grandchild"] == (STOPPED, "manual")  # the operator's stop stays
    async with ctx_factory() as ctx:
        assert await history(ctx, s["Child"]) == [
            (None, ACTIVE, "manual"),
            (ACTIVE, STOPPED, "account"),
            (STOPPED, ACTIVE, "account"),
        ]


async def test_a_block_below_outlasts_the_ancestors(ctx_factory, tree) -> None:  # type: ignore[no-untyped-def]
    a = tree["accounts"]
    async with ctx_factory() as ctx:
        await accounts.suspend(ctx, a["Child"])
        await accounts.suspend(ctx, a["Root"])
        await accounts.unsuspend(ctx, a["Root"])
    got = await states(ctx_factory, tree)
    assert got["Root"] == got["Parent"] == (ACTIVE, "account")
    assert got["Child"] == got["Grandchild"] == (STOPPED, "account")
    async with ctx_factory() as ctx:
        await accounts.cancel(ctx, a["Parent"])
        await accounts.unsuspend(ctx, a["Child"])
    got = await states(ctx_factory, tree)
    # A cancelled ancestor keeps blocking.
    assert got["Child"] == got["Grandchild"] == got["Parent"] == (STOPPED, "account")


async def test_expiry_by_the_sweep_and_renewal(ctx_factory, tree, clock) -> None:  # type: ignore[no-untyped-def]
    a = tree["accounts"]
    async with ctx_factory() as ctx:
        # Child's expiry reaches Grandchild (inherited); Parent has none.
        await accounts.renew(
            ctx, a["Child"], RenewRequest(expiry_date=clock.now().date() + timedelta(days=2))
        )
    clock.advance(timedelta(days=3))
    async with ctx_factory() as ctx:
        assert sorted(await accounts.sweep_expired(ctx)) == sorted([a["Child"], a["Grandchild"]])
    got = await states(ctx_factory, tree)
    assert got["Parent"] == (ACTIVE, "manual")
    assert got["Child"] == got["Grandchild"] == (STOPPED, "account")
    async with ctx_factory() as ctx:
        await accounts.renew(ctx, a["Child"], RenewRequest(period="month"))
    got = await states(ctx_factory, tree)
    assert got["Child"] == got["Grandchild"] == (ACTIVE, "account")


async def test_an_expired_parent_does_not_block_a_child_with_its_own_later_expiry(
    ctx_factory, tree, clock
) -> None:  # type: ignore[no-untyped-def]
    a = tree["accounts"]
    today = clock.now().date()
    async with ctx_factory() as ctx:
        await accounts.renew(ctx, a["Parent"], RenewRequest(expiry_date=today + timedelta(days=1)))
        await accounts.renew(ctx, a["Child"], RenewRequest(expiry_date=today + timedelta(days=30)))
    clock.advance(timedelta(days=3))
    async with ctx_factory() as ctx:
        assert await accounts.sweep_expired(ctx) == [a["Parent"]]
    got = await states(ctx_factory, tree)
    assert got["Parent"] == (STOPPED, "account")
    assert got["Child"] == got["Grandchild"] == (ACTIVE, "manual")


async def test_moving_under_a_suspended_parent_and_back(ctx_factory, tree) -> None:  # type: ignore[no-untyped-def]
    a = tree["accounts"]
    async with ctx_factory() as ctx:
        other = await make_account(ctx, "Other")
        await accounts.suspend(ctx, other)
        await accounts.move(ctx, a["Child"], other)
    got = await states(ctx_factory, tree)
    assert got["Parent"] == (ACTIVE, "manual")
    assert got["Child"] == got["Grandchild"] == (STOPPED, "account")
    async with ctx_factory() as ctx:
        await accounts.move(ctx, a["Child"], a["Parent"])
    got = await states(ctx_factory, tree)
    assert got["Child"] == got["Grandchild"] == (ACTIVE, "account")


async def test_manual_active_on_a_blocked_account_lands_as_stopped(ctx_factory, tree) -> None:  # type: ignore[no-untyped-def]
    a, s = tree["accounts"], tree["services"]
    async with ctx_factory() as ctx:
        await services.change_status(ctx, s["Child"], ServiceStatus.disabled)
        await accounts.suspend(ctx, a["Parent"])
        await services.change_status(ctx, s["Child"], ServiceStatus.active)
        assert await state(ctx, s["Child"]) == (STOPPED, "account")
        await accounts.unsuspend(ctx, a["Parent"])
        assert await state(ctx, s["Child"]) == (ACTIVE, "account")


async def test_pending_services_activate_with_the_one_they_wait_on(ctx_factory, tree) -> None:  # type: ignore[no-untyped-def]
    a, plan = tree["accounts"], tree["plan"]
    async with ctx_factory() as ctx:
        first = await make_service(ctx, a["Child"], plan, status="stopped")
        second = await make_service(ctx, a["Child"], plan, status="pending", waits_on_service_id=first)
        third = await make_service(ctx, a["Grandchild"], plan, status="pending", waits_on_service_id=second)
        # Waiting on a service that is already active starts active.
        at_once = await make_service(
            ctx, a["Child"], plan, status="pending", waits_on_service_id=tree["services"]["Child"]
        )
        assert await state(ctx, second) == ("pending", "waiting")
        assert await state(ctx, at_once) == (ACTIVE, "activated_with")
        await accounts.suspend(ctx, a["Grandchild"])
    async with ctx_factory() as ctx:
        await services.change_status(ctx, first, ServiceStatus.active)
        assert await state(ctx, first) == (ACTIVE, "manual")
        assert await state(ctx, second) == (ACTIVE, "activated_with")
        # The chain goes on, respecting the block of the waiter's own account.
        assert await state(ctx, third) == (STOPPED, "account")
        await accounts.unsuspend(ctx, a["Grandchild"])
        assert await state(ctx, third) == (ACTIVE, "account")


async def test_cancelled_accounts_cannot_be_unsuspended_and_stay_blocked(ctx_factory, tree) -> None:  # type: ignore[no-untyped-def]
    a = tree["accounts"]
    async with ctx_factory() as ctx:
        await accounts.cancel(ctx, a["Root"])
    with pytest.raises(Conflict):
        async with ctx_factory() as ctx:
            await accounts.unsuspend(ctx, a["Root"])
    got = await states(ctx_factory, tree)
    assert set(got.values()) == {(STOPPED, "account")}


async def test_reconcile_is_idempotent_and_touches_nothing_unblocked(ctx_factory, tree) -> None:  # type: ignore[no-untyped-def]
    async with ctx_factory() as ctx:
        root_path = (await accounts.get(ctx, tree["accounts"]["Root"])).path
        await lifecycle.reconcile_subtree(ctx, root_path)
        await lifecycle.reconcile_accounts(ctx, list(tree["accounts"].values()))
        for sid in tree["services"].values():
            assert await history(ctx, sid) == [(None, ACTIVE, "manual")]
