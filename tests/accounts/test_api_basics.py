from __future__ import annotations

import httpx


async def test_create_and_read_account(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/v1/accounts", json={"name": "Landlord"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["path"] == f"/{body['id']}/"
    assert body["depth"] == 0
    child = await client.post("/api/v1/accounts", json={"name": "Unit 1", "parent_id": body["id"]})
    assert child.status_code == 201, child.text
    assert child.json()["path"] == f"/{body['id']}/{child.json()['id']}/"
    got = await client.get(f"/api/v1/accounts/{child.json()['id']}")
    assert got.json()["parent_id"] == body["id"]
