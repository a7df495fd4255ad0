"""Every query of the fold: batches waiting to be added to the rollups, the set-based
statement that adds them, the events it leaves to Python, and reads that add the
events still waiting to the rollups.

An event's pooled chain is its account's path when the account's chain has not changed
since the usage happened (``accounts.chain_since``); those are summed by the database
itself. The rest (usage dated before a move) are read out and placed along the link
history in Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, NamedTuple

from sqlalchemy import Date, TextualSelect, bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

from boughs.kit.sql import is_postgres
from boughs.kit.types import JSONDoc, UTCDateTime, UTCHour
from boughs.usage.models import RollupKind

SERVICE, ACCOUNT, BELOW = RollupKind.service.value, RollupKind.account.value, RollupKind.below.value
# What a read may ask for besides a service's or an account's own usage: an account's
# subtree, which its own rows and its below rows hold together.
SUBTREE = "subtree"
_STORED_AS = {SERVICE: (SERVICE,), ACCOUNT: (ACCOUNT,), SUBTREE: (ACCOUNT, BELOW)}


def stored_kinds(kind: str) -> tuple[str, ...]:
    """The rollup kinds whose rows, summed (peaks: the greatest), hold what a read of
    ``kind`` (service, account or subtree) asks for."""
    return _STORED_AS[kind]


def _instants(*names: str) -> list[Any]:
    """Parameters holding instants, stored as the UTCDateTime columns store them."""
    return [bindparam(name, type_=UTCDateTime) for name in names]


# --- batches --------------------------------------------------------------------------------


async def open_batch(session: AsyncSession, provider_id: int, received_at: datetime) -> int:
    """A batch row for the events about to be stored; its span is set by ``close_batch``."""
    rows = await session.execute(
        text(
            "INSERT INTO usage_batches (provider_id, received_at, events, first_event_id, last_event_id) "
            "VALUES (:provider_id, :received_at, 0, 0, 0) RETURNING id"
        ).bindparams(*_instants("received_at")),
        {"provider_id": provider_id, "received_at": received_at},
    )
    return int(rows.scalar_one())


async def close_batch(
    session: AsyncSession, batch_id: int, event_ids: Sequence[int], earliest_at: datetime | None
) -> None:
    """Record the batch's span and the time of its earliest event, or drop the batch when
    it brought nothing new."""
    if not event_ids:
        await session.execute(text("DELETE FROM usage_batches WHERE id = :id"), {"id": batch_id})
        return
    await session.execute(
        text(
            "UPDATE usage_batches SET events = :events, first_event_id = :first, last_event_id = :last, "
            "earliest_at = :earliest_at WHERE id = :id"
        ).bindparams(*_instants("earliest_at")),
        {
            "id": batch_id, "events": len(event_ids), "first": min(event_ids), "last": max(event_ids),
            "earliest_at": earliest_at,
        },
    )  # fmt: skip


@dataclass(frozen=True)
class Span:
    """Pending batches taken together: their ids, the event ids they lie within, and the
    time of their earliest event (None when a batch did not keep it)."""

    batch_ids: tuple[int, ...]
    first_event_id: int
    last_event_id: int
    events: int
    earliest_at: datetime | None = None

    def params(self) -> dict[str, Any]:
        return {"batch_ids": list(self.batch_ids), "lo": self.first_event_id, "hi": self.last_event_id}


async def lock_folding(session: AsyncSession, provider_id: int) -> None:
    """One folding transaction at a time per provider, until it ends: a second waits, then
    finds what the first folded marked so. Folds never race on rollup rows, and one
    transaction may fold several times (its lock is its own). SQLite writers are one at
    a time anyway."""
    if is_postgres(session):
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended('boughs-usage-fold', :provider_id))"),
            {"provider_id": provider_id},
        )


async def pending_span(
    session: AsyncSession, provider_id: int, max_events: int, *, whole_only: bool = False
) -> Span | None:
    """The oldest pending batches, up to about ``max_events`` events (at least one batch);
    with ``whole_only``, none unless that many are pending."""
    limit = max(1, max_events // 100)
    rows = (
        await session.execute(
            text(
                "SELECT id, first_event_id, last_event_id, events, earliest_at FROM usage_batches "
                "WHERE provider_id = :provider_id AND folded_at IS NULL ORDER BY id LIMIT :limit"
            ).columns(earliest_at=UTCDateTime),
            {"provider_id": provider_id, "limit": limit},
        )
    ).all()
    taken: list[Any] = []
    events = 0
    for row in rows:
        if taken and events + row.events > max_events:
            break
        taken.append(row)
        events += row.events
    whole = len(taken) < len(rows) or len(rows) == limit
    if not taken or (whole_only and not whole):
        return None
    known = [r.earliest_at for r in taken]
    return Span(
        tuple(r.id for r in taken),
        min(r.first_event_id for r in taken),
        max(r.last_event_id for r in taken),
        events,
        None if None in known else min(known),
    )


async def providers_with_pending(session: AsyncSession) -> list[int]:
    rows = await session.execute(
        text("SELECT DISTINCT provider_id FROM usage_batches WHERE folded_at IS NULL ORDER BY provider_id")
    )
    return [int(r[0]) for r in rows]


async def mark_folded(session: AsyncSession, span: Span, at: datetime) -> None:
    await session.execute(
        text("UPDATE usage_batches SET folded_at = :at WHERE id IN :batch_ids").bindparams(
            bindparam("batch_ids", expanding=True), *_instants("at")
        ),
        {"at": at, "batch_ids": list(span.batch_ids)},
    )


async def purge_folded_batches(session: AsyncSession, provider_id: int, before: datetime) -> None:
    """Folded batches received before ``before``: their events are past retention too."""
    await session.execute(
        text(
            "DELETE FROM usage_batches WHERE provider_id = :provider_id "
            "AND folded_at IS NOT NULL AND received_at < :before"
        ).bindparams(*_instants("before")),
        {"provider_id": provider_id, "before": before},
    )


# --- the set-based part of the fold ----------------------------------------------------------

# The span's events, by primary-key range; the batch ids leave out events of batches that
# interleaved with these on PostgreSQL (ids come from one sequence) but are not folded now.
_SPAN = "e.id BETWEEN :lo AND :hi AND e.batch_id IN :batch_ids"
_CURRENT_CHAIN = "(a.chain_since IS NULL OR a.chain_since <= e.occurred_at)"


# The rows are grouped on compact keys, the kinds as numbers in the order of their names and
# the hours as the engine holds them most briefly, and given their stored form only once
# grouped: on SQLite, sorting the long text keys took half the time of the grouping.
_KIND_CODES = {kind: code for code, kind in enumerate(sorted((ACCOUNT, BELOW, SERVICE)))}
_KIND_OF_CODE = (
    "CASE kind_code " + " ".join(f"WHEN {code} THEN '{kind}'" for kind, code in _KIND_CODES.items()) + " END"
)
_ROLLUP_COLUMNS = "meter_id, kind, subject_id, hour, provider_id, account_id, total, peak, events"


@dataclass(frozen=True)
class _Dialect:
    """How an engine spells the parts of the fold.

    ``hour_key``: the UTC hour of ``e.occurred_at``, in a form that sorts as the hours do;
    ``hour``: that key (``hour_key``) as the rollups store an hour. ``members``: a table of
    the ids on an account's path ``a.path``, one ``member_id`` a row; every one but the
    account itself gets a below row. ``differs``: null-safe inequality.
    """

    hour_key: str
    hour: str
    members: str
    member_id: str
    greatest: str
    differs: str
    # The staged sums in the order they were grouped (the rollups' key order).
    staged_order: str


_SQLITE = _Dialect(
    # An event's time is stored as 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC; its first 13
    # characters name its hour, turned into the hours since the epoch once per row written.
    hour_key="substr(e.occurred_at, 1, 13)",
    hour="CAST(strftime('%s', hour_key || ':00:00') AS INTEGER) / 3600",
    members="json_each('[' || replace(trim(a.path, '/'), '/', ',') || ']') AS m",
    member_id="CAST(m.value AS INTEGER)",
    greatest="max",
    differs="IS NOT",
    staged_order="rowid",
)
_POSTGRES = _Dialect(
    # The UTC hour by arithmetic on the instant: no time zone rules to consult per row.
    hour_key="date_bin('1 hour', e.occurred_at, TIMESTAMPTZ '2000-01-01 00:00:00+00')",
    hour="hour_key",
    members="LATERAL unnest(string_to_array(trim(both '/' from a.path), '/')) AS m(member)",
    member_id="CAST(m.member AS bigint)",
    greatest="greatest",
    differs="IS DISTINCT FROM",
    staged_order="meter_id, kind, subject_id, hour",
)


def _dialect(session: AsyncSession) -> _Dialect:
    return _POSTGRES if is_postgres(session) else _SQLITE


def _grouped_sums(d: _Dialect) -> str:
    """The span's events summed per rollup row (columns as _ROLLUP_COLUMNS, in key order)."""
    return f"""
    SELECT meter_id, {_KIND_OF_CODE} AS kind, subject_id, {d.hour} AS hour, :provider_id AS provider_id,
           min(owner) AS account_id, sum(quantity) AS total, max(quantity) AS peak, count(*) AS events
    FROM (
        SELECT e.meter_id AS meter_id, {_KIND_CODES[ACCOUNT]} AS kind_code, e.account_id AS subject_id,
               {d.hour_key} AS hour_key, e.account_id AS owner, e.quantity AS quantity
        FROM usage_events AS e WHERE {_SPAN}
        UNION ALL
        SELECT e.meter_id, {_KIND_CODES[SERVICE]}, e.service_id, {d.hour_key}, e.account_id, e.quantity
        FROM usage_events AS e WHERE {_SPAN} AND e.service_id IS NOT NULL
        UNION ALL
        SELECT e.meter_id, {_KIND_CODES[BELOW]}, {d.member_id}, {d.hour_key}, {d.member_id}, e.quantity
        FROM usage_events AS e JOIN accounts AS a ON a.id = e.account_id CROSS JOIN {d.members}
        WHERE {_SPAN} AND {_CURRENT_CHAIN} AND {d.member_id} <> e.account_id
    ) AS d
    GROUP BY meter_id, kind_code, subject_id, hour_key
    ORDER BY meter_id, kind_code, subject_id, hour_key
    """


