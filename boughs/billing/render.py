"""Invoices and credit notes as documents a customer keeps: HTML, and PDF from that same HTML.

Everything shown is formatted here (money, quantities, dates, sections, totals); the
templates only lay it out, so what the browser shows and what the PDF prints agree.
Rendering fetches nothing: the stylesheet ships beside the templates (inline in the HTML,
parsed once per thread for PDFs), the fonts are the system's, and the PDF's URL fetcher
refuses every URL.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import jinja2

from boughs.billing.models import CreditNote, Invoice, InvoiceLine, LineKind
from boughs.kit.money import exponent

SUMMARY_LAYOUTS = frozenset({"summary", "parent_summary"})


@dataclass
class InvoiceDocument:
    invoice: Invoice
    lines: Sequence[InvoiceLine]
    provider_name: str
    # Names of the accounts the lines are for; a missing one shows as "Account #id".
    account_names: Mapping[int, str]
    credit_notes: Sequence[CreditNote] = ()
    # The payments allocated to this invoice, when the caller summed them; 0 shows
    # ``invoice.amount_paid``.
    payments_total: int = 0


# --- formatting --------------------------------------------------------------------------


def format_money(amount: int, currency: str) -> str:
    """Minor units as "1,234.50 USD": the currency's own decimals, a minus sign when negative."""
    places = exponent(currency)
    major = Decimal(abs(amount)).scaleb(-places)
    sign = "-" if amount < 0 else ""
    return f"{sign}{major:,.{places}f} {currency.upper()}"


def _decimal(text: str | None) -> Decimal | None:
    if text is None or text == "":
        return None
    try:
        value = Decimal(str(text))
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def _plain(value: Decimal) -> str:
    # normalize() alone would write 1000 as 1E+3.
    text = f"{value.normalize():,f}"
    return "0" if text in ("-0", "0") else text


def format_quantity(quantity: str | None) -> str:
    """A Decimal string as given, without trailing zeros ("10.500" → "10.5")."""
    value = _decimal(quantity)
    if value is None:
        return quantity or ""
    return _plain(value)


def format_unit_price(unit_price: str | None, currency: str) -> str:
    """A unit price in major units: exact, with at least the currency's decimals."""
    value = _decimal(unit_price)
    if value is None:
        return unit_price or ""
    places = exponent(currency)
    exact = value.normalize()
    shown_places = max(places, -int(exact.as_tuple().exponent)) if exact else places
    return f"{exact:,.{shown_places}f} {currency.upper()}"


def format_rate_ppm(ppm: int) -> str:
    """Parts per million as a percent: 200000 → "20%", 82500 → "8.25%"."""
    return f"{_plain(Decimal(ppm) / Decimal(10_000))}%"


def format_date(day: date | None) -> str:
    if day is None:
        return "—"
    return f"{day.day} {_MONTHS[day.month - 1]} {day.year}"


def format_period(start: date | None, end: date | None) -> str:
    if start is None or end is None:
        return format_date(start or end)
    if start == end:
        return format_date(start)
    if start.year == end.year:
        return f"{start.day} {_MONTHS[start.month - 1]}{_DASH}{format_date(end)}"
    return f"{format_date(start)}{_DASH}{format_date(end)}"


_DASH = " \N{EN DASH} "
# English month names regardless of the process's locale.
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


# --- what the templates show -------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    description: str
    period: str
    quantity: str
    unit_price: str
    amount: str
    # Under the description: a pooled share, or the accounts a summed line covers.
    notes: tuple[str, ...] = ()
    kind: str = ""


@dataclass(frozen=True)
class Section:
    title: str
    rows: tuple[Row, ...]
    subtotal: str


@dataclass(frozen=True)
class TotalLine:
    label: str
    amount: str
    emphasis: bool = False


@dataclass(frozen=True)
class Party:
    name: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class CreditNoteRef:
    number: str
    issued: str
    reason: str
    amount: str
    void: bool


@dataclass(frozen=True)
class Meta:
    label: str
    value: str


