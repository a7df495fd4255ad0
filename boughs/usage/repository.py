"""Every query about meters, usage events and their rollups.

The ingest path writes with one statement per table per batch, keys sorted, so that
concurrent batches on PostgreSQL lock rows in the same order and never deadlock.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    Select,
    String,
    and_,
    delete,
    func,
    or_,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from boughs.accounts.models import Account, AccountLink
from boughs.authz.scope import Scope
from boughs.db import driver_sql
from boughs.kit.sql import is_postgres, one_of
from boughs.kit.types import hour_number, storable_id
from boughs.services.models import Service, is_live
from boughs.usage.models import (
    Meter,
    UsageBatch,
    UsageEvent,
    UsageRollup,
    UsageUniqueValue,
)

# Rows per statement: well under SQLite's 32,766 bound parameters and PostgreSQL's 65,535.
CHUNK = 500


def dialect_insert(session: AsyncSession, table: Any) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT."""
    return postgresql.insert(table) if is_postgres(session) else sqlite.insert(table)


# The batch travels as one JSON document: binding a thousand rows as typed arrays cost
# more in the driver than the insert took in the database.
_PG_INSERT_EVENTS = text(
    """
    INSERT INTO usage_events (provider_id, event_key, meter_id, account_id, service_id, quantity,
                              occurred_at, received_at, fingerprint, late, properties, batch_id)
    SELECT :provider_id, e->>0, CAST(e->>1 AS bigint), CAST(e->>2 AS bigint), CAST(e->>3 AS bigint),
           CAST(e->>4 AS bigint), CAST(e->>5 AS timestamptz), CAST(e->>6 AS timestamptz), e->>7,
           CAST(e->>8 AS boolean), NULLIF(e->9, 'null'), :batch_id
    FROM jsonb_array_elements(CAST(:events AS jsonb)) AS e
    ON CONFLICT (provider_id, event_key) DO NOTHING
    RETURNING event_key, id
    """
).columns(event_key=String)
_PG_ADD_TO_ROLLUPS = text(
    """
    INSERT INTO usage_rollups AS r (meter_id, kind, subject_id, hour, provider_id, account_id,
                                    total, peak, events)
    SELECT d.meter_id, d.kind, d.subject_id, d.hour, :provider_id, d.account_id, d.total, d.peak, d.events
    FROM unnest(CAST(:meter_id AS bigint[]), CAST(:kind AS text[]), CAST(:subject_id AS bigint[]),
                CAST(:hour AS timestamptz[]), CAST(:account_id AS bigint[]), CAST(:total AS bigint[]),
                CAST(:peak AS bigint[]), CAST(:events AS bigint[]))
         AS d(meter_id, kind, subject_id, hour, account_id, total, peak, events)
    ON CONFLICT (meter_id, kind, subject_id, hour) DO UPDATE
    SET total = r.total + excluded.total,
        peak = greatest(r.peak, excluded.peak),
        events = r.events + excluded.events
    """
)


# The ingest path talks to SQLite at driver level: binding each value through SQLAlchemy's
# types costs more than the write itself. Values are stored exactly as those types store them.
SQLITE_ROWS_PER_STATEMENT = 400


def _sqlite_instant(moment: datetime) -> str:
    """An instant as the UTCDateTime columns store it on SQLite: 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.isoformat(" ", "microseconds")[:-6]  # without its offset, '+00:00'


_SQLITE_ADD_TO_ROLLUPS = """
    INSERT INTO usage_rollups (provider_id, meter_id, kind, subject_id, hour, account_id, total, peak, events)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (meter_id, kind, subject_id, hour) DO UPDATE
    SET total = total + excluded.total,
        peak = max(peak, excluded.peak),
        events = events + excluded.events
