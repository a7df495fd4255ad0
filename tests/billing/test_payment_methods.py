"""Payment methods through the API (seed 002), and which one an account pays with, on SQLite
and PostgreSQL."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
from sqlalchemy import event, func, select

from boughs.audit.models import AuditEvent
from boughs.billing.models import PaymentMethod
from boughs.db import Database

API = "/api/v1/accounts"
PROBLEM = "application/problem+json"


# --- helpers -------------------------------------------------------------------------------------


async def account(client: httpx.AsyncClient, name: str, **fields: Any) -> int:
    r = await client.post(API, json={"name": name, **fields})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def methods_url(account_id: int, method_id: int | None = None) -> str:
    url = f"{API}/{account_id}/payment-methods"
    return url if method_id is None else f"{url}/{method_id}"


async def add(client: httpx.AsyncClient, account_id: int, **fields: Any) -> dict[str, Any]:
    body = {"kind": "card", "label": "Visa", "last_four": "4242", "token_reference": "tok_1", **fields}
    r = await client.post(methods_url(account_id), json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def listed(client: httpx.AsyncClient, account_id: int) -> list[dict[str, Any]]:
    r = await client.get(methods_url(account_id), params={"limit": 500})
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def effective(client: httpx.AsyncClient, account_id: int) -> dict[str, Any]:
    r = await client.get(f"{API}/{account_id}/effective")
    assert r.status_code == 200, r.text
    return dict(r.json())


def fields_named(r: httpx.Response) -> list[str]:
    return [e["field"] for e in r.json().get("errors", [])]


async def audit_of(db: Database, method_id: int) -> list[tuple[str, Any, Any]]:
    async with db.transaction(write=False) as session:
        rows = await session.execute(
            select(AuditEvent)
            .where(AuditEvent.entity == "payment_method", AuditEvent.entity_id == str(method_id))
            .order_by(AuditEvent.id)
        )
        return [(e.action, e.before, e.after) for e in rows.scalars()]


async def stored(db: Database) -> tuple[list[dict[str, Any]], int]:
    """Every method row and the number of audit events: what a refused request must not touch."""
    async with db.transaction(write=False) as session:
        methods = (await session.execute(select(PaymentMethod).order_by(PaymentMethod.id))).scalars()
        events = (await session.execute(select(func.count()).select_from(AuditEvent))).scalar_one()
        rows = [{c.name: getattr(m, c.name) for c in PaymentMethod.__table__.columns} for m in methods]
        return rows, int(events)


# --- create, read, update, delete ---------------------------------------------------------------


async def test_crud_with_audit(client: httpx.AsyncClient, db: Database) -> None:
    owner = await account(client, "Acme")
    r = await client.post(
        methods_url(owner),
        json={
            "kind": "card", "label": "Company Visa", "last_four": "4242", "holder": "Acme Ltd",
            "token_reference": "tok_visa_123", "shared_with_children": True,
        },
    )  # fmt: skip
    assert r.status_code == 201, r.text
    card = r.json()
    assert r.headers["location"] == methods_url(owner, card["id"])
    assert card == {
        "id": card["id"], "account_id": owner, "kind": "card", "label": "Company Visa",
        "last_four": "4242", "holder": "Acme Ltd", "token_reference": "tok_visa_123",
        # The account's first method is its default unless the request says otherwise.
        "is_default": True, "shared_with_children": True,
        "created_at": card["created_at"], "updated_at": card["updated_at"],
    }  # fmt: skip
    wallet = await add(
        client, owner, kind="mobile_money", label="M-Pesa", last_four=None, token_reference=None
    )
    assert wallet["is_default"] is False and wallet["shared_with_children"] is False
    assert (await client.get(methods_url(owner, card["id"]))).json() == card

    # The list is paginated by id.
    for n in range(3):
        await add(client, owner, kind="manual", label=f"Cash {n}", last_four=None)
    seen: list[int] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(methods_url(owner), params=params)).json()
        assert set(page) == {"items", "next_cursor"} and len(page["items"]) <= 2
        seen += [m["id"] for m in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(seen) and len(seen) == 5 and seen[:2] == [card["id"], wallet["id"]]

    r = await client.patch(methods_url(owner, card["id"]), json={"label": "Old Visa", "holder": None})
    assert r.status_code == 200, r.text
    assert (r.json()["label"], r.json()["holder"]) == ("Old Visa", None)
    r = await client.patch(methods_url(owner, card["id"]), json={"token_reference": "tok_visa_456"})
    assert r.status_code == 200 and r.json()["token_reference"] == "tok_visa_456"
    r = await client.delete(methods_url(owner, card["id"]))
    assert r.status_code == 204, r.text
    r = await client.get(methods_url(owner, card["id"]))
    assert r.status_code == 404 and r.headers["content-type"].startswith(PROBLEM)

    events = await audit_of(db, card["id"])
    assert [e[0] for e in events] == ["created", "updated", "updated", "deleted"]
    assert events[0][2]["has_token_reference"] is True and "tok_visa_123" not in json.dumps(events)
    assert events[1][1:] == (
        {"label": "Company Visa", "holder": "Acme Ltd"},
        {"label": "Old Visa", "holder": None},
    )
    assert events[2][2] == {"token_reference": "replaced"}
    assert events[3][1]["label"] == "Old Visa" and events[3][2] is None


async def test_bad_input_names_the_field_and_changes_nothing(client: httpx.AsyncClient, db: Database) -> None:
    owner = await account(client, "Acme")
    card = await add(client, owner)
    cases: list[tuple[str, str, dict[str, Any], str]] = [
        ("POST", methods_url(owner), {"kind": "cheque"}, "kind"),
        ("POST", methods_url(owner), {"label": "x"}, "kind"),
        ("POST", methods_url(owner), {"kind": "card", "last_four": "424"}, "last_four"),
        ("POST", methods_url(owner), {"kind": "card", "last_four": "42a4"}, "last_four"),
        ("POST", methods_url(owner), {"kind": "card", "last_four": "42424"}, "last_four"),
        ("POST", methods_url(owner), {"kind": "manual", "last_four": "4242"}, "last_four"),
        ("POST", methods_url(owner), {"kind": "mobile_money", "last_four": "4242"}, "last_four"),
        (
            "POST",
            methods_url(owner),
            {"kind": "card", "token_reference": "4111111111111111"},
            "token_reference",
        ),
        (
            "POST",
            methods_url(owner),
            {"kind": "card", "token_reference": "4111 1111 1111 1111"},
            "token_reference",
        ),
        (
            "POST",
            methods_url(owner),
            {"kind": "card", "token_reference": "pan:4111-1111-1111-1111"},
            "token_reference",
        ),
        (
            "POST",
            methods_url(owner),
            {"kind": "bank_account", "token_reference": "000123456789"},
            "token_reference",
        ),
        ("POST", methods_url(owner), {"kind": "card", "token_reference": ""}, "token_reference"),
        ("POST", methods_url(owner), {"kind": "card", "label": "x" * 201}, "label"),
        ("POST", methods_url(owner), {"kind": "card", "holder": ""}, "holder"),
        ("POST", methods_url(owner), {"kind": "card", "number": "4111111111111111"}, "number"),
        ("POST", methods_url(owner), {"kind": "card", "is_default": "maybe"}, "is_default"),
        ("PATCH", methods_url(owner, card["id"]), {"is_default": None}, "is_default"),
        ("PATCH", methods_url(owner, card["id"]), {"shared_with_children": None}, "shared_with_children"),
        ("PATCH", methods_url(owner, card["id"]), {"label": None}, "label"),
        ("PATCH", methods_url(owner, card["id"]), {"kind": None}, "kind"),
        ("PATCH", methods_url(owner, card["id"]), {"last_four": "abcd"}, "last_four"),
        ("PATCH", methods_url(owner, card["id"]), {"token_reference": "5555555555554444"}, "token_reference"),
        # The card keeps its last four digits: a manual method cannot have them.
        ("PATCH", methods_url(owner, card["id"]), {"kind": "manual"}, "kind"),
        ("PATCH", methods_url(owner, card["id"]), {"kind": "manual", "last_four": "1234"}, "last_four"),
    ]
    before = await stored(db)
    for method, url, body, field in cases:
        r = await client.request(method, url, json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"].startswith(PROBLEM)
        problems = r.json()["errors"]
        assert field in [p["field"] for p in problems], (body, r.text)
        assert all(p.get("fix") for p in problems), r.text
        assert await stored(db) == before, body
    # Tokens that merely contain digits, and a card turned manual with its digits cleared, are fine.
    for token in ("tok_1MqL3v2eZvKYlo2C", "cus_9s6XKzkNRiz8i3:card_123", "12345678901"):
        r = await client.patch(methods_url(owner, card["id"]), json={"token_reference": token})
        assert r.status_code == 200, (token, r.text)
    r = await client.patch(methods_url(owner, card["id"]), json={"kind": "manual", "last_four": None})
    assert r.status_code == 200 and r.json()["kind"] == "manual", r.text


async def test_one_default_per_account(client: httpx.AsyncClient, db: Database) -> None:
    owner, other = await account(client, "Acme"), await account(client, "Other")
    first = await add(client, owner)
    second = await add(client, owner, label="Amex", last_four="0005")
    foreign_default = await add(client, other)
    assert (first["is_default"], second["is_default"]) == (True, False)

    third = await add(client, owner, label="Mastercard", last_four="4444", is_default=True)
    assert third["is_default"] is True
    defaults = {m["id"] for m in await listed(client, owner) if m["is_default"]}
    assert defaults == {third["id"]}
    events = await audit_of(db, first["id"])
    assert [e[0] for e in events] == ["created", "updated"]
    assert events[1][1:] == ({"is_default": True}, {"is_default": False})

    r = await client.patch(methods_url(owner, second["id"]), json={"is_default": True})
    assert r.status_code == 200 and r.json()["is_default"] is True
    defaults = {m["id"] for m in await listed(client, owner) if m["is_default"]}
    assert defaults == {second["id"]}
    # Making the default the default again changes nothing.
    r = await client.patch(methods_url(owner, second["id"]), json={"is_default": True})
    assert r.status_code == 200 and len(await audit_of(db, second["id"])) == 2
    # Another account's default is its own business.
    assert [m["is_default"] for m in await listed(client, other)] == [True]
    assert foreign_default["is_default"] is True

    # Unsetting the default, or deleting it, leaves the account with none: that is allowed.
    r = await client.patch(methods_url(owner, second["id"]), json={"is_default": False})
    assert r.status_code == 200 and not any(m["is_default"] for m in await listed(client, owner))
    await client.patch(methods_url(owner, third["id"]), json={"is_default": True})
    assert (await client.delete(methods_url(owner, third["id"]))).status_code == 204
    assert not any(m["is_default"] for m in await listed(client, owner))
    # The database agrees: never more than one default per account.
    async with db.transaction(write=False) as session:
        counts = await session.execute(
            select(PaymentMethod.account_id, func.count())
            .where(PaymentMethod.is_default.is_(True))
            .group_by(PaymentMethod.account_id)
        )
        assert all(n == 1 for _, n in counts.all())


async def test_another_accounts_method_is_not_found(client: httpx.AsyncClient) -> None:
    """A method named under an account it does not belong to answers as a missing one."""
    mine, theirs = await account(client, "Mine"), await account(client, "Theirs")
    their_card = await add(client, theirs)
    my_card = await add(client, mine)
    missing_id = my_card["id"] + their_card["id"] + 1000

    def shape(r: httpx.Response, method_id: int) -> str:
        body = {k: v for k, v in r.json().items() if k not in ("request_id", "instance")}
        text = json.dumps(body, sort_keys=True)
        return re.sub(rf"payment method {method_id}\b", "payment method <id>", text)

    for verb, body in (("GET", None), ("PATCH", {"label": "Stolen"}), ("DELETE", None)):
        wrong = await client.request(verb, methods_url(mine, their_card["id"]), json=body)
        missing = await client.request(verb, methods_url(mine, missing_id), json=body)
        assert wrong.status_code == missing.status_code == 404, (verb, wrong.text)
        assert shape(wrong, their_card["id"]) == shape(missing, missing_id)
    assert (await client.get(methods_url(theirs, their_card["id"]))).json() == their_card
    assert (await client.get(methods_url(987_654_321))).status_code == 404


# --- which method an account pays with -----------------------------------------------------------


async def test_a_child_uses_its_parents_shared_method(client: httpx.AsyncClient) -> None:
    parent = await account(client, "Acme")
    child = await account(client, "Acme Branch", parent_id=parent, invoice_mode="with_parent")
    await add(client, parent, label="Private", last_four="1111")  # the parent's default, not shared
    assert (await effective(client, child))["payment_method"] == {
        "value": None,
        "source_account_id": None,
        "source": "none",
    }
    shared = await add(
        client, parent, label="Shared Visa", last_four="4242", holder="Acme", shared_with_children=True
    )
    assert (await effective(client, child))["payment_method"] == {
        "value": {
            "id": shared["id"], "kind": "card", "label": "Shared Visa", "last_four": "4242",
            "holder": "Acme", "account_id": parent,
        },
        "source_account_id": parent,
        "source": "inherited",
    }  # fmt: skip
    # The parent itself pays with its own default.
    mine = await effective(client, parent)
    assert mine["payment_method"]["source"] == "own" and mine["payment_method"]["value"]["label"] == "Private"

    # A child's own default wins over what it could inherit; a non-default one does not.
    await add(client, child, kind="manual", label="Cheque", last_four=None, is_default=False)
    assert (await effective(client, child))["payment_method"]["value"]["id"] == shared["id"]
    own = await add(client, child, kind="mobile_money", label="M-Pesa", last_four=None, is_default=True)
    assert (await effective(client, child))["payment_method"] == {
        "value": {
            "id": own["id"], "kind": "mobile_money", "label": "M-Pesa", "last_four": None,
            "holder": None, "account_id": child,
        },
        "source_account_id": child,
        "source": "own",
    }  # fmt: skip


async def test_the_nearest_sharing_ancestor_pays_default_first(client: httpx.AsyncClient) -> None:
    root = await account(client, "Holding")
    region = await account(client, "Region", parent_id=root)
    office = await account(client, "Office", parent_id=region)
    older = await add(client, root, label="Root old", shared_with_children=True, is_default=False)
    await add(client, root, label="Root newer", shared_with_children=True, is_default=False)
    payer = (await effective(client, office))["payment_method"]
    assert (payer["value"]["id"], payer["source_account_id"]) == (older["id"], root)
    # The ancestor's default, when shared, comes before its older shared methods.
    root_default = await add(client, root, label="Root default", shared_with_children=True, is_default=True)
    assert (await effective(client, office))["payment_method"]["value"]["id"] == root_default["id"]
    # A nearer ancestor's shared method wins over the root's.
    near = await add(client, region, label="Region card", shared_with_children=True)
    payer = (await effective(client, office))["payment_method"]
    assert (payer["value"]["id"], payer["source_account_id"], payer["source"]) == (
        near["id"],
        region,
        "inherited",
    )
    # Stop sharing it, and the root pays again.
    await client.patch(methods_url(region, near["id"]), json={"shared_with_children": False})
    assert (await effective(client, office))["payment_method"]["source_account_id"] == root


async def test_a_second_office_pays_its_own_bill_on_the_parents_shared_card(
    client: httpx.AsyncClient,
) -> None:
    """Seed 002: a business whose second office is billed separately but pays on the card the
    parent allowed its child accounts to use; the office's bill-to details stay its own."""
    business = await account(
        client, "Harbour Foods", billing_address="1 Quay St", billing_email="ap@harbour.example"
    )
    head_office = await account(client, "Head office", parent_id=business, invoice_mode="with_parent")
    second = await account(
        client, "Second office", parent_id=business, invoice_mode="separate", billing_address="9 Hill Rd"
    )
    card = await add(
        client,
        business,
        label="Corporate Visa",
        last_four="4242",
        holder="Harbour Foods",
        shared_with_children=True,
    )

    eff = await effective(client, second)
    assert eff["invoice_owner"] == {"value": second, "source_account_id": second, "source": "own"}
    assert eff["payment_method"]["value"]["id"] == card["id"]
    assert (eff["payment_method"]["source"], eff["payment_method"]["source_account_id"]) == (
        "inherited",
        business,
    )
    assert eff["billing_details"]["address"]["value"] == "9 Hill Rd"
    assert eff["billing_details"]["email"] == {
        "value": "ap@harbour.example",
        "source_account_id": business,
        "source": "inherited",
    }
    head = await effective(client, head_office)
    assert head["invoice_owner"] == {"value": business, "source_account_id": business, "source": "inherited"}

    # When the office gets its own card, it pays with that one.
    own = await add(client, second, label="Office Mastercard", last_four="4444")
    eff = await effective(client, second)
    assert eff["payment_method"]["value"]["id"] == own["id"] and eff["payment_method"]["source"] == "own"


