"""The provider's settings: what accounts inherit by default, and usage retention."""

from __future__ import annotations

import httpx

API = "/api/v1/provider"


async def test_owner_reads_and_changes_the_settings(client: httpx.AsyncClient) -> None:
    before = (await client.get(API)).json()
    assert before["usage_retention_days"] == 400
    assert before["default_timezone"] == "UTC"

    r = await client.patch(API, json={"usage_retention_days": 90, "default_timezone": "Europe/Berlin"})
    assert r.status_code == 200, r.text
    assert r.json()["usage_retention_days"] == 90
    assert r.json()["default_timezone"] == "Europe/Berlin"
    assert (await client.get(API)).json() == r.json()

    account = (await client.post("/api/v1/accounts", json={"name": "Inherits"})).json()
    effective = (await client.get(f"/api/v1/accounts/{account['id']}/effective")).json()
    assert effective["timezone"]["value"] == "Europe/Berlin"


async def test_bad_settings_name_the_field_and_change_nothing(client: httpx.AsyncClient) -> None:
    before = (await client.get(API)).json()
    for body, field in [
        ({"default_timezone": "Mars/Olympus"}, "default_timezone"),
        ({"default_currency": "euro"}, "default_currency"),
        ({"usage_retention_days": 0}, "usage_retention_days"),
        ({"name": None}, "name"),
        ({"colour": "red"}, "colour"),
    ]:
        r = await client.patch(API, json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert field in r.text, (field, r.text)
    assert (await client.get(API)).json() == before


async def test_max_depth_cannot_drop_below_the_deepest_account(client: httpx.AsyncClient) -> None:
    top = (await client.post("/api/v1/accounts", json={"name": "Top"})).json()
    await client.post("/api/v1/accounts", json={"name": "Below", "parent_id": top["id"]})
    r = await client.patch(API, json={"max_account_depth": 0})
    assert r.status_code == 409, r.text
    assert "depth 1" in r.json()["detail"]
    assert (await client.get(API)).json()["max_account_depth"] is None
    r = await client.patch(API, json={"max_account_depth": 1})
    assert r.status_code == 200, r.text
    assert r.json()["max_account_depth"] == 1