"""


def chunks(rows: Sequence[Any], size: int = CHUNK) -> list[Sequence[Any]]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]


# --- meters ----------------------------------------------------------------------------------


async def meters_by_code(session: AsyncSession, provider_id: int, codes: Sequence[str]) -> dict[str, Meter]:
    if not codes:
        return {}
    rows = await session.scalars(select(Meter).where(Meter.provider_id == provider_id, Meter.code.in_(codes)))
    return {m.code: m for m in rows}


async def all_meters(session: AsyncSession, provider_id: int) -> list[Meter]:
    return list(
        await session.scalars(select(Meter).where(Meter.provider_id == provider_id).order_by(Meter.id))
    )


async def get_meter(session: AsyncSession, provider_id: int, meter_id: int) -> Meter | None:
    if not storable_id(meter_id):
        return None
    return await session.scalar(select(Meter).where(Meter.provider_id == provider_id, Meter.id == meter_id))


async def list_meters(session: AsyncSession, provider_id: int, after: int | None, limit: int) -> list[Meter]:
    query = select(Meter).where(Meter.provider_id == provider_id)
    if after is not None:
        query = query.where(Meter.id > after)
    return list(await session.scalars(query.order_by(Meter.id).limit(limit)))


async def meter_in_use(session: AsyncSession, meter: Meter) -> bool:
    used = await session.scalar(select(UsageRollup.meter_id).where(UsageRollup.meter_id == meter.id).limit(1))
    if used is None:
        used = await session.scalar(select(UsageEvent.id).where(UsageEvent.meter_id == meter.id).limit(1))
    return used is not None


async def delete_meter(session: AsyncSession, meter: Meter) -> None:
    await session.delete(meter)
    await session.flush()


# --- resolving subjects ----------------------------------------------------------------------


class Subject(NamedTuple):
    """Whose usage an event is (a batch resolves a thousand: a plain tuple each)."""

    account_id: int
    path: str
    billed_until: datetime | None
    service_id: int | None = None


_ACCOUNT_COLUMNS = (Account.id, Account.path, Account.usage_billed_until)


async def _subjects(
    session: AsyncSession, statement: Select[Any], column: Any, values: Sequence[Any]
) -> list[Any]:
    # Plain rows from the session's connection: a batch reads a thousand, and the ORM's
    # loading of each (columns, not entities) cost more than the lookup.
    statements = [statement.where(condition) for condition in one_of(session, column, values)]

    def read(sync_session: Session) -> list[Any]:
        connection = sync_session.connection()
        return [row for each in statements for row in connection.execute(each)]

    return await session.run_sync(read) if statements else []


def _accounts(scope: Scope, key: Any, *, by_key: bool = False) -> Select[Any]:
    """(key, account id, path, usage billed until) of the scope's accounts."""
    # by_key: the accounts are looked up by id, and the provider is only checked. SQLite's
    # statistics come from a sample (ANALYZE's analysis_limit) that takes a provider's
    # accounts for a thousand, so it would scan the provider's accounts in an index rather
    # than look up a batch's keys (on a large tree, longer than the rest of the batch):
    # an expression no index serves leaves it the keys.
    provider = Account.provider_id + 0 if by_key else Account.provider_id
    return select(key, *_ACCOUNT_COLUMNS).where(
        provider == scope.provider_id, scope.path_condition(Account.path)
    )


def _services(scope: Scope, key: Any) -> Select[Any]:
    """(key, service id, account id, path, usage billed until) of the scope's services."""
    return (
        select(key, Service.id, *_ACCOUNT_COLUMNS)
        .join(Account, Account.id == Service.account_id)
        .where(Service.provider_id == scope.provider_id, scope.path_condition(Account.path))
    )


async def accounts_by_id(session: AsyncSession, scope: Scope, ids: Sequence[int]) -> dict[int, Subject]:
    wanted = [i for i in ids if storable_id(i)]
    rows = await _subjects(session, _accounts(scope, Account.id, by_key=True), Account.id, wanted)
    return {key: Subject(account, path, billed) for key, account, path, billed in rows}


async def accounts_by_external_id(
    session: AsyncSession, scope: Scope, external_ids: Sequence[str]
) -> dict[str, Subject]:
    rows = await _subjects(session, _accounts(scope, Account.external_id), Account.external_id, external_ids)
    return {key: Subject(account, path, billed) for key, account, path, billed in rows}


async def services_by_id(session: AsyncSession, scope: Scope, ids: Sequence[int]) -> dict[int, Subject]:
    wanted = [i for i in ids if storable_id(i)]
    rows = await _subjects(session, _services(scope, Service.id), Service.id, wanted)
    return {key: Subject(account, path, billed, service) for key, service, account, path, billed in rows}


