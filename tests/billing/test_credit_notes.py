"""Credit notes: gapless numbers under concurrency, tax at the invoice's rate, never more
than the balance due, only on issued invoices, and voids that give the balance back."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from boughs.billing import credit_notes, ledger
from boughs.billing.models import Invoice, InvoiceLine
from boughs.billing.payments_schemas import CreditNoteCreate, CreditNoteLineIn
from boughs.context import Ctx
from boughs.db import Database
from boughs.kit.clock import FrozenClock
from tests.billing.payments_matrix_cases import make_invoice, payment_body
from tests.conftest import Tenant
from tests.usage.support import member, new_account, token_for

API = "/api/v1"


def note_body(invoice_id: int, *amounts: int, **line: Any) -> dict[str, Any]:
    return {
        "invoice_id": invoice_id,
        "reason": "service outage",
        "lines": [{"description": f"Credit {i}", "amount": a, **line} for i, a in enumerate(amounts)],
    }


async def invoice_of(ctx_factory: Any, invoice_id: int) -> Invoice:
    async with ctx_factory() as ctx:
        return (await ctx.session.scalars(select(Invoice).where(Invoice.id == invoice_id))).one()


async def test_numbers_are_gapless_and_a_refused_note_takes_none(
    client: httpx.AsyncClient, ctx_factory: Any
) -> None:
    async with ctx_factory() as ctx:
        account = await new_account(ctx, "Credited")
        invoice = await make_invoice(ctx, account, 10_000)
    numbers = []
    for amount in (100, 200, 20_000, 300):
        r = await client.post(f"{API}/credit-notes", json=note_body(invoice.id, amount))
        if amount == 20_000:
            assert r.status_code == 422
            continue
        assert r.status_code == 201, r.text
        assert r.headers["location"] == f"/api/v1/credit-notes/{r.json()['id']}"
        numbers.append(r.json()["number"])
    assert numbers == ["CN-000001", "CN-000002", "CN-000003"]


async def test_concurrent_issuers_never_share_or_skip_a_number(
    db: Database, clock: FrozenClock, tenant: Tenant, ctx_factory: Any
) -> None:
    """The first issuer holds the counter until it commits; the second waits for it, and an
    issuer that rolls back gives its number to the next."""
    async with ctx_factory() as ctx:
        account = await new_account(ctx, "Busy")
        invoices = [(await make_invoice(ctx, account, 10_000)).id for _ in range(3)]

    first_issued, release = asyncio.Event(), asyncio.Event()
    second_done = asyncio.Event()

    async def issue(invoice_id: int, hold: bool = False, fail: bool = False) -> str:
        try:
            async with db.transaction() as session:
                ctx = Ctx(session=session, clock=clock, actor=tenant.actor())
                data = CreditNoteCreate(
                    invoice_id=invoice_id, reason="r", lines=[CreditNoteLineIn(description="d", amount=100)]
                )
                note = await credit_notes.create(ctx, data)
                if hold:
                    first_issued.set()
                    await release.wait()
                if fail:
                    raise RuntimeError("rolled back")
                return note.number
        finally:
            if not hold:
                second_done.set()

    async def second() -> str:
        await first_issued.wait()
        return await issue(invoices[1])

    first_task = asyncio.create_task(issue(invoices[0], hold=True, fail=True))
    second_task = asyncio.create_task(second())
    await first_issued.wait()
    await asyncio.sleep(0.3)
    assert not second_done.is_set(), "the second issuer did not wait for the first to end"
    release.set()
    with pytest.raises(RuntimeError):
        await first_task
    # The first rolled back: its number was never used, and the second takes it.
    assert await second_task == "CN-000001"

    first_issued.clear()
    release.clear()
    second_done.clear()
    first_task = asyncio.create_task(issue(invoices[2], hold=True))
    second_task = asyncio.create_task(second())
    await first_issued.wait()
    await asyncio.sleep(0.3)
    assert not second_done.is_set()
    release.set()
    assert sorted([await first_task, await second_task]) == ["CN-000002", "CN-000003"]


async def test_tax_at_the_invoice_rate_with_one_rounding(client: httpx.AsyncClient, ctx_factory: Any) -> None:
    async with ctx_factory() as ctx:
        account = await new_account(ctx, "Taxed")
        # 8.875 %: 10,000 + 887.5 → 10,888 (as the invoice itself rounded it).
        invoice = await make_invoice(ctx, account, 10_888, subtotal=10_000, tax_rate_ppm=88_750)
    r = await client.post(f"{API}/credit-notes", json=note_body(invoice.id, 17, 17, 299))
    assert r.status_code == 201, r.text
    # 333 at 8.875 % is 29.55…: rounded once on the subtotal (30), not per line (2 + 2 + 27).
    assert (r.json()["subtotal_amount"], r.json()["tax_amount"], r.json()["total_amount"]) == (333, 30, 363)
    assert r.json()["currency"] == "USD" and r.json()["status"] == "issued"
    assert [line["amount"] for line in r.json()["lines"]] == [17, 17, 299]
    assert (await invoice_of(ctx_factory, invoice.id)).amount_credited == 363


async def test_never_more_than_the_balance_due(client: httpx.AsyncClient, ctx_factory: Any) -> None:
    async with ctx_factory() as ctx:
        account = await new_account(ctx, "Over")
        invoice = await make_invoice(ctx, account, 1_100, subtotal=1_000, tax_rate_ppm=100_000)
    assert (
        await client.post(f"{API}/accounts/{account}/payments", json=payment_body(300))
    ).status_code == 201
    # 800 left: at most 727 before tax (727 + 72.7 → 800; 728 + 72.8 → 801).
    r = await client.post(f"{API}/credit-notes", json=note_body(invoice.id, 700, 28))
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "lines"
    assert (r.json()["maximum_total"], r.json()["maximum_subtotal"]) == (800, 727)
    r = await client.post(f"{API}/credit-notes", json=note_body(invoice.id, 727))
    assert r.status_code == 201 and r.json()["total_amount"] == 800
    # Nothing left: the invoice is paid, and even 1 more is refused.
    paid = await invoice_of(ctx_factory, invoice.id)
    assert (paid.status, ledger.balance_due(paid), paid.paid_at is not None) == ("paid", 0, True)
    r = await client.post(f"{API}/credit-notes", json=note_body(invoice.id, 1))
    assert r.status_code == 422 and r.json()["maximum_total"] == 0


def test_largest_subtotal_is_exact() -> None:
    for rate in (0, 1, 88_750, 100_000, 250_000, 999_999):
        for total in range(0, 400):
            best = credit_notes.largest_subtotal(total, rate)
            assert best + credit_notes.tax_on(best, rate) <= total
            assert best + 1 + credit_notes.tax_on(best + 1, rate) > total


async def test_only_issued_invoices_are_credited(client: httpx.AsyncClient, ctx_factory: Any) -> None:
    async with ctx_factory() as ctx:
        account = await new_account(ctx, "Statuses")
        draft = await make_invoice(ctx, account, 1_000, status="draft")
        void = await make_invoice(ctx, account, 1_000, status="void")
        uncollectible = await make_invoice(ctx, account, 1_000, status="uncollectible")
        preview = await make_invoice(ctx, account, 1_000, status="preview")
    for invoice in (draft, void, preview):
        r = await client.post(f"{API}/credit-notes", json=note_body(invoice.id, 100))
        assert r.status_code == 409, r.text
        assert invoice.status in r.json()["detail"]
    r = await client.post(f"{API}/credit-notes", json=note_body(uncollectible.id, 1_000))
    assert r.status_code == 201
    assert (await invoice_of(ctx_factory, uncollectible.id)).status == "paid"


async def test_lines_may_name_the_invoice_line_they_correct(
    client: httpx.AsyncClient, ctx_factory: Any
) -> None:
    async with ctx_factory() as ctx:
        account = await new_account(ctx, "Lines")
        invoice = await make_invoice(ctx, account, 3_000, line_amounts=[1_000, 2_000])
        other = await make_invoice(ctx, account, 3_000)
        lines = list(
            await ctx.session.scalars(
                select(InvoiceLine.id)
                .where(InvoiceLine.invoice_id == invoice.id)
                .order_by(InvoiceLine.position)
            )
        )
        foreign_line = await ctx.session.scalar(
            select(InvoiceLine.id).where(InvoiceLine.invoice_id == other.id)
        )
    r = await client.post(f"{API}/credit-notes", json=note_body(invoice.id, 600, invoice_line_id=lines[0]))
    assert r.status_code == 201 and r.json()["lines"][0]["invoice_line_id"] == lines[0]
    r = await client.post(f"{API}/credit-notes", json=note_body(invoice.id, 500, invoice_line_id=lines[0]))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "lines.0.amount"
    assert r.json()["maximum"] == 400
    r = await client.post(
        f"{API}/credit-notes", json=note_body(invoice.id, 100, invoice_line_id=foreign_line)
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "lines.0.invoice_line_id"
    r = await client.post(f"{API}/credit-notes", json=note_body(invoice.id, 400, invoice_line_id=lines[0]))
    assert r.status_code == 201


async def test_void_gives_the_balance_back_newest_first(client: httpx.AsyncClient, ctx_factory: Any) -> None:
    async with ctx_factory() as ctx:
        account = await new_account(ctx, "Voids")
        invoice = await make_invoice(ctx, account, 1_000)
    first = (await client.post(f"{API}/credit-notes", json=note_body(invoice.id, 400))).json()
    second = (await client.post(f"{API}/credit-notes", json=note_body(invoice.id, 600))).json()
    assert (await invoice_of(ctx_factory, invoice.id)).status == "paid"

    r = await client.post(f"{API}/credit-notes/{first['id']}/void")
    assert r.status_code == 409 and second["number"] in r.json()["detail"], r.text
    r = await client.post(f"{API}/credit-notes/{second['id']}/void")
    assert r.status_code == 200 and r.json()["status"] == "void"
    again = await invoice_of(ctx_factory, invoice.id)
    assert (again.status, again.amount_credited, again.paid_at) == ("finalized", 400, None)
    assert (await client.post(f"{API}/credit-notes/{second['id']}/void")).status_code == 409
    assert (await client.post(f"{API}/credit-notes/{first['id']}/void")).status_code == 200
    assert (await invoice_of(ctx_factory, invoice.id)).amount_credited == 0

    entries = (await client.get(f"{API}/accounts/{account}/transactions")).json()
    assert [(t["kind"], t["amount"], t["balance_after"]) for t in entries["items"]] == [
        ("void", 400, 1_000),
        ("void", 600, 600),
        ("credit_note", -600, 0),
        ("credit_note", -400, 600),
        ("invoice", 1_000, 1_000),
    ]


async def test_reading_and_listing(client: httpx.AsyncClient, ctx_factory: Any, app: Any) -> None:
    async with ctx_factory() as ctx:
        parent = await new_account(ctx, "Parent")
        child = await new_account(ctx, "Child", parent)
        sibling = await new_account(ctx, "Sibling")
        on_parent = await make_invoice(ctx, parent, 1_000)
        on_child = await make_invoice(ctx, child, 1_000)
        on_sibling = await make_invoice(ctx, sibling, 1_000)
        viewer = await token_for(ctx, await member(ctx, child, "viewer"))
        admin = await token_for(ctx, await member(ctx, parent, "admin"))
    ids = {}
    for invoice in (on_parent, on_child, on_sibling):
        ids[invoice.id] = (await client.post(f"{API}/credit-notes", json=note_body(invoice.id, 100))).json()[
            "id"
        ]
    listed = await client.get(f"{API}/credit-notes")
    assert [n["id"] for n in listed.json()["items"]] == sorted(ids.values(), reverse=True)
    by_invoice = await client.get(f"{API}/credit-notes?invoice_id={on_child.id}")
    assert [n["id"] for n in by_invoice.json()["items"]] == [ids[on_child.id]]
    by_account = await client.get(f"{API}/credit-notes?account_id={parent}")
    assert [n["id"] for n in by_account.json()["items"]] == [ids[on_parent.id]]
    paged = await client.get(f"{API}/credit-notes?limit=2")
    rest = await client.get(f"{API}/credit-notes?limit=2&cursor={paged.json()['next_cursor']}")
    assert len(paged.json()["items"]) == 2 and [n["id"] for n in rest.json()["items"]] == [ids[on_parent.id]]

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", headers={"Authorization": f"Bearer {viewer}"}
    ) as http:
        mine = await http.get(f"{API}/credit-notes")
        assert [n["id"] for n in mine.json()["items"]] == [ids[on_child.id]]
        assert (await http.get(f"{API}/credit-notes/{ids[on_child.id]}")).status_code == 200
        assert (await http.get(f"{API}/credit-notes/{ids[on_parent.id]}")).status_code == 404
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", headers={"Authorization": f"Bearer {admin}"}
    ) as http:
        # An account admin reads them but may not issue or void: that is the provider's.
        r = await http.post(f"{API}/credit-notes", json=note_body(on_child.id, 100))
        assert r.status_code == 403, r.text
        assert (await http.post(f"{API}/credit-notes/{ids[on_child.id]}/void")).status_code == 403
        r = await http.post(f"{API}/credit-notes", json=note_body(on_sibling.id, 100))
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "invoice_id"