async def test_effective_loads_the_chains_methods_in_one_query(
    client: httpx.AsyncClient, db: Database
) -> None:
    root = await account(client, "Root")
    mid = await account(client, "Mid", parent_id=root)
    leaf = await account(client, "Leaf", parent_id=mid)
    for owner in (root, mid, leaf):
        await add(client, owner, shared_with_children=True)
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "payment_methods" in statement:
            statements.append(statement)

    for engine in (db.engine, db.read_engine):
        event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        await effective(client, leaf)
    finally:
        for engine in (db.engine, db.read_engine):
            event.remove(engine.sync_engine, "before_cursor_execute", count)
    assert len(statements) == 1, statements


async def test_reading_needs_read_and_writing_needs_billing(
    client: httpx.AsyncClient, db: Database, clock: Any, tenant: Any
) -> None:
    """The matrix covers every role; this spells out the billing role and the viewer."""
    from boughs.auth import service as auth
    from boughs.memberships.models import Membership

    office = await account(client, "Office")
    card = await add(client, office)
    tokens: dict[str, str] = {}
    async with db.transaction() as session:
        for role in ("billing", "viewer"):
            user = await auth.create_user(
                session, tenant.provider_id, f"{role}@office.example", None, clock.now()
            )
            session.add(
                Membership(
                    provider_id=tenant.provider_id, user_id=user.id, account_id=office, role=role,
                    created_at=clock.now(),
                )
            )  # fmt: skip
            tokens[role] = (await auth.issue_token(session, user, role, clock.now())).token
    for role, may_write in (("billing", True), ("viewer", False)):
        headers = {"Authorization": f"Bearer {tokens[role]}"}
        assert (await client.get(methods_url(office), headers=headers)).status_code == 200
        r = await client.patch(methods_url(office, card["id"]), json={"label": role}, headers=headers)
        assert r.status_code == (200 if may_write else 403), r.text
        r = await client.post(methods_url(office), json={"kind": "manual"}, headers=headers)
        assert r.status_code == (201 if may_write else 403), r.text
