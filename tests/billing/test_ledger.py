"""The account ledger: every money event once, newest first, with a running balance that is
right on every page; voided invoices; the unpaid balance account deletion asks for."""

from __future__ import annotations

from datetime import date
from typing import Any

import httpx
from sqlalchemy import select

from boughs.billing import ledger
from boughs.billing.models import Invoice
from tests.billing.payments_matrix_cases import make_invoice, payment_body
from tests.usage.support import member, new_account, token_for

API = "/api/v1"


async def all_pages(client: httpx.AsyncClient, account_id: int, limit: int) -> list[dict[str, Any]]:
    pages = []
    cursor = None
    while True:
        query = f"?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        r = await client.get(f"{API}/accounts/{account_id}/transactions{query}")
        assert r.status_code == 200, r.text
        pages.append(r.json())
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return pages


async def test_running_balance_is_right_across_pages(client: httpx.AsyncClient, ctx_factory: Any) -> None:
    async with ctx_factory() as ctx:
        account = await new_account(ctx, "History")
        neighbour = await new_account(ctx, "Neighbour")
        first = await make_invoice(ctx, account, 5_000, due_date=date(2025, 10, 1))
        await make_invoice(ctx, neighbour, 7_000)
    payment = await client.post(f"{API}/accounts/{account}/payments", json=payment_body(8_000))
    async with ctx_factory() as ctx:
        second = await make_invoice(ctx, account, 2_000, due_date=date(2025, 11, 1))
        third = await make_invoice(ctx, account, 4_000, due_date=date(2025, 12, 1))
    await client.post(
        f"{API}/credit-notes",
        json={"invoice_id": third.id, "reason": "r", "lines": [{"description": "d", "amount": 500}]},
    )
    await client.post(f"{API}/payments/{payment.json()['id']}/refunds", json={"amount": 1_500, "reason": "r"})
    async with ctx_factory() as ctx:
        draft = await make_invoice(ctx, account, 900, status="draft")
        draft.status, draft.number = "finalized", "INV-LATE"
        await ctx.session.flush()
        await ledger.invoice_finalized(ctx, draft)

    expected = [
        ("invoice", 5_000),
        ("payment", -8_000),
        ("invoice", 2_000),  # paid from the credit at once
        ("invoice", 4_000),  # 1,000 of the credit left for it
        ("credit_note", -500),
        ("refund", 1_500),
        ("invoice", 900),
    ]
    running, balances = 0, []
    for _, amount in expected:
        running += amount
        balances.append(running)
    want = [(k, a, b) for (k, a), b in zip(expected, balances, strict=True)][::-1]

    for limit in (1, 2, 3, 7, 50):
        pages = await all_pages(client, account, limit)
        got = [(t["kind"], t["amount"], t["balance_after"]) for page in pages for t in page["items"]]
        assert got == want, limit
        assert pages[0]["balance"] == balances[-1] == 4_900
        assert all(page["balance"] is None for page in pages[1:])
        assert all(page["currency"] == "USD" for page in pages)

    # The balance is what the open invoices ask for, minus the credit no invoice took.
    async with ctx_factory() as ctx:
        rows = list(await ctx.session.scalars(select(Invoice).where(Invoice.owner_account_id == account)))
        open_total = sum(ledger.balance_due(i) for i in rows if i.status in ("finalized", "uncollectible"))
        assert await ledger.unpaid_balance_of(ctx.session, ctx.provider_id, account) == open_total == 4_900
        # The refund took 1,000 back off the newest invoice and 500 off the one before it.
        statuses = {i.id: (i.status, ledger.balance_due(i)) for i in rows}
        assert statuses[first.id] == ("paid", 0)
        assert statuses[second.id] == ("finalized", 500)
        assert statuses[third.id] == ("finalized", 3_500)

    empty = await client.get(f"{API}/accounts/{neighbour}/transactions?limit=1")
    assert empty.json()["balance"] == 7_000 and empty.json()["next_cursor"] is None


async def test_entries_say_what_happened(client: httpx.AsyncClient, ctx_factory: Any) -> None:
    async with ctx_factory() as ctx:
        account = await new_account(ctx, "Described")
        invoice = await make_invoice(ctx, account, 1_000)
    payment = await client.post(
        f"{API}/accounts/{account}/payments", json=payment_body(400, "WIRE-77", received_on="2026-01-10")
    )
    items = (await client.get(f"{API}/accounts/{account}/transactions")).json()["items"]
    assert items[0]["description"] == "Payment WIRE-77 (bank_account)"
    assert items[0]["occurred_on"] == "2026-01-10" and items[0]["payment_id"] == payment.json()["id"]
    assert items[1]["description"] == f"Invoice {invoice.number}" and items[1]["invoice_id"] == invoice.id
    assert items[1]["occurred_on"] == invoice.issue_date.isoformat()  # type: ignore[union-attr]


async def test_a_voided_invoice_leaves_the_balance(client: httpx.AsyncClient, ctx_factory: Any) -> None:
    async with ctx_factory() as ctx:
        account = await new_account(ctx, "Voided")
        kept = await make_invoice(ctx, account, 1_000)
        voided = await make_invoice(ctx, account, 3_000)
        assert await ledger.unpaid_balance_of(ctx.session, ctx.provider_id, account) == 4_000
    async with ctx_factory() as ctx:
        invoice = await ctx.session.get(Invoice, voided.id)
        assert invoice is not None
        invoice.status = "void"
        await ctx.session.flush()
        await ledger.invoice_voided(ctx, invoice)
        assert await ledger.unpaid_balance_of(ctx.session, ctx.provider_id, account) == 1_000
    page = (await client.get(f"{API}/accounts/{account}/transactions")).json()
    newest = page["items"][0]
    assert (newest["kind"], newest["amount"], newest["balance_after"]) == ("void", -3_000, 1_000)
    assert page["balance"] == 1_000
    # A payment now finds only the invoice still owed.
    r = await client.post(f"{API}/accounts/{account}/payments", json=payment_body(5_000))
    assert [(a["invoice_id"], a["amount"]) for a in r.json()["allocations"]] == [(kept.id, 1_000)]


async def test_read_like_the_account(client: httpx.AsyncClient, ctx_factory: Any, app: Any) -> None:
    async with ctx_factory() as ctx:
        parent = await new_account(ctx, "Parent")
        child = await new_account(ctx, "Child", parent)
        await make_invoice(ctx, parent, 1_000)
        viewer = await token_for(ctx, await member(ctx, child, "viewer"))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://testserver",
        headers={"Authorization": f"Bearer {viewer}"},
    ) as http:
        assert (await http.get(f"{API}/accounts/{child}/transactions")).json()["balance"] == 0
        hidden = await http.get(f"{API}/accounts/{parent}/transactions")
        missing = await http.get(f"{API}/accounts/987654321/transactions")
        assert hidden.status_code == missing.status_code == 404
    r = await client.get(f"{API}/accounts/{parent}/transactions?cursor=nonsense")
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "cursor"
