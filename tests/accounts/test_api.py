"""Every accounts endpoint through the HTTP client, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from itertools import pairwise
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text

from boughs.accounts import service
from boughs.audit.models import AuditEvent
from boughs.db import Database
from boughs.kit.clock import FrozenClock
from tests.conftest import START, Tenant, make_tenant

API = "/api/v1/accounts"
PROBLEM = "application/problem+json"


# --- helpers ---------------------------------------------------------------------------


async def create(client: httpx.AsyncClient, name: str, **fields: Any) -> dict[str, Any]:
    r = await client.post(API, json={"name": name, **fields})
    assert r.status_code == 201, r.text
    created = r.json()
    # Only creation reports the administrators it named; the account itself is the rest.
    assert created.pop("administrators") == []
    return created


async def fetch(client: httpx.AsyncClient, account_id: int) -> dict[str, Any]:
    r = await client.get(f"{API}/{account_id}")
    assert r.status_code == 200, r.text
    return r.json()


async def post(client: httpx.AsyncClient, url: str, body: Any = None) -> dict[str, Any]:
    r = await client.post(url, json=body) if body is not None else await client.post(url)
    assert r.status_code == 200, r.text
    return r.json()


async def effective(client: httpx.AsyncClient, account_id: int) -> dict[str, Any]:
    r = await client.get(f"{API}/{account_id}/effective")
    assert r.status_code == 200, r.text
    return r.json()


async def walk(
    client: httpx.AsyncClient, url: str, params: dict[str, Any] | None = None, limit: int = 2
) -> list[dict[str, Any]]:
    """Follow next_cursor to the end; every page but the last is full."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(200):
        query: dict[str, Any] = {**(params or {}), "limit": limit}
        if cursor is not None:
            query["cursor"] = cursor
        r = await client.get(url, params=query)
        assert r.status_code == 200, r.text
        page = r.json()
        assert set(page) == {"items", "next_cursor"}
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            assert len(page["items"]) <= limit
            return items
        assert len(page["items"]) == limit
    raise AssertionError("pagination did not end")


def ids(items: list[dict[str, Any]]) -> list[int]:
    return [item["id"] for item in items]


async def audit_events(db: Database, account_id: int, action: str | None = None) -> list[AuditEvent]:
    async with db.transaction(write=False) as session:
        stmt = select(AuditEvent).where(
            AuditEvent.entity == "account", AuditEvent.entity_id == str(account_id)
        )
        if action is not None:
            stmt = stmt.where(AuditEvent.action == action)
        return list((await session.execute(stmt.order_by(AuditEvent.id))).scalars())


async def sweep(ctx_factory: Any) -> list[int]:
    async with ctx_factory() as ctx:
        return await service.sweep_expired(ctx)


