"""Column types that behave the same on both engines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import Column, Integer, MetaData, Table, create_engine, insert, select, text

from boughs.kit.types import UTCDateTime, UTCHour, hour_number, hour_of_number


def test_instants_come_back_aware_and_in_utc_from_sqlite_whatever_text_holds_them() -> None:
    engine = create_engine("sqlite://")
    table = Table("moments", MetaData(), Column("id", Integer, primary_key=True), Column("at", UTCDateTime))
    table.metadata.create_all(engine)
    east = timezone(timedelta(hours=3))
    written = datetime(2026, 3, 1, 15, 30, 0, 250_000, tzinfo=east)
    with engine.begin() as conn:
        conn.execute(insert(table).values(id=1, at=written))
        conn.execute(insert(table).values(id=2, at=None))
        # Text other writers leave: SQLite's own clock, an ISO instant with its offset.
        conn.execute(text("INSERT INTO moments (id, at) VALUES (3, '2026-03-01 12:30:00')"))
        conn.execute(text("INSERT INTO moments (id, at) VALUES (4, '2026-03-01T15:30:00+03:00')"))
        stored = conn.execute(text("SELECT at FROM moments WHERE id = 1")).scalar_one()
        read = dict(conn.execute(select(table.c.id, table.c.at)).all())
    engine.dispose()
    assert stored == "2026-03-01 12:30:00.250000"  # UTC, as every UTC column holds it
    assert read[1] == written and read[1].tzinfo is UTC
    assert read[2] is None
    noon_thirty = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    assert read[3] == noon_thirty and read[3].tzinfo is UTC
    assert read[4] == noon_thirty and read[4].tzinfo is UTC


def test_hours_are_numbers_on_sqlite_and_instants_between_hours_bound_the_same_on_both_engines(
    database_url: str,
) -> None:
    """A rollup hour is stored as hours since the epoch on SQLite and as a timestamptz on
    PostgreSQL; either way it reads back as an aware UTC hour, and ``>=`` and ``<`` against
    an instant between two hours select the same hours on both."""
    from boughs.db import sync_url

    engine = create_engine(sync_url(database_url))
    table = Table("hour_probe", MetaData(), Column("id", Integer, primary_key=True), Column("hour", UTCHour))
    hours = [datetime(2026, 3, 1, h, tzinfo=UTC) for h in (10, 11, 12)]
    half_past_ten = datetime(2026, 3, 1, 16, 0, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    try:
        table.metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(insert(table), [{"id": i, "hour": h} for i, h in enumerate(hours)])
            conn.execute(insert(table).values(id=9, hour=None))
            stored = conn.execute(text("SELECT hour FROM hour_probe WHERE id = 0")).scalar_one()
            read = dict(conn.execute(select(table.c.id, table.c.hour)).all())
            from_half_past = conn.execute(select(table.c.id).where(table.c.hour >= half_past_ten)).scalars()
            before_half_past = conn.execute(select(table.c.id).where(table.c.hour < half_past_ten)).scalars()
            ids_from, ids_before = sorted(from_half_past), sorted(before_half_past)
    finally:
        table.metadata.drop_all(engine)
        engine.dispose()
    if engine.dialect.name == "sqlite":
        assert stored == 492322  # hours since 1970-01-01 00:00 UTC
    else:
        assert stored == hours[0]
    assert [read[i] for i in range(3)] == hours and all(read[i].tzinfo is UTC for i in range(3))
    assert read[9] is None
    assert ids_from == [1, 2]  # 11:00 and 12:00 start at or after 10:30
    assert ids_before == [0]  # only 10:00 starts before it


def test_an_hour_number_is_the_first_whole_hour_at_or_after_the_instant() -> None:
    ten = datetime(2026, 1, 1, 10, tzinfo=UTC)
    assert hour_number(ten) == 490906 and hour_of_number(490906) == ten
    assert hour_number(ten + timedelta(microseconds=1)) == 490907
    assert hour_number(ten - timedelta(microseconds=1)) == 490906
    india = timezone(timedelta(hours=5, minutes=30))
    assert hour_number(datetime(2026, 1, 1, 15, 30, tzinfo=india)) == 490906
    assert hour_number(datetime(1969, 12, 31, 22, 30, tzinfo=UTC)) == -1
