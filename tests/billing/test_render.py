"""Invoices and credit notes rendered as HTML and PDF, from model instances built in memory."""

from __future__ import annotations

import logging
import re
import zlib
from datetime import UTC, date, datetime
from decimal import Decimal
from html import unescape
from typing import Any

import pytest

from boughs.billing import render
from boughs.billing.models import CreditNote, Invoice, InvoiceLine
from boughs.billing.render import (
    InvoiceDocument,
    credit_note_html,
    credit_note_pdf,
    format_money,
    format_quantity,
    format_rate_ppm,
    format_unit_price,
    invoice_html,
    invoice_pdf,
)

NOW = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)
OWNER, UNIT_A, UNIT_B, UNIT_C = 10, 11, 12, 13
JANUARY = "1 Jan \N{EN DASH} 31 Jan 2026"
NAMES = {OWNER: "Harbour Lofts", UNIT_A: "Unit 1", UNIT_B: "Unit 2", UNIT_C: "Unit 3"}


def make_invoice(**fields: Any) -> Invoice:
    values: dict[str, Any] = {
        "id": 501,
        "provider_id": 1,
        "bill_run_id": None,
        "owner_account_id": OWNER,
        "status": "finalized",
        "number": "INV-000042",
        "currency": "USD",
        "period_start": date(2026, 1, 1),
        "period_end": date(2026, 1, 31),
        "issue_date": date(2026, 2, 1),
        "due_date": date(2026, 3, 3),
        "net_terms_days": 30,
        "tax_rate_ppm": 200_000,
        "tax_exempt": False,
        "layout": "breakdown",
        "subtotal_amount": 0,
        "tax_amount": 0,
        "total_amount": 0,
        "amount_paid": 0,
        "amount_credited": 0,
        "bill_to": {
            "name": "Harbour Lofts Ltd",
            "address": "12 Quay Street\nFloor 3\nPortsmouth PO1 2AB",
            "tax_id": "GB123456789",
            "email": "accounts@harbour.example.com",
        },
        "payer": {"kind": "card", "label": "Visa", "last_four": "4242", "holder": "Jane Doe"},
        "account_ids": [OWNER, UNIT_A, UNIT_B, UNIT_C],
        "created_at": NOW,
        "updated_at": NOW,
        "finalized_at": NOW,
        "paid_at": None,
        "voided_at": None,
        "dunning_started_at": None,
    }
    values.update(fields)
    return Invoice(**values)


_positions = iter(range(1, 1_000_000))


def make_line(account_id: int | None, description: str, amount: int, **fields: Any) -> InvoiceLine:
    values: dict[str, Any] = {
        "id": next(_positions),
        "provider_id": 1,
        "invoice_id": 501,
        "position": next(_positions),
        "kind": "recurring",
        "account_id": account_id,
        "service_id": None,
        "plan_id": 7,
        "meter_code": None,
        "description": description,
        "period_start": date(2026, 1, 1),
        "period_end": date(2026, 1, 31),
        "quantity": "1",
        "unit_price": "25.00",
        "amount": amount,
        "details": {},
    }
    values.update(fields)
    return InvoiceLine(**values)


def landlord_lines() -> list[InvoiceLine]:
    """The landlord pays for its own office line and for three units' internet."""
    return [
        make_line(UNIT_B, "Internet 100", 2500),
        make_line(OWNER, "Building backbone", 10000, unit_price="100"),
        make_line(UNIT_A, "Internet 100", 2500),
        make_line(
            UNIT_A, "Data", 1250, kind="usage", meter_code="data_gb", quantity="12.500", unit_price="1"
        ),
        make_line(UNIT_C, "Internet 100", 2500),
        make_line(UNIT_C, "Loyalty discount", -500, kind="discount", plan_id=None, unit_price="-5"),
        make_line(None, "Tax 20%", 3650, kind="tax", plan_id=None, quantity="1", unit_price="36.50"),
    ]


