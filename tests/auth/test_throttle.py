"""Sign-in throttling per email and per client address, counted in the database."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from boughs.auth import service as auth_service
from boughs.auth import throttle
from boughs.kit.clock import FrozenClock
from tests.auth.conftest import PASSWORD, MakeUser, stable

TOKENS = "/api/v1/auth/tokens"
LOGIN = "/api/v1/auth/login"


def attempt(email: str, password: str) -> dict[str, str]:
    return {"email": email, "password": password, "name": "t"}


async def test_email_is_paused_after_five_failures_then_lifts(
    anon: httpx.AsyncClient, make_user: MakeUser, clock: FrozenClock
) -> None:
    await make_user("ana@example.test")
    for _ in range(throttle.MAX_PER_EMAIL):
        assert (await anon.post(TOKENS, json=attempt("ana@example.test", "Wrong-pass-1"))).status_code == 401
    # Even the right password is refused now, and the refusal says when to retry.
    r = await anon.post(TOKENS, json=attempt("ana@example.test", PASSWORD))
    assert r.status_code == 429
    assert r.headers["content-type"].startswith("application/problem+json")
    assert int(r.headers["retry-after"]) == 15 * 60
    assert r.json()["retry_after"] == 15 * 60
    # The login endpoint counts the same failures.
    assert (
        await anon.post(LOGIN, json={"email": "ana@example.test", "password": PASSWORD})
    ).status_code == 429

    clock.advance(timedelta(minutes=10))
    r = await anon.post(TOKENS, json=attempt("ana@example.test", PASSWORD))
    assert r.status_code == 429 and int(r.headers["retry-after"]) == 5 * 60

    clock.advance(timedelta(minutes=5))
    assert (await anon.post(TOKENS, json=attempt("ana@example.test", PASSWORD))).status_code == 201


async def test_success_forgives_earlier_failures(anon: httpx.AsyncClient, make_user: MakeUser) -> None:
    await make_user("ana@example.test")
    for _ in range(throttle.MAX_PER_EMAIL - 1):
        await anon.post(TOKENS, json=attempt("ana@example.test", "Wrong-pass-1"))
    assert (await anon.post(TOKENS, json=attempt("ana@example.test", PASSWORD))).status_code == 201
    for _ in range(throttle.MAX_PER_EMAIL - 1):
        assert (await anon.post(TOKENS, json=attempt("ana@example.test", "Wrong-pass-1"))).status_code == 401
    assert (await anon.post(TOKENS, json=attempt("ana@example.test", PASSWORD))).status_code == 201


async def test_unknown_email_is_throttled_exactly_like_a_known_one(
    anon: httpx.AsyncClient, make_user: MakeUser
) -> None:
    await make_user("ana@example.test")
    known, unknown = [], []
    for _ in range(throttle.MAX_PER_EMAIL + 1):
        known.append(await anon.post(TOKENS, json=attempt("ana@example.test", "Wrong-pass-1")))
        unknown.append(
            await anon.post(LOGIN, json={"email": "ghost@example.test", "password": "Wrong-pass-1"})
        )
    assert [r.status_code for r in known] == [r.status_code for r in unknown] == [401] * 5 + [429]
    assert stable(known[0].json()) == stable(unknown[0].json())
    assert stable(known[-1].json()) == stable(unknown[-1].json())


async def test_unknown_email_spends_a_password_check(
    anon: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real = auth_service.dummy_verify

    def spy(password: str) -> bool:
        calls.append(password)
        return real(password)

    monkeypatch.setattr(auth_service, "dummy_verify", spy)
    r = await anon.post(TOKENS, json=attempt("ghost@example.test", "Wrong-pass-1"))
    assert r.status_code == 401
    assert calls == ["Wrong-pass-1"]


async def test_address_is_paused_after_twenty_failures(
    anon: httpx.AsyncClient, make_user: MakeUser, clock: FrozenClock
) -> None:
    await make_user("ana@example.test")
    for i in range(throttle.MAX_PER_ADDRESS):
        r = await anon.post(TOKENS, json=attempt(f"guess{i % 10}@example.test", "Wrong-pass-1"))
        assert r.status_code == 401
    # A fresh email from the same address is refused too.
    r = await anon.post(TOKENS, json=attempt("ana@example.test", PASSWORD))
    assert r.status_code == 429
    clock.advance(throttle.WINDOW)
    assert (await anon.post(TOKENS, json=attempt("ana@example.test", PASSWORD))).status_code == 201
