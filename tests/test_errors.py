from __future__ import annotations

import sqlite3

import httpx
import pytest
from sqlalchemy.engine import make_url

from boughs import sqlite_inline


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


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_write_sqlite_is_too_busy_to_take_is_a_503_that_changes_nothing(
    client: httpx.AsyncClient, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_inline, "BUSY_TIMEOUT_MS", 100)
    # Another process's writer, as SQLite sees it: its own connection holding the lock.
    holder = sqlite3.connect(str(make_url(database_url).database), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        r = await client.post("/api/v1/accounts", json={"name": "Written while busy"})
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["retry-after"] == "1"
    assert "busy" in r.json()["detail"]
    assert r.json()["fix"].startswith("retry")
    # Once the other writer is done, the same request goes through, and only once.
    assert (await client.post("/api/v1/accounts", json={"name": "Written while busy"})).status_code == 201
    listed = (await client.get("/api/v1/accounts", params={"q": "Written while busy"})).json()["items"]
    assert [a["name"] for a in listed] == ["Written while busy"]