def landlord(**fields: Any) -> InvoiceDocument:
    lines = landlord_lines()
    subtotal = sum(line.amount for line in lines if line.kind != "tax")
    invoice_fields = {"subtotal_amount": subtotal, "tax_amount": 3650, "total_amount": subtotal + 3650}
    invoice_fields.update(fields)
    return InvoiceDocument(
        invoice=make_invoice(**invoice_fields),
        lines=lines,
        provider_name="Northwind Fibre",
        account_names=NAMES,
    )


def text_of(html: str) -> str:
    """The document's visible text, one space between words (tags and the stylesheet dropped)."""
    body = html.split("<body>", 1)[1]
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", body))).strip()


def sections_of(html: str) -> dict[str, str]:
    """Each breakdown section's visible text, by its heading."""
    found = re.findall(r'<h2 class="section">(.*?)</h2>(.*?)</tbody>', html, flags=re.S)
    return {unescape(title): text_of("<body>" + body) for title, body in found}


# --- formatting --------------------------------------------------------------------------


def test_money_uses_the_currencys_exponent_separators_and_code() -> None:
    assert format_money(123450, "USD") == "1,234.50 USD"
    assert format_money(-500, "USD") == "-5.00 USD"
    assert format_money(0, "EUR") == "0.00 EUR"
    assert format_money(1235, "JPY") == "1,235 JPY"
    assert format_money(1234567, "KWD") == "1,234.567 KWD"
    assert format_quantity("12.500") == "12.5"
    assert format_quantity("1000") == "1,000"
    assert format_quantity("0.000") == "0"
    assert format_unit_price("25", "USD") == "25.00 USD"
    assert format_unit_price("0.0125", "USD") == "0.0125 USD"
    assert format_unit_price("150", "JPY") == "150 JPY"
    assert format_rate_ppm(200_000) == "20%"
    assert format_rate_ppm(82_500) == "8.25%"


# --- breakdown and summary ---------------------------------------------------------------


def test_breakdown_shows_one_section_per_account_owner_first_with_subtotals() -> None:
    html = invoice_html(landlord())
    sections = sections_of(html)
    assert list(sections) == ["Harbour Lofts", "Unit 1", "Unit 2", "Unit 3"]
    assert "Building backbone" in sections["Harbour Lofts"]
    assert "Subtotal · Harbour Lofts 100.00 USD" in sections["Harbour Lofts"]
    # Unit 1: its internet and its usage (12.500 shown as 12.5).
    assert "Data" in sections["Unit 1"] and "12.5" in sections["Unit 1"]
    assert "Subtotal · Unit 1 37.50 USD" in sections["Unit 1"]
    assert "Subtotal · Unit 2 25.00 USD" in sections["Unit 2"]
    # The discount is shown negative and reduces its account's subtotal.
    assert "Loyalty discount" in sections["Unit 3"] and "-5.00 USD" in sections["Unit 3"]
    assert "Subtotal · Unit 3 20.00 USD" in sections["Unit 3"]
    # Tax is a total, not a line in any section.
    assert all("Tax 20%" not in text for text in sections.values())


def test_breakdown_names_an_unknown_account_by_its_id() -> None:
    doc = landlord()
    doc.account_names = {OWNER: "Harbour Lofts", UNIT_A: "Unit 1"}
    assert list(sections_of(invoice_html(doc))) == [
        "Harbour Lofts",
        f"Account #{UNIT_B}",
        f"Account #{UNIT_C}",
        "Unit 1",
    ]


def test_summary_sums_the_childrens_identical_charges_into_one_line() -> None:
    html = invoice_html(landlord(layout="summary"))
    assert '<h2 class="section">' not in html
    rows = re.findall(r'<tr class="kind-[a-z]+">(.*?)</tr>', html, flags=re.S)
    texts = [text_of("<body>" + row) for row in rows]
    internet = [text for text in texts if text.startswith("Internet 100")]
    # Three units' internet: one line, three accounts, quantities and amounts added.
    assert internet == [f"Internet 100 3 accounts {JANUARY} 3 25.00 USD 75.00 USD"]
    assert any(text.startswith("Building backbone Harbour Lofts") for text in texts)
    assert any(text.startswith("Loyalty discount Unit 3") and text.endswith("-5.00 USD") for text in texts)
    assert len(texts) == 4  # internet, backbone, data, discount; the tax line is a total