async def services_by_login(session: AsyncSession, scope: Scope, logins: Sequence[str]) -> dict[str, Subject]:
    """Logins are unique among live services; an archived service's login is free again."""
    live = _services(scope, Service.login).where(is_live())
    rows = await _subjects(session, live, Service.login, logins)
    return {key: Subject(account, path, billed, service) for key, service, account, path, billed in rows}


async def parent_at(session: AsyncSession, account_id: int, at: datetime) -> tuple[bool, int | None]:
    """The account's parent at ``at`` from its link history: (found, parent_id).

    Before the account's first link (usage dated before it was created) its first place
    counts.
    """
    row = await session.execute(
        select(AccountLink.parent_id)
        .where(
            AccountLink.child_id == account_id,
            AccountLink.valid_from <= at,
            (AccountLink.valid_to.is_(None)) | (AccountLink.valid_to > at),
        )
        .limit(1)
    )
    found = row.first()
    if found is not None:
        return True, found[0]
    first = await session.execute(
        select(AccountLink.parent_id)
        .where(AccountLink.child_id == account_id)
        .order_by(AccountLink.valid_from)
        .limit(1)
    )
    earliest = first.first()
    return (earliest is not None, earliest[0] if earliest is not None else None)


# --- storing events ------------------------------------------------------------------------


class NewEvent(NamedTuple):
    event_key: str
    meter_id: int
    account_id: int
    service_id: int | None
    quantity: int
    occurred_at: datetime
    received_at: datetime
    fingerprint: str
    late: bool
    properties: dict[str, Any] | None


async def insert_new_events(
    session: AsyncSession, provider_id: int, batch_id: int, events: list[NewEvent]
) -> dict[str, int]:
    """Insert the events whose key the provider has not seen, as part of the batch; returns
    the keys stored now with their ids.

    ``events`` must be sorted by event_key (lock order). A key another transaction is
    inserting waits for it, then counts as seen.
    """
    if not events:
        return {}
    if is_postgres(session):
        # A batch is received at one moment: written once, not per event.
        received = {moment: moment.isoformat() for moment in {e.received_at for e in events}}
        document = json.dumps(
            [
                (
                    e.event_key, e.meter_id, e.account_id, e.service_id, e.quantity,
                    e.occurred_at.isoformat(), received[e.received_at], e.fingerprint, e.late, e.properties,
                )
                for e in events
            ]
        )  # fmt: skip
        params = {"events": document, "provider_id": provider_id, "batch_id": batch_id}
        return {key: event_id for key, event_id in await session.execute(_PG_INSERT_EVENTS, params)}
    # A batch is received at one moment: formatted once, not per event.
    received = {moment: _sqlite_instant(moment) for moment in {e.received_at for e in events}}
    stored: dict[str, int] = {}
    row = "(" + ", ".join(["?"] * (len(NewEvent._fields) + 2)) + ")"
    for part in chunks(events, SQLITE_ROWS_PER_STATEMENT):
        flat: list[Any] = []
        for e in part:
            flat += (
                provider_id, e.event_key, e.meter_id, e.account_id, e.service_id, e.quantity,
                _sqlite_instant(e.occurred_at), received[e.received_at], e.fingerprint, int(e.late),
                None if e.properties is None else json.dumps(e.properties), batch_id,
            )  # fmt: skip
        rows = await driver_sql(
            session,
            f"INSERT INTO usage_events (provider_id, {', '.join(NewEvent._fields)}, batch_id) "
            f"VALUES {', '.join([row] * len(part))} "
            "ON CONFLICT (provider_id, event_key) DO NOTHING RETURNING event_key, id",
            tuple(flat),
        )
        stored.update({key: event_id for key, event_id in rows})
    return stored