@dataclass(frozen=True)
class InvoiceView:
    provider_name: str
    title: str
    number: str | None
    watermark: str | None
    stamp: str | None
    stamp_kind: str
    meta: tuple[Meta, ...]
    bill_to: Party
    payer: str
    layout: str
    sections: tuple[Section, ...]
    show_section_subtotals: bool
    rows: tuple[Row, ...]
    totals: tuple[TotalLine, ...]
    credit_notes: tuple[CreditNoteRef, ...]
    currency: str
    notice: str | None = None


_STAMPS = {"paid": "Paid", "void": "Void", "uncollectible": "Uncollectible"}
_WATERMARKS = {"draft": "Draft", "preview": "Preview"}


def _account_name(account_id: int | None, names: Mapping[int, str]) -> str:
    if account_id is None:
        return ""
    return names.get(account_id) or f"Account #{account_id}"


def _signed_amount(line: InvoiceLine) -> int:
    # A discount reduces what is owed whatever sign it was stored with.
    return -abs(line.amount) if line.kind == LineKind.discount else line.amount


def _percent(fraction: Any) -> Decimal | None:
    share = _decimal(_text(fraction)) if fraction is not None else None
    return None if share is None else share * 100


def allocation_note(details: Mapping[str, Any] | None) -> str | None:
    """How a pooled charge was allocated back to this account, when it was.

    ``details["allocation"]`` is a mapping with any of ``share`` (this account's fraction
    of the pool, a Decimal string such as "0.25"), ``quantity`` and ``pool_quantity``
    (this account's usage and the pool's); a bare number is a share.
    """
    if not details:
        return None
    allocation = details.get("allocation")
    if allocation is None or allocation is False:
        return None
    if not isinstance(allocation, Mapping):
        percent = _percent(allocation)
        return (
            f"Pooled usage: {_plain(percent.quantize(Decimal('0.01')))}% share" if percent else "Pooled usage"
        )
    quantity = _decimal(_text(allocation.get("quantity")))
    pool_quantity = _decimal(_text(allocation.get("pool_quantity") or allocation.get("pooled_quantity")))
    percent = _percent(allocation.get("share"))
    if percent is None and quantity is not None and pool_quantity:
        percent = quantity / pool_quantity * 100
    parts = ["Pooled usage"]
    if percent is not None:
        parts.append(f"{_plain(percent.quantize(Decimal('0.01')))}% share")
    if quantity is not None and pool_quantity is not None:
        parts.append(f"{_plain(quantity)} of {_plain(pool_quantity)}")
    elif pool_quantity is not None:
        parts.append(f"of {_plain(pool_quantity)}")
    return ": ".join([parts[0], ", ".join(parts[1:])]) if len(parts) > 1 else parts[0]


def _row(line: InvoiceLine, currency: str) -> Row:
    note = allocation_note(line.details)
    return Row(
        description=line.description,
        period=format_period(line.period_start, line.period_end),
        quantity=format_quantity(line.quantity),
        unit_price=format_unit_price(line.unit_price, currency),
        amount=format_money(_signed_amount(line), currency),
        notes=(note,) if note else (),
        kind=line.kind,
    )


def _billable(lines: Iterable[InvoiceLine]) -> list[InvoiceLine]:
    # Tax is an invoice-level total, never a line inside a section.
    return sorted((line for line in lines if line.kind != LineKind.tax), key=lambda line: line.position)


def breakdown_sections(doc: InvoiceDocument) -> list[Section]:
    """One section per account: the invoice owner's first, then the others by name."""
    invoice, currency = doc.invoice, doc.invoice.currency
    owner = invoice.owner_account_id
    by_account: dict[int, list[InvoiceLine]] = {}
    for line in _billable(doc.lines):
        # A line for no account in particular (an invoice-wide adjustment) is the owner's.
        by_account.setdefault(line.account_id if line.account_id is not None else owner, []).append(line)

    def order(account_id: int) -> tuple[int, str, int]:
        name = _account_name(account_id, doc.account_names)
        return (0 if account_id == owner else 1, name.casefold(), account_id)

    return [
        Section(
            title=_account_name(account_id, doc.account_names),
            rows=tuple(_row(line, currency) for line in by_account[account_id]),
            subtotal=format_money(sum(_signed_amount(line) for line in by_account[account_id]), currency),
        )
        for account_id in sorted(by_account, key=order)
    ]


