"""Asking about usage: per account (its own or its subtree's, as the tree stood), per service, in the
account's days and months, with each meter's aggregation and precision; and the meters themselves."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from boughs.accounts import service as accounts
from boughs.kit.clock import FrozenClock
from tests.usage.support import (
    event,
    member,
    new_account,
    new_meter,
    new_plan,
    new_service,
    send,
    statuses,
    token_for,
)

API = "/api/v1"
NEW_YORK = "America/New_York"
SETUP = datetime(2026, 2, 1, tzinfo=UTC)  # the accounts exist from here on
NOW = datetime(2026, 11, 10, 12, tzinfo=UTC)  # after both 2026 DST changes, inside the retention window


@dataclass
class Tree:
    """Root (New York) ── Mid ── Leaf (a service, login "leaf");  Other (UTC)."""

    root: int
    mid: int
    leaf: int
    other: int
    service: int


@pytest.fixture
async def tree(ctx_factory: Any, clock: FrozenClock) -> Tree:
    clock.set(SETUP)
    async with ctx_factory() as ctx:
        root = await new_account(ctx, "Root", timezone=NEW_YORK)
        mid = await new_account(ctx, "Mid", root)
        leaf = await new_account(ctx, "Leaf", mid)
        other = await new_account(ctx, "Other")
        service = await new_service(ctx, leaf, await new_plan(ctx), login="leaf")
        await new_meter(ctx, "data")
        await new_meter(ctx, "minutes", unit="minutes", precision=2)
        await new_meter(ctx, "speed", "max", unit="Mbit/s", precision=1)
        await new_meter(ctx, "calls", "count", unit="calls")
        await new_meter(ctx, "devices", "unique_count", unit="devices", unique_property="device")
    clock.set(NOW)
    return Tree(root, mid, leaf, other, service)


async def report(ctx_factory: Any, events: list[dict[str, Any]]) -> None:
    async with ctx_factory() as ctx:
        results = await send(ctx, events)
    assert statuses(results) == ["accepted"] * len(events), results


async def get(client: httpx.AsyncClient, path: str, status: int = 200, /, **params: Any) -> dict[str, Any]:
    answer = await client.get(f"{API}{path}", params=params)
    assert answer.status_code == status, answer.text
    if status >= 400:
        assert answer.headers["content-type"].startswith("application/problem+json")
    return dict(answer.json())


def quantities(body: dict[str, Any]) -> dict[str, str]:
    """Bucket start → quantity, for the buckets that hold something."""
    return {b["start"]: b["quantity"] for b in body["buckets"] if b["events"]}


WHOLE_YEAR = {"from": "2026-01-01T05:00:00Z", "to": "2027-01-01T05:00:00Z", "granularity": "month"}


async def test_an_account_alone_its_subtree_and_a_service(
    client: httpx.AsyncClient, ctx_factory: Any, tree: Tree
) -> None:
    at = datetime(2026, 6, 10, 12, tzinfo=UTC)
    await report(
        ctx_factory,
        [
            event("r", "1", at, account_id=tree.root),
            event("m", "10", at, account_id=tree.mid),
            event("l", "100", at, account_id=tree.leaf),
            event("s", "1000", at, login="leaf"),
            event("o", "10000", at, account_id=tree.other),
        ],
    )
    expected = {
        (tree.root, "self"): "1",
        (tree.root, "subtree"): "1111",
        (tree.mid, "self"): "10",
        (tree.mid, "subtree"): "1110",
        (tree.leaf, "self"): "1100",  # its services' usage is its own
        (tree.leaf, "subtree"): "1100",
        (tree.other, "subtree"): "10000",
    }
    for (account, scope), quantity in expected.items():
        body = await get(client, f"/accounts/{account}/usage", meter="data", scope=scope, **WHOLE_YEAR)
        assert (body["quantity"], body["scope"]) == (quantity, scope), (account, scope, body)
    service = await get(client, f"/services/{tree.service}/usage", meter="data", **WHOLE_YEAR)
    assert (service["quantity"], service["events"], service["scope"]) == ("1000", 1, "service")
    assert service["timezone"] == NEW_YORK  # the service's account's (inherited) timezone
    assert quantities(service) == {"2026-06-01T00:00:00-04:00": "1000"}
    default_scope = await get(client, f"/accounts/{tree.root}/usage", meter="data", **WHOLE_YEAR)
    assert default_scope["scope"] == "self" and default_scope["quantity"] == "1"


async def test_days_are_the_accounts_days_across_daylight_saving_changes(
    client: httpx.AsyncClient, ctx_factory: Any, tree: Tree
) -> None:
    # New York springs forward on 2026-03-08 (a 23-hour day) and falls back on 2026-11-01 (25 hours).
    await report(
        ctx_factory,
        [
            event("a", "1", "2026-03-08T04:30:00Z", account_id=tree.leaf),  # 23:30 on the 7th, EST
            event("b", "2", "2026-03-08T05:30:00Z", account_id=tree.leaf),  # 00:30 on the 8th, EST
            event("c", "4", "2026-03-09T03:30:00Z", account_id=tree.leaf),  # 23:30 on the 8th, EDT
            event("d", "8", "2026-03-09T04:30:00Z", account_id=tree.leaf),  # 00:30 on the 9th, EDT
            event("e", "16", "2026-11-01T04:30:00Z", account_id=tree.leaf),  # 00:30 on Nov 1st, EDT
            event("f", "32", "2026-11-02T04:30:00Z", account_id=tree.leaf),  # 23:30 on Nov 1st, EST
            event("g", "64", "2026-11-02T05:30:00Z", account_id=tree.leaf),  # 00:30 on Nov 2nd, EST
        ],
    )
    path = f"/accounts/{tree.root}/usage"
    spring = await get(
        client, path, meter="data", scope="subtree", granularity="day",
        **{"from": "2026-03-07T05:00:00Z", "to": "2026-03-10T04:00:00Z"},
    )  # fmt: skip
    assert [(b["start"], b["quantity"]) for b in spring["buckets"]] == [
        ("2026-03-07T00:00:00-05:00", "1"),
        ("2026-03-08T00:00:00-05:00", "6"),
        ("2026-03-09T00:00:00-04:00", "8"),
    ]
    assert spring["timezone"] == NEW_YORK and spring["quantity"] == "15"
    autumn = await get(
        client, path, meter="data", scope="subtree", granularity="day",
        **{"from": "2026-11-01T04:00:00Z", "to": "2026-11-03T05:00:00Z"},
    )  # fmt: skip
    assert [(b["start"], b["quantity"]) for b in autumn["buckets"]] == [
        ("2026-11-01T00:00:00-04:00", "48"),
        ("2026-11-02T00:00:00-05:00", "64"),
    ]
    for local_day, hours in ((("2026-03-08T05:00:00Z", "2026-03-09T04:00:00Z"), 23),
                             (("2026-11-01T04:00:00Z", "2026-11-02T05:00:00Z"), 25)):  # fmt: skip
        hourly = await get(
            client, path, meter="data", scope="subtree", granularity="hour",
            **{"from": local_day[0], "to": local_day[1]},
        )  # fmt: skip
        assert len(hourly["buckets"]) == hours
        assert all(b["start"].endswith("Z") or b["start"].endswith("+00:00") for b in hourly["buckets"])
    # An account in UTC takes the same instants into UTC days.
    async with ctx_factory() as ctx:
        await send(ctx, [event("u", "5", "2026-03-08T04:30:00Z", account_id=tree.other)])
    utc = await get(
        client, f"/accounts/{tree.other}/usage", meter="data", granularity="day",
        **{"from": "2026-03-08T00:00:00Z", "to": "2026-03-09T00:00:00Z"},
    )  # fmt: skip
    assert utc["timezone"] == "UTC" and quantities(utc) == {"2026-03-08T00:00:00Z": "5"}


async def test_months_and_the_default_window_are_local(
    client: httpx.AsyncClient, ctx_factory: Any, tree: Tree, clock: FrozenClock
) -> None:
    clock.set(datetime(2026, 3, 20, 12, tzinfo=UTC))
    await report(
        ctx_factory,
        [
            event("feb", "1", "2026-03-01T03:00:00Z", account_id=tree.leaf),  # Feb 28th, 22:00 in New York
            event("mar", "2", "2026-03-01T06:00:00Z", account_id=tree.leaf),  # Mar 1st, 01:00
            event("mar2", "4", "2026-03-20T11:00:00Z", account_id=tree.leaf),
        ],
    )
    current = await get(client, f"/accounts/{tree.leaf}/usage", meter="data")
    assert (current["start"], current["end"]) == ("2026-03-01T05:00:00Z", "2026-04-01T04:00:00Z")
    assert current["granularity"] == "day" and len(current["buckets"]) == 31
    assert current["quantity"] == "6" and current["events"] == 2
    months = await get(
        client, f"/accounts/{tree.leaf}/usage", meter="data", granularity="month",
        **{"from": "2026-02-01T05:00:00Z", "to": "2026-04-01T04:00:00Z"},
    )  # fmt: skip
    assert [(b["start"], b["quantity"]) for b in months["buckets"]] == [
        ("2026-02-01T00:00:00-05:00", "1"),
        ("2026-03-01T00:00:00-05:00", "6"),
    ]
    # Only one bound given: the other is the current month's.
    since = await get(
        client, f"/accounts/{tree.leaf}/usage", meter="data", **{"from": "2026-03-10T00:00:00Z"}
    )
    assert since["end"] == "2026-04-01T04:00:00Z" and since["quantity"] == "4"


async def test_bad_windows_and_names_are_refused_naming_the_field(
    client: httpx.AsyncClient, tree: Tree
) -> None:
    path = f"/accounts/{tree.root}/usage"
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"from": "2026-03-02T00:00:00Z", "to": "2026-03-01T00:00:00Z"}, 422, "to"),
        ({"from": "2026-03-01T00:00:00Z", "to": "2026-03-01T00:00:00Z"}, 422, "to"),
        ({"from": "2025-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z", "granularity": "hour"}, 422, "from"),
        ({"from": "1900-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, 422, "from"),
        ({"from": "2026-03-01T00:00:00"}, 422, "from"),
        ({"to": "2026-03-01T00:00:00"}, 422, "to"),
        ({"from": "last tuesday"}, 422, "from"),
        ({"granularity": "week"}, 422, "granularity"),
        ({"scope": "everything"}, 422, "scope"),
    ]
    for params, status, field in cases:
        body = await get(client, path, status, meter="data", **params)
        assert field in [e["field"] for e in body["errors"]], (params, body)
    unknown = await get(client, path, 404, meter="nope")
    assert [e["field"] for e in unknown["errors"]] == ["meter"]
    missing_meter = await client.get(f"{API}{path}")
    assert missing_meter.status_code == 422 and "meter" in missing_meter.text
    naive = await get(client, f"/services/{tree.service}/usage", 422, meter="data", to="2026-03-01T00:00:00")
    assert [e["field"] for e in naive["errors"]] == ["to"]
    # A month of hours is fine; about three months of hours is the most one answer holds.
    hours = await get(
        client,
        path,
        meter="data",
        granularity="hour",
        **{"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"},
    )
    assert len(hours["buckets"]) == 31 * 24


async def test_each_aggregation_in_the_meters_precision(
    client: httpx.AsyncClient, ctx_factory: Any, tree: Tree
) -> None:
    h1, h2 = datetime(2026, 6, 10, 14, 5, tzinfo=UTC), datetime(2026, 6, 10, 15, 55, tzinfo=UTC)
    await report(
        ctx_factory,
        [
            event("m1", "12.5", h1, "minutes", account_id=tree.leaf),
            event("m2", "0.25", h2, "minutes", account_id=tree.leaf),
            event("m3", "3", h2, "minutes", account_id=tree.mid),
            event("s1", "7.5", h1, "speed", account_id=tree.leaf),
            event("s2", "9", h2, "speed", account_id=tree.leaf),
            event("s3", "120.2", h1, "speed", account_id=tree.mid),
            event("c1", "1", h1, "calls", account_id=tree.leaf),
            event("c2", "5", h1, "calls", account_id=tree.leaf),  # counted once, whatever its quantity
            event("c3", "0", h2, "calls", login="leaf"),
            event("d1", "1", h1, "devices", account_id=tree.leaf, properties={"device": "phone"}),
            event("d2", "1", h1, "devices", account_id=tree.leaf, properties={"device": "phone"}),
            event("d3", "1", h2, "devices", account_id=tree.leaf, properties={"device": "phone"}),
            event("d4", "1", h2, "devices", login="leaf", properties={"device": "laptop", "os": "linux"}),
            event("d5", "1", h2, "devices", account_id=tree.mid, properties={"device": "phone"}),
            event("d6", "1", h2, "devices", account_id=tree.mid, properties={"device": 7}),
        ],
    )
    window = {"from": "2026-06-10T14:00:00Z", "to": "2026-06-10T16:00:00Z", "granularity": "hour"}

    async def usage(meter: str, account: int, scope: str = "self") -> tuple[str, list[str]]:
        body = await get(client, f"/accounts/{account}/usage", meter=meter, scope=scope, **window)
        return body["quantity"], [b["quantity"] for b in body["buckets"]]

    assert await usage("minutes", tree.leaf) == ("12.75", ["12.50", "0.25"])
    assert await usage("minutes", tree.mid, "subtree") == ("15.75", ["12.50", "3.25"])
    assert await usage("minutes", tree.other) == ("0.00", ["0.00", "0.00"])
    assert await usage("speed", tree.leaf) == ("9.0", ["7.5", "9.0"])
    assert await usage("speed", tree.root, "subtree") == ("120.2", ["120.2", "9.0"])
    assert await usage("calls", tree.leaf) == ("3", ["2", "1"])
    assert await usage("devices", tree.leaf) == ("2", ["1", "2"])
    assert await usage("devices", tree.mid) == ("2", ["0", "2"])
    assert await usage("devices", tree.root, "subtree") == ("3", ["1", "3"])  # phone, laptop and 7
    service = await get(client, f"/services/{tree.service}/usage", meter="devices", **window)
    assert service["quantity"] == "1" and service["events"] == 1
    day = await get(
        client, f"/accounts/{tree.leaf}/usage", meter="minutes", granularity="day",
        **{"from": "2026-06-10T00:00:00Z", "to": "2026-06-11T00:00:00Z"},
    )  # fmt: skip
    # Local days: the window's first hours belong to June 9th in New York.
    assert [(b["start"], b["quantity"]) for b in day["buckets"]] == [
        ("2026-06-09T00:00:00-04:00", "0.00"),
        ("2026-06-10T00:00:00-04:00", "12.75"),
    ]


async def test_subtree_usage_follows_the_tree_as_it_stood_when_the_usage_happened(
    client: httpx.AsyncClient, ctx_factory: Any, clock: FrozenClock
) -> None:
    """Top ── First ── Child ── Grandchild; then Child (and Grandchild) moves under Second, under Top."""
    start = datetime(2026, 3, 1, tzinfo=UTC)
    moved = start + timedelta(days=10)
    clock.set(start)
    async with ctx_factory() as ctx:
        await new_meter(ctx, "data")
        top = await new_account(ctx, "Top")
        first = await new_account(ctx, "First", top)
        second = await new_account(ctx, "Second", top)
        child = await new_account(ctx, "Child", first)
        grandchild = await new_account(ctx, "Grandchild", child)
    clock.set(start + timedelta(days=2))
    before = start + timedelta(days=1)
    await report(
        ctx_factory,
        [
            event("c-before", "1", before, account_id=child),
            event("g-before", "2", before, account_id=grandchild),
        ],
    )
    clock.set(moved)
    async with ctx_factory() as ctx:
        await accounts.move(ctx, child, second)
    clock.set(moved + timedelta(days=2))
    after = moved + timedelta(days=1)
    await report(
        ctx_factory,
        [
            event("c-after", "10", after, account_id=child),
            event("g-after", "20", after, account_id=grandchild),
            # Reported after the move, but it happened before it.
            event("c-late", "100", moved - timedelta(minutes=30), account_id=child),
            event("g-late", "200", moved - timedelta(hours=5), account_id=grandchild),
            # Before the accounts existed: where they first stood.
            event("g-early", "1000", start - timedelta(days=1), account_id=grandchild),
        ],
    )
    window = {"from": "2026-02-01T00:00:00Z", "to": "2026-04-01T00:00:00Z", "granularity": "month"}

    async def subtree(account: int) -> str:
        body = await get(client, f"/accounts/{account}/usage", meter="data", scope="subtree", **window)
        return str(body["quantity"])

    assert await subtree(first) == str(1 + 2 + 100 + 200 + 1000)
    assert await subtree(second) == str(10 + 20)
    assert await subtree(child) == str(1 + 2 + 10 + 20 + 100 + 200 + 1000)
    assert await subtree(grandchild) == str(2 + 20 + 200 + 1000)
    assert await subtree(top) == str(1 + 2 + 10 + 20 + 100 + 200 + 1000)
    daily = await get(
        client, f"/accounts/{first}/usage", meter="data", scope="subtree", granularity="day",
        **{"from": "2026-03-10T00:00:00Z", "to": "2026-03-12T00:00:00Z"},
    )  # fmt: skip
    assert quantities(daily) == {"2026-03-10T00:00:00Z": "300"}


# --- meters -----------------------------------------------------------------------------------------


async def test_meters_through_the_api(
    client: httpx.AsyncClient, ctx_factory: Any, tree: Tree, app: Any
) -> None:
    body = {"code": "sms", "name": "SMS", "unit": "messages", "aggregation": "sum", "description": "Texts"}
    created = await client.post(f"{API}/meters", json=body)
    assert created.status_code == 201, created.text
    meter = created.json()
    assert {k: meter[k] for k in body} == body and meter["precision"] == 0 and not meter["counts_toward_cap"]
    assert (await client.get(f"{API}/meters/{meter['id']}")).json() == meter
    listed = (await client.get(f"{API}/meters", params={"limit": 2})).json()
    assert [m["code"] for m in listed["items"]] == ["data", "minutes"] and listed["next_cursor"]
    rest = (await client.get(f"{API}/meters", params={"cursor": listed["next_cursor"]})).json()
    assert [m["code"] for m in rest["items"]] == ["speed", "calls", "devices", "sms"]

    again = await client.post(f"{API}/meters", json=body)
    assert again.status_code == 409 and [e["field"] for e in again.json()["errors"]] == ["code"]
    refused = [
        ({**body, "code": "bytes", "counts_toward_cap": True, "precision": 3}, "counts_toward_cap"),
        ({**body, "code": "uniq", "aggregation": "unique_count"}, "unique_property"),
        ({**body, "code": "uniq", "unique_property": "device"}, "unique_property"),
        ({**body, "code": "Not A Code"}, "code"),
        ({**body, "code": "fine", "precision": 7}, "precision"),
        ({**body, "code": "fine", "aggregation": "median"}, "aggregation"),
    ]
    for request, field in refused:
        answer = await client.post(f"{API}/meters", json=request)
        assert answer.status_code == 422, (request, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert any(field in (e["field"] or "") or field in e["message"] for e in answer.json()["errors"]), (
            answer.text
        )

    patched = await client.patch(
        f"{API}/meters/{meter['id']}", json={"name": "Text messages", "counts_toward_cap": True}
    )
    assert patched.status_code == 200 and patched.json()["name"] == "Text messages"
    assert patched.json()["code"] == "sms" and patched.json()["counts_toward_cap"]
    minutes = (await client.get(f"{API}/meters", params={"limit": 2})).json()["items"][1]
    cap = await client.patch(f"{API}/meters/{minutes['id']}", json={"counts_toward_cap": True})
    assert cap.status_code == 422 and [e["field"] for e in cap.json()["errors"]] == ["counts_toward_cap"]
    for change in ({"code": "other"}, {"precision": 2}, {"aggregation": "max"}, {"name": None}):
        answer = await client.patch(f"{API}/meters/{meter['id']}", json=change)
        assert answer.status_code == 422, (change, answer.text)

    # A meter with usage stays: its history needs it. One without goes.
    await report(ctx_factory, [event("used", "1", NOW - timedelta(hours=1), "data", account_id=tree.leaf)])
    data = (await client.get(f"{API}/meters", params={"limit": 1})).json()["items"][0]
    in_use = await client.delete(f"{API}/meters/{data['id']}")
    assert in_use.status_code == 409 and in_use.headers["content-type"].startswith("application/problem+json")
    assert (await client.get(f"{API}/meters/{data['id']}")).status_code == 200
    gone = await client.delete(f"{API}/meters/{meter['id']}")
    assert gone.status_code == 204
    assert (await client.get(f"{API}/meters/{meter['id']}")).status_code == 404
    assert (await client.delete(f"{API}/meters/{meter['id']}")).status_code == 404

    # Meters are the provider's catalog: account users may read them, only provider staff change them.
    async with ctx_factory() as ctx:
        admin = await token_for(ctx, await member(ctx, tree.root, "admin"))
    as_admin = {"Authorization": f"Bearer {admin}"}
    assert (await client.get(f"{API}/meters", headers=as_admin)).status_code == 200
    assert (await client.get(f"{API}/meters/{data['id']}", headers=as_admin)).status_code == 200
    for method, path, payload in (
        ("POST", "/meters", {**body, "code": "by-member"}),
        ("PATCH", f"/meters/{data['id']}", {"name": "Mine"}),
        ("DELETE", f"/meters/{minutes['id']}", None),
    ):
        answer = await client.request(method, f"{API}{path}", json=payload, headers=as_admin)
        assert answer.status_code == 403, (method, path, answer.text)
    assert [m["code"] for m in (await client.get(f"{API}/meters")).json()["items"]] == [
        "data", "minutes", "speed", "calls", "devices",
    ]  # fmt: skip