def _add_to_rollups(d: _Dialect) -> str:
    return f"""
    ON CONFLICT (meter_id, kind, subject_id, hour) DO UPDATE
    SET total = usage_rollups.total + excluded.total,
        peak = {d.greatest}(usage_rollups.peak, excluded.peak),
        events = usage_rollups.events + excluded.events
    """


def _with_span(sql: str) -> Any:
    return text(sql).bindparams(bindparam("batch_ids", expanding=True))


_FOLD = {
    d: _with_span(f"INSERT INTO usage_rollups ({_ROLLUP_COLUMNS}) {_grouped_sums(d)} {_add_to_rollups(d)}")
    for d in (_SQLITE, _POSTGRES)
}


async def fold_sums(session: AsyncSession, provider_id: int, span: Span) -> None:
    """Add the span's events to their service's and account's hourly rows, and to the
    below rows of their account's ancestors where that chain has held since the usage."""
    d = _dialect(session)
    params = {**span.params(), "provider_id": provider_id}
    if d is _SQLITE:
        await session.execute(_FOLD[d], params)
        return
    # Grouping a fold's rows in memory rather than in temporary files on disk, by sorting:
    # the rows go to the rollups in key order anyway, and one sort costs less than hashing
    # the groups first and then sorting them (a tenth of the fold).
    await session.execute(
        text("SELECT set_config('work_mem', '64MB', true), set_config('enable_hashagg', 'off', true)")
    )
    await session.execute(_FOLD[d], params)
    # What else the transaction runs (a bill run after its fold) plans as it would.
    await session.execute(text("SET LOCAL enable_hashagg TO DEFAULT"))


