"""Who is billed, who pays and on what terms: the pure rules, then the account and provider
settings and the currency rule through the API (on SQLite and PostgreSQL)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from boughs.accounts.inheritance import Inherited
from boughs.accounts.models import Account, AccountLink
from boughs.audit.models import AuditEvent
from boughs.billing import terms
from boughs.db import Database

API = "/api/v1/accounts"
PROVIDER = "/api/v1/provider"


# --- the pure rules ------------------------------------------------------------------------------


@dataclass
class Node:
    id: int
    invoice_mode: str = "separate"
    name: str = ""
    external_id: str | None = None
    contact_email: str | None = None
    billing_address: str | None = None
    billing_tax_id: str | None = None
    billing_email: str | None = None
    tax_rate_ppm: int | None = None
    tax_exempt: bool = False
    net_terms_days: int | None = None


@dataclass
class Method:
    id: int
    account_id: int
    is_default: bool = False
    shared_with_children: bool = False
    kind: str = "card"
    label: str = ""
    last_four: str | None = "4242"
    holder: str | None = None
    token_reference: str | None = field(default="tok_secret")


@dataclass
class Defaults:
    default_tax_rate_ppm: int = 200_000
    default_net_terms_days: int = 30


def chain(*nodes: Node) -> list[Node]:
    return list(nodes)


@pytest.mark.parametrize(
    ("ppm", "text"),
    [(0, "0"), (88_750, "8.875"), (100_000, "10"), (1, "0.0001"), (1_000_000, "100"), (205_000, "20.5")],
)
def test_rate_text_has_no_trailing_zeros(ppm: int, text: str) -> None:
    assert terms.rate_text(ppm) == text
    assert terms.ppm_of(terms.parse_rate(text)) == ppm


@pytest.mark.parametrize("value", ["8.875", 8.875, "8.8750", 8, "0", "100", Decimal("19.6")])
def test_parse_rate_accepts_percents(value: Any) -> None:
    assert terms.parse_rate(value) == Decimal(str(value))


@pytest.mark.parametrize("value", ["8.87501", "-1", "100.0001", "abc", "NaN", "Infinity", True, None, [8]])
def test_parse_rate_refuses_with_a_fix(value: Any) -> None:
    with pytest.raises(ValueError, match="; "):
        terms.parse_rate(value)


def test_invoice_owner_walks_up_with_parent_accounts() -> None:
    root = Node(1, "with_parent")  # top level: always its own owner
    mid = Node(2, "with_parent")
    leaf = Node(3, "with_parent")
    assert terms.invoice_owner_of([root]) == 1
    assert terms.invoice_owner_of([root, mid, leaf]) == 1
    mid.invoice_mode = "separate"
    assert terms.invoice_owner_of([root, mid, leaf]) == 2
    assert terms.invoice_owner_of([root, mid]) == 2
    leaf.invoice_mode = "separate"
    assert terms.invoice_owner_of([root, mid, leaf]) == 3
    assert terms.invoice_owner([root, mid, leaf]) == Inherited(3, 3, "own")
    leaf.invoice_mode = "with_parent"
    assert terms.invoice_owner([root, mid, leaf]) == Inherited(2, 2, "inherited")


def test_payer_own_default_then_nearest_shared_ancestor() -> None:
    root, mid, owner = Node(1), Node(2), Node(3)
    methods: dict[int, list[Method]] = {
        1: [
            Method(10, 1, shared_with_children=True),
            Method(11, 1, is_default=True, shared_with_children=True),
        ],
        2: [Method(20, 2, is_default=True)],  # the middle's default is not shared
        3: [Method(30, 3, shared_with_children=True)],  # the owner's own, but not its default
    }
    found = terms.payer_of([root, mid, owner], methods)
    assert found == Inherited(
        {"id": 11, "kind": "card", "label": "", "last_four": "4242", "holder": None, "account_id": 1},
        1,
        "inherited",
    )
    assert "token_reference" not in found.value
    methods[2].append(Method(21, 2, shared_with_children=True))
    methods[2].append(Method(22, 2, shared_with_children=True))
    assert terms.payer_of([root, mid, owner], methods).value["id"] == 21  # lowest id, no shared default
    methods[3].append(Method(31, 3, is_default=True, kind="manual", last_four=None))
    assert terms.payer_of([root, mid, owner], methods) == Inherited(
        {"id": 31, "kind": "manual", "label": "", "last_four": None, "holder": None, "account_id": 3},
        3,
        "own",
    )
    assert terms.payer_of([Node(9)], {}) == Inherited(None, None, "none")
    # A top-level owner never inherits: it has no ancestors.
    assert terms.payer_of([root], {1: [Method(10, 1, shared_with_children=True)]}).source == "none"


def test_tax_rate_exempt_wins_at_its_level() -> None:
    provider = Defaults()
    root, mid, leaf = Node(1), Node(2), Node(3)
    assert terms.tax_rate_of([root, mid, leaf], provider) == Inherited(
        {"rate_ppm": 200_000, "exempt": False, "rate": "20"}, None, "provider"
    )
    root.tax_rate_ppm = 88_750
    assert terms.tax_rate_of([root, mid, leaf], provider) == Inherited(
        {"rate_ppm": 88_750, "exempt": False, "rate": "8.875"}, 1, "inherited"
    )
    mid.tax_exempt, mid.tax_rate_ppm = True, 50_000
    assert terms.tax_rate_of([root, mid, leaf], provider) == Inherited(
        {"rate_ppm": 0, "exempt": True, "rate": "0"}, 2, "inherited"
    )
    leaf.tax_rate_ppm = 0  # an explicit zero rate is a rate, not an exemption
    assert terms.tax_rate_of([root, mid, leaf], provider) == Inherited(
        {"rate_ppm": 0, "exempt": False, "rate": "0"}, 3, "own"
    )


def test_net_terms_and_bill_to() -> None:
    provider = Defaults()
    root = Node(
        1, name="Root", billing_address="1 Main St", billing_email="ap@root.example", net_terms_days=15
    )
    office = Node(
        2, name="Office", external_id="OF-2", contact_email="office@example.com", billing_tax_id="T-2"
    )
    assert terms.net_terms_of([root, office], provider) == Inherited(15, 1, "inherited")
    office.net_terms_days = 0
    assert terms.net_terms_of([root, office], provider) == Inherited(0, 2, "own")
    assert terms.net_terms_of([Node(5)], provider) == Inherited(30, None, "provider")
    assert terms.bill_to_of([root, office], provider) == {
        "name": "Office", "external_id": "OF-2", "account_id": 2, "address": "1 Main St",
        "tax_id": "T-2", "email": "ap@root.example",
    }  # fmt: skip
    root.billing_email = None
    assert terms.bill_to_of([root, office], provider)["email"] == "office@example.com"
    assert terms.bill_to_of([Node(7)], provider)["email"] is None


# --- the settings through the API ----------------------------------------------------------------


async def create(client: httpx.AsyncClient, name: str, **fields: Any) -> dict[str, Any]:
    r = await client.post(API, json={"name": name, **fields})
    assert r.status_code == 201, r.text
    return dict(r.json())


async def effective(client: httpx.AsyncClient, account_id: int) -> dict[str, Any]:
    r = await client.get(f"{API}/{account_id}/effective")
    assert r.status_code == 200, r.text
    return dict(r.json())


def fields_named(r: httpx.Response) -> list[str]:
    return [e["field"] for e in r.json().get("errors", [])]


async def database_state(db: Database) -> tuple[Any, ...]:
    async with db.transaction(write=False) as session:
        accounts = (await session.execute(select(Account).order_by(Account.id))).scalars()
        links = await session.execute(select(func.count()).select_from(AccountLink))
        events = await session.execute(select(func.count()).select_from(AuditEvent))
        rows = [{c.name: getattr(a, c.name) for c in Account.__table__.columns} for a in accounts]
        return rows, links.scalar_one(), events.scalar_one()


async def test_account_billing_settings_round_trip(client: httpx.AsyncClient, db: Database) -> None:
    account = await create(
        client, "Taxed", tax_rate="8.875", tax_exempt=False, net_terms_days=14, billing_anchor_day=15
    )
    assert (
        account["tax_rate"],
        account["tax_exempt"],
        account["net_terms_days"],
        account["billing_anchor_day"],
    ) == (
        "8.875",
        False,
        14,
        15,
    )
    async with db.transaction(write=False) as session:
        row = await session.get(Account, account["id"])
        assert row is not None and row.tax_rate_ppm == 88_750
    plain = await create(client, "Plain")
    assert (plain["tax_rate"], plain["tax_exempt"], plain["net_terms_days"], plain["billing_anchor_day"]) == (
        None,
        False,
        None,
        1,
    )
    r = await client.patch(f"{API}/{account['id']}", json={"tax_rate": 20, "net_terms_days": None})
    assert r.status_code == 200, r.text
    assert (r.json()["tax_rate"], r.json()["net_terms_days"]) == ("20", None)
    r = await client.patch(f"{API}/{account['id']}", json={"tax_rate": None, "tax_exempt": True})
    assert (r.json()["tax_rate"], r.json()["tax_exempt"]) == (None, True)
    assert (await client.get(f"{API}/{account['id']}")).json() == r.json()
    async with db.transaction(write=False) as session:
        events = (
            await session.execute(
                select(AuditEvent)
                .where(AuditEvent.entity == "account", AuditEvent.entity_id == str(account["id"]))
                .order_by(AuditEvent.id)
            )
        ).scalars()
        changes = [(e.before, e.after) for e in events][1:]
    assert changes == [
        ({"tax_rate_ppm": 88_750, "net_terms_days": 14}, {"tax_rate_ppm": 200_000, "net_terms_days": None}),
        ({"tax_rate_ppm": 200_000, "tax_exempt": False}, {"tax_rate_ppm": None, "tax_exempt": True}),
    ]


async def test_bad_account_settings_name_the_field(client: httpx.AsyncClient, db: Database) -> None:
    account = await create(client, "Target")
    url = f"{API}/{account['id']}"
    cases: list[tuple[str, str, dict[str, Any], str]] = [
        ("POST", API, {"name": "x", "tax_rate": "8.87501"}, "tax_rate"),
        ("POST", API, {"name": "x", "tax_rate": "-1"}, "tax_rate"),
        ("POST", API, {"name": "x", "tax_rate": "101"}, "tax_rate"),
        ("POST", API, {"name": "x", "tax_rate": "eight"}, "tax_rate"),
        ("POST", API, {"name": "x", "tax_rate": True}, "tax_rate"),
        ("POST", API, {"name": "x", "net_terms_days": 366}, "net_terms_days"),
        ("POST", API, {"name": "x", "net_terms_days": -1}, "net_terms_days"),
        ("POST", API, {"name": "x", "billing_anchor_day": 29}, "billing_anchor_day"),
        ("POST", API, {"name": "x", "billing_anchor_day": 0}, "billing_anchor_day"),
        ("POST", API, {"name": "x", "tax_exempt": "sometimes"}, "tax_exempt"),
        ("PATCH", url, {"tax_rate": "NaN"}, "tax_rate"),
        ("PATCH", url, {"tax_exempt": None}, "tax_exempt"),
        ("PATCH", url, {"billing_anchor_day": None}, "billing_anchor_day"),
        ("PATCH", url, {"billing_anchor_day": 31}, "billing_anchor_day"),
        ("PATCH", url, {"net_terms_days": 1000}, "net_terms_days"),
        ("PATCH", url, {"tax_rate_ppm": 5}, "tax_rate_ppm"),
    ]
    before = await database_state(db)
    for method, path, body, name in cases:
        r = await client.request(method, path, json=body)
        assert r.status_code == 422, (body, r.text)
        assert name in fields_named(r), (body, r.text)
        assert all(e.get("fix") for e in r.json()["errors"]), r.text
        assert await database_state(db) == before, body


async def test_tax_sources_exempt_override_and_provider_default(client: httpx.AsyncClient) -> None:
    r = await client.patch(PROVIDER, json={"default_tax_rate": "16", "default_net_terms_days": 21})
    assert r.status_code == 200, r.text
    root = await create(client, "Root")
    school = await create(client, "School", parent_id=root["id"], tax_exempt=True)
    canteen = await create(client, "Canteen", parent_id=school["id"])
    shop = await create(client, "Shop", parent_id=school["id"], tax_rate="8.875")

    assert (await effective(client, root["id"]))["tax_rate"] == {
        "value": {"rate_ppm": 160_000, "exempt": False, "rate": "16"},
        "source_account_id": None,
        "source": "provider",
    }
    assert (await effective(client, canteen["id"]))["tax_rate"] == {
        "value": {"rate_ppm": 0, "exempt": True, "rate": "0"},
        "source_account_id": school["id"],
        "source": "inherited",
    }
    assert (await effective(client, school["id"]))["tax_rate"]["source"] == "own"
    assert (await effective(client, shop["id"]))["tax_rate"] == {
        "value": {"rate_ppm": 88_750, "exempt": False, "rate": "8.875"},
        "source_account_id": shop["id"],
        "source": "own",
    }
    # Lifting the exemption hands the subtree back to the provider's default.
    await client.patch(f"{API}/{school['id']}", json={"tax_exempt": False})
    assert (await effective(client, canteen["id"]))["tax_rate"]["source"] == "provider"


async def test_net_terms_sources(client: httpx.AsyncClient) -> None:
    root = await create(client, "Root", net_terms_days=45)
    child = await create(client, "Child", parent_id=root["id"])
    grandchild = await create(client, "Grandchild", parent_id=child["id"], net_terms_days=0)
    other = await create(client, "Other")
    assert (await effective(client, child["id"]))["net_terms"] == {
        "value": 45,
        "source_account_id": root["id"],
        "source": "inherited",
    }
    assert (await effective(client, grandchild["id"]))["net_terms"] == {
        "value": 0,
        "source_account_id": grandchild["id"],
        "source": "own",
    }
    assert (await effective(client, other["id"]))["net_terms"] == {
        "value": 30,
        "source_account_id": None,
        "source": "provider",
    }


async def test_invoice_owner_follows_with_parent_up_the_tree(client: httpx.AsyncClient) -> None:
    """Seed 000: a landlord's units billed together, one billed separately."""
    landlord = await create(client, "Landlord")
    building = await create(client, "Building", parent_id=landlord["id"], invoice_mode="with_parent")
    unit = await create(client, "Unit 1", parent_id=building["id"], invoice_mode="with_parent")
    own_bill = await create(client, "Unit 2", parent_id=building["id"], invoice_mode="separate")
    lonely = await create(client, "Lonely top", invoice_mode="with_parent")

    def owned_by(owner: int, source: str) -> dict[str, Any]:
        return {"value": owner, "source_account_id": owner, "source": source}

    assert (await effective(client, unit["id"]))["invoice_owner"] == owned_by(landlord["id"], "inherited")
    assert (await effective(client, building["id"]))["invoice_owner"] == owned_by(landlord["id"], "inherited")
    assert (await effective(client, own_bill["id"]))["invoice_owner"] == owned_by(own_bill["id"], "own")
    assert (await effective(client, landlord["id"]))["invoice_owner"] == owned_by(landlord["id"], "own")
    assert (await effective(client, lonely["id"]))["invoice_owner"] == owned_by(lonely["id"], "own")
    await client.patch(f"{API}/{building['id']}", json={"invoice_mode": "separate"})
    assert (await effective(client, unit["id"]))["invoice_owner"] == owned_by(building["id"], "inherited")