@pytest.fixture
async def tree(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    """Seven accounts::

    root ─┬─ a ─┬─ a1 ── a1x
          │     └─ a2
          └─ b
    other (top level, external id "alpha")
    """
    root = await create(client, "Root Holdings", external_id="ROOT-1")
    a = await create(client, "Alpha Office", parent_id=root["id"], external_id="A-1")
    b = await create(client, "Beta Office", parent_id=root["id"])
    a1 = await create(client, "Alpha Unit 1", parent_id=a["id"])
    a2 = await create(client, "Alpha Unit 2", parent_id=a["id"])
    a1x = await create(client, "Alpha Unit 1 Extra", parent_id=a1["id"])
    other = await create(client, "Other Top", external_id="alpha")
    return {"root": root, "a": a, "b": b, "a1": a1, "a2": a2, "a1x": a1x, "other": other}


# --- create, read, update --------------------------------------------------------------


async def test_create_top_level(client: httpx.AsyncClient) -> None:
    r = await client.post(
        API,
        json={
            "name": "Landlord",
            "external_id": "LL-1",
            "contact_email": "owner@example.com",
            "timezone": "Europe/Berlin",
            "currency": "EUR",
            "features": {"subaccounts": True},
        },
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert r.headers["location"] == f"{API}/{body['id']}"
    assert body["parent_id"] is None
    assert body["root_id"] == body["id"]
    assert body["path"] == f"/{body['id']}/"
    assert body["depth"] == 0
    assert body["status"] == "active"
    assert body["external_id"] == "LL-1"
    assert body["contact_email"] == "owner@example.com"
    assert body["timezone"] == "Europe/Berlin"
    assert body["currency"] == "EUR"
    assert body["features"] == {"subaccounts": True}
    assert body["invoice_mode"] == "separate"
    assert body["parent_access"] == "manage"
    assert body["expiry_date"] is None
    assert body["created_at"] == body["updated_at"]
    assert body.pop("administrators") == []
    assert await fetch(client, body["id"]) == body


async def test_create_under_parent(client: httpx.AsyncClient) -> None:
    parent = await create(client, "Business")
    child = await create(client, "Office", parent_id=parent["id"], invoice_mode="with_parent")
    grandchild = await create(client, "Desk", parent_id=child["id"])
    assert child["parent_id"] == parent["id"]
    assert child["path"] == f"/{parent['id']}/{child['id']}/"
    assert child["depth"] == 1
    assert child["root_id"] == parent["id"]
    assert child["invoice_mode"] == "with_parent"
    assert grandchild["path"] == f"/{parent['id']}/{child['id']}/{grandchild['id']}/"
    assert grandchild["depth"] == 2
    assert grandchild["root_id"] == parent["id"]
    assert await fetch(client, grandchild["id"]) == grandchild


async def test_get_unknown_account_is_404(client: httpx.AsyncClient) -> None:
    r = await client.get(f"{API}/999999")
    assert r.status_code == 404
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["status"] == 404
    assert r.json()["fix"]


async def test_patch_fields(client: httpx.AsyncClient, clock: FrozenClock) -> None:
    account = await create(client, "Old name", description="first")
    clock.advance(timedelta(hours=1))
    r = await client.patch(
        f"{API}/{account['id']}",
        json={
            "name": "New name",
            "description": "second",
            "external_id": "EXT-9",
            "features": {"subaccounts": True},
            "parent_access": "view",
            "invoice_mode": "with_parent",
            "billing_email": "billing@example.com",
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["name"] == "New name"
    assert body["description"] == "second"
    assert body["external_id"] == "EXT-9"
    assert body["features"] == {"subaccounts": True}
    assert body["parent_access"] == "view"
    assert body["invoice_mode"] == "with_parent"
    assert body["billing_email"] == "billing@example.com"
    assert body["updated_at"] != body["created_at"]
    assert await fetch(client, account["id"]) == body

    # Fields left out are left alone; features are replaced as a whole.
    r = await client.patch(f"{API}/{account['id']}", json={"features": {"subaccounts": False}})
    assert r.status_code == 200, r.text
    assert r.json()["features"] == {"subaccounts": False}
    assert r.json()["name"] == "New name"
    assert r.json()["parent_access"] == "view"
    r = await client.patch(f"{API}/{account['id']}", json={"parent_access": "none", "external_id": None})
    assert r.json()["parent_access"] == "none"
    assert r.json()["external_id"] is None


async def test_patch_null_inherits(client: httpx.AsyncClient) -> None:
    parent = await create(
        client, "Parent", expiry_date="2026-06-30", timezone="Europe/Berlin", currency="EUR"
    )
    child = await create(
        client,
        "Child",
        parent_id=parent["id"],
        expiry_date="2026-03-31",
        timezone="America/New_York",
        currency="CAD",
    )
    eff = await effective(client, child["id"])
    assert eff["expiry_date"] == {"value": "2026-03-31", "source_account_id": child["id"], "source": "own"}
    assert eff["timezone"]["value"] == "America/New_York"
    assert eff["currency"]["value"] == "CAD"

    r = await client.patch(
        f"{API}/{child['id']}", json={"expiry_date": None, "timezone": None, "currency": None}
    )
    assert r.status_code == 200, r.text
    assert r.json()["expiry_date"] is None
    assert r.json()["timezone"] is None
    assert r.json()["currency"] is None
    eff = await effective(client, child["id"])
    assert eff["expiry_date"] == {
        "value": "2026-06-30",
        "source_account_id": parent["id"],
        "source": "inherited",
    }
    assert eff["timezone"] == {
        "value": "Europe/Berlin",
        "source_account_id": parent["id"],
        "source": "inherited",
    }
    assert eff["currency"] == {"value": "EUR", "source_account_id": parent["id"], "source": "inherited"}

    # With nothing set anywhere up the tree, the provider's defaults apply.
    r = await client.patch(f"{API}/{parent['id']}", json={"timezone": None, "currency": None})
    assert r.status_code == 200, r.text
    eff = await effective(client, child["id"])
    assert eff["timezone"] == {"value": "UTC", "source_account_id": None, "source": "provider"}
    assert eff["currency"] == {"value": "USD", "source_account_id": None, "source": "provider"}


# --- list and search -------------------------------------------------------------------


async def test_list_search_and_filters(client: httpx.AsyncClient, tree: dict[str, dict[str, Any]]) -> None:
    t = tree
    everything = await walk(client, API)
    assert ids(everything) == sorted(a["id"] for a in t.values())

    # q: a case-insensitive part of the name, or the exact external id.
    found = await walk(client, API, {"q": "alpha"})
    assert ids(found) == sorted(
        [t["a"]["id"], t["a1"]["id"], t["a2"]["id"], t["a1x"]["id"], t["other"]["id"]]
    )
    assert ids(await walk(client, API, {"q": "UNIT 1"})) == sorted([t["a1"]["id"], t["a1x"]["id"]])
    assert ids(await walk(client, API, {"q": "ROOT-1"})) == [t["root"]["id"]]
    assert ids(await walk(client, API, {"q": "A-1"})) == [t["a"]["id"]]
    assert await walk(client, API, {"q": "ROOT-"}) == []  # external ids match exactly
    assert await walk(client, API, {"q": "100%"}) == []  # LIKE wildcards are literal

    assert ids(await walk(client, API, {"parent_id": t["a"]["id"]})) == [t["a1"]["id"], t["a2"]["id"]]
    assert ids(await walk(client, API, {"top_level": "true"})) == [t["root"]["id"], t["other"]["id"]]
    not_top = await walk(client, API, {"top_level": "false"})
    assert ids(not_top) == sorted(a["id"] for k, a in t.items() if k not in ("root", "other"))
    assert ids(await walk(client, API, {"depth": 2})) == [t["a1"]["id"], t["a2"]["id"]]
    assert ids(await walk(client, API, {"depth": 3})) == [t["a1x"]["id"]]
    in_root = await walk(client, API, {"root_id": t["root"]["id"]})
    assert ids(in_root) == sorted(a["id"] for k, a in t.items() if k != "other")
    assert ids(await walk(client, API, {"root_id": t["other"]["id"]})) == [t["other"]["id"]]

    await post(client, f"{API}/{t['b']['id']}/suspend")
    assert ids(await walk(client, API, {"status": "suspended"})) == [t["b"]["id"]]
    active = await walk(client, API, {"status": "active"})
    assert t["b"]["id"] not in ids(active) and len(active) == len(t) - 1

    # Filters combine.
    combined = await walk(client, API, {"q": "alpha", "depth": 2, "root_id": t["root"]["id"]}, limit=1)
    assert ids(combined) == [t["a1"]["id"], t["a2"]["id"]]


async def test_list_cursor_walks_every_row_once(client: httpx.AsyncClient) -> None:
    created = [await create(client, f"Customer {i}") for i in range(7)]
    created.append(await create(client, "Child", parent_id=created[0]["id"]))
    # Page sizes that divide the rows, leave a remainder, fit them exactly and exceed them.
    for limit in (1, 2, 3, 7, 8, 500):
        walked = await walk(client, API, limit=limit)
        assert ids(walked) == sorted(ids(created)), limit
    # A page boundary never repeats or skips rows written in between.
    first = (await client.get(API, params={"limit": 3})).json()
    late = await create(client, "Late arrival")
    rest = await walk(client, API, {"cursor": first["next_cursor"]}, limit=3)
    assert ids(first["items"]) + ids(rest) == [*sorted(ids(created)), late["id"]]


# --- tree reads ------------------------------------------------------------------------


async def test_children(client: httpx.AsyncClient, tree: dict[str, dict[str, Any]]) -> None:
    t = tree
    assert ids(await walk(client, f"{API}/{t['root']['id']}/children", limit=1)) == [
        t["a"]["id"],
        t["b"]["id"],
    ]
    assert ids(await walk(client, f"{API}/{t['a']['id']}/children")) == [t["a1"]["id"], t["a2"]["id"]]
    assert await walk(client, f"{API}/{t['a1x']['id']}/children") == []
    r = await client.get(f"{API}/999999/children")
    assert r.status_code == 404


def assert_tree_order(top: dict[str, Any], items: list[dict[str, Any]]) -> None:
    """A preorder walk below ``top``: each account comes right after its parent's earlier subtree."""
    stack = [top["id"]]
    for item in items:
        assert item["path"].startswith(top["path"]) and item["id"] != top["id"]
        while stack and stack[-1] != item["parent_id"]:
            stack.pop()
        assert stack, f"{item['id']} came after its parent's subtree was left"
        stack.append(item["id"])


async def test_descendants_in_tree_order(client: httpx.AsyncClient, tree: dict[str, dict[str, Any]]) -> None:
    t = tree
    # Ids that sort differently as text and as numbers, to make the order matter.
    extra = [await create(client, f"B child {i}", parent_id=t["b"]["id"]) for i in range(3)]
    deep = await create(client, "Deep", parent_id=extra[0]["id"])
    expected = {a["id"] for k, a in t.items() if k not in ("root", "other")} | set(ids(extra)) | {deep["id"]}
    for limit in (1, 2, 3, 50):
        items = await walk(client, f"{API}/{t['root']['id']}/descendants", limit=limit)
        assert len(items) == len(expected)
        assert set(ids(items)) == expected
        assert_tree_order(t["root"], items)
    below_a = await walk(client, f"{API}/{t['a']['id']}/descendants")
    assert ids(below_a) == [t["a1"]["id"], t["a1x"]["id"], t["a2"]["id"]]
    assert await walk(client, f"{API}/{t['a1x']['id']}/descendants") == []
    assert await walk(client, f"{API}/{t['other']['id']}/descendants") == []


async def test_ancestors_root_first(client: httpx.AsyncClient, tree: dict[str, dict[str, Any]]) -> None:
    t = tree
    r = await client.get(f"{API}/{t['a1x']['id']}/ancestors")
    assert r.status_code == 200, r.text
    assert ids(r.json()) == [t["root"]["id"], t["a"]["id"], t["a1"]["id"]]
    r = await client.get(f"{API}/{t['root']['id']}/ancestors")
    assert r.json() == []


async def test_subtree_summary(client: httpx.AsyncClient, tree: dict[str, dict[str, Any]]) -> None:
    t = tree
    await post(client, f"{API}/{t['a2']['id']}/suspend")
    r = await client.get(f"{API}/{t['root']['id']}/subtree-summary")
    assert r.status_code == 200, r.text
    assert r.json() == {"accounts": 6, "active": 5, "max_depth": 3}
    r = await client.get(f"{API}/{t['a']['id']}/subtree-summary")
    assert r.json() == {"accounts": 4, "active": 3, "max_depth": 3}
    r = await client.get(f"{API}/{t['a1x']['id']}/subtree-summary")
    assert r.json() == {"accounts": 1, "active": 1, "max_depth": 3}
    r = await client.get(f"{API}/{t['other']['id']}/subtree-summary")
    assert r.json() == {"accounts": 1, "active": 1, "max_depth": 0}


# --- inheritance -----------------------------------------------------------------------


async def test_effective_values_and_sources(client: httpx.AsyncClient) -> None:
    root = await create(
        client,
        "Root",
        expiry_date="2026-12-31",
        currency="EUR",
        billing_address="1 Main St",
        billing_tax_id="DE123",
    )
    mid = await create(
        client, "Mid", parent_id=root["id"], timezone="Europe/Paris", billing_email="m@example.com"
    )
    leaf = await create(client, "Leaf", parent_id=mid["id"], billing_tax_id="FR999")
    eff = await effective(client, leaf["id"])
    assert eff.pop("offers") == []  # no plans yet: tests/catalog covers them
    assert eff.pop("agreements") == {
        "msa_accepted_at": None, "msa_accepted_by": None, "msa_version": None,
        "aup_accepted_at": None, "aup_accepted_by": None, "aup_version": None, "complete": False,
    }  # fmt: skip
    assert eff == {
        "account_id": leaf["id"],
        "status": {"value": "active", "source_account_id": None, "blocked": False, "reason": None},
        "expiry_date": {"value": "2026-12-31", "source_account_id": root["id"], "source": "inherited"},
        "timezone": {"value": "Europe/Paris", "source_account_id": mid["id"], "source": "inherited"},
        "currency": {"value": "EUR", "source_account_id": root["id"], "source": "inherited"},
        "billing_details": {
            "address": {"value": "1 Main St", "source_account_id": root["id"], "source": "inherited"},
            "tax_id": {"value": "FR999", "source_account_id": leaf["id"], "source": "own"},
            "email": {"value": "m@example.com", "source_account_id": mid["id"], "source": "inherited"},
        },
        # tests/billing covers these.
        "payment_method": {"value": None, "source_account_id": None, "source": "none"},
        "tax_rate": {
            "value": {"rate_ppm": 0, "exempt": False, "rate": "0"},
            "source_account_id": None,
            "source": "provider",
        },
        "net_terms": {"value": 30, "source_account_id": None, "source": "provider"},
        "invoice_owner": {"value": leaf["id"], "source_account_id": leaf["id"], "source": "own"},
    }
    eff = await effective(client, root["id"])
    assert eff["expiry_date"] == {"value": "2026-12-31", "source_account_id": root["id"], "source": "own"}
    assert eff["timezone"] == {"value": "UTC", "source_account_id": None, "source": "provider"}
    assert eff["billing_details"]["email"] == {"value": None, "source_account_id": None, "source": "none"}


async def test_effective_status_blocked_by_ancestor_suspension(
    client: httpx.AsyncClient, tree: dict[str, dict[str, Any]]
) -> None:
    t = tree
    await post(client, f"{API}/{t['a']['id']}/suspend")
    for key in ("a1", "a2", "a1x"):
        eff = await effective(client, t[key]["id"])
        assert eff["status"] == {
            "value": "suspended",
            "source_account_id": t["a"]["id"],
            "blocked": True,
            "reason": None,
        }
        assert (await fetch(client, t[key]["id"]))["status"] == "active"
    for key in ("root", "b"):
        assert (await effective(client, t[key]["id"]))["status"]["blocked"] is False
    # Cancellation is more final than suspension, whichever is nearer.
    await post(client, f"{API}/{t['root']['id']}/cancel")
    eff = await effective(client, t["a1x"]["id"])
    assert eff["status"] == {
        "value": "cancelled",
        "source_account_id": t["root"]["id"],
        "blocked": True,
        "reason": None,
    }


async def test_effective_status_expiry_in_account_timezone(client: httpx.AsyncClient) -> None:
    # The clock reads 2026-01-15 12:00 UTC: already 2026-01-16 in Auckland, still the 15th in UTC.
    assert START.isoformat() == "2026-01-15T12:00:00+00:00"
    utc = await create(client, "UTC", expiry_date="2026-01-15")
    nz = await create(client, "NZ", expiry_date="2026-01-15", timezone="Pacific/Auckland")
    nz_child = await create(client, "NZ child", parent_id=nz["id"])
    assert (await effective(client, utc["id"]))["status"] == {
        "value": "active",
        "source_account_id": None,
        "blocked": False,
        "reason": None,
    }
    for account in (nz, nz_child):
        assert (await effective(client, account["id"]))["status"] == {
            "value": "expired",
            "source_account_id": nz["id"],
            "blocked": True,
            "reason": None,
        }
    # A child in a timezone behind UTC still has its last day.
    la_child = await create(client, "LA child", parent_id=nz["id"], timezone="America/Los_Angeles")
    assert (await effective(client, la_child["id"]))["status"]["value"] == "active"


async def test_explicit_child_expiry_wins(client: httpx.AsyncClient, clock: FrozenClock) -> None:
    parent = await create(client, "Parent", expiry_date="2026-02-01")
    later = await create(client, "Later child", parent_id=parent["id"], expiry_date="2026-03-01")
    earlier = await create(client, "Earlier child", parent_id=parent["id"], expiry_date="2026-01-20")
    inheriting = await create(client, "Inheriting child", parent_id=parent["id"])

    clock.set(START.replace(month=1, day=25))
    assert (await effective(client, earlier["id"]))["status"] == {
        "value": "expired",
        "source_account_id": earlier["id"],
        "blocked": True,
        "reason": None,
    }
    assert (await effective(client, parent["id"]))["status"]["value"] == "active"
    assert (await effective(client, inheriting["id"]))["status"]["value"] == "active"

    clock.set(START.replace(month=2, day=10))
    assert (await effective(client, parent["id"]))["status"]["value"] == "expired"
    assert (await effective(client, inheriting["id"]))["status"] == {
        "value": "expired",
        "source_account_id": parent["id"],
        "blocked": True,
        "reason": None,
    }
    eff = await effective(client, later["id"])
    assert eff["status"]["value"] == "active"
    assert eff["expiry_date"] == {"value": "2026-03-01", "source_account_id": later["id"], "source": "own"}


async def test_the_last_calendar_day_never_expires(client: httpx.AsyncClient, ctx_factory: Any) -> None:
    never = await create(client, "Never", expiry_date="9999-12-31", timezone="Pacific/Kiritimati")
    child = await create(client, "Child", parent_id=never["id"], timezone="Pacific/Pago_Pago")
    for account in (never, child):
        eff = await effective(client, account["id"])
        assert eff["expiry_date"]["value"] == "9999-12-31"
        assert eff["status"] == {
            "value": "active",
            "source_account_id": None,
            "blocked": False,
            "reason": None,
        }
    assert await sweep(ctx_factory) == []
    assert (await post(client, f"{API}/{child['id']}/renew", {"expiry_date": "9999-12-31"}))[
        "status"
    ] == "active"
    r = await client.patch(f"{API}/{never['id']}", json={"timezone": "UTC"})
    assert r.status_code == 200, r.text


# --- links and moves -------------------------------------------------------------------


def assert_contiguous(links: list[dict[str, Any]], created_at: str) -> None:
    assert links[0]["valid_from"] == created_at
    for before, after in pairwise(links):
        assert before["valid_to"] is not None
        assert before["valid_from"] <= before["valid_to"] == after["valid_from"]
    assert links[-1]["valid_to"] is None


async def test_links_after_create_move_detach(client: httpx.AsyncClient, clock: FrozenClock) -> None:
    first = await create(client, "First parent")
    second = await create(client, "Second parent")
    child = await create(client, "Child", parent_id=first["id"])
    top = await create(client, "Top")

    r = await client.get(f"{API}/{child['id']}/links")
    assert r.status_code == 200, r.text
    assert r.json() == [{"parent_id": first["id"], "valid_from": child["created_at"], "valid_to": None}]
    r = await client.get(f"{API}/{top['id']}/links")
    assert r.json() == [{"parent_id": None, "valid_from": top["created_at"], "valid_to": None}]

    clock.advance(timedelta(days=3))
    await post(client, f"{API}/{child['id']}/move", {"parent_id": second["id"]})
    moved_at = clock.now()
    clock.advance(timedelta(days=2))
    await post(client, f"{API}/{child['id']}/move", {"parent_id": None})
    detached_at = clock.now()
    clock.advance(timedelta(days=1))
    await post(client, f"{API}/{top['id']}/move", {"parent_id": first["id"]})

    links = (await client.get(f"{API}/{child['id']}/links")).json()
    assert [link["parent_id"] for link in links] == [first["id"], second["id"], None]
    assert_contiguous(links, child["created_at"])
    assert links[0]["valid_to"] == links[1]["valid_from"]
    assert links[1]["valid_from"].startswith(moved_at.strftime("%Y-%m-%dT%H:%M:%S"))
    assert links[2]["valid_from"].startswith(detached_at.strftime("%Y-%m-%dT%H:%M:%S"))

    top_links = (await client.get(f"{API}/{top['id']}/links")).json()
    assert [link["parent_id"] for link in top_links] == [None, first["id"]]
    assert_contiguous(top_links, top["created_at"])

    # Moving to the parent it already has writes nothing.
    await post(client, f"{API}/{top['id']}/move", {"parent_id": first["id"]})
    assert (await client.get(f"{API}/{top['id']}/links")).json() == top_links


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_accounts_with_ids_past_32_bits_move_like_any_other(
    client: httpx.AsyncClient, db: Database
) -> None:
    # PostgreSQL casts each parameter to the type it is given: an id given a narrower type
    # than its BIGINT column fails past 2**31.
    async with db.transaction() as session:
        await session.execute(text("SELECT setval(pg_get_serial_sequence('accounts', 'id'), 3000000000)"))
    top = await create(client, "Far Top")
    other = await create(client, "Far Other")
    child = await create(client, "Far Child", parent_id=top["id"])
    assert child["id"] > 2**31
    moved = await post(client, f"{API}/{top['id']}/move", {"parent_id": other["id"]})
    assert (moved["root_id"], moved["depth"]) == (other["id"], 1)
    assert (await fetch(client, child["id"]))["root_id"] == other["id"]
    assert [a["id"] for a in (await client.get(f"{API}/{child['id']}/ancestors")).json()] == [
        other["id"],
        top["id"],
    ]


async def test_move_rewrites_the_subtree(
    client: httpx.AsyncClient, db: Database, tree: dict[str, dict[str, Any]]
) -> None:
    t = tree
    moved = await post(client, f"{API}/{t['a']['id']}/move", {"parent_id": t["b"]["id"]})
    root, b, a, a1 = t["root"]["id"], t["b"]["id"], t["a"]["id"], t["a1"]["id"]
    assert moved["parent_id"] == b
    assert moved["path"] == f"/{root}/{b}/{a}/"
    assert moved["depth"] == 2
    a1x = await fetch(client, t["a1x"]["id"])
    assert a1x["path"] == f"/{root}/{b}/{a}/{a1}/{a1x['id']}/"
    assert a1x["depth"] == 4
    assert a1x["root_id"] == root
    below_b = await walk(client, f"{API}/{b}/descendants")
    assert ids(below_b) == [a, a1, t["a1x"]["id"], t["a2"]["id"]]
    assert_tree_order(await fetch(client, b), below_b)

    # Under another tree: root_id changes for the whole subtree.
    other = t["other"]["id"]
    moved = await post(client, f"{API}/{a}/move", {"parent_id": other})
    assert moved["root_id"] == other and moved["depth"] == 1
    for key, depth in (("a1", 2), ("a2", 2), ("a1x", 3)):
        row = await fetch(client, t[key]["id"])
        assert row["root_id"] == other
        assert row["depth"] == depth
        assert row["path"].startswith(f"/{other}/{a}/")
    assert (await client.get(f"{API}/{root}/subtree-summary")).json()["accounts"] == 2

    # To null: detached to top level, it becomes its subtree's root.
    moved = await post(client, f"{API}/{a}/move", {"parent_id": None})
    assert moved["parent_id"] is None
    assert moved["path"] == f"/{a}/"
    assert moved["depth"] == 0
    assert moved["root_id"] == a
    a1x = await fetch(client, t["a1x"]["id"])
    assert a1x["path"] == f"/{a}/{a1}/{a1x['id']}/"
    assert a1x["depth"] == 2
    assert a1x["root_id"] == a
    assert ids(await walk(client, API, {"root_id": a})) == sorted([a, a1, t["a2"]["id"], t["a1x"]["id"]])
    assert [e.action for e in await audit_events(db, a) if e.action in ("moved", "detached")] == [
        "moved",
        "moved",
        "detached",
    ]


# --- renewal ---------------------------------------------------------------------------


async def test_renew_explicit_date_and_period(client: httpx.AsyncClient, db: Database) -> None:
    account = await create(client, "Subscriber")
    renewed = await post(client, f"{API}/{account['id']}/renew", {"expiry_date": "2026-06-30"})
    assert renewed["expiry_date"] == "2026-06-30"
    # Early renewal extends from the current expiry.
    renewed = await post(client, f"{API}/{account['id']}/renew", {"period": "month", "count": 2})
    assert renewed["expiry_date"] == "2026-08-30"
    assert (await fetch(client, account["id"]))["expiry_date"] == "2026-08-30"
    events = await audit_events(db, account["id"], "renewed")
    assert [e.after for e in events] == [{"expiry_date": "2026-06-30"}, {"expiry_date": "2026-08-30"}]
    # With no expiry at all, a period counts from today.
    fresh = await create(client, "Fresh")
    renewed = await post(client, f"{API}/{fresh['id']}/renew", {"period": "month"})
    assert renewed["expiry_date"] == "2026-02-15"


async def test_renew_extends_inheriting_children_without_writing_them(
    client: httpx.AsyncClient, db: Database, clock: FrozenClock
) -> None:
    parent = await create(client, "Parent", expiry_date="2026-02-01")
    inheriting = await create(client, "Inheriting", parent_id=parent["id"])
    grandchild = await create(client, "Grandchild", parent_id=inheriting["id"])
    explicit = await create(client, "Explicit", parent_id=parent["id"], expiry_date="2026-03-15")
    events_before = len(await audit_events(db, inheriting["id"])) + len(
        await audit_events(db, grandchild["id"])
    )

    clock.advance(timedelta(days=1))
    await post(client, f"{API}/{parent['id']}/renew", {"period": "month", "count": 3})
    for account in (inheriting, grandchild):
        assert await fetch(client, account["id"]) == account  # untouched, updated_at included
        eff = await effective(client, account["id"])
        assert eff["expiry_date"] == {
            "value": "2026-05-01",
            "source_account_id": parent["id"],
            "source": "inherited",
        }
    events_after = len(await audit_events(db, inheriting["id"])) + len(
        await audit_events(db, grandchild["id"])
    )
    assert events_after == events_before
    eff = await effective(client, explicit["id"])
    assert eff["expiry_date"] == {"value": "2026-03-15", "source_account_id": explicit["id"], "source": "own"}


async def test_renewal_restores_accounts_the_sweep_expired(
    client: httpx.AsyncClient, ctx_factory: Any, clock: FrozenClock, db: Database
) -> None:
    parent = await create(client, "Parent", expiry_date="2026-01-20")
    child = await create(client, "Child", parent_id=parent["id"])
    explicit = await create(client, "Explicit", parent_id=parent["id"], expiry_date="2026-01-18")
    fresh = await create(client, "Own later expiry", parent_id=parent["id"], expiry_date="2026-09-01")

    clock.set(START.replace(day=25))
    expired = await sweep(ctx_factory)
    assert sorted(expired) == sorted([parent["id"], child["id"], explicit["id"]])
    assert await sweep(ctx_factory) == []  # idempotent
    for account in (parent, child, explicit):
        assert (await fetch(client, account["id"]))["status"] == "expired"
        assert len(await audit_events(db, account["id"], "expired")) == 1
    assert (await fetch(client, fresh["id"]))["status"] == "active"

    renewed = await post(client, f"{API}/{parent['id']}/renew", {"period": "month"})
    # Renewing late counts from today.
    assert renewed["expiry_date"] == "2026-02-25"
    assert renewed["status"] == "active"
    assert (await fetch(client, child["id"]))["status"] == "active"
    assert (await effective(client, child["id"]))["status"]["value"] == "active"
    # Its own, passed expiry still wins.
    assert (await fetch(client, explicit["id"]))["status"] == "expired"
    assert (await effective(client, explicit["id"]))["status"]["source_account_id"] == explicit["id"]
    assert len(await audit_events(db, child["id"], "unexpired")) == 1

    # Clearing the passed expiry of its own to inherit the renewed one brings it back too,
    # and the response already says so.
    r = await client.patch(f"{API}/{explicit['id']}", json={"expiry_date": None})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "active"
    assert (await fetch(client, explicit["id"]))["status"] == "active"


async def test_moving_out_from_under_a_passed_expiry_restores(
    client: httpx.AsyncClient, ctx_factory: Any, clock: FrozenClock, db: Database
) -> None:
    parent = await create(client, "Parent", expiry_date="2026-01-20")
    child = await create(client, "Child", parent_id=parent["id"])
    grandchild = await create(client, "Grandchild", parent_id=child["id"])
    other = await create(client, "Other", expiry_date="2026-12-31")
    clock.set(START.replace(day=25))
    assert sorted(await sweep(ctx_factory)) == sorted([parent["id"], child["id"], grandchild["id"]])

    moved = await post(client, f"{API}/{child['id']}/move", {"parent_id": other["id"]})
    assert moved["status"] == "active"
    assert (await fetch(client, grandchild["id"]))["status"] == "active"
    assert (await effective(client, grandchild["id"]))["expiry_date"]["source_account_id"] == other["id"]
    assert len(await audit_events(db, grandchild["id"], "unexpired")) == 1
    assert (await fetch(client, parent["id"]))["status"] == "expired"

    # Detached to top level with no expiry of its own: nothing is left to expire it.
    await post(client, f"{API}/{child['id']}/move", {"parent_id": parent["id"]})
    assert await sweep(ctx_factory) == sorted([child["id"], grandchild["id"]])
    detached = await post(client, f"{API}/{child['id']}/move", {"parent_id": None})
    assert detached["status"] == "active"
    assert (await effective(client, child["id"]))["status"]["value"] == "active"


# --- lifecycle -------------------------------------------------------------------------


async def test_suspend_unsuspend_cancel_write_audit_events(
    client: httpx.AsyncClient, db: Database, tenant: Tenant
) -> None:
    account = await create(client, "Subscriber")
    suspended = await post(client, f"{API}/{account['id']}/suspend", {"reason": "unpaid"})
    assert suspended["status"] == "suspended"
    unsuspended = await post(client, f"{API}/{account['id']}/unsuspend")
    assert unsuspended["status"] == "active"
    cancelled = await post(client, f"{API}/{account['id']}/cancel", {"reason": "moved away"})
    assert cancelled["status"] == "cancelled"
    assert (await fetch(client, account["id"]))["status"] == "cancelled"

    events = await audit_events(db, account["id"])
    assert [e.action for e in events] == ["created", "suspended", "unsuspended", "cancelled"]
    suspended_event = events[1]
    assert suspended_event.before == {"status": "active"}
    assert suspended_event.after == {"status": "suspended", "reason": "unpaid"}
    assert suspended_event.actor_user_id == tenant.owner_id
    assert suspended_event.provider_id == tenant.provider_id
    assert suspended_event.request_id
    assert events[3].after == {"status": "cancelled", "reason": "moved away"}


async def test_unsuspending_parent_restores_descendants_without_touching_them(
    client: httpx.AsyncClient, db: Database, clock: FrozenClock
) -> None:
    parent = await create(client, "Parent")
    child = await create(client, "Child", parent_id=parent["id"])
    grandchild = await create(client, "Grandchild", parent_id=child["id"])
    own = await create(client, "Suspended on its own", parent_id=parent["id"])
    await post(client, f"{API}/{own['id']}/suspend")
    own = await fetch(client, own["id"])

    clock.advance(timedelta(hours=1))
    await post(client, f"{API}/{parent['id']}/suspend")
    for account in (child, grandchild):
        eff = await effective(client, account["id"])
        assert eff["status"] == {
            "value": "suspended",
            "source_account_id": parent["id"],
            "blocked": True,
            "reason": None,
        }

    clock.advance(timedelta(hours=1))
    await post(client, f"{API}/{parent['id']}/unsuspend")
    for account in (child, grandchild):
        assert await fetch(client, account["id"]) == account
        eff = await effective(client, account["id"])
        assert eff["status"] == {
            "value": "active",
            "source_account_id": None,
            "blocked": False,
            "reason": None,
        }
        assert [e.action for e in await audit_events(db, account["id"])] == ["created"]
    # A descendant suspended in its own right stays suspended.
    assert await fetch(client, own["id"]) == own
    eff = await effective(client, own["id"])
    assert eff["status"] == {
        "value": "suspended",
        "source_account_id": own["id"],
        "blocked": True,
        "reason": None,
    }


# --- deletion --------------------------------------------------------------------------


async def test_delete_refused_while_it_has_children(client: httpx.AsyncClient, db: Database) -> None:
    parent = await create(client, "Parent")
    child = await create(client, "Child", parent_id=parent["id"])

    preview = await client.get(f"{API}/{parent['id']}/deletion")
    assert preview.status_code == 200, preview.text
    assert preview.json()["account_id"] == parent["id"]
    assert preview.json()["refused_because"] == ["it has child accounts: move or delete them first"]

    r = await client.delete(f"{API}/{parent['id']}")
    assert r.status_code == 409
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert "child accounts" in body["detail"]
    assert "move or delete" in body["fix"]
    assert body["report"]["refused_because"] == preview.json()["refused_because"]
    assert await fetch(client, parent["id"]) == parent
    assert await audit_events(db, parent["id"], "deleted") == []

    preview = (await client.get(f"{API}/{child['id']}/deletion")).json()
    assert preview == {
        "account_id": child["id"],
        "removed": {"accounts": 1, "parent_links": 1, "services": 0, "usage_events": 0},
        "kept": {
            "audit_events": 2,
            "usage_in_ancestors_totals": True,
            "issued_invoices": 0,
            "payments": 0,
        },  # "created", and "deleted"
        "refused_because": [],
    }
    r = await client.delete(f"{API}/{child['id']}")
    assert r.status_code == 200, r.text
    assert r.json() == preview
    assert [e.action for e in await audit_events(db, child["id"])] == ["created", "deleted"]
    assert (await client.get(f"{API}/{child['id']}")).status_code == 404
    assert (await client.get(f"{API}/{child['id']}/links")).status_code == 404
    assert await walk(client, f"{API}/{parent['id']}/children") == []
    assert len(await audit_events(db, child["id"], "deleted")) == 1

    # Now a leaf, the parent goes too.
    r = await client.delete(f"{API}/{parent['id']}")
    assert r.status_code == 200, r.text
    assert await walk(client, API) == []
    assert (await client.delete(f"{API}/{parent['id']}")).status_code == 404


async def test_delete_leaf_with_history(client: httpx.AsyncClient, db: Database, clock: FrozenClock) -> None:
    first = await create(client, "First")
    second = await create(client, "Second")
    leaf = await create(client, "Leaf", parent_id=first["id"])
    clock.advance(timedelta(days=1))
    await post(client, f"{API}/{leaf['id']}/move", {"parent_id": second["id"]})
    await post(client, f"{API}/{leaf['id']}/suspend")
    preview = (await client.get(f"{API}/{leaf['id']}/deletion")).json()
    assert preview["removed"] == {"accounts": 1, "parent_links": 2, "services": 0, "usage_events": 0}
    assert preview["kept"] == {
        "audit_events": 4,
        "usage_in_ancestors_totals": True,
        "issued_invoices": 0,
        "payments": 0,
    }
    r = await client.delete(f"{API}/{leaf['id']}")
    assert r.status_code == 200, r.text
    assert r.json() == preview
    async with db.transaction(write=False) as session:
        kept = await session.execute(select(AuditEvent.action).where(AuditEvent.account_id == leaf["id"]))
        assert sorted(kept.scalars()) == ["created", "deleted", "moved", "suspended"]
    # Its former parent is deletable: history does not pin it.
    assert (await client.delete(f"{API}/{first['id']}")).status_code == 200
    assert ids(await walk(client, API)) == [second["id"]]


# --- the HTTP frame --------------------------------------------------------------------


async def test_request_id_on_every_response(client: httpx.AsyncClient, app: Any) -> None:
    account = await create(client, "Account")
    responses = [
        await client.get(API),
        await client.get(f"{API}/{account['id']}"),
        await client.get(f"{API}/999999"),
        await client.post(API, json={"name": ""}),
        await client.patch(f"{API}/{account['id']}", json={"name": "Renamed"}),
        await client.post(f"{API}/{account['id']}/unsuspend"),
        await client.get(f"{API}/{account['id']}/effective"),
        await client.get("/api/v1/no-such-thing"),
        await client.put(f"{API}/{account['id']}", json={"name": "Put"}),
    ]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as anon:
        responses.append(await anon.get(API))
    seen = set()
    for r in responses:
        request_id = r.headers.get("x-request-id")
        assert request_id, f"{r.request.method} {r.request.url} has no request id"
        seen.add(request_id)
        if r.status_code >= 400:
            assert r.headers["content-type"] == PROBLEM
            assert r.json()["request_id"] == request_id
    assert len(seen) == len(responses)

    r = await client.get(f"{API}/{account['id']}", headers={"X-Request-ID": "trace-me-123"})
    assert r.headers["x-request-id"] == "trace-me-123"
    r = await client.get(f"{API}/999999", headers={"X-Request-ID": "trace-me-404"})
    assert r.headers["x-request-id"] == "trace-me-404"
    assert r.json()["request_id"] == "trace-me-404"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer bgh_not-a-real-token"}, {"Authorization": "Basic dXNlcjpwYXNz"}],
    ids=["missing", "unknown", "wrong-scheme"],
)
async def test_unauthorized_is_problem_json(app: Any, headers: dict[str, str]) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", headers=headers) as anon:
        for method, url in (("GET", API), ("POST", API), ("GET", f"{API}/1/effective")):
            r = await anon.request(method, url, json={"name": "x"} if method == "POST" else None)
            assert r.status_code == 401, r.text
            assert r.headers["content-type"] == PROBLEM
            assert r.headers["www-authenticate"] == "Bearer"
            assert r.headers["x-request-id"]
            body = r.json()
            assert body["status"] == 401
            assert body["fix"]


async def test_revoked_token_is_refused(client: httpx.AsyncClient, db: Database, clock: FrozenClock) -> None:
    from sqlalchemy import update

    from boughs.auth.models import ApiToken

    async with db.transaction() as session:
        await session.execute(update(ApiToken).values(revoked_at=clock.now()))
    r = await client.get(API)
    assert r.status_code == 401
    assert r.headers["content-type"] == PROBLEM


@pytest.fixture
async def other_client(app: Any, db: Database, clock: FrozenClock) -> AsyncIterator[httpx.AsyncClient]:
    other = await make_tenant(db, clock, "Other ISP")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", headers={"Authorization": f"Bearer {other.token}"}
    ) as http:
        yield http


async def test_another_providers_accounts_are_invisible(
    client: httpx.AsyncClient, other_client: httpx.AsyncClient
) -> None:
    theirs = await create(other_client, "Their customer", external_id="SHARED")
    their_child = await create(other_client, "Their child", parent_id=theirs["id"])
    mine = await create(client, "My customer", external_id="SHARED")  # external ids are per provider

    tid = theirs["id"]
    for method, url, body in [
        ("GET", f"{API}/{tid}", None),
        ("PATCH", f"{API}/{tid}", {"name": "Hijacked"}),
        ("GET", f"{API}/{tid}/children", None),
        ("GET", f"{API}/{tid}/descendants", None),
        ("GET", f"{API}/{tid}/ancestors", None),
        ("GET", f"{API}/{tid}/subtree-summary", None),
        ("GET", f"{API}/{tid}/effective", None),
        ("GET", f"{API}/{tid}/links", None),
        ("GET", f"{API}/{tid}/deletion", None),
        ("POST", f"{API}/{tid}/move", {"parent_id": None}),
        ("POST", f"{API}/{their_child['id']}/move", {"parent_id": mine["id"]}),
        ("POST", f"{API}/{tid}/renew", {"period": "month"}),
        ("POST", f"{API}/{tid}/suspend", None),
        ("POST", f"{API}/{tid}/unsuspend", None),
        ("POST", f"{API}/{tid}/cancel", None),
        ("DELETE", f"{API}/{their_child['id']}", None),
    ]:
        r = await client.request(method, url, json=body)
        assert r.status_code == 404, f"{method} {url}: {r.status_code} {r.text}"
        assert r.headers["content-type"] == PROBLEM
        # Answered exactly as an id that does not exist at all.
        assert r.json()["detail"].startswith("There is no account ")

    assert ids(await walk(client, API)) == [mine["id"]]
    assert ids(await walk(client, API, {"q": "Their"})) == []
    assert ids(await walk(client, API, {"q": "SHARED"})) == [mine["id"]]
    assert await walk(client, API, {"root_id": tid}) == []
    assert await walk(client, API, {"parent_id": tid}) == []

    # Their side saw nothing change.
    assert await fetch(other_client, tid) == theirs
    assert await fetch(other_client, their_child["id"]) == their_child
    assert ids(await walk(other_client, API)) == [tid, their_child["id"]]
