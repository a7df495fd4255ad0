"""Queries of bill runs and invoices, and the reads a bill run rates from."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from boughs.accounts import bulk_repository as bulk
from boughs.accounts.models import Account, AccountLink
from boughs.accounts.repository import in_subtree
from boughs.authz.scope import Scope
from boughs.billing.models import (
    BILLED,
    ISSUED,
    BillRun,
    BillRunChunk,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    Payment,
)
from boughs.catalog.models import Plan
from boughs.kit.paths import ids_of
from boughs.kit.sql import is_postgres, one_of
from boughs.providers.models import Provider
from boughs.services.models import (
    ScheduledChangeState,
    Service,
    ServiceDiscount,
    ServicePlanChange,
    ServiceScheduledChange,
    ServiceStatus,
)
from boughs.usage.fold_repository import stored_kinds
from boughs.usage.models import Meter, UsageEvent, UsageRollup, UsageUniqueValue

INVOICES = cast(Table, Invoice.__table__)
LINES = cast(Table, InvoiceLine.__table__)


# --- bill runs -------------------------------------------------------------------------------


async def get_bill_run(session: AsyncSession, provider_id: int, run_id: int) -> BillRun | None:
    return await session.scalar(
        select(BillRun).where(BillRun.id == run_id, BillRun.provider_id == provider_id)
    )


async def lock_bill_run(session: AsyncSession, run_id: int) -> BillRun | None:
    return await session.scalar(select(BillRun).where(BillRun.id == run_id).with_for_update())


async def list_bill_runs(
    session: AsyncSession, provider_id: int, after: int | None, limit: int
) -> list[BillRun]:
    query = select(BillRun).where(BillRun.provider_id == provider_id)
    if after is not None:
        query = query.where(BillRun.id < after)
    return list(await session.scalars(query.order_by(BillRun.id.desc()).limit(limit)))


async def bill_run_for(session: AsyncSession, provider_id: int, period_end: date) -> bool:
    """Whether a real run for this period end exists (the demo bills each period once)."""
    found = await session.scalar(
        select(BillRun.id)
        .where(
            BillRun.provider_id == provider_id, BillRun.period_end == period_end, BillRun.dry_run.is_(False)
        )
        .limit(1)
    )
    return found is not None


async def root_ids(session: AsyncSession, provider_id: int) -> list[int]:
    rows = await session.scalars(
        select(Account.id)
        .where(Account.provider_id == provider_id, Account.parent_id.is_(None))
        .order_by(Account.id)
    )
    return list(rows)


async def chunks_of(session: AsyncSession, run_id: int) -> list[BillRunChunk]:
    rows = await session.scalars(
        select(BillRunChunk).where(BillRunChunk.bill_run_id == run_id).order_by(BillRunChunk.position)
    )
    return list(rows)


async def get_chunk(session: AsyncSession, chunk_id: int) -> BillRunChunk | None:
    return await session.get(BillRunChunk, chunk_id)


async def roots_of_chunk(session: AsyncSession, chunk: BillRunChunk, limit: int) -> list[int]:
    after = chunk.after_root_id if chunk.after_root_id is not None else chunk.first_root_id - 1
    rows = await session.scalars(
        select(Account.id)
        .where(
            Account.provider_id == chunk.provider_id,
            Account.parent_id.is_(None),
            Account.id > after,
            Account.id <= chunk.last_root_id,
        )
        .order_by(Account.id)
        .limit(limit)
    )
    return list(rows)


async def advance_chunk(
    session: AsyncSession, chunk_id: int, expected_after: int | None, after_root_id: int, roots: int
) -> bool:
    """Move the chunk's cursor past a root, only from where this worker found it."""
    cursor = (
        BillRunChunk.after_root_id.is_(None)
        if expected_after is None
        else BillRunChunk.after_root_id == expected_after
    )
    result = await session.execute(
        update(BillRunChunk)
        .where(BillRunChunk.id == chunk_id, cursor)
        .values(after_root_id=after_root_id, roots_done=BillRunChunk.roots_done + roots)
    )
    return (result.rowcount or 0) == 1  # type: ignore[attr-defined]


async def add_run_counts(session: AsyncSession, run_id: int, roots: int, created: int, skipped: int) -> None:
    await session.execute(
        update(BillRun)
        .where(BillRun.id == run_id)
        .values(
            roots_done=BillRun.roots_done + roots,
            invoices_created=BillRun.invoices_created + created,
            invoices_skipped=BillRun.invoices_skipped + skipped,
        )
    )