def summary_rows(doc: InvoiceDocument) -> list[Row]:
    """One row per charge, the accounts' identical charges summed into it."""
    currency = doc.invoice.currency
    groups: dict[tuple[Any, ...], list[InvoiceLine]] = {}
    for line in _billable(doc.lines):
        price = _decimal(line.unit_price)
        key = (
            line.kind,
            line.plan_id,
            line.meter_code,
            line.description,
            price if price is not None else line.unit_price,
        )
        groups.setdefault(key, []).append(line)
    several_accounts = len({line.account_id for line in _billable(doc.lines)}) > 1
    rows = []
    for lines in groups.values():
        first = lines[0]
        quantities = [_decimal(line.quantity) for line in lines]
        if all(q is not None for q in quantities):
            quantity = _plain(sum((q for q in quantities if q is not None), Decimal(0)))
        else:
            quantity = format_quantity(first.quantity) if len(lines) == 1 else ""
        accounts = {line.account_id for line in lines}
        notes: list[str] = []
        if several_accounts:
            if len(accounts) == 1:
                notes.append(_account_name(first.account_id, doc.account_names) or "1 account")
            else:
                notes.append(f"{len(accounts)} accounts")
        if len(lines) == 1:
            allocation = allocation_note(first.details)
            if allocation:
                notes.append(allocation)
        elif any(line.details and line.details.get("allocation") for line in lines):
            notes.append("Pooled usage")
        starts = [line.period_start for line in lines if line.period_start]
        ends = [line.period_end for line in lines if line.period_end]
        rows.append(
            Row(
                description=first.description,
                period=format_period(min(starts, default=None), max(ends, default=None)),
                quantity=quantity,
                unit_price=format_unit_price(first.unit_price, currency),
                amount=format_money(sum(_signed_amount(line) for line in lines), currency),
                notes=tuple(notes),
                kind=first.kind,
            )
        )
    return rows


def party_of(bill_to: Mapping[str, Any] | None) -> Party:
    """The bill-to snapshot as it was taken; an anonymised one shows what is left."""
    bill_to = bill_to or {}
    lines: list[str] = []
    address = bill_to.get("address")
    if isinstance(address, Mapping):
        address = "\n".join(_text(part) for part in address.values() if _text(part))
    lines.extend(part.strip() for part in _text(address).splitlines() if part.strip())
    if tax_id := _text(bill_to.get("tax_id")):
        lines.append(f"Tax ID: {tax_id}")
    if email := _text(bill_to.get("email")):
        lines.append(email)
    return Party(name=_text(bill_to.get("name")), lines=tuple(lines))


_METHOD_KINDS = {
    "card": "Card",
    "bank_account": "Bank account",
    "mobile_money": "Mobile money",
    "manual": "Manual payment",
}


def payer_text(payer: Mapping[str, Any] | None) -> str:
    """The payer snapshot as "Visa •••• 4242, Jane Doe", or that there is no payment method."""
    payer = payer or {}
    kind = _text(payer.get("kind"))
    label = _text(payer.get("label")) or _METHOD_KINDS.get(kind, kind.replace("_", " ").capitalize())
    last_four = _text(payer.get("last_four"))
    holder = _text(payer.get("holder"))
    if not (label or last_four or holder):
        return "No payment method on file"
    method = " ".join(part for part in (label, f"•••• {last_four}" if last_four else "") if part)
    text = ", ".join(part for part in (method, holder) if part)
    if sharer := _text(payer.get("account_name")):
        text += f" (shared by {sharer})"
    return text


def _stamp_kind(status: str) -> str:
    return {"paid": "ok", "void": "bad", "uncollectible": "bad"}.get(status, "")