async def test_provider_billing_settings(client: httpx.AsyncClient) -> None:
    before = (await client.get(PROVIDER)).json()
    assert {k: before[k] for k in ("default_tax_rate", "default_net_terms_days", "dunning_grace_days")} == {
        "default_tax_rate": "0",
        "default_net_terms_days": 30,
        "dunning_grace_days": 7,
    }
    assert (before["invoice_number_prefix"], before["credit_note_number_prefix"]) == ("INV-", "CN-")
    changes = {
        "default_tax_rate": "8.875",
        "default_net_terms_days": 14,
        "dunning_grace_days": 0,
        "invoice_number_prefix": "ACME/2026-",
        "credit_note_number_prefix": "CR_",
    }
    r = await client.patch(PROVIDER, json=changes)
    assert r.status_code == 200, r.text
    assert {k: r.json()[k] for k in changes} == changes
    after = (await client.get(PROVIDER)).json()
    assert after == r.json()

    for body, name in [
        ({"default_tax_rate": "8.87501"}, "default_tax_rate"),
        ({"default_tax_rate": "150"}, "default_tax_rate"),
        ({"default_tax_rate": None}, "default_tax_rate"),
        ({"default_net_terms_days": 366}, "default_net_terms_days"),
        ({"default_net_terms_days": None}, "default_net_terms_days"),
        ({"dunning_grace_days": -1}, "dunning_grace_days"),
        ({"invoice_number_prefix": ""}, "invoice_number_prefix"),
        ({"invoice_number_prefix": "X" * 17}, "invoice_number_prefix"),
        ({"invoice_number_prefix": "INV#"}, "invoice_number_prefix"),
        ({"credit_note_number_prefix": "CN€"}, "credit_note_number_prefix"),
        ({"credit_note_number_prefix": None}, "credit_note_number_prefix"),
    ]:
        r = await client.patch(PROVIDER, json=body)
        assert r.status_code == 422, (body, r.text)
        assert name in fields_named(r), (body, r.text)
        assert all(e.get("fix") for e in r.json()["errors"]), r.text
        assert (await client.get(PROVIDER)).json() == after, body


