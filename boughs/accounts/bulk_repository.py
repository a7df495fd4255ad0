"""Queries for bulk account creation (the CSV import): id reservation, look-ups, bulk writes.

Bulk writes bypass the ORM. PostgreSQL gets ``COPY ... FROM STDIN`` on the session's
own connection (so it is part of the transaction); SQLite gets ``executemany`` of plain
multi-row INSERTs in chunks. Values are stored exactly as the ORM stores them, so a row
written here reads back like one written by ``session.add``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from itertools import chain, repeat
from typing import Any

from sqlalchemy import Integer, Table, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from boughs.accounts.models import Account, AccountLink
from boughs.db import driver_sql
from boughs.providers.models import Provider

# Rows per executemany on SQLite, and per write to the COPY stream on PostgreSQL (where
# about a socket buffer's worth lets the server work while the next chunk is formatted).
# Progress is reported after each.
SQLITE_CHUNK = 10_000
COPY_CHUNK = 1_000
# Rows per INSERT statement on SQLite. SQLite rebuilds the lookup table of a CHECK's
# IN (...) list for every statement it runs, so one row per statement costs several
# times more than the row itself; a few hundred rows per statement amortise it.
ROWS_PER_STATEMENT = 200
# Bound parameters per look-up query: well under SQLite's limit of 32,766.
LOOKUP_CHUNK = 5_000
# PostgreSQL plans from statistics; after a large load they are stale until autovacuum.
ANALYZE_AFTER_ROWS = 10_000


@dataclass(frozen=True, slots=True)
class Placed:
    """Where an existing account sits: what a new child needs to compute its own place."""

    id: int
    path: str
    depth: int
    root_id: int


def _is_sqlite(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "sqlite"


async def provider(session: AsyncSession, provider_id: int) -> Provider | None:
    return (await session.execute(select(Provider).where(Provider.id == provider_id))).scalar_one_or_none()


async def lock_for_bulk_insert(session: AsyncSession) -> None:
    """Keep other writers out of ``accounts`` until commit, so pre-assigned ids stay free
    and the accounts an import hangs new children under cannot move or go away.

    EXCLUSIVE mode still lets readers read. SQLite writers already hold the database's
    single write lock from BEGIN IMMEDIATE.
    """
    if not _is_sqlite(session):
        await session.execute(text("LOCK TABLE accounts IN EXCLUSIVE MODE"))


async def next_account_id(session: AsyncSession) -> int:
    """The first id a bulk insert may use. Call it after ``lock_for_bulk_insert``.

    It is also past every id ever handed out (PostgreSQL's sequence, SQLite's
    AUTOINCREMENT counter), so ids of deleted accounts, which parent-link history may
    still name, are not reused. SQLite moves its counter on by itself as rows go in.
    """
    highest = (await session.execute(select(func.max(Account.id)))).scalar_one() or 0
    if _is_sqlite(session):
        issued = (
            await session.execute(text("SELECT seq FROM sqlite_sequence WHERE name = 'accounts'"))
        ).scalar_one_or_none()
        return max(int(highest), int(issued or 0)) + 1
    drawn = (
        await session.execute(text("SELECT nextval(pg_get_serial_sequence('accounts', 'id'))"))
    ).scalar_one()
    return max(int(highest) + 1, int(drawn))


async def advance_account_sequence(session: AsyncSession, last_id: int) -> None:
    """After writing ids up to ``last_id`` by hand, make the next normal insert use last_id + 1."""
    if not _is_sqlite(session):
        await session.execute(
            text("SELECT setval(pg_get_serial_sequence('accounts', 'id'), :last_id, true)"),
            {"last_id": last_id},
        )


async def count_with_external_id(session: AsyncSession, provider_id: int) -> int:
    result = await session.execute(
        select(func.count())
        .select_from(Account)
        .where(Account.provider_id == provider_id, Account.external_id.is_not(None))
    )
    return int(result.scalar_one())


async def placed_by_external_id(
    session: AsyncSession, provider_id: int, external_ids: Sequence[str] | None
) -> dict[str, Placed]:
    """The provider's accounts that have one of these external ids (None: any), by external id."""
    columns = (Account.external_id, Account.id, Account.path, Account.depth, Account.root_id)
    if external_ids is None:
        statements = [
            select(*columns).where(Account.provider_id == provider_id, Account.external_id.is_not(None))
        ]
    else:
        statements = [
            select(*columns).where(
                Account.provider_id == provider_id,
                Account.external_id.in_(external_ids[start : start + LOOKUP_CHUNK]),
            )
            for start in range(0, len(external_ids), LOOKUP_CHUNK)
        ]
    found: dict[str, Placed] = {}
    for statement in statements:
        for external_id, account_id, path, depth, root_id in (await session.execute(statement)).all():
            if external_id is not None:
                found[external_id] = Placed(account_id, path, depth, root_id)
    return found