# --- what a bill run reads --------------------------------------------------------------------


async def provider(session: AsyncSession, provider_id: int) -> Provider:
    found = await session.get(Provider, provider_id)
    assert found is not None
    return found


@dataclass(slots=True)
class TreeAccount:
    """What a bill run reads of an account: where it sits, and the terms and details it
    holds or passes down. A narrow row, not the whole entity: a run reads a tree at a time."""

    id: int
    provider_id: int
    parent_id: int | None
    path: str
    name: str
    external_id: str | None
    contact_email: str | None
    invoice_mode: str
    billing_anchor_day: int
    timezone: str | None
    currency: str | None
    billing_address: str | None
    billing_tax_id: str | None
    billing_email: str | None
    tax_rate_ppm: int | None
    tax_exempt: bool
    net_terms_days: int | None


@dataclass(slots=True)
class BilledService:
    """What a bill run reads of a service: whose it is, its plan and its own price terms."""

    id: int
    account_id: int
    plan_id: int
    description: str
    quantity: int
    unit_price_amount: int | None
    pay_period: str | None
    start_date: date
    end_date: date | None


_TREE_ACCOUNT = select(*(getattr(Account, name) for name in TreeAccount.__slots__))
_BILLED_SERVICE = select(*(getattr(Service, name) for name in BilledService.__slots__))


async def _tree_accounts(session: AsyncSession, *conditions: ColumnElement[bool]) -> list[TreeAccount]:
    rows = await session.execute(_TREE_ACCOUNT.where(*conditions))
    return [TreeAccount(*row) for row in rows]


async def trees(session: AsyncSession, provider_id: int, roots: Sequence[int]) -> list[TreeAccount]:
    """Every account under these roots, as the tree stands now."""
    if not roots:
        return []
    paths = list(await session.scalars(select(Account.path).where(Account.id.in_(roots))))
    # One statement: each root's subtree is a range of the path index.
    return await _tree_accounts(
        session, Account.provider_id == provider_id, or_(*(in_subtree(path) for path in paths))
    )


async def moved_during(session: AsyncSession, provider_id: int, start: datetime, end: datetime) -> list[int]:
    """Accounts whose parent changed in [start, end): a link of theirs closed in the window."""
    rows = await session.scalars(
        select(AccountLink.child_id)
        .where(
            AccountLink.provider_id == provider_id,
            AccountLink.valid_to.is_not(None),
            AccountLink.valid_to > start,
            AccountLink.valid_to < end,
        )
        .distinct()
    )
    return list(rows)


async def accounts_with_subtrees(
    session: AsyncSession, provider_id: int, ids: Sequence[int]
) -> list[TreeAccount]:
    if not ids:
        return []
    tops = list(await session.scalars(select(Account.path).where(Account.id.in_(ids))))
    found: dict[int, TreeAccount] = {}
    for path in tops:
        for account in await _tree_accounts(session, Account.provider_id == provider_id, in_subtree(path)):
            found[account.id] = account
    return list(found.values())


async def accounts_by_id(session: AsyncSession, ids: Iterable[int]) -> dict[int, TreeAccount]:
    found: dict[int, TreeAccount] = {}
    for condition in one_of(session, Account.id, sorted(set(ids))):
        for account in await _tree_accounts(session, condition):
            found[account.id] = account
    return found


async def links_overlapping(
    session: AsyncSession, account_ids: Sequence[int], start: datetime, end: datetime
) -> dict[int, list[AccountLink]]:
    found: dict[int, list[AccountLink]] = defaultdict(list)
    for condition in one_of(session, AccountLink.child_id, sorted(set(account_ids))):
        rows = await session.scalars(
            select(AccountLink)
            .where(
                condition,
                AccountLink.valid_from < end,
                or_(AccountLink.valid_to.is_(None), AccountLink.valid_to > start),
            )
            .order_by(AccountLink.child_id, AccountLink.valid_from)
        )
        for link in rows:
            found[link.child_id].append(link)
    return found


def ancestors_missing(accounts: dict[int, TreeAccount]) -> set[int]:
    wanted: set[int] = set()
    for account in accounts.values():
        wanted.update(ids_of(account.path))
    return wanted - accounts.keys()