# --- staging: the sums read before the write lock is taken -----------------------------------
#
# On SQLite a fold's transaction holds the one write lock, which every ingest waits for, and
# reading, joining and grouping the span's events took most of it. Staged, they are grouped
# into a temporary table in a read transaction (no write lock; ingest goes on), and the write
# transaction only adds those rows, once it has checked that nothing they depend on changed:
# the span's batches still pending, and the chains of its events' accounts as they were read.

_STAGED_SUMS = "fold_staged_sums"
_STAGED_CHAINS = "fold_staged_chains"


def _staging(d: _Dialect) -> tuple[list[Any], list[Any]]:
    """Statements that make the temporary tables (gone again when the held connection is
    returned: ``Database.pinned``), and those that fill them from a span."""
    instant = "TEXT" if d is _SQLITE else "TIMESTAMPTZ"
    hour = "INTEGER" if d is _SQLITE else "TIMESTAMPTZ"
    made = [
        text(
            f"CREATE TEMPORARY TABLE {_STAGED_SUMS} (meter_id BIGINT, kind TEXT, subject_id BIGINT, "
            f"hour {hour}, provider_id BIGINT, account_id BIGINT, total BIGINT, peak BIGINT, events BIGINT)"
        ),
        text(
            f"CREATE TEMPORARY TABLE {_STAGED_CHAINS} "
            f"(id BIGINT PRIMARY KEY, path TEXT, chain_since {instant})"
        ),
    ]
    filled = [
        _with_span(f"INSERT INTO {_STAGED_SUMS} ({_ROLLUP_COLUMNS}) {_grouped_sums(d)}"),
        _with_span(
            f"INSERT INTO {_STAGED_CHAINS} (id, path, chain_since) "
            "SELECT DISTINCT a.id, a.path, a.chain_since "
            f"FROM usage_events AS e JOIN accounts AS a ON a.id = e.account_id WHERE {_SPAN}"
        ),
    ]
    return made, filled


