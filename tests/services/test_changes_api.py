"""The change, schedule and cap routes over HTTP: shapes, errors as problems, nothing changed on bad input."""

from __future__ import annotations

from datetime import date

import pytest

from tests.services.lifecycle_support import make_account, make_plan, make_service, state


@pytest.fixture
async def world(ctx_factory):  # type: ignore[no-untyped-def]
    async with ctx_factory() as ctx:
        basic = await make_plan(ctx, "Basic", 3000)
        better = await make_plan(ctx, "Better", 6200)
        capped = await make_plan(
            ctx, "Capped", 5000, kind="internet", data_cap_bytes=10**9, cap_action="disable"
        )
        account = await make_account(ctx, "Customer")
        service = await make_service(ctx, account, basic.id, start_date=date(2026, 1, 1))
        capped_service = await make_service(ctx, account, capped.id, start_date=date(2026, 1, 1))
        return {"basic": basic.id, "better": better.id, "service": service, "capped": capped_service}


async def test_change_plan_answers_the_service_and_the_plan_change(client, world) -> None:  # type: ignore[no-untyped-def]
    sid = world["service"]
    r = await client.post(
        f"/api/v1/services/{sid}/change-plan", json={"plan_id": world["better"], "unit_price_amount": 5000}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["service"]["plan_id"] == world["better"] and body["service"]["unit_price_amount"] == 5000
    change = body["plan_change"]
    # 17 of 31 days: 3000 → 1645.16, 5000 → 2741.94.
    assert (change["credit_amount"], change["charge_amount"]) == (1645, 2742)
    assert change["period_start"] == "2026-01-01" and change["period_end"] == "2026-02-01"


async def test_change_plan_names_the_field(client, world) -> None:  # type: ignore[no-untyped-def]
    r = await client.post(f"/api/v1/services/{world['service']}/change-plan", json={"plan_id": 987654})
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["field"] == "plan_id"
    r = await client.post("/api/v1/services/987654/change-plan", json={"plan_id": world["better"]})
    assert r.status_code == 404


async def test_scheduled_changes_list_create_cancel(client, world) -> None:  # type: ignore[no-untyped-def]
    base = f"/api/v1/services/{world['service']}/scheduled-changes"
    r = await client.post(base, json={"effective_date": "2026-02-01", "plan_id": world["better"]})
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["state"] == "pending" and first["sets_unit_price"] is False
    r = await client.post(base, json={"effective_date": "2026-03-01", "unit_price_amount": None})
    assert r.status_code == 201 and r.json()["sets_unit_price"] is True
    for bad, field in (
        ({"effective_date": "2026-01-14", "quantity": 2}, "effective_date"),
        ({"effective_date": "2026-02-01"}, "plan_id"),
        ({"effective_date": "2026-02-01", "status": "pending"}, "status"),
        ({"effective_date": "2026-02-01", "quantity": 0}, "quantity"),
    ):
        r = await client.post(base, json=bad)
        assert r.status_code == 422, (bad, r.text)
        assert field in [e["field"] for e in r.json()["errors"]], r.text
    r = await client.get(base, params={"limit": 1})
    assert [c["id"] for c in r.json()["items"]] == [first["id"]] and r.json()["next_cursor"]
    r = await client.get(base, params={"cursor": r.json()["next_cursor"]})
    assert len(r.json()["items"]) == 1 and r.json()["next_cursor"] is None
    r = await client.delete(f"{base}/{first['id']}")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    r = await client.delete(f"{base}/{first['id']}")
    assert r.status_code == 409
    r = await client.delete(f"{base}/987654")
    assert r.status_code == 404


async def test_cap_reached_and_top_up(client, ctx_factory, world) -> None:  # type: ignore[no-untyped-def]
    sid = world["capped"]
    r = await client.post(f"/api/v1/services/{sid}/cap-reached")
    assert r.status_code == 200, r.text
    assert r.json()["outcome"] == "disabled"
    assert r.json()["service"]["status"] == "disabled" and r.json()["service"]["cap_resets_at"].startswith(
        "2026-02-01T00:00:00"
    )
    r = await client.post(f"/api/v1/services/{sid}/top-ups", json={"bytes": 1000, "note": "extra"})
    assert r.status_code == 201, r.text
    assert (r.json()["bytes"], r.json()["note"]) == (1000, "extra")
    r = await client.get(f"/api/v1/services/{sid}")
    assert (r.json()["status"], r.json()["status_reason"]) == ("active", "top_up")
    r = await client.post(f"/api/v1/services/{sid}/top-ups", json={"bytes": 0})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "bytes", r.text
    r = await client.post(f"/api/v1/services/{world['service']}/top-ups", json={"bytes": 1})
    assert r.status_code == 409
    r = await client.post(f"/api/v1/services/{world['service']}/cap-reached")
    assert r.status_code == 409
    async with ctx_factory() as ctx:
        assert await state(ctx, world["service"]) == ("active", "manual")