async def services_billable(
    session: AsyncSession, account_ids: Sequence[int], start: date, end: date
) -> list[BilledService]:
    """Services that may owe something for [start, end]: started by its end, not ended before it."""
    found: list[BilledService] = []
    for condition in one_of(session, Service.account_id, sorted(set(account_ids))):
        rows = await session.execute(
            _BILLED_SERVICE.where(
                condition,
                Service.start_date <= end,
                or_(Service.end_date.is_(None), Service.end_date >= start),
                Service.status != literal_column(f"'{ServiceStatus.pending.value}'"),
            ).order_by(Service.id)
        )
        found += [BilledService(*row) for row in rows]
    return found


async def plans_by_id(session: AsyncSession, ids: Iterable[int]) -> dict[int, Plan]:
    found: dict[int, Plan] = {}
    for condition in one_of(session, Plan.id, sorted(set(ids))):
        for plan in await session.scalars(select(Plan).where(condition)):
            found[plan.id] = plan
    return found


async def _by_service(
    session: AsyncSession,
    model: Any,
    service_ids: Sequence[int],
    conditions: Sequence[ColumnElement[bool]],
    order_by: Sequence[Any],
) -> dict[int, list[Any]]:
    """Rows of ``model`` for these services, grouped by service, in ``order_by`` within each."""
    found: dict[int, list[Any]] = defaultdict(list)
    for condition in one_of(session, model.service_id, sorted(set(service_ids))):
        rows = await session.scalars(
            select(model).where(condition, *conditions).order_by(model.service_id, *order_by)
        )
        for row in rows:
            found[row.service_id].append(row)
    return found


async def plan_changes_after(
    session: AsyncSession, service_ids: Sequence[int], after: date
) -> dict[int, list[ServicePlanChange]]:
    return await _by_service(
        session,
        ServicePlanChange,
        service_ids,
        [ServicePlanChange.effective_date > after],
        [ServicePlanChange.effective_date, ServicePlanChange.id],
    )


async def scheduled_changes_between(
    session: AsyncSession, service_ids: Sequence[int], after: date, until: date
) -> dict[int, list[ServiceScheduledChange]]:
    return await _by_service(
        session,
        ServiceScheduledChange,
        service_ids,
        [
            ServiceScheduledChange.state == ScheduledChangeState.pending.value,
            ServiceScheduledChange.effective_date > after,
            ServiceScheduledChange.effective_date <= until,
        ],
        [ServiceScheduledChange.effective_date, ServiceScheduledChange.id],
    )


async def discounts_of(
    session: AsyncSession, service_ids: Sequence[int], start: date, end: date
) -> dict[int, list[ServiceDiscount]]:
    return await _by_service(
        session,
        ServiceDiscount,
        service_ids,
        [
            ServiceDiscount.start_date <= end,
            or_(ServiceDiscount.end_date.is_(None), ServiceDiscount.end_date >= start),
        ],
        [ServiceDiscount.id],
    )


async def meters_by_code(session: AsyncSession, provider_id: int) -> dict[str, Meter]:
    rows = await session.scalars(select(Meter).where(Meter.provider_id == provider_id))
    return {m.code: m for m in rows}


@dataclass(frozen=True)
class Measure:
    total: int = 0
    peak: int = 0
    events: int = 0


async def measures(
    session: AsyncSession,
    meter_id: int,
    kind: str,
    subject_ids: Sequence[int],
    start: datetime,
    end: datetime,
) -> dict[int, Measure]:
    """Each subject's total, peak and event count of one meter over [start, end), from the
    rollups; ``kind``: account or subtree (the account's own rows and those below it)."""
    found: dict[int, Measure] = {}
    for condition in one_of(session, UsageRollup.subject_id, sorted(set(subject_ids))):
        rows = await session.execute(
            select(
                UsageRollup.subject_id,
                func.sum(UsageRollup.total),
                func.max(UsageRollup.peak),
                func.sum(UsageRollup.events),
            )
            .where(
                UsageRollup.meter_id == meter_id,
                UsageRollup.kind.in_(stored_kinds(kind)),
                condition,
                UsageRollup.hour >= start,
                UsageRollup.hour < end,
            )
            .group_by(UsageRollup.subject_id)
        )
        for subject_id, total, peak, events in rows:
            found[subject_id] = Measure(int(total or 0), int(peak or 0), int(events or 0))
    return found