_STAGING = {d: _staging(d) for d in (_SQLITE, _POSTGRES)}
_STILL_PENDING = _with_span("SELECT count(*) FROM usage_batches WHERE id IN :batch_ids AND folded_at IS NULL")
# A staged chain whose account moved or went.
_CHAIN_CHANGED = {
    d: text(
        f"SELECT 1 FROM {_STAGED_CHAINS} AS s LEFT JOIN accounts AS a ON a.id = s.id "
        f"WHERE a.id IS NULL OR a.path <> s.path OR a.chain_since {d.differs} s.chain_since LIMIT 1"
    )
    for d in (_SQLITE, _POSTGRES)
}
_ADD_STAGED = {
    d: text(
        f"INSERT INTO usage_rollups ({_ROLLUP_COLUMNS}) SELECT {_ROLLUP_COLUMNS} FROM {_STAGED_SUMS} "
        f"WHERE true ORDER BY {d.staged_order} {_add_to_rollups(d)}"
    )
    for d in (_SQLITE, _POSTGRES)
}


async def stage_sums(session: AsyncSession, provider_id: int, span: Span) -> None:
    """Group the span's sums into this connection's temporary tables, with the chains of
    its events' accounts as they were read (a read transaction will do)."""
    made, filled = _STAGING[_dialect(session)]
    for statement in made:
        await session.execute(statement)
    params = {**span.params(), "provider_id": provider_id}
    for statement in filled:
        await session.execute(statement, params)


async def staged_sums_hold(session: AsyncSession, span: Span) -> bool:
    """Whether the sums staged for ``span`` are still what folding it would add: no other
    fold took any of its batches, and no account of its events moved or went."""
    pending = await session.execute(_STILL_PENDING, {"batch_ids": list(span.batch_ids)})
    if pending.scalar_one() != len(span.batch_ids):
        return False
    changed = await session.execute(_CHAIN_CHANGED[_dialect(session)])
    return changed.first() is None


async def add_staged_sums(session: AsyncSession) -> None:
    await session.execute(_ADD_STAGED[_dialect(session)])


