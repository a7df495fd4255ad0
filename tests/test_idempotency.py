from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import func, select

from boughs.accounts.models import Account
from boughs.db import Database
from boughs.kit.clock import FrozenClock


async def _count(db: Database) -> int:
    async with db.transaction(write=False) as session:
        return int(await session.scalar(select(func.count()).select_from(Account)) or 0)


async def test_retried_create_is_done_once(client: httpx.AsyncClient, db: Database) -> None:
    headers = {"Idempotency-Key": "create-landlord-1"}
    first = await client.post("/api/v1/accounts", json={"name": "Landlord"}, headers=headers)
    again = await client.post("/api/v1/accounts", json={"name": "Landlord"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert await _count(db) == 1


async def test_same_key_for_another_request_is_refused(client: httpx.AsyncClient, db: Database) -> None:
    headers = {"Idempotency-Key": "k-1"}
    assert (await client.post("/api/v1/accounts", json={"name": "A"}, headers=headers)).status_code == 201
    clash = await client.post("/api/v1/accounts", json={"name": "B"}, headers=headers)
    assert clash.status_code == 409
    assert clash.headers["content-type"] == "application/problem+json"
    assert clash.json()["errors"][0]["field"] == "Idempotency-Key"
    assert await _count(db) == 1


async def test_failed_request_can_be_retried_with_its_key(client: httpx.AsyncClient, db: Database) -> None:
    headers = {"Idempotency-Key": "k-2"}
    bad = await client.post("/api/v1/accounts", json={"name": "A", "parent_id": 999}, headers=headers)
    assert bad.status_code == 422
    retry = await client.post("/api/v1/accounts", json={"name": "A", "parent_id": 999}, headers=headers)
    assert retry.status_code == 422 and "idempotent-replayed" not in retry.headers
    assert await _count(db) == 0


async def test_keys_expire_after_the_retry_window(
    client: httpx.AsyncClient, db: Database, clock: FrozenClock
) -> None:
    headers = {"Idempotency-Key": "k-3"}
    assert (await client.post("/api/v1/accounts", json={"name": "A"}, headers=headers)).status_code == 201
    clock.advance(timedelta(hours=25))
    later = await client.post("/api/v1/accounts", json={"name": "A"}, headers=headers)
    assert later.status_code == 201 and "idempotent-replayed" not in later.headers
    assert await _count(db) == 2