async def distinct_counts(
    session: AsyncSession,
    meter_id: int,
    kind: str,
    subject_ids: Sequence[int],
    start: datetime,
    end: datetime,
) -> dict[int, int]:
    found: dict[int, int] = {}
    for condition in one_of(session, UsageUniqueValue.subject_id, sorted(set(subject_ids))):
        rows = await session.execute(
            select(UsageUniqueValue.subject_id, func.count(func.distinct(UsageUniqueValue.value)))
            .where(
                UsageUniqueValue.meter_id == meter_id,
                UsageUniqueValue.kind.in_(stored_kinds(kind)),
                condition,
                UsageUniqueValue.hour >= start,
                UsageUniqueValue.hour < end,
            )
            .group_by(UsageUniqueValue.subject_id)
        )
        for subject_id, count in rows:
            found[subject_id] = int(count)
    return found


@dataclass(frozen=True)
class LateUsage:
    account_id: int
    service_id: int | None
    meter_id: int
    quantity: int
    events: int
    first: datetime
    last: datetime


async def late_usage(
    session: AsyncSession, account_ids: Sequence[int], received_before: datetime
) -> list[LateUsage]:
    """Late events not yet billed as an adjustment, per account, service and meter."""
    found: list[LateUsage] = []
    for condition in one_of(session, UsageEvent.account_id, sorted(set(account_ids))):
        rows = await session.execute(
            select(
                UsageEvent.account_id,
                UsageEvent.service_id,
                UsageEvent.meter_id,
                func.sum(UsageEvent.quantity),
                func.count(),
                func.min(UsageEvent.occurred_at),
                func.max(UsageEvent.occurred_at),
            )
            .where(
                condition,
                UsageEvent.late,
                UsageEvent.late_invoice_id.is_(None),
                UsageEvent.received_at <= received_before,
            )
            .group_by(UsageEvent.account_id, UsageEvent.service_id, UsageEvent.meter_id)
        )
        for account_id, service_id, meter_id, quantity, events, first, last in rows:
            found.append(LateUsage(account_id, service_id, meter_id, int(quantity), int(events), first, last))
    return found


async def mark_late_billed(
    session: AsyncSession, invoice_id: int, account_ids: Sequence[int], received_before: datetime
) -> None:
    for condition in one_of(session, UsageEvent.account_id, sorted(set(account_ids))):
        await session.execute(
            update(UsageEvent)
            .where(
                condition,
                UsageEvent.late,
                UsageEvent.late_invoice_id.is_(None),
                UsageEvent.received_at <= received_before,
            )
            .values(late_invoice_id=invoice_id)
        )


async def mark_usage_billed(session: AsyncSession, account_ids: Sequence[int], until: datetime) -> None:
    for condition in one_of(session, Account.id, sorted(set(account_ids))):
        await session.execute(
            update(Account)
            .where(
                condition,
                or_(Account.usage_billed_until.is_(None), Account.usage_billed_until < until),
            )
            .values(usage_billed_until=until)
        )


# --- invoices --------------------------------------------------------------------------------


async def billed_owner_ids(
    session: AsyncSession, provider_id: int, owner_ids: Sequence[int], period_end: date
) -> set[int]:
    """Those of these owners already invoiced for this period (a draft or an issued invoice)."""
    found: set[int] = set()
    for condition in one_of(session, Invoice.owner_account_id, sorted(set(owner_ids))):
        rows = await session.scalars(
            select(Invoice.owner_account_id).where(
                Invoice.provider_id == provider_id,
                condition,
                Invoice.period_end == period_end,
                Invoice.status.in_(BILLED),
            )
        )
        found.update(rows)
    return found


async def get_invoice(session: AsyncSession, provider_id: int, invoice_id: int) -> Invoice | None:
    return await session.scalar(
        select(Invoice).where(Invoice.id == invoice_id, Invoice.provider_id == provider_id)
    )