def invoice_view(doc: InvoiceDocument) -> InvoiceView:
    invoice, currency = doc.invoice, doc.invoice.currency
    status = invoice.status
    watermark = _WATERMARKS.get(status)
    number = invoice.number if watermark is None else None
    if status == "preview":
        title = "Invoice preview"
    elif status == "draft":
        title = "Draft invoice"
    else:
        title = f"Invoice {number}" if number else "Invoice"

    meta = []
    if number:
        meta.append(Meta("Invoice number", number))
    meta.append(Meta("Issue date", format_date(invoice.issue_date) if invoice.issue_date else "Not issued"))
    meta.append(Meta("Due date", format_date(invoice.due_date)))
    meta.append(Meta("Billing period", format_period(invoice.period_start, invoice.period_end)))
    meta.append(Meta("Currency", currency.upper()))

    paid = doc.payments_total or invoice.amount_paid
    credited = invoice.amount_credited
    tax_label = "Tax (exempt)" if invoice.tax_exempt else f"Tax ({format_rate_ppm(invoice.tax_rate_ppm)})"
    totals = [
        TotalLine("Subtotal", format_money(invoice.subtotal_amount, currency)),
        TotalLine(tax_label, format_money(invoice.tax_amount, currency)),
        TotalLine("Total", format_money(invoice.total_amount, currency), emphasis=True),
        TotalLine("Credits", format_money(-credited, currency)),
        TotalLine("Paid", format_money(-paid, currency)),
    ]
    notice = None
    if status == "void":
        # A void invoice asks for nothing, whatever its total said.
        totals.append(TotalLine("Balance due", format_money(0, currency), emphasis=True))
        notice = "This invoice is void: nothing is due on it."
    else:
        balance = invoice.total_amount - paid - credited
        totals.append(TotalLine("Balance due", format_money(balance, currency), emphasis=True))
        if status == "uncollectible":
            notice = "This invoice was written off as uncollectible."
        elif watermark:
            notice = f"This is a {watermark.lower()}: it is not a demand for payment."

    summary = invoice.layout in SUMMARY_LAYOUTS
    sections = [] if summary else breakdown_sections(doc)
    rows = summary_rows(doc) if summary else []
    notes = [
        CreditNoteRef(
            number=note.number,
            issued=format_date(note.created_at.date()) if note.created_at else "—",
            reason=note.reason,
            amount=format_money(note.total_amount, note.currency),
            void=note.status == "void",
        )
        for note in doc.credit_notes
    ]
    return InvoiceView(
        provider_name=doc.provider_name,
        title=title,
        number=number,
        watermark=watermark,
        stamp=_STAMPS.get(status),
        stamp_kind=_stamp_kind(status),
        meta=tuple(meta),
        bill_to=party_of(invoice.bill_to),
        payer=payer_text(invoice.payer),
        layout="summary" if summary else "breakdown",
        sections=tuple(sections),
        show_section_subtotals=len(sections) > 1,
        rows=tuple(rows),
        totals=tuple(totals),
        credit_notes=tuple(notes),
        currency=currency.upper(),
        notice=notice,
    )


@dataclass(frozen=True)
class CreditNoteView:
    provider_name: str
    title: str
    number: str
    corrects: str
    currency: str
    stamp: str | None
    stamp_kind: str
    meta: tuple[Meta, ...]
    bill_to: Party
    reason: str
    rows: tuple[tuple[str, str], ...]
    totals: tuple[TotalLine, ...]


def credit_note_view(note: CreditNote, invoice: Invoice, provider_name: str) -> CreditNoteView:
    currency = note.currency
    corrects = invoice.number or f"#{invoice.id}"
    meta = (
        Meta("Credit note number", note.number),
        Meta("Issue date", format_date(note.created_at.date()) if note.created_at else "—"),
        Meta("Corrects invoice", corrects),
        Meta("Invoice date", format_date(invoice.issue_date)),
        Meta("Billing period", format_period(invoice.period_start, invoice.period_end)),
        Meta("Currency", currency.upper()),
    )
    tax_label = "Tax (exempt)" if invoice.tax_exempt else f"Tax ({format_rate_ppm(invoice.tax_rate_ppm)})"
    rows = tuple(
        (_text(line.get("description")), format_money(int(line.get("amount") or 0), currency))
        for line in note.lines or ()
    )
    title = f"Credit note {note.number}"
    return CreditNoteView(
        provider_name=provider_name,
        title=title,
        number=note.number,
        corrects=corrects,
        currency=currency.upper(),
        stamp="Void" if note.status == "void" else None,
        stamp_kind="bad",
        meta=meta,
        bill_to=party_of(invoice.bill_to),
        reason=note.reason,
        rows=rows,
        totals=(
            TotalLine("Subtotal", format_money(note.subtotal_amount, currency)),
            TotalLine(tax_label, format_money(note.tax_amount, currency)),
            TotalLine("Total credited", format_money(note.total_amount, currency), emphasis=True),
        ),
    )


