"""The migrations build exactly the schema the models describe, on both engines."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, create_engine

import boughs.models  # noqa: F401  (every model on the metadata)
from boughs.db import Base, sync_url

T = TypeVar("T")


def _diff(database_url: str) -> list[Any]:
    engine = create_engine(sync_url(database_url))
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"render_as_batch": True})
            return compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()


def test_migrated_schema_matches_the_models(database_url: str) -> None:
    assert _diff(database_url) == []


def test_a_model_change_without_its_migration_is_seen(database_url: str) -> None:
    from sqlalchemy import Column, Integer, MetaData, Table

    extra = MetaData()
    for table in Base.metadata.tables.values():
        table.to_metadata(extra)
    Table("not_migrated", extra, Column("id", Integer, primary_key=True))
    engine = create_engine(sync_url(database_url))
    try:
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), extra)
    finally:
        engine.dispose()
    assert [d[0] for d in diff] == ["add_table"]


def _required(table: Any, values: dict[str, Any], moment: datetime) -> dict[str, Any]:
    """The values given, and a value of the right type for every other required column."""
    from sqlalchemy import Boolean, DateTime, Integer

    row = dict(values)
    for column in table.columns:
        if column.name in row or column.nullable or column.primary_key or column.server_default is not None:
            continue
        if isinstance(column.type, DateTime):
            row[column.name] = moment
        elif isinstance(column.type, Boolean):
            row[column.name] = False
        elif isinstance(column.type, Integer):
            row[column.name] = 0
        else:
            row[column.name] = "x"
    return row


def test_chain_since_is_filled_from_the_moves_in_the_link_history(database_url: str) -> None:
    """Migration 0009 records on every account below a moved one when its chain last changed."""
    from sqlalchemy import MetaData, Table, insert, select, update

    from boughs.schema import alembic_config, upgrade

    created, moved, moved_again = (datetime(2026, 1, day, tzinfo=UTC) for day in (1, 10, 20))
    # top ── mid ── leaf, and other: mid moved from other to top on day 10; leaf was placed
    # under mid again on day 20.
    tree = {"top": None, "other": None, "mid": "top", "leaf": "mid"}
    history = [
        ("top", None, created, None), ("other", None, created, None),
        ("mid", "other", created, moved), ("mid", "top", moved, None),
        ("leaf", "mid", created, moved_again), ("leaf", "mid", moved_again, None),
    ]  # fmt: skip
    command.downgrade(alembic_config(database_url), "0008")
    engine = create_engine(sync_url(database_url))
    try:
        with engine.begin() as conn:
            meta = MetaData()
            providers, accounts, links = (
                Table(name, meta, autoload_with=conn) for name in ("providers", "accounts", "account_links")
            )
            provider = conn.execute(
                insert(providers)
                .values(_required(providers, {"name": "Old ISP"}, created))
                .returning(providers.c.id)
            ).scalar_one()
            ids: dict[str, int] = {}
            paths: dict[str, str] = {}
            for name, parent in tree.items():
                values = {
                    "provider_id": provider, "name": name, "path": "/", "depth": 0, "status": "active",
                    "invoice_mode": "separate", "parent_access": "manage", "features": {},
                }  # fmt: skip
                row = _required(accounts, values, created)
                ids[name] = conn.execute(insert(accounts).values(row).returning(accounts.c.id)).scalar_one()
                paths[name] = f"{paths[parent] if parent else '/'}{ids[name]}/"
                conn.execute(
                    update(accounts)
                    .where(accounts.c.id == ids[name])
                    .values(
                        path=paths[name],
                        parent_id=ids[parent] if parent else None,
                        root_id=ids["top"] if parent else ids[name],
                        depth=paths[name].count("/") - 2,
                    )
                )
            for child, parent, start, end in history:
                conn.execute(
                    insert(links).values(
                        provider_id=provider,
                        child_id=ids[child],
                        parent_id=ids[parent] if parent else None,
                        valid_from=start,
                        valid_to=end,
                    )
                )
        upgrade(database_url)
        with engine.connect() as conn:
            accounts = Table("accounts", MetaData(), autoload_with=conn)
            found = {i: since for i, since in conn.execute(select(accounts.c.id, accounts.c.chain_since))}
    finally:
        upgrade(database_url)
        engine.dispose()

    def instant(value: Any) -> datetime | None:
        if value is None:
            return None
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)

    assert {name: instant(found[i]) for name, i in ids.items()} == {
        "top": None,
        "other": None,
        "mid": moved,
        "leaf": moved_again,
    }


@contextmanager
def _below(database_url: str, previous: str, emptied: Sequence[str]) -> Iterator[Engine]:
    """The schema at ``previous`` for the block, on an engine of its own; afterwards the
    tables emptied and the schema back at head, whatever happened."""
    from sqlalchemy import MetaData, Table

    from boughs.schema import alembic_config, upgrade

    command.downgrade(alembic_config(database_url), previous)
    engine = create_engine(sync_url(database_url))
    try:
        yield engine
    finally:
        with engine.begin() as conn:
            for table in emptied:
                conn.execute(Table(table, MetaData(), autoload_with=conn).delete())
        upgrade(database_url)
        engine.dispose()


def _up_and_down(database_url: str, revision: str, previous: str, read: Callable[[], T]) -> tuple[T, T]:
    """What ``read`` finds after upgrading to ``revision``, then after downgrading again."""
    from boughs.schema import alembic_config

    command.upgrade(alembic_config(database_url), revision)
    after = read()
    command.downgrade(alembic_config(database_url), previous)
    return after, read()


def test_subtree_rollups_become_the_usage_below_and_come_back(database_url: str) -> None:
    """Migration 0010 keeps every subtree's usage: its own rows and its new below rows
    together hold what its subtree rows held, and a downgrade gives those back."""
    from sqlalchemy import MetaData, Table, insert, select

    hour = datetime(2026, 1, 1, 10, tzinfo=UTC)
    # An account with usage of its own and below it, a leaf with only its own, and a
    # parent with usage only below it.
    rows = [
        ("account", 2, 5, 4, 2), ("subtree", 2, 12, 6, 3),
        ("account", 3, 7, 7, 1), ("subtree", 3, 7, 7, 1),
        ("subtree", 1, 19, 7, 4),
    ]  # fmt: skip
    before = {(kind, subject): (total, peak, events) for kind, subject, total, peak, events in rows}
    with _below(database_url, "0009", ["usage_rollups"]) as engine:

        def stored() -> dict[tuple[str, int], tuple[int, int, int]]:
            with engine.connect() as conn:
                rollups = Table("usage_rollups", MetaData(), autoload_with=conn)
                found = conn.execute(
                    select(
                        rollups.c.kind, rollups.c.subject_id, rollups.c.total, rollups.c.peak,
                        rollups.c.events,
                    )
                )  # fmt: skip
                return {
                    (kind, subject): (total, peak, events) for kind, subject, total, peak, events in found
                }

        with engine.begin() as conn:
            rollups = Table("usage_rollups", MetaData(), autoload_with=conn)
            for kind, subject, total, peak, events in rows:
                conn.execute(
                    insert(rollups).values(
                        meter_id=1, kind=kind, subject_id=subject, hour=hour, provider_id=1,
                        account_id=subject, total=total, peak=peak, events=events,
                    )
                )  # fmt: skip
        after, back = _up_and_down(database_url, "0010", "0009", stored)
    # The leaf has nothing below it; the peaks below keep the subtree's greatest.
    assert after == {
        ("account", 2): (5, 4, 2), ("below", 2): (7, 6, 1),
        ("account", 3): (7, 7, 1),
        ("below", 1): (19, 7, 4),
    }  # fmt: skip
    assert back == before


def test_rollups_are_clustered_on_their_keys_on_sqlite_and_keep_their_rows(database_url: str) -> None:
    """Migration 0012 makes the fold's tables WITHOUT ROWID on SQLite, rows and all, and
    a downgrade gives the rowid back; PostgreSQL is left as it was."""
    from sqlalchemy import MetaData, Table, insert, select

    tables = ("usage_rollups", "usage_unique_values")
    hour = datetime(2026, 1, 1, 10, tzinfo=UTC)
    with _below(database_url, "0011", tables) as engine:
        sqlite = engine.dialect.name == "sqlite"

        def state() -> tuple[list[bool], list[tuple[Any, ...]]]:
            with engine.connect() as conn:
                clustered = [
                    conn.exec_driver_sql(
                        "SELECT sql LIKE '%WITHOUT ROWID' FROM sqlite_master WHERE name = ?", (table,)
                    ).scalar_one()
                    == 1
                    for table in (tables if sqlite else ())
                ]
                rollups = Table("usage_rollups", MetaData(), autoload_with=conn)
                values = Table("usage_unique_values", MetaData(), autoload_with=conn)
                rows = [
                    *conn.execute(select(rollups.c.subject_id, rollups.c.total, rollups.c.events)),
                    *conn.execute(select(values.c.subject_id, values.c.value)),
                ]
                return clustered, [tuple(r) for r in rows]

        with engine.begin() as conn:
            rollups = Table("usage_rollups", MetaData(), autoload_with=conn)
            values = Table("usage_unique_values", MetaData(), autoload_with=conn)
            key = {"meter_id": 1, "kind": "account", "subject_id": 7, "hour": hour}
            measures = {"total": 5, "peak": 3, "events": 2}
            conn.execute(insert(rollups).values(**key, provider_id=1, account_id=7, **measures))
            conn.execute(insert(values).values(**key, value="device-1", provider_id=1, account_id=7))
        before = state()
        after, back = _up_and_down(database_url, "0012", "0011", state)
    rows = [(7, 5, 2), (7, "device-1")]
    assert before == ([False, False] if sqlite else [], rows)
    assert after == ([True, True] if sqlite else [], rows)
    assert back == before


def test_rollup_hours_become_numbers_on_sqlite_and_come_back(database_url: str) -> None:
    """Migration 0013 keys the fold's tables on the hour as hours since the epoch on
    SQLite, every row's hour carried across, and a downgrade gives the text back;
    PostgreSQL keeps its timestamptz."""
    from sqlalchemy import MetaData, Table, insert

    tables = ("usage_rollups", "usage_unique_values")
    hours = [datetime(2026, 1, 1, 10, tzinfo=UTC), datetime(1999, 12, 31, 23, tzinfo=UTC)]
    with _below(database_url, "0012", tables) as engine:

        def stored() -> tuple[set[str], list[tuple[Any, ...]]]:
            """The hour columns' declared types, and the rows as the driver hands them back."""
            with engine.connect() as conn:
                types = {str(Table(table, MetaData(), autoload_with=conn).c.hour.type) for table in tables}
                rows = [
                    *conn.exec_driver_sql("SELECT subject_id, hour, total FROM usage_rollups ORDER BY hour"),
                    *conn.exec_driver_sql(
                        "SELECT subject_id, hour, value FROM usage_unique_values ORDER BY hour"
                    ),
                ]
                return types, [tuple(r) for r in rows]

        with engine.begin() as conn:
            rollups = Table("usage_rollups", MetaData(), autoload_with=conn)
            values = Table("usage_unique_values", MetaData(), autoload_with=conn)
            for subject, hour in enumerate(hours, start=1):
                key = {"meter_id": 1, "kind": "account", "subject_id": subject, "hour": hour}
                conn.execute(insert(rollups).values(**key, provider_id=1, account_id=subject, total=5, peak=3,
                                                    events=2))  # fmt: skip
                conn.execute(
                    insert(values).values(**key, value="device-1", provider_id=1, account_id=subject)
                )
        sqlite = engine.dialect.name == "sqlite"
        before = stored()
        after, back = _up_and_down(database_url, "0013", "0012", stored)
    if sqlite:
        as_text = ["1999-12-31 23:00:00.000000", "2026-01-01 10:00:00.000000"]
        assert before == (
            {"DATETIME"},
            [
                (2, as_text[0], 5),
                (1, as_text[1], 5),
                (2, as_text[0], "device-1"),
                (1, as_text[1], "device-1"),
            ],
        )
        # Hours since 1970-01-01 00:00 UTC.
        assert after == (
            {"INTEGER"},
            [(2, 262967, 5), (1, 490906, 5), (2, 262967, "device-1"), (1, 490906, "device-1")],
        )
    else:
        assert [row[1] for row in before[1]] == [hours[1], hours[0], hours[1], hours[0]]
        assert after == before
    assert back == before