async def analyze_after_bulk_insert(session: AsyncSession, rows: int) -> None:
    """Refresh the planner's statistics after a large import: without them SQLite may
    scan a whole provider for a lookup by id. SQLite samples a bounded number of rows."""
    if rows < ANALYZE_AFTER_ROWS:
        return
    if _is_sqlite(session):
        await session.execute(text("PRAGMA analysis_limit=1000"))
        await session.execute(text("ANALYZE accounts"))
        await session.execute(text("ANALYZE account_links"))
    else:
        await session.execute(text("ANALYZE accounts, account_links"))


# SQLite's page cache for a bulk insert: about what the new rows and their index entries
# take (~450 bytes an account and its link), within bounds. A cache that is too small
# spills dirty pages to the WAL and writes many of them again and again.
BULK_CACHE_BYTES_PER_ROW = 600
BULK_CACHE_MAX_KIB = 2 * 1024 * 1024


@asynccontextmanager
async def cache_for_bulk_insert(session: AsyncSession, rows: int) -> AsyncIterator[None]:
    """On SQLite, a page cache big enough for ``rows`` new accounts while the block runs."""
    if not _is_sqlite(session):
        yield
        return
    before = int((await session.execute(text("PRAGMA cache_size"))).scalar_one())
    # Negative sizes are KiB, positive ones pages; compare in KiB (pages are 4 KiB).
    before_kib = -before if before < 0 else before * 4
    wanted_kib = min(rows * BULK_CACHE_BYTES_PER_ROW // 1024, BULK_CACHE_MAX_KIB)
    if wanted_kib <= before_kib:
        yield
        return
    await session.execute(text(f"PRAGMA cache_size = -{int(wanted_kib)}"))
    try:
        yield
    finally:
        await session.execute(text(f"PRAGMA cache_size = {before}"))


@asynccontextmanager
async def references_checked_by_caller(session: AsyncSession, tables: Sequence[str]) -> AsyncIterator[bool]:
    """Inside this block, PostgreSQL skips its per-row foreign-key checks, when it may.

    Only for writes whose references the caller has already guaranteed: every parent
    is a row written earlier in the same transaction or an existing row that the
    caller's table lock keeps from being deleted. PostgreSQL checks a foreign key with
    a trigger that looks up and locks the referenced row for every inserted row, which
    is most of the cost of a bulk load. ``session_replication_role = replica`` (set for
    this transaction only, and put back at the end of the block) turns those triggers
    off; it needs a superuser, and it is only used when the tables have no triggers of
    their own, which it would also silence. Yields whether the checks were skipped.
    """
    if _is_sqlite(session) or not await _may_skip_reference_checks(session, tables):
        yield False
        return
    await session.execute(text("SET LOCAL session_replication_role = replica"))
    try:
        yield True
    finally:
        await session.execute(text("SET LOCAL session_replication_role = origin"))


async def _may_skip_reference_checks(session: AsyncSession, tables: Sequence[str]) -> bool:
    superuser = (await session.execute(text("SELECT current_setting('is_superuser')"))).scalar_one()
    if superuser != "on":
        return False
    own_triggers = (
        await session.execute(
            text(
                "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                "WHERE c.relname = ANY(:tables) AND NOT t.tgisinternal"
            ),
            {"tables": list(tables)},
        )
    ).scalar_one()
    return int(own_triggers) == 0


# --- bulk writes ---------------------------------------------------------------------


def _table(model: type[Account] | type[AccountLink]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


def _sqlite_literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"cannot write {value!r} as a SQLite literal")
    if isinstance(value, int):
        return str(int(value))
    return "'" + value.replace("'", "''") + "'"


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: Any) -> str:
    """One value in PostgreSQL's COPY text format."""
    if value is None:
        return "\\N"
    if isinstance(value, datetime):
        text_value = value.astimezone(UTC).isoformat()
    elif isinstance(value, date):
        text_value = value.isoformat()
    elif isinstance(value, dict | list):
        text_value = json.dumps(value)
    else:
        text_value = str(value)
    return text_value.translate(_COPY_ESCAPES)