def test_summary_adds_quantities_as_decimals() -> None:
    lines = [
        make_line(UNIT_A, "Data", 10, kind="usage", meter_code="gb", quantity="0.1", unit_price="1"),
        make_line(UNIT_B, "Data", 20, kind="usage", meter_code="gb", quantity="0.2", unit_price="1.00"),
    ]
    doc = InvoiceDocument(
        invoice=make_invoice(layout="summary", subtotal_amount=30, total_amount=30),
        lines=lines,
        provider_name="Northwind Fibre",
        account_names=NAMES,
    )
    text = text_of(invoice_html(doc))
    # 0.1 + 0.2 as floats would be 0.30000000000000004.
    assert f"Data 2 accounts {JANUARY} 0.3 1.00 USD 0.30 USD" in text


def test_a_pooled_allocation_shows_the_accounts_share() -> None:
    line = make_line(
        UNIT_A,
        "Pooled data",
        1200,
        kind="usage",
        meter_code="gb",
        quantity="300",
        unit_price="0.04",
        details={"allocation": {"share": "0.25", "quantity": "300", "pool_quantity": "1200"}},
    )
    doc = InvoiceDocument(make_invoice(subtotal_amount=1200, total_amount=1200), [line], "N", NAMES)
    assert "Pooled usage: 25% share, 300 of 1,200" in text_of(invoice_html(doc))


# --- header, totals, statuses ------------------------------------------------------------


def test_a_finalized_invoice_shows_its_number_dates_parties_and_totals() -> None:
    doc = landlord(amount_paid=5000, amount_credited=1000)
    text = text_of(invoice_html(doc))
    assert "Northwind Fibre" in text
    assert "Invoice INV-000042" in text
    assert "Issue date 1 Feb 2026" in text and "Due date 3 Mar 2026" in text
    assert f"Billing period {JANUARY}" in text
    assert "Harbour Lofts Ltd 12 Quay Street Floor 3 Portsmouth PO1 2AB Tax ID: GB123456789" in text
    assert "accounts@harbour.example.com" in text
    assert "Visa •••• 4242, Jane Doe" in text
    # Subtotal 182.50, tax 36.50, total 219.00; 10.00 credited and 50.00 paid leave 159.00.
    assert (
        "Subtotal 182.50 USD Tax (20%) 36.50 USD Total 219.00 USD Credits -10.00 USD "
        "Paid -50.00 USD Balance due 159.00 USD"
    ) in text
    assert "Draft" not in text and "Paid" not in text.split("Balance due")[0].split("Total")[0]


def test_payments_total_given_by_the_caller_is_what_is_shown_paid() -> None:
    doc = landlord(amount_paid=0)
    doc.payments_total = 21900
    assert "Paid -219.00 USD Balance due 0.00 USD" in text_of(invoice_html(doc))


def test_exempt_and_payerless_invoices_say_so() -> None:
    text = text_of(invoice_html(landlord(tax_exempt=True, tax_rate_ppm=0, tax_amount=0, payer={})))
    assert "Tax (exempt) 0.00 USD" in text
    assert "No payment method on file" in text


def test_an_anonymised_bill_to_shows_only_what_is_left() -> None:
    text = text_of(invoice_html(landlord(bill_to={"name": "Deleted account"})))
    assert "Bill to Deleted account Payment method" in text


@pytest.mark.parametrize(("status", "word"), [("draft", "Draft"), ("preview", "Preview")])
def test_a_draft_or_preview_says_so_and_has_no_number(status: str, word: str) -> None:
    html = invoice_html(landlord(status=status, number=None, issue_date=None, due_date=None))
    text = text_of(html)
    assert f'<div class="watermark" aria-hidden="true">{word}</div>' in html
    assert f"{word} — not issued" in text
    assert "INV-" not in html
    assert "Issue date Not issued" in text
    assert "not a demand for payment" in text


@pytest.mark.parametrize(
    ("status", "stamp"), [("paid", "Paid"), ("void", "Void"), ("uncollectible", "Uncollectible")]
)
def test_a_settled_invoice_is_stamped(status: str, stamp: str) -> None:
    paid = 21900 if status == "paid" else 0
    html = invoice_html(landlord(status=status, amount_paid=paid))
    assert re.search(rf'<span class="stamp stamp-(ok|bad)">{stamp}</span>', html)
    assert "watermark" not in html.split("<body>", 1)[1]


