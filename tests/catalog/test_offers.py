"""Offers reach the account's subtree; resellers pass on what they were offered."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from boughs.accounts import repository as accounts
from boughs.authz.scope import scope_of
from boughs.catalog import service as catalog
from boughs.catalog.models import Offer
from boughs.kit.errors import InvalidInput
from tests.catalog.conftest import PLANS, World, field_error, names


async def _offers(world: World) -> int:
    async with world.db.transaction() as session:
        return int((await session.execute(select(func.count()).select_from(Offer))).scalar_one())


async def test_an_offer_reaches_the_subtree_and_not_beyond(world: World) -> None:
    plan = await world.plan("Reseller pack")
    r = await world.offer(plan["id"], "A")
    assert r.status_code == 201, r.text
    assert r.json()["account_id"] == world.ids["A"] and r.json()["account_name"] == "A"
    for account, expected in (("A", True), ("A1", True), ("Root", False), ("B", False), ("Other", False)):
        r = await world.staff.get(PLANS, params={"account_id": world.ids[account]})
        assert ("Reseller pack" in names(r)) is expected, account
    listed = (await world.staff.get(f"{PLANS}/{plan['id']}/offers")).json()
    assert [o["account_id"] for o in listed] == [world.ids["A"]]


async def test_offering_twice_is_a_conflict_naming_account_id(world: World) -> None:
    plan = await world.plan("Twice")
    assert (await world.offer(plan["id"], "A")).status_code == 201
    field_error(await world.offer(plan["id"], "A"), 409, "account_id")
    assert await _offers(world) == 1


async def test_offer_bad_input(world: World) -> None:
    plan = await world.plan("P")
    url = f"{PLANS}/{plan['id']}/offers"
    field_error(await world.staff.post(url, json={"account_id": 987654321}), 422, "account_id")
    field_error(await world.staff.post(url, json={}), 422, "account_id")
    field_error(await world.staff.post(url, json={"account_id": "x"}), 422, "account_id")
    assert (
        await world.staff.post(f"{PLANS}/987654321/offers", json={"account_id": world.ids["A"]})
    ).status_code == 404
    await world.staff.patch(f"{PLANS}/{plan['id']}", json={"retired": True})
    r = await world.offer(plan["id"], "A")
    assert r.status_code == 409 and "retired" in r.json()["detail"]
    assert await _offers(world) == 0


async def test_resellers_pass_on_what_their_own_account_has(world: World) -> None:
    given = await world.plan("Given to A")
    private = await world.plan("Private")
    public = await world.plan("Everyone", public=True)
    assert (await world.offer(given["id"], "A")).status_code == 201
    # A's administrator passes A's plan on to A1, below A: allowed.
    r = await world.offer(given["id"], "A1", world["admin_a"])
    assert r.status_code == 201, r.text
    # A plan A was never offered is not visible to A's administrator at all.
    assert (await world.offer(private["id"], "A1", world["admin_a"])).status_code == 404
    # A plan A's members can see but whose reach stops at A cannot be pushed back up or sideways.
    r = await world.offer(given["id"], "A", world["admin_a"])
    assert r.status_code == 403
    r = await world.offer(given["id"], "B", world["admin_a"])
    field_error(r, 422, "account_id")  # B is outside A's scope: like a missing account
    # Public plans are available to every parent.
    assert (await world.offer(public["id"], "A1", world["admin_a"])).status_code == 201
    # Roles without manage_accounts cannot offer.
    assert (await world.offer(given["id"], "A1", world["technical_a"])).status_code == 403
    # Withdrawing follows the same rule.
    url = f"{PLANS}/{given['id']}/offers"
    assert (await world["technical_a"].delete(f"{url}/{world.ids['A1']}")).status_code == 403
    assert (await world["admin_a"].delete(f"{url}/{world.ids['A']}")).status_code == 403
    assert (await world["admin_a"].delete(f"{url}/{world.ids['A1']}")).status_code == 204
    assert (await world["admin_a"].delete(f"{url}/{world.ids['A1']}")).status_code == 404
    assert (await world.staff.delete(f"{url}/{world.ids['A']}")).status_code == 204


async def test_members_list_offers_to_accounts_they_can_see(world: World) -> None:
    plan = await world.plan("Shared", public=True)
    for account in ("A", "A1", "B"):
        assert (await world.offer(plan["id"], account)).status_code == 201
    url = f"{PLANS}/{plan['id']}/offers"
    seen = {o["account_name"] for o in (await world["admin_a"].get(url)).json()}
    assert seen == {"A", "A1"}
    assert {o["account_name"] for o in (await world.staff.get(url)).json()} == {"A", "A1", "B"}


async def test_effective_shows_offers_and_where_they_come_from(world: World) -> None:
    public = await world.plan("Public", public=True)
    inherited = await world.plan("From A")
    own = await world.plan("For A1")
    retired = await world.plan("Retired")
    await world.offer(inherited["id"], "A")
    await world.offer(own["id"], "A1")
    await world.offer(retired["id"], "A1")
    await world.staff.patch(f"{PLANS}/{retired['id']}", json={"retired": True})
    await world.plan("Elsewhere")
    r = await world["admin_a"].get(f"/api/v1/accounts/{world.ids['A1']}/effective")
    assert r.status_code == 200, r.text
    offers = {o["name"]: o for o in r.json()["offers"]}
    assert offers == {
        "Public": {"plan_id": public["id"], "name": "Public", "kind": "internet",
                   "source": "public", "source_account_id": None},
        "From A": {"plan_id": inherited["id"], "name": "From A", "kind": "internet",
                   "source": "inherited", "source_account_id": world.ids["A"]},
        "For A1": {"plan_id": own["id"], "name": "For A1", "kind": "internet",
                   "source": "own", "source_account_id": world.ids["A1"]},
    }  # fmt: skip


async def test_plan_for_account(world: World, ctx_factory) -> None:  # type: ignore[no-untyped-def]
    offered = await world.plan("Offered")
    other = await world.plan("Not offered")
    retired = await world.plan("Retired", public=True)
    await world.offer(offered["id"], "A")
    await world.staff.patch(f"{PLANS}/{retired['id']}", json={"retired": True})
    async with ctx_factory() as ctx:
        a1 = await accounts.get(ctx.session, await scope_of(ctx), world.ids["A1"])
        assert (await catalog.plan_for_account(ctx, a1, offered["id"])).name == "Offered"
        for plan_id in (other["id"], retired["id"], 987654321):
            with pytest.raises(InvalidInput) as caught:
                await catalog.plan_for_account(ctx, a1, plan_id, field="plan")
            assert caught.value.errors[0].field == "plan"
            assert caught.value.errors[0].fix
        with pytest.raises(InvalidInput) as caught:
            await catalog.plan_for_account(ctx, a1, other["id"])
        assert "offers" in caught.value.errors[0].fix
        assert (await catalog.get_plan(ctx, other["id"])).id == other["id"]