# --- the currency rule ---------------------------------------------------------------------------


async def test_currency_rule_on_create(client: httpx.AsyncClient, db: Database) -> None:
    parent = await create(client, "Euro parent", currency="EUR")
    before = await database_state(db)
    r = await client.post(
        API,
        json={
            "name": "Dollar child",
            "parent_id": parent["id"],
            "invoice_mode": "with_parent",
            "currency": "USD",
        },
    )
    assert r.status_code == 422, r.text
    assert set(fields_named(r)) == {"invoice_mode", "currency"}
    assert "EUR" in r.json()["detail"] and r.json()["errors"][0]["fix"]
    assert await database_state(db) == before
    # Its own invoices, in its own currency; or billed with the parent, in the parent's.
    await create(client, "Dollar office", parent_id=parent["id"], invoice_mode="separate", currency="USD")
    await create(client, "Euro office", parent_id=parent["id"], invoice_mode="with_parent", currency="EUR")
    inheriting = await create(client, "Inheriting", parent_id=parent["id"], invoice_mode="with_parent")
    assert (await effective(client, inheriting["id"]))["currency"]["value"] == "EUR"
    # A with_parent account at top level is its own invoice owner.
    await create(client, "Top", invoice_mode="with_parent", currency="GBP")


async def test_currency_rule_on_update(client: httpx.AsyncClient, db: Database) -> None:
    """owner (USD, the provider's) ── mid (with_parent) ── leaf (separate, EUR) ── kid (with_parent, EUR)"""
    owner = await create(client, "Owner")
    mid = await create(client, "Mid", parent_id=owner["id"], invoice_mode="with_parent")
    leaf = await create(client, "Leaf", parent_id=mid["id"], invoice_mode="separate", currency="EUR")
    kid = await create(client, "Kid", parent_id=leaf["id"], invoice_mode="with_parent", currency="EUR")
    before = await database_state(db)

    async def refused(account_id: int, body: dict[str, Any], names: set[str]) -> None:
        r = await client.patch(f"{API}/{account_id}", json=body)
        assert r.status_code == 422, (body, r.text)
        assert set(fields_named(r)) == names, r.text
        assert await database_state(db) == before, body

    # The leaf joining its parent's invoice would put EUR charges on a USD invoice.
    await refused(leaf["id"], {"invoice_mode": "with_parent"}, {"invoice_mode"})
    await refused(mid["id"], {"currency": "GBP"}, {"currency"})
    # The leaf's own currency carries its with_parent kid: changing it alone strands the kid.
    await refused(leaf["id"], {"currency": "GBP"}, {"currency"})
    await refused(leaf["id"], {"currency": None}, {"currency"})
    await refused(kid["id"], {"currency": "USD"}, {"currency"})
    # The owner changing its currency carries mid along (it inherits); no with_parent account disagrees.
    r = await client.patch(f"{API}/{owner['id']}", json={"currency": "GBP"})
    assert r.status_code == 200, r.text
    assert (await effective(client, mid["id"]))["currency"]["value"] == "GBP"
    # A with_parent child that names its currency holds the owner to it.
    r = await client.patch(f"{API}/{mid['id']}", json={"currency": "GBP"})
    assert r.status_code == 200, r.text
    r = await client.patch(f"{API}/{owner['id']}", json={"currency": "USD"})
    assert r.status_code == 422 and fields_named(r) == ["currency"], r.text
    assert str(mid["id"]) in r.json()["detail"]
    # The timezone plays no part; the leaf joins once it bills in the owner's currency.
    assert (await client.patch(f"{API}/{leaf['id']}", json={"timezone": "Asia/Tokyo"})).status_code == 200
    r = await client.patch(f"{API}/{kid['id']}", json={"currency": None})
    assert r.status_code == 200, r.text
    r = await client.patch(f"{API}/{leaf['id']}", json={"currency": "GBP", "invoice_mode": "with_parent"})
    assert r.status_code == 200, r.text
    assert (await effective(client, kid["id"]))["invoice_owner"]["value"] == owner["id"]
    assert (await effective(client, kid["id"]))["currency"]["value"] == "GBP"
    # Leaving the parent's invoice is always allowed.
    r = await client.patch(f"{API}/{leaf['id']}", json={"invoice_mode": "separate", "currency": "EUR"})
    assert r.status_code == 200, r.text