def test_a_void_invoice_asks_for_nothing() -> None:
    text = text_of(invoice_html(landlord(status="void")))
    assert "Balance due 0.00 USD" in text
    assert "This invoice is void" in text


def test_credit_notes_on_the_invoice_are_listed() -> None:
    doc = landlord(amount_credited=1000)
    doc.credit_notes = [make_credit_note()]
    text = text_of(invoice_html(doc))
    assert "CN-000007 1 Feb 2026 Outage on 12 January 10.00 USD" in text


def test_hostile_names_are_escaped() -> None:
    doc = landlord(bill_to={"name": "<script>alert(1)</script>", "address": "<b>x</b>\n& Co"})
    doc.provider_name = '"><img src=x onerror=alert(1)>'
    doc.account_names = {**NAMES, UNIT_A: "<script>alert('unit')</script>"}
    doc.lines = [*doc.lines, make_line(UNIT_B, "<iframe src=//evil>", 1)]
    html = invoice_html(doc)
    assert "<script>" not in html and "<img" not in html and "<iframe" not in html and "<b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;script&gt;alert(&#39;unit&#39;)&lt;/script&gt;" in html
    assert "&amp; Co" in html


def test_a_jpy_invoice_has_no_decimals() -> None:
    line = make_line(OWNER, "Fibre 1G", 5500, unit_price="5500")
    doc = InvoiceDocument(
        invoice=make_invoice(
            currency="JPY", tax_rate_ppm=100_000, subtotal_amount=5500, tax_amount=550, total_amount=6050
        ),
        lines=[line],
        provider_name="Sakura Net",
        account_names={OWNER: "Tanaka"},
    )
    text = text_of(invoice_html(doc))
    assert f"Fibre 1G {JANUARY} 1 5,500 JPY 5,500 JPY" in text
    assert "Subtotal 5,500 JPY Tax (10%) 550 JPY Total 6,050 JPY" in text
    assert "Balance due 6,050 JPY" in text
    assert not re.search(r"\d\.\d+ JPY", text)


# --- credit notes ------------------------------------------------------------------------


def make_credit_note(**fields: Any) -> CreditNote:
    values: dict[str, Any] = {
        "id": 7,
        "provider_id": 1,
        "invoice_id": 501,
        "account_id": OWNER,
        "number": "CN-000007",
        "status": "issued",
        "currency": "USD",
        "reason": "Outage on 12 January",
        "subtotal_amount": 834,
        "tax_amount": 166,
        "total_amount": 1000,
        "lines": [{"description": "Internet 100 — Unit 1, 10 days", "amount": 834, "invoice_line_id": 3}],
        "created_by_user_id": None,
        "created_at": NOW,
    }
    values.update(fields)
    return CreditNote(**values)


def test_a_credit_note_shows_its_number_the_invoice_it_corrects_and_its_total() -> None:
    doc = landlord()
    text = text_of(credit_note_html(make_credit_note(), doc.invoice, "Northwind Fibre"))
    assert "Credit note CN-000007" in text
    assert "Corrects invoice INV-000042" in text
    assert "Harbour Lofts Ltd" in text
    assert "Internet 100 — Unit 1, 10 days 8.34 USD" in text
    assert "Subtotal 8.34 USD Tax (20%) 1.66 USD Total credited 10.00 USD" in text
    voided = credit_note_html(make_credit_note(status="void"), doc.invoice, "Northwind Fibre")
    assert '<span class="stamp stamp-bad">Void</span>' in voided


# --- PDF ---------------------------------------------------------------------------------


def pdf_objects(pdf: bytes) -> bytes:
    """The PDF's objects as text: every compressed stream inflated.

    WeasyPrint compresses the PDF's objects (object streams), so its outline and page
    tree are readable only once inflated; zlib suffices, no PDF parser is needed. The
    page text itself is drawn as subset glyph ids, so it is read from the laid-out
    document instead (``laid_out``).
    """
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    inflated = []
    for stream in re.finditer(rb"stream\r?\n(.*?)\r?\nendstream", pdf, flags=re.S):
        try:
            inflated.append(zlib.decompress(stream.group(1)))
        except zlib.error:
            inflated.append(stream.group(1))
    return pdf + b"\n".join(inflated)


