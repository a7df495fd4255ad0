"""The CSV import: any row order, all or nothing, every bad row reported, bulk writes on both engines."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text, update

from boughs.accounts import bulk_repository, importer, service
from boughs.accounts.importer import ImportReport, import_accounts, read_csv
from boughs.accounts.models import Account, AccountLink
from boughs.accounts.schemas import AccountCreate
from boughs.audit.models import AuditEvent
from boughs.db import Database
from boughs.kit.clock import FrozenClock
from boughs.kit.errors import InvalidInput
from boughs.providers.models import Provider
from tests.conftest import Tenant


async def run_import(
    db: Database, tenant: Tenant, clock: FrozenClock, rows: Iterable[Mapping[str, Any]], **kwargs: Any
) -> ImportReport:
    return await import_accounts(
        db, tenant.provider_id, rows, source_name="customers.csv", clock=clock, **kwargs
    )


async def accounts_by_external_id(db: Database, provider_id: int) -> dict[str | None, Account]:
    async with db.transaction(write=False) as session:
        result = await session.execute(select(Account).where(Account.provider_id == provider_id))
        return {a.external_id: a for a in result.scalars()}


async def all_links(db: Database) -> list[AccountLink]:
    async with db.transaction(write=False) as session:
        return list((await session.execute(select(AccountLink).order_by(AccountLink.child_id))).scalars())


async def count(db: Database, model: Any) -> int:
    async with db.transaction(write=False) as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


def assert_tree_consistent(accounts: Iterable[Account]) -> None:
    by_id = {a.id: a for a in accounts}
    for a in by_id.values():
        if a.parent_id is None:
            assert (a.path, a.depth, a.root_id) == (f"/{a.id}/", 0, a.id)
        else:
            parent = by_id[a.parent_id]
            assert a.path == f"{parent.path}{a.id}/"
            assert a.depth == parent.depth + 1
            assert a.root_id == parent.root_id


async def test_rows_in_any_order_build_the_tree(db: Database, tenant: Tenant, clock: FrozenClock) -> None:
    rows = [
        {"external_id": "U-2", "parent_external_id": "LL", "name": "Unit 2", "invoice_mode": "with_parent"},
        {"external_id": "U-1", "parent_external_id": "LL", "name": " Unit 1 ", "invoice_mode": "WITH_PARENT"},
        {"external_id": "ROOM", "parent_external_id": "U-1", "name": "Room", "expiry_date": "2026-03-01"},
        {
            "external_id": "LL",
            "name": "Landlord",
            "description": "Owns the building",
            "contact_email": "Owner@Example.COM",
            "technical_contact_email": "it@example.net",
            "expiry_date": "2026-12-31",
            "timezone": "Europe/Berlin",
            "currency": "EUR",
            "billing_address": "1 Main St\nBerlin",
            "billing_tax_id": "DE123",
            "billing_email": "billing@example.com",
        },
        {"name": "No external id", "parent_external_id": "ROOM"},
    ]
    progress: list[tuple[int, int]] = []
    report = await run_import(db, tenant, clock, rows, on_progress=lambda d, t: progress.append((d, t)))

    assert report.ok and report.created == 5 and report.rows == 5
    assert progress[-1] == (5, 5)
    found = await accounts_by_external_id(db, tenant.provider_id)
    assert set(found) == {"LL", "U-1", "U-2", "ROOM", None}
    landlord, unit1, unit2, room = found["LL"], found["U-1"], found["U-2"], found["ROOM"]
    assert landlord.parent_id is None
    assert unit1.parent_id == unit2.parent_id == landlord.id
    assert room.parent_id == unit1.id and room.depth == 2 and room.root_id == landlord.id
    assert found[None].parent_id == room.id and found[None].path == f"{room.path}{found[None].id}/"
    assert_tree_consistent(found.values())
    # Parents get smaller ids than their children: ids follow the tree, not the file.
    assert landlord.id < unit1.id < room.id < found[None].id
    assert (report.first_id, report.last_id) == (landlord.id, landlord.id + 4)

    assert unit1.name == "Unit 1" and unit1.invoice_mode == "with_parent"
    assert landlord.invoice_mode == "separate" and room.invoice_mode == "separate"
    assert landlord.description == "Owns the building" and unit1.description == ""
    assert landlord.contact_email == "Owner@example.com"  # normalised like the API's EmailStr
    assert landlord.technical_contact_email == "it@example.net"
    assert landlord.expiry_date == date(2026, 12, 31) and unit1.expiry_date is None
    assert room.expiry_date == date(2026, 3, 1)
    assert (landlord.timezone, landlord.currency) == ("Europe/Berlin", "EUR")
    assert (unit1.timezone, unit1.currency) == (None, None)
    assert landlord.billing_address == "1 Main St\nBerlin" and landlord.billing_tax_id == "DE123"
    assert landlord.billing_email == "billing@example.com"
    assert landlord.status == "active" and landlord.parent_access == "manage" and landlord.features == {}
    assert landlord.created_at == clock.now() == landlord.updated_at

    links = await all_links(db)
    assert {(link.child_id, link.parent_id) for link in links} == {
        (a.id, a.parent_id) for a in found.values()
    }
    assert all(link.valid_from == clock.now() and link.valid_to is None for link in links)
    assert all(link.provider_id == tenant.provider_id for link in links)


async def test_import_writes_one_audit_event(db: Database, tenant: Tenant, clock: FrozenClock) -> None:
    report = await run_import(db, tenant, clock, [{"external_id": "A", "name": "A"}, {"name": "B"}])
    async with db.transaction(write=False) as session:
        events = list((await session.execute(select(AuditEvent))).scalars())
    assert [(e.entity, e.action, e.after) for e in events] == [
        ("account", "imported", {"count": 2, "file": "customers.csv"})
    ]
    assert events[0].entity_id == f"{report.first_id}..{report.last_id}"
    assert events[0].provider_id == tenant.provider_id
    assert events[0].actor_label == "system:accounts-import"


async def test_parent_can_be_an_existing_account(
    db: Database, tenant: Tenant, clock: FrozenClock, ctx_factory: Any
) -> None:
    async with ctx_factory() as ctx:
        top = await service.create(ctx, AccountCreate(name="MSP", external_id="MSP"))
        customer = await service.create(
            ctx, AccountCreate(name="Customer", external_id="C", parent_id=top.id)
        )
    report = await run_import(
        db, tenant, clock,
        [
            {"external_id": "SITE", "parent_external_id": "C", "name": "Site"},
            {"external_id": "AP", "parent_external_id": "SITE", "name": "Access point"},
        ],
    )  # fmt: skip
    assert report.ok, report.rejected
    found = await accounts_by_external_id(db, tenant.provider_id)
    site, ap = found["SITE"], found["AP"]
    assert site.parent_id == customer.id and site.path == f"{customer.path}{site.id}/"
    assert (site.depth, site.root_id) == (2, top.id)
    assert ap.parent_id == site.id and ap.depth == 3 and ap.root_id == top.id
    assert_tree_consistent(found.values())
    links = {link.child_id: link for link in await all_links(db)}
    assert links[site.id].parent_id == customer.id
    # With more accounts in the provider than the file names, parents are looked up one by one.
    more = await run_import(db, tenant, clock, [{"name": "Second customer", "parent_external_id": "MSP"}])
    assert more.ok
    async with db.transaction(write=False) as session:
        second = (
            await session.execute(select(Account).where(Account.name == "Second customer"))
        ).scalar_one()
    assert second.parent_id == top.id and second.path == f"{top.path}{second.id}/"


async def test_nothing_is_written_and_every_bad_row_is_reported(
    db: Database, tenant: Tenant, clock: FrozenClock
) -> None:
    rows = [
        {"external_id": "OK", "name": "Fine"},  # line 2
        {"external_id": "NONAME", "name": "  "},  # 3
        {"external_id": "MAIL", "name": "Bad mail", "contact_email": "not-an-email"},  # 4
        {"external_id": "DATE", "name": "Impossible", "expiry_date": "2026-02-30"},  # 5
        {"external_id": "FMT", "name": "Other format", "expiry_date": "15/01/2026"},  # 6
        {"external_id": "TZ", "name": "Mars", "timezone": "Mars/Olympus"},  # 7
        {"external_id": "CUR", "name": "Money", "currency": "euro"},  # 8
        {"external_id": "MODE", "name": "Mode", "invoice_mode": "monthly"},  # 9
        {"external_id": "ORPHAN", "name": "Orphan", "parent_external_id": "NOBODY"},  # 10
        {"external_id": "KID", "name": "Kid of bad", "parent_external_id": "MAIL"},  # 11
        {"external_id": "GRANDKID", "name": "Grandkid", "parent_external_id": "KID"},  # 12
        {"external_id": "OK2", "name": "Also fine", "parent_external_id": "OK"},  # 13
        {"external_id": "X" * 101, "name": "Long id"},  # 14
        {"external_id": "TWO", "name": "", "billing_email": "also bad"},  # 15: two problems
        {"external_id": "NUL", "name": "Nul\x00byte"},  # 16
    ]
    report = await run_import(db, tenant, clock, rows)

    assert not report.ok and report.created == 0 and report.rows == len(rows)
    reasons = {r.line: r.reason for r in report.rejected}
    assert sorted(reasons) == [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 15, 16]
    assert [r.line for r in report.rejected] == sorted(reasons)  # in file order
    assert "name is missing" in reasons[3]
    assert "contact_email 'not-an-email' is not a valid email" in reasons[4]
    assert "'2026-02-30' is not a real date" in reasons[5]
    assert "YYYY-MM-DD" in reasons[6]
    assert "timezone 'Mars/Olympus'" in reasons[7]
    assert "currency 'euro'" in reasons[8]
    assert "invoice_mode 'monthly'" in reasons[9]
    assert "'NOBODY' is neither an external_id in this file nor an existing account" in reasons[10]
    assert reasons[11] == "its parent row (line 4 (MAIL)) was rejected"
    assert reasons[12] == "its parent row (line 11 (KID)) was rejected"
    assert "external_id is 101 characters long" in reasons[14]
    assert "name is missing" in reasons[15] and "billing_email 'also bad'" in reasons[15]
    assert reasons[16] == "name contains a NUL character"
    assert {r.external_id for r in report.rejected if r.line == 11} == {"KID"}

    assert await count(db, Account) == 0
    assert await count(db, AccountLink) == 0
    assert await count(db, AuditEvent) == 0


async def test_cycles_are_refused(db: Database, tenant: Tenant, clock: FrozenClock) -> None:
    rows = [
        {"external_id": "A", "name": "A", "parent_external_id": "B"},  # line 2
        {"external_id": "B", "name": "B", "parent_external_id": "C"},  # 3
        {"external_id": "C", "name": "C", "parent_external_id": "A"},  # 4
        {"external_id": "UNDER", "name": "Under the cycle", "parent_external_id": "B"},  # 5
        {"external_id": "SELF", "name": "Own parent", "parent_external_id": "SELF"},  # 6
        {"external_id": "FINE", "name": "Fine"},  # 7
    ]
    report = await run_import(db, tenant, clock, rows)
    reasons = {r.line: r.reason for r in report.rejected}
    assert sorted(reasons) == [2, 3, 4, 5, 6]
    assert "cycle: line 2 (A) → line 3 (B) → line 4 (C) → line 2 (A)" in reasons[2]
    assert "cycle: line 3 (B) → line 4 (C) → line 2 (A) → line 3 (B)" in reasons[3]
    assert "cycle" in reasons[4]
    assert reasons[5] == "its parent row (line 3 (B)) was rejected"
    assert "is the row's own external_id" in reasons[6]
    assert await count(db, Account) == 0

    # A long cycle is named by its first rows, not spelled out in full on every row.
    ring = [
        {"external_id": f"R{i}", "name": f"Ring {i}", "parent_external_id": f"R{(i + 1) % 50}"}
        for i in range(50)
    ]
    report = await run_import(db, tenant, clock, ring)
    assert len(report.rejected) == 50
    assert "line 2 (R0) → line 3 (R1)" in report.rejected[0].reason
    assert "… (44 more rows) → line 2 (R0)" in report.rejected[0].reason


async def test_duplicate_external_ids_are_refused(
    db: Database, tenant: Tenant, clock: FrozenClock, ctx_factory: Any
) -> None:
    async with ctx_factory() as ctx:
        existing = await service.create(ctx, AccountCreate(name="Existing", external_id="TAKEN"))
    rows = [
        {"external_id": "DUP", "name": "First"},  # line 2
        {"external_id": "TAKEN", "name": "Clashes with the database"},  # 3
        {"external_id": "DUP", "name": "Second"},  # 4
        {"external_id": "CHILD", "name": "Child of a duplicate", "parent_external_id": "DUP"},  # 5
        {"external_id": "NEW", "name": "New"},  # 6
    ]
    report = await run_import(db, tenant, clock, rows)
    reasons = {r.line: r.reason for r in report.rejected}
    assert sorted(reasons) == [2, 3, 4, 5]
    assert "external_id 'DUP' is used by more than one row (lines 2, 4)" in reasons[2]
    assert reasons[2] == reasons[4]
    assert f"external_id 'TAKEN' already belongs to account {existing.id}" in reasons[3]
    assert "its parent row (line 2 (DUP)) was rejected" in reasons[5]
    assert await count(db, Account) == 1


async def test_depth_cap_is_enforced(
    db: Database, tenant: Tenant, clock: FrozenClock, ctx_factory: Any
) -> None:
    async with db.transaction() as session:
        await session.execute(
            update(Provider).where(Provider.id == tenant.provider_id).values(max_account_depth=1)
        )
    async with ctx_factory() as ctx:
        await service.create(ctx, AccountCreate(name="Top", external_id="TOP"))
    rows = [
        {"external_id": "L0", "name": "Level 0"},  # line 2
        {"external_id": "L1", "name": "Level 1", "parent_external_id": "L0"},  # 3
        {"external_id": "L2", "name": "Level 2", "parent_external_id": "L1"},  # 4
        {"external_id": "L3", "name": "Level 3", "parent_external_id": "L2"},  # 5
        {"external_id": "UNDER_TOP", "name": "Fine", "parent_external_id": "TOP"},  # 6
    ]
    report = await run_import(db, tenant, clock, rows)
    reasons = {r.line: r.reason for r in report.rejected}
    assert sorted(reasons) == [4, 5]
    assert "depth 2, deeper than this provider's cap of 1" in reasons[4]
    assert reasons[5] == "its parent row (line 4 (L2)) was rejected"

    ok = await run_import(
        db, tenant, clock, [r for r in rows if r["external_id"] in {"L0", "L1", "UNDER_TOP"}]
    )
    assert ok.ok and ok.created == 3
    too_deep = await run_import(db, tenant, clock, [{"name": "Below L1", "parent_external_id": "L1"}])
    assert "deeper than this provider's cap of 1" in too_deep.rejected[0].reason


async def test_ids_continue_after_an_import(
    db: Database, tenant: Tenant, clock: FrozenClock, ctx_factory: Any
) -> None:
    async with ctx_factory() as ctx:
        before = await service.create(ctx, AccountCreate(name="Before"))
    report = await run_import(db, tenant, clock, [{"name": f"Imported {i}"} for i in range(3)])
    assert report.first_id == before.id + 1 and report.last_id == before.id + 3
    # A normal insert after the import gets the next id: on PostgreSQL, the sequence moved on.
    async with ctx_factory() as ctx:
        after = await service.create(ctx, AccountCreate(name="After"))
        child = await service.create(ctx, AccountCreate(name="Child", parent_id=report.last_id))
    assert after.id == report.last_id + 1
    assert child.id == after.id + 1 and child.path.startswith(f"/{report.last_id}/")
    again = await run_import(db, tenant, clock, [{"name": "Second import"}])
    assert again.first_id == child.id + 1
    assert await count(db, Account) == 7


async def test_values_survive_the_bulk_path_exactly(db: Database, tenant: Tenant, clock: FrozenClock) -> None:
    # PostgreSQL's COPY escapes per column, so each column gets one kind of special character.
    rows = [
        {"external_id": "A", "name": "Back\\slash", "description": "Tab\tinside",
         "billing_address": "Line\nbreak", "billing_tax_id": "\\N"},
        {"external_id": "B", "name": "\\N", "description": "Quotes ' and \"",
         "billing_address": "CR\r\nLF", "billing_tax_id": ""},
        {"external_id": "C", "name": "Ünïcødé — 東京", "description": "", "billing_address": ""},
    ]  # fmt: skip
    report = await run_import(db, tenant, clock, rows)
    assert report.ok, report.rejected
    found = await accounts_by_external_id(db, tenant.provider_id)
    for row in rows:
        account = found[row["external_id"]]
        assert account.name == row["name"]
        assert account.description == row["description"]
        assert account.billing_address == (row["billing_address"] or None)
        assert account.billing_tax_id == (row.get("billing_tax_id") or None)


async def test_many_rows_across_chunk_boundaries(
    db: Database, tenant: Tenant, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small chunks, so full statements, partial chunks and the remainder are all exercised.
    monkeypatch.setattr(bulk_repository, "ROWS_PER_STATEMENT", 7)
    monkeypatch.setattr(bulk_repository, "SQLITE_CHUNK", 40)  # rounded down to 35: whole statements
    monkeypatch.setattr(bulk_repository, "COPY_CHUNK", 13)
    rows = [{"external_id": "R", "name": "Root"}]
    for i in range(300):
        parent = "R" if i < 10 else f"N{i // 10 - 1}"
        rows.append({"external_id": f"N{i}", "name": f"Node {i}", "parent_external_id": parent})
        if i % 3 == 0:
            rows[-1]["currency"] = "EUR"
    rows.reverse()
    progress: list[int] = []
    report = await run_import(db, tenant, clock, rows, on_progress=lambda done, total: progress.append(done))
    assert report.ok and report.created == 301
    assert progress == sorted(progress) and progress[-1] == 301
    found = await accounts_by_external_id(db, tenant.provider_id)
    assert len(found) == 301
    assert_tree_consistent(found.values())
    assert found["N299"].parent_id == found["N28"].id and found["N299"].depth == 3
    assert found["N3"].currency == "EUR" and found["N4"].currency is None
    links = await all_links(db)
    assert len(links) == 301
    assert {(link.child_id, link.parent_id) for link in links} == {
        (a.id, a.parent_id) for a in found.values()
    }


async def test_an_empty_file_creates_nothing(db: Database, tenant: Tenant, clock: FrozenClock) -> None:
    report = await run_import(db, tenant, clock, [])
    assert (report.ok, report.created, report.rows) == (True, 0, 0)
    assert await count(db, AuditEvent) == 0


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_unknown_columns_are_refused(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "bad.csv", "name,colour,external_id\nA,blue,1\n")
    with pytest.raises(InvalidInput) as refused:
        read_csv(path)
    assert "unknown column(s) 'colour'" in refused.value.detail
    assert "external_id" in refused.value.fix  # lists the columns it understands

    with pytest.raises(InvalidInput, match="no 'name' column"):
        read_csv(write_csv(tmp_path / "noname.csv", "external_id\n1\n"))
    with pytest.raises(InvalidInput, match="more than once"):
        read_csv(write_csv(tmp_path / "twice.csv", "name,Name\nA,B\n"))
    with pytest.raises(InvalidInput, match="empty"):
        read_csv(write_csv(tmp_path / "empty.csv", ""))


def test_mapping_rows_with_unknown_keys_are_rejected() -> None:
    parsed = importer.parse_rows([{"name": "A"}, {"name": "B", "colour": "blue"}])
    assert parsed.errors == {1: ["has unknown column(s) colour"]}


async def test_csv_lines_are_reported_as_in_the_file(
    db: Database, tenant: Tenant, clock: FrozenClock, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "customers.csv",
        "\ufeffExternal_ID , name,parent_external_id,billing_address\n"  # BOM, odd header spacing/case
        'A,Alpha,,"Street 1\nTown"\n'  # lines 2-3: a quoted line break
        "\n"  # 4: blank, skipped
        "B,,A,\n"  # 5: no name
        "C,Gamma,A\n"  # 6: a field short
        "D,Delta,A,x,extra\n",  # 7: a field too many
    )
    with read_csv(path) as rows:
        report = await import_accounts(db, tenant.provider_id, rows, source_name=rows.name, clock=clock)
    reasons = {r.line: r.reason for r in report.rejected}
    assert sorted(reasons) == [5, 6, 7]
    assert "name is missing" in reasons[5]
    assert "has 3 fields but the header has 4" in reasons[6]
    assert "has 5 fields but the header has 4" in reasons[7]

    fixed = write_csv(tmp_path / "fixed.csv", 'external_id,name,billing_address\nA,Alpha,"Street 1\nTown"\n')
    report = await importer.import_csv(db, tenant.provider_id, fixed, clock=clock)
    assert report.ok
    found = await accounts_by_external_id(db, tenant.provider_id)
    assert found["A"].billing_address == "Street 1\nTown"


def test_csv_file_rows_can_be_iterated_as_mappings(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", "name,external_id\nAlpha,A\nBeta,B\n")
    with read_csv(path) as rows:
        listed = list(rows)
    assert listed == [{"name": "Alpha", "external_id": "A"}, {"name": "Beta", "external_id": "B"}]
    assert [row.line for row in listed] == [2, 3]


def test_generated_csv_round_trips_through_the_reader(tmp_path: Path) -> None:
    path = tmp_path / "gen.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["name", "external_id", "parent_external_id"])
        writer.writerows([["Root", "r", ""], ["Kid, with comma", "k", "r"]])
    with read_csv(path) as rows:
        parsed = importer.parse_rows(rows)
    assert parsed.errors == {}
    assert parsed.values["name"] == ["Root", "Kid, with comma"]
    assert parsed.parent_external_ids == [None, "r"]


async def test_foreign_key_checks_are_only_skipped_when_safe(
    db: Database, tenant: Tenant, clock: FrozenClock, engine_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [
        {"external_id": "P", "name": "Parent"},
        {"external_id": "K", "name": "Kid", "parent_external_id": "P"},
    ]
    report = await run_import(db, tenant, clock, rows)
    # PostgreSQL skips its per-row checks for a superuser (as in these tests); SQLite never does.
    assert report.reference_checks_skipped is (engine_name == "postgres")

    async def not_allowed(session: Any, tables: Any) -> bool:
        return False

    monkeypatch.setattr(bulk_repository, "_may_skip_reference_checks", not_allowed)
    checked = await run_import(
        db, tenant, clock, [{"external_id": "K2", "name": "Kid 2", "parent_external_id": "P"}]
    )
    assert checked.ok and not checked.reference_checks_skipped
    found = await accounts_by_external_id(db, tenant.provider_id)
    assert found["K2"].parent_id == found["P"].id
    assert_tree_consistent(found.values())
    # The setting does not outlive the import's transaction.
    if engine_name == "postgres":
        async with db.transaction() as session:
            role = (await session.execute(text("SHOW session_replication_role"))).scalar_one()
        assert role == "origin"


async def test_ids_of_deleted_accounts_are_never_reused(
    db: Database, clock: FrozenClock, tenant: Tenant, ctx_factory
) -> None:
    from boughs.accounts import service as accounts_service
    from boughs.accounts.schemas import AccountCreate

    async with ctx_factory() as ctx:
        doomed = await accounts_service.create(ctx, AccountCreate(name="Short-lived"))
    async with ctx_factory() as ctx:
        await accounts_service.delete(ctx, doomed.id)
    async with ctx_factory() as ctx:
        created = await accounts_service.create(ctx, AccountCreate(name="Next"))
    assert created.id > doomed.id
    async with ctx_factory() as ctx:
        await accounts_service.delete(ctx, created.id)
    report = await import_accounts(
        db, tenant.provider_id, [{"name": "Imported"}], source_name="one.csv", clock=clock
    )
    assert report.first_id is not None and report.first_id > created.id