async def test_currency_rule_on_move(client: httpx.AsyncClient, db: Database) -> None:
    euro = await create(client, "Euro owner", currency="EUR")
    dollar = await create(client, "Dollar owner", currency="USD")
    sets_eur = await create(
        client, "Sets EUR", parent_id=euro["id"], invoice_mode="with_parent", currency="EUR"
    )
    inherits = await create(client, "Inherits", parent_id=euro["id"], invoice_mode="with_parent")
    below = await create(
        client, "Below", parent_id=inherits["id"], invoice_mode="with_parent", currency="EUR"
    )
    separate = await create(client, "Separate", parent_id=euro["id"], invoice_mode="separate")
    separate_kid = await create(client, "Separate kid", parent_id=separate["id"], invoice_mode="with_parent")
    before = await database_state(db)

    async def move(account_id: int, parent_id: int | None) -> httpx.Response:
        return await client.post(f"{API}/{account_id}/move", json={"parent_id": parent_id})

    # Its own EUR cannot ride on a USD invoice.
    r = await move(sets_eur["id"], dollar["id"])
    assert r.status_code == 422 and fields_named(r) == ["parent_id"], r.text
    # It follows the new owner's currency, but a descendant that sets EUR would not.
    r = await move(inherits["id"], dollar["id"])
    assert r.status_code == 422 and fields_named(r) == ["parent_id"], r.text
    assert str(below["id"]) in r.json()["detail"]
    assert await database_state(db) == before
    # A separate account whose with_parent children inherit its currency moves freely.
    r = await move(separate["id"], dollar["id"])
    assert r.status_code == 200, r.text
    assert (await effective(client, separate_kid["id"]))["currency"]["value"] == "USD"
    assert (await effective(client, separate_kid["id"]))["invoice_owner"]["value"] == separate["id"]
    # To the top level, an account becomes its own owner: nothing to disagree with above it.
    r = await move(sets_eur["id"], None)
    assert r.status_code == 200, r.text
    # Once the descendant inherits too, the whole branch follows the dollar owner.
    assert (await client.patch(f"{API}/{below['id']}", json={"currency": None})).status_code == 200
    r = await move(inherits["id"], dollar["id"])
    assert r.status_code == 200, r.text
    assert (await effective(client, below["id"]))["currency"]["value"] == "USD"