def page_count(objects: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", objects))


def laid_out(document: Any) -> tuple[list[str], list[str]]:
    """Each page's text and the bookmark labels of the document the PDF functions print.

    ``render.layout_invoice(doc).write_pdf()`` is ``invoice_pdf(doc)``: this reads the
    text WeasyPrint laid out on each page (its boxes), page footers included, and the
    outline of headings it puts in the PDF.
    """
    pages: list[str] = []
    bookmarks: list[str] = []
    for page in document.pages:
        bookmarks.extend(label for _level, label, _target, _state in page.bookmarks)
        texts = [
            box.text for box in page._page_box.descendants() if isinstance(getattr(box, "text", None), str)
        ]
        pages.append(re.sub(r"\s+", " ", " ".join(texts)))
    return pages, bookmarks


def test_the_invoice_pdf_is_a_pdf_of_the_invoice() -> None:
    doc = landlord()
    objects = pdf_objects(invoice_pdf(doc))
    assert page_count(objects) == 1
    # The outline: the invoice's title, then one entry per account section.
    for title in (b"Invoice INV-000042", b"Harbour Lofts", b"Unit 1", b"Unit 2", b"Unit 3"):
        assert b"/Title (" + title + b")" in objects

    pages, bookmarks = laid_out(render.layout_invoice(doc))
    assert bookmarks == ["Invoice INV-000042", "Harbour Lofts", "Unit 1", "Unit 2", "Unit 3"]
    [text] = pages
    assert "Invoice INV-000042" in text and "Visa •••• 4242, Jane Doe" in text
    assert "Balance due 219.00 USD" in text
    assert "Northwind Fibre · Invoice INV-000042 Page 1 of 1" in text


def test_a_long_invoice_flows_over_pages_with_its_column_heads_on_each() -> None:
    lines = [make_line(UNIT_A + i % 3, f"Line {i}", 100) for i in range(75)]
    doc = InvoiceDocument(
        make_invoice(subtotal_amount=7500, total_amount=7500), lines, "Northwind Fibre", NAMES
    )
    document = render.layout_invoice(doc)
    pages, _ = laid_out(document)
    assert len(pages) >= 2
    for number, text in enumerate(pages, start=1):
        assert "DESCRIPTION PERIOD QUANTITY UNIT PRICE AMOUNT" in text
        assert f"Page {number} of {len(pages)}" in text
    assert "Balance due 75.00 USD" in pages[-1]
    assert page_count(pdf_objects(document.write_pdf())) == len(pages)


def test_the_credit_note_pdf_renders() -> None:
    invoice = landlord().invoice
    objects = pdf_objects(credit_note_pdf(make_credit_note(), invoice, "Northwind Fibre"))
    assert page_count(objects) == 1 and b"/Title (Credit note CN-000007)" in objects
    [text], _ = laid_out(render.layout_credit_note(make_credit_note(), invoice, "Northwind Fibre"))
    assert "Corrects invoice INV-000042" in text and "Total credited 10.00 USD" in text


def test_a_pdf_loads_nothing_from_outside(caplog: pytest.LogCaptureFixture) -> None:
    html = invoice_html(landlord()).replace(
        "</main>", '<img src="http://127.0.0.1:9/x.png"><img src="file:///etc/hostname"></main>'
    )
    with caplog.at_level(logging.ERROR, logger="weasyprint"):
        document = render.layout_pdf(html)
    assert len(document.pages) == 1
    refused = [r.getMessage() for r in caplog.records if "no external resources" in r.getMessage()]
    assert len(refused) == 2
    with pytest.raises(ValueError, match="no external resources"):
        render._printer().fetcher.fetch("data:text/plain,x")


def test_decimal_helpers_are_exact() -> None:
    assert render._plain(Decimal("0.30")) == "0.3"
    assert render._plain(Decimal("-0")) == "0"
