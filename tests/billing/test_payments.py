"""Payments: allocation oldest-first or to chosen invoices, credit balances, retries by
reference, refunds, and what may be paid with what."""

from __future__ import annotations

from datetime import date
from typing import Any

import httpx
from sqlalchemy import select

from boughs.billing import ledger
from boughs.billing.models import Invoice, PaymentMethod
from tests.billing.payments_matrix_cases import make_invoice, payment_body
from tests.usage.support import member, new_account, token_for

API = "/api/v1"


async def invoice_state(ctx_factory: Any, *ids: int) -> list[tuple[str, int, bool]]:
    """(status, balance due, paid_at set) of each invoice."""
    async with ctx_factory() as ctx:
        rows = {i.id: i for i in await ctx.session.scalars(select(Invoice).where(Invoice.id.in_(ids)))}
        return [(rows[i].status, ledger.balance_due(rows[i]), rows[i].paid_at is not None) for i in ids]


async def pay(client: httpx.AsyncClient, account_id: int, amount: int, **fields: Any) -> httpx.Response:
    return await client.post(f"{API}/accounts/{account_id}/payments", json=payment_body(amount, **fields))


def allocations(response: httpx.Response) -> list[tuple[int, int]]:
    return [(a["invoice_id"], a["amount"]) for a in response.json()["allocations"]]


async def test_oldest_first_across_three_invoices(client: httpx.AsyncClient, ctx_factory: Any) -> None:
    async with ctx_factory() as ctx:
        account = await new_account(ctx, "Three invoices")
        december = await make_invoice(ctx, account, 3_000, due_date=date(2025, 12, 1))
        november = await make_invoice(ctx, account, 2_000, due_date=date(2025, 11, 1))
        december_later = await make_invoice(ctx, account, 4_000, due_date=date(2025, 12, 1))
    r = await pay(client, account, 6_000)
    assert r.status_code == 201, r.text
    # By due date, then id: November, then the two of December in the order they were made.
    assert allocations(r) == [(november.id, 2_000), (december.id, 3_000), (december_later.id, 1_000)]
    assert r.json()["unallocated_amount"] == 0
    assert r.headers["location"] == f"/api/v1/payments/{r.json()['id']}"
    assert await invoice_state(ctx_factory, november.id, december.id, december_later.id) == [
        ("paid", 0, True),
        ("paid", 0, True),
        ("finalized", 3_000, False),
    ]
    got = await client.get(f"{API}/payments/{r.json()['id']}")
    assert got.status_code == 200 and allocations(got) == allocations(r)


async def test_chosen_invoices_in_the_order_given(client: httpx.AsyncClient, ctx_factory: Any) -> None:
    async with ctx_factory() as ctx:
        account = await new_account(ctx, "Chooses")
        first = await make_invoice(ctx, account, 1_000, due_date=date(2025, 10, 1))
        second = await make_invoice(ctx, account, 2_000, due_date=date(2025, 11, 1))
        third = await make_invoice(ctx, account, 3_000, due_date=date(2025, 12, 1))
    r = await pay(client, account, 4_500, invoice_ids=[third.id, first.id])
    assert r.status_code == 201, r.text
    assert allocations(r) == [(third.id, 3_000), (first.id, 1_000)]
    # The rest is not spread over the invoice nobody named: it is the account's credit.
    assert r.json()["unallocated_amount"] == 500
    assert await invoice_state(ctx_factory, first.id, second.id, third.id) == [
        ("paid", 0, True),
        ("finalized", 2_000, False),
        ("paid", 0, True),
    ]
    # An empty list pays nothing: all of it stays credit.
    r = await pay(client, account, 700, invoice_ids=[])
    assert r.status_code == 201 and allocations(r) == [] and r.json()["unallocated_amount"] == 700


async def test_chosen_invoices_must_be_open_invoices_of_the_account(
    client: httpx.AsyncClient, ctx_factory: Any
) -> None:
    async with ctx_factory() as ctx:
        account = await new_account(ctx, "Mine")
        other = await new_account(ctx, "Not mine")
        open_one = await make_invoice(ctx, account, 1_000)
        theirs = await make_invoice(ctx, other, 1_000)
        draft = await make_invoice(ctx, account, 1_000, status="draft")
        paid = await make_invoice(ctx, account, 1_000)
    assert (await pay(client, account, 1_000, invoice_ids=[paid.id])).status_code == 201
    cases = [
        ([open_one.id, theirs.id], "invoice_ids.1"),
        ([draft.id], "invoice_ids.0"),
        ([paid.id], "invoice_ids.0"),
        ([open_one.id, open_one.id], "invoice_ids.1"),
        ([987_654_321], "invoice_ids.0"),
    ]
    for ids, field in cases:
        r = await pay(client, account, 500, invoice_ids=ids)
        assert r.status_code == 422, (ids, r.text)
        assert [e["field"] for e in r.json()["errors"]] == [field], r.text
    assert await invoice_state(ctx_factory, open_one.id, theirs.id) == [
        ("finalized", 1_000, False),
        ("finalized", 1_000, False),
    ]


