"""Plans: fields, the rules that tie them together, retiring and deleting."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from boughs.audit.models import AuditEvent
from boughs.catalog.models import Plan
from tests.catalog.conftest import PLANS, World, field_error, names

INTERNET = {
    "name": "Fibre 100",
    "kind": "internet",
    "price_amount": 3999,
    "pay_period": "month",
    "download_rate": 100_000,
    "upload_rate": 20_000,
    "data_cap_bytes": 500 * 10**9,
    "cap_action": "throttle",
    "throttle_download_rate": 1_000,
    "throttle_upload_rate": 512,
    "device_allowance": 2,
    "usage_charges": [
        {"meter": "data.gb", "model": "per_unit", "unit_price": "0.05"},
        {
            "meter": "voice_min",
            "model": "graduated",
            "tiers": [
                {"up_to": 100, "unit_price": "0", "flat_amount": 0},
                {"up_to": 1000, "unit_price": "0.02"},
                {"up_to": None, "unit_price": "0.01"},
            ],
        },
        {"meter": "sms", "model": "package", "package_size": 100, "package_amount": 500},
    ],
}


async def _count(world: World) -> int:
    async with world.db.transaction() as session:
        return int((await session.execute(select(func.count()).select_from(Plan))).scalar_one())


async def test_create_read_list_an_internet_plan(world: World) -> None:
    r = await world.staff.post(PLANS, json=INTERNET)
    assert r.status_code == 201, r.text
    plan = r.json()
    assert r.headers["location"] == f"/api/v1/plans/{plan['id']}"
    assert plan["currency"] == "USD"  # the provider's default
    assert plan["retired"] is False and plan["public"] is False and plan["pooled_cap"] is False
    pooled = await world.staff.post(PLANS, json={**INTERNET, "name": "Pooled", "pooled_cap": True})
    assert pooled.status_code == 201 and pooled.json()["pooled_cap"] is True, pooled.text
    await world.staff.delete(f"{PLANS}/{pooled.json()['id']}")
    assert plan["usage_charges"][0] == {
        "meter": "data.gb", "model": "per_unit", "unit_price": "0.05",
        "tiers": [], "package_size": None, "package_amount": None,
    }  # fmt: skip
    assert plan["usage_charges"][1]["tiers"][2] == {"up_to": None, "unit_price": "0.01", "flat_amount": None}
    got = await world.staff.get(f"{PLANS}/{plan['id']}")
    assert got.json() == plan
    voice = await world.plan("Voice", kind="voice", currency="EUR", pay_period="quarter")
    assert voice["currency"] == "EUR"
    assert names(await world.staff.get(PLANS)) == {"Fibre 100", "Voice"}
    assert names(await world.staff.get(PLANS, params={"kind": "voice"})) == {"Voice"}


async def test_plans_list_pages_by_cursor(world: World) -> None:
    for i in range(5):
        await world.plan(f"P{i}")
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await world.staff.get(PLANS, params=params)).json()
        seen += [p["name"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"P{i}" for i in range(5)]
    field_error(await world.staff.get(PLANS, params={"cursor": "nonsense!"}), 422, "cursor")


def one(**charge: Any) -> dict[str, Any]:
    return {"usage_charges": [{"meter": "d", **charge}]}


def tiers(*up_to: int | None) -> list[dict[str, Any]]:
    return [{"up_to": u, "unit_price": "1"} for u in up_to]


CAP = {"data_cap_bytes": 10**9}
UC = "usage_charges.0"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"kind": "voice", "download_rate": 1000}, "download_rate"),
        ({"kind": "sim", "data_cap_bytes": 10, "cap_action": "disable"}, "data_cap_bytes"),
        ({"kind": "custom", "device_allowance": 2}, "device_allowance"),
        (CAP, "cap_action"),
        ({"cap_action": "disable"}, "cap_action"),
        ({"pooled_cap": True}, "pooled_cap"),
        ({"kind": "voice", "pooled_cap": True}, "pooled_cap"),
        ({**CAP, "cap_action": "throttle"}, "throttle_download_rate"),
        ({**CAP, "cap_action": "throttle", "throttle_download_rate": 5}, "throttle_upload_rate"),
        ({**CAP, "cap_action": "disable", "throttle_upload_rate": 5}, "throttle_upload_rate"),
        ({"device_allowance": 17}, "device_allowance"),
        ({"device_allowance": 0}, "device_allowance"),
        ({"currency": "usd"}, "currency"),
        ({"currency": "EURO"}, "currency"),
        ({"price_amount": -1}, "price_amount"),
        ({"pay_period": "fortnight"}, "pay_period"),
        ({"kind": "tv"}, "kind"),
        ({"name": ""}, "name"),
        ({"download_rate": 0}, "download_rate"),
        ({"surprise": 1}, "surprise"),
        ({"usage_charges": [{"meter": "Data GB", "model": "per_unit", "unit_price": "1"}]}, f"{UC}.meter"),
        (one(model="per_unit"), f"{UC}.unit_price"),
        (one(model="per_unit", unit_price="-1"), f"{UC}.unit_price"),
        (one(model="per_unit", unit_price="x"), f"{UC}.unit_price"),
        (one(model="graduated"), f"{UC}.tiers"),
        (one(model="volume", unit_price="1", tiers=tiers(None)), f"{UC}.unit_price"),
        (one(model="volume", tiers=tiers(10)), f"{UC}.tiers"),
        (one(model="volume", tiers=tiers(None, None)), f"{UC}.tiers"),
        (one(model="graduated", tiers=tiers(10, 10, None)), f"{UC}.tiers"),
        (one(model="graduated", tiers=tiers(20, 10, None)), f"{UC}.tiers"),
        (one(model="graduated", tiers=[{"up_to": None, "unit_price": "1", "flat_amount": -5}]),
         f"{UC}.tiers.0.flat_amount"),
        (one(model="package", package_size=10), f"{UC}.package_amount"),
        (one(model="package", package_size=0, package_amount=1), f"{UC}.package_size"),
        (one(model="per_unit", unit_price="1", package_size=3), f"{UC}.package_size"),
        ({"usage_charges": [{"meter": "d", "model": "per_unit", "unit_price": str(n)} for n in (1, 2)]},
         "usage_charges.1.meter"),
        (one(model="tiered"), f"{UC}.model"),
    ],
)  # fmt: skip
async def test_bad_plans_are_refused_naming_the_field(
    world: World, change: dict[str, Any], field: str
) -> None:
    body = {"name": "Bad", "kind": "internet", "price_amount": 100, **change}
    field_error(await world.staff.post(PLANS, json=body), 422, field)
    assert await _count(world) == 0


async def test_patch_is_checked_on_the_plan_it_would_make(world: World) -> None:
    plan = await world.plan("Capped", data_cap_bytes=10**9, cap_action="disable", download_rate=10_000)
    url = f"{PLANS}/{plan['id']}"
    # The cap stays, so its action cannot go; the rates stay, so the kind cannot change.
    field_error(await world.staff.patch(url, json={"cap_action": None}), 422, "cap_action")
    field_error(await world.staff.patch(url, json={"kind": "voice"}), 422, "download_rate")
    field_error(await world.staff.patch(url, json={"name": None}), 422, "name")
    field_error(await world.staff.patch(url, json={"retired": None}), 422, "retired")
    assert (await world.staff.get(url)).json() == plan
    r = await world.staff.patch(url, json={"data_cap_bytes": None, "cap_action": None, "price_amount": 100})
    assert r.status_code == 200, r.text
    assert r.json()["data_cap_bytes"] is None and r.json()["price_amount"] == 100
    r = await world.staff.patch(url, json={"kind": "voice", "download_rate": None})
    assert r.status_code == 200, r.text


async def test_names_are_unique_within_the_provider(world: World) -> None:
    await world.plan("Same")
    other = await world.plan("Other")
    field_error(
        await world.staff.post(PLANS, json={"name": "Same", "kind": "voice", "price_amount": 1}), 409, "name"
    )
    field_error(await world.staff.patch(f"{PLANS}/{other['id']}", json={"name": "Same"}), 409, "name")


async def test_retired_plans_leave_the_list_and_come_back(world: World) -> None:
    plan = await world.plan("Old")
    await world.plan("New")
    r = await world.staff.patch(f"{PLANS}/{plan['id']}", json={"retired": True})
    assert r.status_code == 200 and r.json()["retired"] is True
    assert r.json()["retired_at"].startswith("2026-01-15T12:00")
    assert names(await world.staff.get(PLANS)) == {"New"}
    assert names(await world.staff.get(PLANS, params={"include_retired": True})) == {"Old", "New"}
    r = await world.staff.patch(f"{PLANS}/{plan['id']}", json={"retired": False})
    assert r.json()["retired"] is False and r.json()["retired_at"] is None


async def test_delete_is_refused_while_services_use_the_plan(world: World) -> None:
    plan = await world.plan("Used")
    await world.service_on("A", plan["id"])
    r = await world.staff.delete(f"{PLANS}/{plan['id']}")
    assert r.status_code == 409, r.text
    assert "retired" in r.json()["fix"]
    assert (await world.staff.get(f"{PLANS}/{plan['id']}")).status_code == 200
    spare = await world.plan("Spare")
    await world.offer(spare["id"], "A")
    assert (await world.staff.delete(f"{PLANS}/{spare['id']}")).status_code == 204
    assert (await world.staff.get(f"{PLANS}/{spare['id']}")).status_code == 404


async def test_every_write_is_audited(world: World) -> None:
    plan = await world.plan("Audited")
    url = f"{PLANS}/{plan['id']}"
    await world.staff.patch(url, json={"price_amount": 1})
    await world.staff.patch(url, json={"retired": True})
    await world.staff.patch(url, json={"retired": False})
    await world.offer(plan["id"], "A")
    await world.staff.delete(f"{url}/offers/{world.ids['A']}")
    await world.staff.delete(url)
    async with world.db.transaction() as session:
        events = (
            await session.execute(
                select(AuditEvent).where(AuditEvent.entity == "plan").order_by(AuditEvent.id)
            )
        ).scalars().all()  # fmt: skip
    assert [e.action for e in events] == [
        "created", "updated", "retired", "updated", "offered", "offer_withdrawn", "deleted",
    ]  # fmt: skip
    assert events[1].before == {"price_amount": 2500} and events[1].after == {"price_amount": 1}
    assert events[4].account_id == world.ids["A"]


async def test_only_provider_staff_write_plans(world: World) -> None:
    plan = await world.plan("Public", public=True)
    body = {"name": "Mine", "kind": "voice", "price_amount": 1}
    for who in ("admin_root", "admin_a", "viewer_root"):
        assert (await world[who].post(PLANS, json=body)).status_code == 403
        assert (await world[who].patch(f"{PLANS}/{plan['id']}", json={"price_amount": 1})).status_code == 403
        assert (await world[who].delete(f"{PLANS}/{plan['id']}")).status_code == 403


async def test_members_read_the_plans_available_in_their_scope(world: World) -> None:
    await world.plan("Public", public=True)
    for_root = await world.plan("ForRoot")
    for_a1 = await world.plan("ForA1")
    for_b = await world.plan("ForB")
    hidden = await world.plan("Hidden")
    for plan, account in ((for_root, "Root"), (for_a1, "A1"), (for_b, "B")):
        assert (await world.offer(plan["id"], account)).status_code == 201
    assert names(await world["admin_root"].get(PLANS)) == {"Public", "ForRoot", "ForA1", "ForB"}
    # Offered above A (inherited) and below it (in its scope); not B's, which is sideways.
    assert names(await world["admin_a"].get(PLANS)) == {"Public", "ForRoot", "ForA1"}
    assert names(await world["nobody"].get(PLANS)) == set()
    assert (await world["admin_a"].get(f"{PLANS}/{for_b['id']}")).status_code == 404
    missing = await world["admin_a"].get(f"{PLANS}/987654321")
    hidden_r = await world["admin_a"].get(f"{PLANS}/{hidden['id']}")
    assert hidden_r.status_code == 404
    assert hidden_r.json()["detail"].replace(str(hidden["id"]), "N") == missing.json()["detail"].replace(
        "987654321", "N"
    )
    # What one account may take: its own chain only.
    r = await world["admin_a"].get(PLANS, params={"account_id": world.ids["A"]})
    assert names(r) == {"Public", "ForRoot"}
    r = await world.staff.get(PLANS, params={"account_id": world.ids["A1"]})
    assert names(r) == {"Public", "ForRoot", "ForA1"}
    r = await world["admin_a"].get(PLANS, params={"account_id": world.ids["B"]})
    assert r.status_code == 404


async def test_problem_json_for_unknown_and_out_of_range_ids(world: World) -> None:
    for url in (f"{PLANS}/987654321", f"{PLANS}/{2**63}", f"{PLANS}/0"):
        r = await world.staff.get(url)
        assert r.status_code in (404, 422), r.text
        assert r.headers["content-type"].startswith("application/problem+json")


async def test_decimal_numbers_are_kept_exactly(world: World) -> None:
    body = {**INTERNET, "name": "Exact", "usage_charges": [
        {"meter": "m", "model": "per_unit", "unit_price": "0.0000012345"}]}  # fmt: skip
    r = await world.staff.post(PLANS, json=body)
    assert r.status_code == 201, r.text
    assert r.json()["usage_charges"][0]["unit_price"] == "0.0000012345"