def _copy_column(values: Sequence[Any]) -> Sequence[str]:
    """A column as COPY text. Ints, strs and Nones are checked for escapes all at once; a
    column of other values (JSON documents, dates, instants) goes value by value."""
    first = next((v for v in values if v is not None), None)
    if first is not None and type(first) not in (str, int):
        return [_copy_text(v) for v in values]
    nulls = values.count(None)
    if nulls:
        texts = ["\\N" if v is None else v if type(v) is str else str(v) for v in values]
    else:
        texts = [v if type(v) is str else str(v) for v in values]
    blob = "".join(texts)
    # Each \N marker brings one backslash; any other backslash, tab or line break is data.
    if blob.count("\\") != nulls or "\t" in blob or "\n" in blob or "\r" in blob:
        return [_copy_text(v) for v in values]
    return texts


async def _sqlite_insert(
    session: AsyncSession,
    table: Table,
    columns: Mapping[str, Sequence[Any]],
    constants: Mapping[str, Any],
    count: int,
    on_rows: Callable[[int], None] | None,
) -> None:
    dialect = session.get_bind().dialect
    fixed: list[str] = []
    for name, value in constants.items():
        processor = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        fixed.append(_sqlite_literal(processor(value) if processor and value is not None else value))
    # Binding None is slow in Python's sqlite3 (it looks for adapters every time), so
    # nullable columns travel as 0 or '' and NULLIF turns them back into NULL.
    blanks: list[Any] = []
    placeholders: list[str] = []
    for name in columns:
        column = table.c[name]
        blank: Any = 0 if isinstance(column.type, Integer) else ""
        blanks.append(blank if column.nullable else None)
        placeholders.append(f"NULLIF(?, {blank!r})" if column.nullable else "?")
    one_row = "(" + ", ".join([*placeholders, *fixed]) + ")"
    head = f"INSERT INTO {table.name} ({', '.join([*columns, *constants])}) VALUES "
    full_statement = head + ", ".join([one_row] * ROWS_PER_STATEMENT)
    width = len(columns)

    def statements(start: int, end: int) -> list[tuple[Any, ...]]:
        """Parameters of the full statements for rows start..end (a multiple of their size)."""
        parts: list[Sequence[Any]] = []
        for values, blank in zip(columns.values(), blanks, strict=True):
            part = values[start:end]
            if blank is not None and None in part:
                part = [blank if v is None else v for v in part]
            parts.append(part)
        flat = list(chain.from_iterable(zip(*parts, strict=True)))
        step = width * ROWS_PER_STATEMENT
        return [tuple(flat[i : i + step]) for i in range(0, len(flat), step)]

    conn = await session.connection()
    driver = (await conn.get_raw_connection()).driver_connection
    assert driver is not None
    whole = count // ROWS_PER_STATEMENT * ROWS_PER_STATEMENT
    chunk = max(SQLITE_CHUNK // ROWS_PER_STATEMENT, 1) * ROWS_PER_STATEMENT  # whole statements
    # While SQLite (on a helper thread, without the GIL) writes one chunk, this thread
    # prepares the next. One thread for all chunks: handing the connection to a different
    # thread for each statement makes SQLite's sqlite3 module fail with "API misuse".
    running: asyncio.Future[Any] | None = None
    running_rows = 0
    loop = asyncio.get_running_loop()
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="boughs-bulk-insert")
    try:
        for start in range(0, whole, chunk):
            end = min(start + chunk, whole)
            params = statements(start, end)
            if running is not None:
                await running
                if on_rows is not None:
                    on_rows(running_rows)
            running = loop.run_in_executor(writer, driver.executemany, full_statement, params)
            running_rows = end - start
            await asyncio.sleep(0)  # let it hand the work to the driver
        if running is not None:
            await running
            running = None
            if on_rows is not None:
                on_rows(running_rows)
    finally:
        if running is not None:  # something failed here: let the write stop before rollback
            await asyncio.gather(running, return_exceptions=True)
        writer.shutdown(wait=False)
    if whole < count:
        parts = [values[whole:count] for values in columns.values()]
        rows = [
            tuple(
                blank if v is None and blank is not None else v for v, blank in zip(row, blanks, strict=True)
            )
            for row in zip(*parts, strict=True)
        ]
        await driver_sql(session, head + ", ".join([one_row] * len(rows)), tuple(chain.from_iterable(rows)))
        if on_rows is not None:
            on_rows(count - whole)