_FLAG_LATE = text(
    f"""
    UPDATE usage_events AS e SET late = TRUE
    WHERE {_SPAN} AND NOT e.late
      AND e.occurred_at < (SELECT a.usage_billed_until FROM accounts AS a WHERE a.id = e.account_id)
    """
).bindparams(bindparam("batch_ids", expanding=True))


async def _any_account_after(session: AsyncSession, provider_id: int, column: str, span: Span) -> bool:
    if span.earliest_at is None:
        return True
    found = await session.execute(
        text(
            f"SELECT 1 FROM accounts WHERE provider_id = :provider_id AND {column} > :at LIMIT 1"
        ).bindparams(*_instants("at")),
        {"provider_id": provider_id, "at": span.earliest_at},
    )
    return found.first() is not None


async def invoiced_since(session: AsyncSession, provider_id: int, span: Span) -> bool:
    """Whether any account's usage was invoiced up to a moment after the span's earliest
    event: if none was, no event of the span can be late."""
    return await _any_account_after(session, provider_id, "usage_billed_until", span)


async def moved_since(session: AsyncSession, provider_id: int, span: Span) -> bool:
    """Whether any account's chain changed after the span's earliest event: if none did,
    every event of the span pools along its account's path as it is."""
    return await _any_account_after(session, provider_id, "chain_since", span)


async def flag_late(session: AsyncSession, span: Span) -> None:
    """Mark late the span's events dated before their account's usage was invoiced that
    the ingest took as on time: on PostgreSQL a batch can commit while an invoice is being
    finalized, after that invoice read the usage and before it set usage_billed_until. The
    invoice did not count them, so they are billed as late usage on the next one."""
    await session.execute(_FLAG_LATE, span.params())


# --- what the fold leaves to Python ----------------------------------------------------------


class LooseEvent(NamedTuple):
    """An event with what placing it needs: its account's path now, and since when that
    path has held."""

    meter_id: int
    account_id: int
    service_id: int | None
    quantity: int
    occurred_at: datetime
    properties: dict[str, Any] | None
    path: str
    chain_since: datetime | None

    @property
    def chain_is_current(self) -> bool:
        return self.chain_since is None or self.chain_since <= self.occurred_at


def _loose(row: Any) -> LooseEvent:
    return LooseEvent(
        row.meter_id, row.account_id, row.service_id, int(row.quantity), row.occurred_at,
        row.properties, row.path, row.chain_since,
    )  # fmt: skip


_LOOSE_COLUMNS = (
    "e.meter_id, e.account_id, e.service_id, e.quantity, e.occurred_at, e.properties, a.path, a.chain_since"
)
# What a statement reading _LOOSE_COLUMNS hands back typed, as the models' columns would.
_LOOSE_TYPES: dict[str, Any] = {"occurred_at": UTCDateTime, "chain_since": UTCDateTime, "properties": JSONDoc}


async def moved_chain_events(session: AsyncSession, span: Span) -> list[LooseEvent]:
    """The span's events whose account's chain changed after the usage happened."""
    rows = await session.execute(
        text(
            f"SELECT {_LOOSE_COLUMNS} FROM usage_events AS e JOIN accounts AS a ON a.id = e.account_id "
            f"WHERE {_SPAN} AND a.chain_since > e.occurred_at"
        )
        .bindparams(bindparam("batch_ids", expanding=True))
        .columns(**_LOOSE_TYPES),
        span.params(),
    )
    return [_loose(r) for r in rows]


async def events_of_meters(session: AsyncSession, span: Span, meter_ids: Sequence[int]) -> list[LooseEvent]:
    rows = await session.execute(
        text(
            f"SELECT {_LOOSE_COLUMNS} FROM usage_events AS e JOIN accounts AS a ON a.id = e.account_id "
            f"WHERE {_SPAN} AND e.meter_id IN :meter_ids"
        )
        .bindparams(bindparam("batch_ids", expanding=True), bindparam("meter_ids", expanding=True))
        .columns(**_LOOSE_TYPES),
        {**span.params(), "meter_ids": list(meter_ids)},
    )
    return [_loose(r) for r in rows]


