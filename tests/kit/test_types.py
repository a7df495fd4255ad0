"""Column types that behave the same on both engines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import Column, Integer, MetaData, Table, create_engine, insert, select, text

from boughs.kit.types import UTCDateTime


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