async def test_overpayment_is_credit_that_the_next_finalized_invoice_takes(
    client: httpx.AsyncClient, ctx_factory: Any
) -> None:
    async with ctx_factory() as ctx:
        account = await new_account(ctx, "Pays ahead")
        first = await make_invoice(ctx, account, 1_000)
    r = await pay(client, account, 2_500)
    assert allocations(r) == [(first.id, 1_000)] and r.json()["unallocated_amount"] == 1_500
    later = await pay(client, account, 400, received_on="2026-01-14")

    async with ctx_factory() as ctx:
        # Finalizing runs ledger.invoice_finalized: the credit pays it, oldest payment first.
        second = await make_invoice(ctx, account, 1_200)
    assert await invoice_state(ctx_factory, second.id) == [("paid", 0, True)]
    # The 400 was received a day earlier, so it is the older credit and goes first.
    assert (await client.get(f"{API}/payments/{later.json()['id']}")).json()["unallocated_amount"] == 0
    assert (await client.get(f"{API}/payments/{r.json()['id']}")).json()["unallocated_amount"] == 700

    async with ctx_factory() as ctx:
        third = await make_invoice(ctx, account, 1_000)
    assert await invoice_state(ctx_factory, third.id) == [("finalized", 300, False)]
    assert (await client.get(f"{API}/payments/{r.json()['id']}")).json()["unallocated_amount"] == 0
    listed = await client.get(f"{API}/accounts/{account}/payments")
    assert [p["id"] for p in listed.json()["items"]] == [later.json()["id"], r.json()["id"]]