_CAPPED_PLAN = "p.data_cap_bytes IS NOT NULL AND p.cap_action IS NOT NULL"


async def has_capped_services(session: AsyncSession, provider_id: int) -> bool:
    row = await session.execute(
        text(
            "SELECT 1 FROM services AS s JOIN plans AS p ON p.id = s.plan_id "
            f"WHERE s.provider_id = :provider_id AND s.status <> 'archived' AND {_CAPPED_PLAN} LIMIT 1"
        ),
        {"provider_id": provider_id},
    )
    return row.first() is not None


async def capped_usage_events(
    session: AsyncSession, provider_id: int, span: Span, meter_ids: Sequence[int]
) -> list[LooseEvent]:
    """The span's events of these meters that some cap may count: on a service with a cap
    of its own, below an account holding a pooled cap, or dated before a move."""
    if is_postgres(session):
        under_pool = (
            "CAST(string_to_array(trim(both '/' from a.path), '/') AS bigint[]) "
            "&& ARRAY(SELECT account_id FROM pools)"
        )
    else:
        under_pool = (
            "EXISTS (SELECT 1 FROM json_each('[' || replace(trim(a.path, '/'), '/', ',') || ']') AS m "
            "WHERE m.value IN (SELECT account_id FROM pools))"
        )
    rows = await session.execute(
        text(
            f"""
            WITH capped AS (
                SELECT s.id, s.account_id, p.pooled_cap FROM services AS s JOIN plans AS p ON p.id = s.plan_id
                WHERE s.provider_id = :provider_id AND s.status <> 'archived' AND {_CAPPED_PLAN}
            ), pools AS (SELECT account_id FROM capped WHERE pooled_cap)
            SELECT {_LOOSE_COLUMNS} FROM usage_events AS e JOIN accounts AS a ON a.id = e.account_id
            WHERE {_SPAN} AND e.meter_id IN :meter_ids AND (
                e.service_id IN (SELECT id FROM capped WHERE NOT pooled_cap)
                OR a.chain_since > e.occurred_at
                OR {under_pool}
            )
            """
        )
        .bindparams(bindparam("batch_ids", expanding=True), bindparam("meter_ids", expanding=True))
        .columns(**_LOOSE_TYPES),
        {**span.params(), "meter_ids": list(meter_ids), "provider_id": provider_id},
    )
    return [_loose(r) for r in rows]


# --- reads that count what is still pending --------------------------------------------------


class HourRow(NamedTuple):
    """An hourly rollup row, or one pending event (a row of its own until it is folded)."""

    at: datetime
    total: int
    peak: int
    events: int
    pending: LooseEvent | None


def _subject_match(kind: str) -> str:
    if kind == SERVICE:
        return "e.service_id = :subject_id"
    if kind == ACCOUNT:
        return "e.account_id = :subject_id"
    # Below the subject today, on a chain unchanged since; or placed by history in Python.
    return (
        f"(({_CURRENT_CHAIN} AND a.path >= :subject_path AND a.path < :subject_upper) "
        "OR a.chain_since > e.occurred_at)"
    )


@dataclass(frozen=True)
class Wanted:
    """One subject's usage of some meters in [start, end): what the reads below look for."""

    provider_id: int
    meter_ids: tuple[int, ...]
    kind: str
    subject_id: int
    subject_path: str | None  # a subtree's top, as its path is today
    start: datetime
    end: datetime

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "provider_id": self.provider_id,
            "meter_ids": list(self.meter_ids),
            "kinds": list(stored_kinds(self.kind)),
            "subject_id": self.subject_id,
            "start": self.start,
            "end": self.end,
        }
        if self.kind == SUBTREE:
            assert self.subject_path is not None
            params.update(subject_path=self.subject_path, subject_upper=self.subject_path[:-1] + "0")
        return params

    def statement(self, sql: str, *lists: str) -> TextualSelect:
        """``sql`` with its instants stored as the columns store them, the meter ids and the
        parameters named in ``lists`` taken as lists, and read back typed."""
        return (
            text(sql)
            .bindparams(
                *_instants("start", "end"),
                *(bindparam(name, expanding=True) for name in ("meter_ids", *lists)),
            )
            .columns(at=UTCHour, **_LOOSE_TYPES)
        )

    def pending(self, columns: str) -> str:
        """The events of batches not yet folded that may be the subject's."""
        return f"""
            SELECT {columns}
            FROM usage_batches AS b
            JOIN usage_events AS e ON e.id BETWEEN b.first_event_id AND b.last_event_id AND e.batch_id = b.id
            JOIN accounts AS a ON a.id = e.account_id
            WHERE b.provider_id = :provider_id AND b.folded_at IS NULL
              AND e.meter_id IN :meter_ids AND e.occurred_at >= :start AND e.occurred_at < :end
              AND {_subject_match(self.kind)}
        """