# --- HTML --------------------------------------------------------------------------------

_TEMPLATES = Path(__file__).parent / "templates"
_STYLESHEET = "_document.css"

_ENVIRONMENT = jinja2.Environment(
    loader=jinja2.FileSystemLoader(_TEMPLATES),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    # Templates ship with the code: never stat them again once compiled.
    auto_reload=False,
)


def _markup(template: str, view: InvoiceView | CreditNoteView, *, inline_css: bool) -> str:
    return _ENVIRONMENT.get_template(template).render(doc=view, inline_css=inline_css)


def invoice_html(doc: InvoiceDocument) -> str:
    """The invoice as a standalone HTML page, its stylesheet inline."""
    return _markup("invoice.html", invoice_view(doc), inline_css=True)


def credit_note_html(note: CreditNote, invoice: Invoice, provider_name: str) -> str:
    return _markup("credit_note.html", credit_note_view(note, invoice, provider_name), inline_css=True)


# --- PDF ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Printer:
    weasyprint: Any
    font_config: Any
    fetcher: Any
    stylesheet: Any


_local = threading.local()


def _refuse(url: str) -> Any:
    raise ValueError(f"invoice documents load no external resources: {url}")


def _printer() -> _Printer:
    """WeasyPrint with its font configuration, URL fetcher and parsed stylesheet.

    Imported on first use: it is slow to import and only PDFs need it. The font
    configuration (a scan of the system's fonts) and the stylesheet are made once per
    thread rather than per document; per thread because Pango's font maps are not safe
    to share between threads.
    """
    printer: _Printer | None = getattr(_local, "printer", None)
    if printer is None:
        import weasyprint
        from weasyprint.text.fonts import FontConfiguration
        from weasyprint.urls import URLFetcher

        class _NoFetch(URLFetcher):
            def fetch(self, url: str, headers: Any = None) -> Any:
                return _refuse(url)

        font_config, fetcher = FontConfiguration(), _NoFetch()
        stylesheet = weasyprint.CSS(
            string=(_TEMPLATES / _STYLESHEET).read_text(encoding="utf-8"),
            base_url=None,
            url_fetcher=fetcher,
            font_config=font_config,
        )
        printer = _local.printer = _Printer(weasyprint, font_config, fetcher, stylesheet)
    return printer


def layout_pdf(html: str) -> Any:
    """``html`` laid out in pages (a ``weasyprint.Document``) with the documents' stylesheet.

    The stylesheet is given parsed rather than read from the page each time: the HTML
    printed is the same page as ``*_html`` returns, less its inline ``<style>``.
    """
    printer = _printer()
    page = printer.weasyprint.HTML(string=html, base_url=None, url_fetcher=printer.fetcher)
    return page.render(font_config=printer.font_config, stylesheets=[printer.stylesheet])


def layout_invoice(doc: InvoiceDocument) -> Any:
    return layout_pdf(_markup("invoice.html", invoice_view(doc), inline_css=False))


def layout_credit_note(note: CreditNote, invoice: Invoice, provider_name: str) -> Any:
    view = credit_note_view(note, invoice, provider_name)
    return layout_pdf(_markup("credit_note.html", view, inline_css=False))


def _bytes(document: Any) -> bytes:
    pdf = document.write_pdf()
    assert isinstance(pdf, bytes)
    return pdf


def invoice_pdf(doc: InvoiceDocument) -> bytes:
    return _bytes(layout_invoice(doc))


def credit_note_pdf(note: CreditNote, invoice: Invoice, provider_name: str) -> bytes:
    return _bytes(layout_credit_note(note, invoice, provider_name))
