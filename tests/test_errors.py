from __future__ import annotations

import httpx


async def test_invalid_json_names_the_body(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/api/v1/accounts", content=b'{"name": ', headers={"content-type": "application/json"}
    )
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"][0]["field"] == "body"
    assert "JSON" in r.json()["errors"][0]["fix"]


async def test_validator_messages_carry_their_own_fix(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/v1/accounts", json={"name": "A", "timezone": "Mars/Olympus"})
    assert r.status_code == 422
    (problem,) = r.json()["errors"]
    assert problem["field"] == "timezone"
    assert problem["message"] == "is not an IANA timezone name"
    assert problem["fix"].startswith("use one like")


async def test_unknown_route_is_a_problem_too(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/no-such-thing")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["x-request-id"]


async def test_caller_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/accounts", headers={"X-Request-ID": "trace-123"})
    assert r.headers["x-request-id"] == "trace-123"