async def test_a_retry_by_reference_answers_the_payment_already_recorded(
    client: httpx.AsyncClient, ctx_factory: Any
) -> None:
    async with ctx_factory() as ctx:
        account = await new_account(ctx, "Retries")
        invoice = await make_invoice(ctx, account, 1_000)
    body = payment_body(600, "bank-tx-1", note="January")
    first = await client.post(f"{API}/accounts/{account}/payments", json=body)
    again = await client.post(f"{API}/accounts/{account}/payments", json=body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    # Recorded once: one ledger entry, one allocation.
    ledger_page = (await client.get(f"{API}/accounts/{account}/transactions")).json()
    assert [t["kind"] for t in ledger_page["items"]] == ["payment", "invoice"]
    assert await invoice_state(ctx_factory, invoice.id) == [("finalized", 400, False)]

    conflict = await client.post(f"{API}/accounts/{account}/payments", json={**body, "amount": 700})
    assert conflict.status_code == 409, conflict.text
    assert conflict.json()["errors"][0]["field"] == "reference"
    assert "amount" in conflict.json()["detail"] and conflict.json()["payment_id"] == first.json()["id"]
    # The reference is the account's: another account may use it.
    async with ctx_factory() as ctx:
        other = await new_account(ctx, "Same reference")
    assert (await client.post(f"{API}/accounts/{other}/payments", json=body)).status_code == 201


async def test_payment_checks(client: httpx.AsyncClient, ctx_factory: Any) -> None:
    async with ctx_factory() as ctx:
        parent = await new_account(ctx, "Parent", timezone="Pacific/Kiritimati")
        child = await new_account(ctx, "Child", parent)
        euro = await new_account(ctx, "Euro", currency="EUR")
        stranger = await new_account(ctx, "Stranger")
        now = ctx.now()
        methods = {}
        for owner, shared in ((parent, True), (parent, False), (stranger, True)):
            method = PaymentMethod(
                provider_id=ctx.provider_id, account_id=owner, kind="card", label="Visa", last_four="4242",
                shared_with_children=shared, created_at=now, updated_at=now,
            )  # fmt: skip
            ctx.session.add(method)
            await ctx.session.flush()
            methods[(owner, shared)] = method.id

    async def field_of(account: int, **fields: Any) -> str | None:
        r = await pay(client, account, 100, **fields)
        if r.status_code == 201:
            return None
        assert r.status_code == 422, r.text
        return str(r.json()["errors"][0]["field"])

    assert await field_of(euro) == "currency"
    assert await field_of(euro, currency="eur") is None
    # 2026-01-16 is already today at UTC+14 (the parent's timezone, which the child inherits).
    assert await field_of(child, received_on="2026-01-16") is None
    assert await field_of(stranger, received_on="2026-01-16") == "received_on"
    assert await field_of(child, payment_method_id=methods[(parent, True)]) is None
    assert await field_of(child, payment_method_id=methods[(parent, False)]) == "payment_method_id"
    assert await field_of(child, payment_method_id=methods[(stranger, True)]) == "payment_method_id"
    assert await field_of(parent, payment_method_id=methods[(parent, False)]) is None
    r = await pay(client, child, 0)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "amount"
    r = await pay(client, child, 100, method="cheque")
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "method"


async def test_parent_paying_a_consolidated_invoice_settles_it(
    client: httpx.AsyncClient, ctx_factory: Any
) -> None:
    async with ctx_factory() as ctx:
        landlord = await new_account(ctx, "Landlord")
        units = [await new_account(ctx, f"Unit {i}", landlord, invoice_mode="with_parent") for i in range(3)]
        invoice = await make_invoice(ctx, landlord, 9_000, account_ids=[landlord, *units])
    # A unit's own payments reach no invoice: the invoice is its parent's.
    r = await pay(client, units[0], 1_000)
    assert allocations(r) == [] and r.json()["unallocated_amount"] == 1_000
    r = await pay(client, landlord, 9_000)
    assert allocations(r) == [(invoice.id, 9_000)]
    assert await invoice_state(ctx_factory, invoice.id) == [("paid", 0, True)]


async def test_refund_from_unallocated_first_then_newest_invoice_first(
    client: httpx.AsyncClient, ctx_factory: Any
) -> None:
    async with ctx_factory() as ctx:
        account = await new_account(ctx, "Refunded")
        older = await make_invoice(ctx, account, 1_000, due_date=date(2025, 11, 1))
        newer = await make_invoice(ctx, account, 1_000, due_date=date(2025, 12, 1))
    payment = (await pay(client, account, 2_500)).json()
    assert payment["unallocated_amount"] == 500

    # Only the unallocated part: the invoices stay paid.
    r = await client.post(f"{API}/payments/{payment['id']}/refunds", json={"amount": 300, "reason": "asked"})
    assert r.status_code == 201, r.text
    assert (r.json()["from_unallocated"], r.json()["from_invoices"]) == (300, [])
    assert r.json()["payment"]["refunded_amount"] == 300 and r.json()["payment"]["unallocated_amount"] == 200
    assert await invoice_state(ctx_factory, older.id, newer.id) == [("paid", 0, True), ("paid", 0, True)]

    # Past the unallocated part: off the newest invoice, which is owed again.
    r = await client.post(f"{API}/payments/{payment['id']}/refunds", json={"amount": 700, "reason": "asked"})
    assert r.status_code == 201, r.text
    assert r.json()["from_unallocated"] == 200
    assert r.json()["from_invoices"] == [{"invoice_id": newer.id, "amount": 500}]
    assert (newer.id, -500) in allocations(await client.get(f"{API}/payments/{payment['id']}"))
    assert await invoice_state(ctx_factory, older.id, newer.id) == [
        ("paid", 0, True),
        ("finalized", 500, False),
    ]

    # Across two invoices.
    r = await client.post(f"{API}/payments/{payment['id']}/refunds", json={"amount": 1_000, "reason": "x"})
    assert r.json()["from_invoices"] == [
        {"invoice_id": newer.id, "amount": 500},
        {"invoice_id": older.id, "amount": 500},
    ]
    assert await invoice_state(ctx_factory, older.id, newer.id) == [
        ("finalized", 500, False),
        ("finalized", 1_000, False),
    ]

    # More than is left: refused, naming the most it can be.
    r = await client.post(f"{API}/payments/{payment['id']}/refunds", json={"amount": 501, "reason": "x"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "amount" and r.json()["maximum"] == 500
    r = await client.post(f"{API}/payments/{payment['id']}/refunds", json={"amount": 500, "reason": "x"})
    assert r.status_code == 201 and r.json()["payment"]["refunded_amount"] == 2_500
    assert await invoice_state(ctx_factory, older.id, newer.id) == [
        ("finalized", 1_000, False),
        ("finalized", 1_000, False),
    ]
    r = await client.post(f"{API}/payments/{payment['id']}/refunds", json={"amount": 1, "reason": "x"})
    assert r.status_code == 409, r.text

    kinds = [t["kind"] for t in (await client.get(f"{API}/accounts/{account}/transactions")).json()["items"]]
    assert kinds == ["refund"] * 4 + ["payment", "invoice", "invoice"]
    # A refunded payment's invoices are open again: a new payment pays them oldest first.
    r = await pay(client, account, 2_000)
    assert allocations(r) == [(older.id, 1_000), (newer.id, 1_000)]


async def test_only_billing_staff_record_payments_and_members_read_them(
    client: httpx.AsyncClient, ctx_factory: Any, app: Any
) -> None:
    async with ctx_factory() as ctx:
        account = await new_account(ctx, "Members")
        billing = await token_for(ctx, await member(ctx, account, "billing"))
        viewer = await token_for(ctx, await member(ctx, account, "viewer"))
    paid = await pay(client, account, 100)
    transport = httpx.ASGITransport(app=app)
    for token in (billing, viewer):
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers={"Authorization": f"Bearer {token}"}
        ) as http:
            r = await pay(http, account, 100)
            assert r.status_code == 403 and "billing staff" in r.json()["detail"], r.text
            r = await http.post(
                f"{API}/payments/{paid.json()['id']}/refunds", json={"amount": 1, "reason": "x"}
            )
            assert r.status_code == 403
            listed = await http.get(f"{API}/accounts/{account}/payments")
            assert [p["id"] for p in listed.json()["items"]] == [paid.json()["id"]]
            assert (await http.get(f"{API}/payments/{paid.json()['id']}")).status_code == 200