async def fingerprints(session: AsyncSession, provider_id: int, keys: Sequence[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in chunks(list(keys)):
        rows = await session.execute(
            select(UsageEvent.event_key, UsageEvent.fingerprint).where(
                UsageEvent.provider_id == provider_id, UsageEvent.event_key.in_(part)
            )
        )
        found.update({key: fingerprint for key, fingerprint in rows})
    return found


class RollupDelta(NamedTuple):
    meter_id: int
    kind: str
    subject_id: int
    hour: datetime
    account_id: int
    total: int
    peak: int
    events: int


async def add_to_rollups(session: AsyncSession, provider_id: int, deltas: list[RollupDelta]) -> None:
    """Add each delta to its hourly row, creating it if needed. ``deltas`` sorted by key."""
    if not deltas:
        return
    if is_postgres(session):
        columns = dict(zip(RollupDelta._fields, (list(c) for c in zip(*deltas, strict=True)), strict=True))
        await session.execute(_PG_ADD_TO_ROLLUPS, {**columns, "provider_id": provider_id})
        return
    await driver_sql(
        session,
        _SQLITE_ADD_TO_ROLLUPS,
        [
            (
                provider_id,
                d.meter_id,
                d.kind,
                d.subject_id,
                hour_number(d.hour),
                d.account_id,
                d.total,
                d.peak,
                d.events,
            )
            for d in deltas
        ],
    )


async def add_unique_values(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    statement = dialect_insert(session, UsageUniqueValue.__table__).on_conflict_do_nothing(
        index_elements=["meter_id", "kind", "subject_id", "hour", "value"]
    )
    await session.execute(statement, rows)


async def purge_events_before(session: AsyncSession, provider_id: int, before: datetime, limit: int) -> int:
    """Up to ``limit`` events older than ``before``; never one the fold has still to add."""
    pending = select(UsageBatch.id).where(
        UsageBatch.provider_id == provider_id, UsageBatch.folded_at.is_(None)
    )
    ids = list(
        await session.scalars(
            select(UsageEvent.id)
            .where(
                UsageEvent.provider_id == provider_id,
                UsageEvent.occurred_at < before,
                or_(UsageEvent.batch_id.is_(None), UsageEvent.batch_id.not_in(pending)),
            )
            .order_by(UsageEvent.id)
            .limit(limit)
        )
    )
    if ids:
        await session.execute(delete(UsageEvent).where(UsageEvent.id.in_(ids)))
    return len(ids)


def _of_provider(model: type[UsageRollup] | type[UsageUniqueValue], provider_id: int) -> Any:
    # The meter leads the rollups' key: naming the provider's meters makes these lookups.
    return model.meter_id.in_(select(Meter.id).where(Meter.provider_id == provider_id))


async def forget_service(session: AsyncSession, provider_id: int, service_id: int) -> None:
    """A deleted service's own rollups go; its usage stays in its account's and subtree's."""
    for model in (UsageRollup, UsageUniqueValue):
        await session.execute(
            delete(model).where(
                _of_provider(model, provider_id), model.kind == "service", model.subject_id == service_id
            )
        )


async def forget_account(session: AsyncSession, provider_id: int, account_id: int) -> None:
    """A deleted account's rollups go: its own, those below it and its services'. What it
    used stays in its ancestors' below rows, as it happened."""
    services = select(Service.id).where(Service.provider_id == provider_id, Service.account_id == account_id)
    for model in (UsageRollup, UsageUniqueValue):
        await session.execute(
            delete(model).where(
                _of_provider(model, provider_id),
                or_(
                    and_(model.kind.in_(["account", "below"]), model.subject_id == account_id),
                    and_(model.kind == "service", model.subject_id.in_(services)),
                ),
            )
        )


# --- reading rollups -------------------------------------------------------------------------


async def unique_values(
    session: AsyncSession,
    meter_id: int,
    kinds: Sequence[str],
    subject_id: int,
    start: datetime,
    end: datetime,
) -> list[tuple[datetime, str]]:
    rows = await session.execute(
        select(UsageUniqueValue.hour, UsageUniqueValue.value).where(
            UsageUniqueValue.meter_id == meter_id,
            UsageUniqueValue.kind.in_(kinds),
            UsageUniqueValue.subject_id == subject_id,
            UsageUniqueValue.hour >= start,
            UsageUniqueValue.hour < end,
        )
    )
    return [(r.hour, r.value) for r in rows]


async def count_events_of_account(session: AsyncSession, provider_id: int, account_id: int) -> int:
    found = await session.scalar(
        select(func.count())
        .select_from(UsageEvent)
        .where(UsageEvent.provider_id == provider_id, UsageEvent.account_id == account_id)
    )
    return int(found or 0)