async def lock_invoice(session: AsyncSession, provider_id: int, invoice_id: int) -> Invoice | None:
    return await session.scalar(
        select(Invoice)
        .where(Invoice.id == invoice_id, Invoice.provider_id == provider_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def lines_of(session: AsyncSession, invoice_id: int) -> list[InvoiceLine]:
    rows = await session.scalars(
        select(InvoiceLine).where(InvoiceLine.invoice_id == invoice_id).order_by(InvoiceLine.position)
    )
    return list(rows)


async def delete_lines(session: AsyncSession, invoice_id: int) -> None:
    await session.execute(delete(InvoiceLine).where(InvoiceLine.invoice_id == invoice_id))


async def insert_lines(session: AsyncSession, provider_id: int, columns: dict[str, list[Any]]) -> None:
    """Invoice lines given column by column (see ``engine.line_columns``), in bulk: COPY on
    PostgreSQL, multi-row inserts on SQLite."""
    if columns and any(columns.values()):
        await bulk.insert_columns(session, LINES, columns, constants={"provider_id": provider_id})


_NEXT_INVOICE_IDS = text(
    "SELECT nextval(pg_get_serial_sequence('invoices', 'id')) FROM generate_series(1, :n)"
)


async def insert_invoices(session: AsyncSession, rows: list[dict[str, Any]]) -> dict[int, int]:
    """Write invoices in one statement; their ids by owner (one invoice per owner in a batch)."""
    if not rows:
        return {}
    if is_postgres(session):
        # Taking the ids from the sequence first lets the rows go by COPY, which returns nothing.
        ids = list(await session.scalars(_NEXT_INVOICE_IDS, {"n": len(rows)}))
        columns = {"id": ids} | {name: [row[name] for row in rows] for name in rows[0]}
        await bulk.insert_columns(session, INVOICES, columns)
        return {row["owner_account_id"]: i for row, i in zip(rows, ids, strict=True)}
    found = await session.execute(
        insert(INVOICES).returning(INVOICES.c.id, INVOICES.c.owner_account_id), rows
    )
    return {owner: invoice_id for invoice_id, owner in found}


@dataclass(frozen=True)
class InvoiceFilter:
    account_ids: Sequence[int] | None = None  # owners the reader may see; None: every owner
    owner_account_id: int | None = None
    bill_run_id: int | None = None
    status: str | None = None


async def list_invoices(
    session: AsyncSession, provider_id: int, f: InvoiceFilter, after: int | None, limit: int
) -> list[Invoice]:
    query = select(Invoice).where(Invoice.provider_id == provider_id)
    if f.status is None:
        query = query.where(Invoice.status != InvoiceStatus.preview.value)
    else:
        query = query.where(Invoice.status == f.status)
    if f.owner_account_id is not None:
        query = query.where(Invoice.owner_account_id == f.owner_account_id)
    if f.bill_run_id is not None:
        query = query.where(Invoice.bill_run_id == f.bill_run_id)
    if f.account_ids is not None:
        query = query.where(Invoice.owner_account_id.in_(list(f.account_ids)))
    if after is not None:
        query = query.where(Invoice.id < after)
    return list(await session.scalars(query.order_by(Invoice.id.desc()).limit(limit)))


async def run_totals(session: AsyncSession, run_id: int) -> dict[str, int]:
    rows = await session.execute(
        select(Invoice.currency, func.sum(Invoice.total_amount))
        .where(Invoice.bill_run_id == run_id, Invoice.status != InvoiceStatus.void.value)
        .group_by(Invoice.currency)
    )
    return {currency: int(total) for currency, total in rows}


async def previews_of(session: AsyncSession, run_id: int) -> list[Invoice]:
    rows = await session.scalars(
        select(Invoice)
        .where(Invoice.bill_run_id == run_id, Invoice.status == InvoiceStatus.preview.value)
        .order_by(Invoice.owner_account_id)
    )
    return list(rows)


async def delete_previews(session: AsyncSession, run_id: int, owner_ids: Sequence[int]) -> None:
    for condition in one_of(session, Invoice.owner_account_id, sorted(set(owner_ids))):
        await session.execute(
            delete(Invoice).where(
                Invoice.bill_run_id == run_id,
                Invoice.status == InvoiceStatus.preview.value,
                condition,
            )
        )


async def next_invoice_number(session: AsyncSession, provider_id: int) -> tuple[str, int]:
    """Take the provider's next invoice number: the UPDATE holds the row until commit, so
    concurrent finalizations queue and the numbers have no gaps."""
    row = (
        await session.execute(
            update(Provider)
            .where(Provider.id == provider_id)
            .values(last_invoice_number=Provider.last_invoice_number + 1)
            .returning(Provider.last_invoice_number, Provider.invoice_number_prefix)
        )
    ).one()
    return f"{row.invoice_number_prefix}{row.last_invoice_number:06d}", row.last_invoice_number


async def billed_for_service_lines(
    session: AsyncSession, service_ids: Sequence[int], meter_code: str, period_start: date, period_end: date
) -> tuple[int, str] | None:
    """What was billed on issued invoices for a service's usage of a meter in a period: (amount, quantity)."""
    rows = (
        await session.execute(
            select(InvoiceLine.amount, InvoiceLine.quantity, InvoiceLine.details)
            .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
            .where(
                InvoiceLine.service_id.in_(list(service_ids)),
                InvoiceLine.meter_code == meter_code,
                InvoiceLine.period_start == period_start,
                InvoiceLine.period_end == period_end,
                InvoiceLine.kind.in_(("usage", "adjustment")),
                Invoice.status.in_(("finalized", "paid", "uncollectible")),
            )
        )
    ).all()
    if not rows:
        return None
    return sum(r.amount for r in rows), str(rows[0].quantity)


# --- deleting an account -----------------------------------------------------------------------

ANONYMISED = "Deleted account"


async def issued_invoice_count(session: AsyncSession, owner_account_id: int) -> int:
    found = await session.scalar(
        select(func.count())
        .select_from(Invoice)
        .where(Invoice.owner_account_id == owner_account_id, Invoice.status.in_(ISSUED))
    )
    return int(found or 0)


async def payment_count(session: AsyncSession, account_id: int) -> int:
    found = await session.scalar(
        select(func.count()).select_from(Payment).where(Payment.account_id == account_id)
    )
    return int(found or 0)


async def forget_owner(session: AsyncSession, owner_account_id: int) -> None:
    """An account is deleted: its drafts and previews go; its issued invoices stay, as legal
    records, with a bill-to that no longer names anyone."""
    await session.execute(
        delete(Invoice).where(
            Invoice.owner_account_id == owner_account_id,
            Invoice.status.in_((InvoiceStatus.draft.value, InvoiceStatus.preview.value)),
        )
    )
    await session.execute(
        update(Invoice)
        .where(Invoice.owner_account_id == owner_account_id, Invoice.status.in_(ISSUED))
        .values(bill_to={"name": ANONYMISED, "account_id": owner_account_id})
    )


# --- the console's lists -----------------------------------------------------------------------
# Statements the console pages, orders and cuts (``console.lists.fetch_page``); each row is
# (Invoice, the owner's name or None once the owner is deleted).


def invoice_list_statement(scope: Scope, f: InvoiceFilter, number: str = "") -> Select[*tuple[Any, ...]]:
    """The invoices ``f`` asks for among those the scope reaches (by their owner's path);
    previews only when asked for by status, and only for staff."""
    query = (
        select(Invoice, Account.name)
        .outerjoin(Account, Account.id == Invoice.owner_account_id)
        .where(Invoice.provider_id == scope.provider_id)
    )
    if not scope.whole_provider:
        query = query.where(Account.id.is_not(None), scope.path_condition(Account.path))
    if f.status is None or (f.status == InvoiceStatus.preview.value and not scope.whole_provider):
        query = query.where(Invoice.status != InvoiceStatus.preview.value)
    else:
        query = query.where(Invoice.status == f.status)
    if f.owner_account_id is not None:
        query = query.where(Invoice.owner_account_id == f.owner_account_id)
    if f.bill_run_id is not None:
        query = query.where(Invoice.bill_run_id == f.bill_run_id)
    if number:
        query = query.where(func.lower(Invoice.number).contains(number.lower(), autoescape=True))
    return query


INVOICE_SORT_COLUMNS: dict[str, Any] = {
    "id": Invoice.id,
    "number": Invoice.number,
    "period": Invoice.period_end,
    "status": Invoice.status,
    "total": Invoice.total_amount,
    "due": Invoice.due_date,
    "balance": Invoice.total_amount - Invoice.amount_paid - Invoice.amount_credited,
}


def bill_run_list_statement(provider_id: int, status: str | None = None) -> Select[BillRun]:
    query = select(BillRun).where(BillRun.provider_id == provider_id)
    if status is not None:
        query = query.where(BillRun.status == status)
    return query


BILL_RUN_SORT_COLUMNS: dict[str, Any] = {
    "id": BillRun.id,
    "period": BillRun.period_end,
    "status": BillRun.status,
}