async def hourly_with_pending(session: AsyncSession, wanted: Wanted) -> list[HourRow]:
    """The subject's rollup rows in [start, end) and, read in the same statement (so a fold
    in between cannot count an event twice or not at all), the pending events that may
    belong to them. A pending subtree candidate dated before a move is for the caller to
    place along the link history."""
    rows = await session.execute(
        wanted.statement(
            f"""
            SELECT 0 AS pending, r.hour AS at, r.total AS total, r.peak AS peak, r.events AS events,
                   NULL AS meter_id, NULL AS account_id, NULL AS service_id, NULL AS quantity,
                   NULL AS occurred_at, NULL AS properties, NULL AS path, NULL AS chain_since
            FROM usage_rollups AS r
            WHERE r.meter_id IN :meter_ids AND r.kind IN :kinds AND r.subject_id = :subject_id
              AND r.hour >= :start_hour AND r.hour < :end_hour
            UNION ALL
            {wanted.pending(f"1, NULL, e.quantity, e.quantity, 1, {_LOOSE_COLUMNS}")}
            """,
            "kinds",
        ).bindparams(bindparam("start_hour", type_=UTCHour), bindparam("end_hour", type_=UTCHour)),
        {**wanted.params(), "start_hour": wanted.start, "end_hour": wanted.end},
    )
    found: list[HourRow] = []
    for row in rows:
        if row.pending:
            loose = _loose(row)
            found.append(HourRow(loose.occurred_at, loose.quantity, loose.quantity, 1, loose))
        else:
            found.append(HourRow(row.at, int(row.total), int(row.peak), int(row.events), None))
    return found


async def pending_of_meter(session: AsyncSession, wanted: Wanted) -> list[LooseEvent]:
    """Pending events of the meters that may belong to the subject, for distinct counts."""
    rows = await session.execute(wanted.statement(wanted.pending(_LOOSE_COLUMNS)), wanted.params())
    return [_loose(r) for r in rows]


async def cap_used_with_pending(
    session: AsyncSession, service_id: int, period_start: date, wanted: Wanted
) -> tuple[int, list[LooseEvent]]:
    """A cap's counter for the period starting ``period_start`` and, read in the same
    statement (so a fold in between cannot count an event twice or not at all), the
    pending events of ``wanted`` that may add to it: its meters that count toward caps, its
    subject (the service, or a pooled cap's subtree) and the period's instants."""
    rows = await session.execute(
        wanted.statement(
            f"""
            SELECT 0 AS pending, NULL AS meter_id, NULL AS account_id, NULL AS service_id,
                   c.used_bytes AS quantity, NULL AS occurred_at, NULL AS properties, NULL AS path,
                   NULL AS chain_since
            FROM cap_usage AS c WHERE c.service_id = :service_id AND c.period_start = :period_start
            UNION ALL
            {wanted.pending(f"1, {_LOOSE_COLUMNS}")}
            """
        ).bindparams(bindparam("period_start", type_=Date)),
        {**wanted.params(), "service_id": service_id, "period_start": period_start},
    )
    used = 0
    pending: list[LooseEvent] = []
    for row in rows:
        if row.pending:
            pending.append(_loose(row))
        else:
            used += int(row.quantity)
    return used, pending