async def _postgres_copy(
    session: AsyncSession,
    table: Table,
    columns: Mapping[str, Sequence[Any]],
    constants: Mapping[str, Any],
    count: int,
    on_rows: Callable[[int], None] | None,
) -> None:
    fixed = ["\t".join(_copy_text(v) for v in constants.values())] if constants else []
    conn = await session.connection()
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    statement = f"COPY {table.name} ({', '.join([*columns, *constants])}) FROM STDIN"
    async with driver.cursor() as cursor, cursor.copy(statement) as copy:
        for start in range(0, count, COPY_CHUNK):
            end = min(start + COPY_CHUNK, count)
            parts: list[Iterable[str]] = [_copy_column(values[start:end]) for values in columns.values()]
            parts.extend(repeat(text_value, end - start) for text_value in fixed)
            lines = map("\t".join, zip(*parts, strict=True))
            await copy.write(("\n".join(lines) + "\n").encode())
            if on_rows is not None:
                on_rows(end - start)


async def insert_columns(
    session: AsyncSession,
    table: Table,
    columns: Mapping[str, Sequence[Any]],
    *,
    constants: Mapping[str, Any] | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> None:
    """Write many rows of ``table`` in bulk, given column by column.

    ``columns`` maps each column to its values, row by row, all of the same length:
    ints, strs or None (dates as ISO text, which both engines store as given). On
    PostgreSQL a column may also hold JSON documents, dates, instants or booleans.
    ``constants`` are the same for every row and may be any value the column takes.
    In nullable columns, '' and 0 are written as NULL. Parents must come before their
    children: SQLite checks foreign keys row by row. ``on_rows(n)`` is told after every
    chunk of n rows.
    """
    counts = {len(values) for values in columns.values()}
    if len(counts) != 1:
        raise ValueError("every column needs one value per row")
    count = counts.pop()
    write = _sqlite_insert if _is_sqlite(session) else _postgres_copy
    await write(session, table, columns, constants or {}, count, on_rows)


async def insert_accounts(
    session: AsyncSession,
    columns: Mapping[str, Sequence[Any]],
    *,
    constants: Mapping[str, Any],
    on_rows: Callable[[int], None] | None = None,
) -> None:
    await insert_columns(session, _table(Account), columns, constants=constants, on_rows=on_rows)


async def insert_links(
    session: AsyncSession,
    columns: Mapping[str, Sequence[Any]],
    *,
    constants: Mapping[str, Any],
    on_rows: Callable[[int], None] | None = None,
) -> None:
    """Parent links; their ids come from the table's own default."""
    await insert_columns(session, _table(AccountLink), columns, constants=constants, on_rows=on_rows)
