"""The `boughs` command, driven through Typer's test runner against a temporary SQLite file."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from boughs.auth.passwords import verify_password
from boughs.cli import app
from boughs.config import get_settings
from boughs.demo import DEMO_ADMIN_EMAIL, DEMO_ADMIN_PASSWORD
from boughs.kit.ids import token_digest

runner = CliRunner()


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh SQLite file that the CLI's settings point at."""
    path = tmp_path / "cli.sqlite3"
    monkeypatch.setenv("BOUGHS_DATABASE_URL", f"sqlite:///{path}")
    get_settings.cache_clear()
    yield path
    get_settings.cache_clear()


def boughs(*args: str) -> Result:
    return runner.invoke(app, list(args))


def query(path: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql, params).fetchall()


@pytest.fixture
def ready(database: Path) -> Path:
    """Upgraded and initialised: a provider and its owner exist."""
    assert boughs("db", "upgrade").exit_code == 0
    result = boughs("init", "--admin-email", "owner@isp.example.com", "--admin-password", "Sup3r-secret-pw")
    assert result.exit_code == 0, result.output
    return database


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_db_upgrade_creates_and_then_keeps_the_schema(database: Path) -> None:
    first = boughs("db", "upgrade")
    assert first.exit_code == 0, first.output
    assert "Upgraded the schema from empty to" in first.output
    assert query(database, "SELECT count(*) FROM accounts") == [(0,)]
    second = boughs("db", "upgrade")
    assert second.exit_code == 0 and "The schema is up to date" in second.output


def test_commands_refuse_a_database_without_schema(database: Path) -> None:
    result = boughs("accounts", "tree", "1")
    assert result.exit_code == 2
    assert "boughs db upgrade" in result.output


def test_init_creates_the_provider_and_owner_once(ready: Path) -> None:
    assert query(ready, "SELECT email, staff_role FROM users") == [("owner@isp.example.com", "owner")]
    again = boughs("init", "--admin-email", "owner@isp.example.com", "--admin-password", "Sup3r-secret-pw")
    assert again.exit_code == 0 and "already exists; nothing changed" in again.output
    assert query(ready, "SELECT count(*) FROM providers") == [(1,)]
    weak = boughs("init", "--admin-email", "second@isp.example.com", "--admin-password", "short")
    assert weak.exit_code == 1 and "shorter than" in weak.output


def test_token_create_prints_a_working_token(ready: Path) -> None:
    result = boughs("token", "create", "--email", "owner@isp.example.com", "--name", "scripts")
    assert result.exit_code == 0, result.output
    token = result.stdout.strip().splitlines()[-1]
    assert len(token) >= 20
    assert query(ready, "SELECT name FROM api_tokens WHERE digest = ?", token_digest(token)) == [("scripts",)]
    unknown = boughs("token", "create", "--email", "nobody@isp.example.com", "--name", "x")
    assert unknown.exit_code == 1 and "There is no user nobody@isp.example.com" in unknown.output


def test_accounts_import_and_tree(ready: Path, tmp_path: Path) -> None:
    csv_file = write(
        tmp_path / "customers.csv",
        "name,external_id,parent_external_id,invoice_mode\n"
        "Unit 1,U1,LL,with_parent\n"  # a child before its parent
        "Harbour Lofts,LL,,\n"
        "Unit 2,U2,LL,with_parent\n"
        "Flat 2a,U2A,U2,\n",
    )
    result = boughs("accounts", "import", str(csv_file))
    assert result.exit_code == 0, result.output
    assert "Imported 4 accounts from customers.csv in" in result.stdout
    assert "accounts/s" in result.stdout
    rows = query(ready, "SELECT external_id, parent_id, depth FROM accounts ORDER BY id")
    assert [r[0] for r in rows] == ["LL", "U1", "U2", "U2A"]  # ids follow the tree
    assert query(ready, "SELECT count(*) FROM account_links") == [(4,)]
    assert query(ready, "SELECT action, after FROM audit_events") == [
        ("imported", '{"count": 4, "file": "customers.csv"}')
    ]

    root_id = query(ready, "SELECT id FROM accounts WHERE external_id = 'LL'")[0][0]
    tree = boughs("accounts", "tree", str(root_id))
    assert tree.exit_code == 0, tree.output
    assert "Harbour Lofts" in tree.stdout and "(4 accounts in subtree)" in tree.stdout
    assert "Unit 1" in tree.stdout and "Flat 2a" in tree.stdout
    shallow = boughs("accounts", "tree", str(root_id), "--max-depth", "1")
    assert "Unit 2" in shallow.stdout and "Flat 2a" not in shallow.stdout
    missing = boughs("accounts", "tree", "999")
    assert missing.exit_code == 1 and "There is no account 999" in missing.output


def test_accounts_import_reports_every_rejected_row_and_writes_nothing(ready: Path, tmp_path: Path) -> None:
    csv_file = write(
        tmp_path / "bad.csv",
        "name,external_id,parent_external_id,contact_email\n"
        "Good,G,,\n"
        ",NONAME,,\n"
        "Orphan,O,NOBODY,\n"
        "Child,C,NONAME,\n"
        "Mail [x],M,,not-an-email\n",
    )
    result = boughs("accounts", "import", str(csv_file))
    assert result.exit_code == 1
    out = result.stdout
    assert "line 3 (NONAME): name is missing" in out
    assert "line 4 (O): parent_external_id 'NOBODY' is neither an external_id" in out
    assert "line 5 (C): its parent row (line 3 (NONAME)) was rejected" in out
    assert "line 6 (M): contact_email 'not-an-email' is not a valid email" in out
    assert "line 2" not in out
    assert "nothing was imported: 4 of 5 rows were rejected" in result.output
    assert query(ready, "SELECT count(*) FROM accounts") == [(0,)]
    assert query(ready, "SELECT count(*) FROM audit_events") == [(0,)]


def test_accounts_import_refuses_unknown_columns_and_providers(ready: Path, tmp_path: Path) -> None:
    colour = write(tmp_path / "colour.csv", "name,colour\nA,blue\n")
    result = boughs("accounts", "import", str(colour))
    assert result.exit_code == 1 and "unknown column(s) 'colour'" in result.output
    good = write(tmp_path / "good.csv", "name\nA\n")
    result = boughs("accounts", "import", str(good), "--provider-id", "99")
    assert result.exit_code == 1 and "There is no provider 99" in result.output
    assert boughs("accounts", "import", str(tmp_path / "missing.csv")).exit_code == 2
    assert query(ready, "SELECT count(*) FROM accounts") == [(0,)]


def test_accounts_import_needs_a_provider(database: Path, tmp_path: Path) -> None:
    assert boughs("db", "upgrade").exit_code == 0
    result = boughs("accounts", "import", str(write(tmp_path / "a.csv", "name\nA\n")))
    assert result.exit_code == 1 and "no provider to import into" in result.output


def test_demo_loads_once_and_prints_the_login(database: Path) -> None:
    assert boughs("db", "upgrade").exit_code == 0
    first = boughs("demo")
    assert first.exit_code == 0, first.output
    login = f"Demo admin login: {DEMO_ADMIN_EMAIL} / {DEMO_ADMIN_PASSWORD}"
    assert login in first.stdout and "Created the demo provider" in first.stdout
    accounts = query(database, "SELECT count(*) FROM accounts")
    events = query(database, "SELECT count(*) FROM audit_events")
    usage = query(database, "SELECT count(*), sum(quantity) FROM usage_events")
    assert accounts[0][0] > 20
    assert (
        "Loaded the demo usage: 5 meters, " in first.stdout
        and "usage events over three weeks" in first.stdout
    )
    assert f"{usage[0][0]:,} usage events" in first.stdout
    assert "Demo usage, for example: GET /api/v1/accounts/" in first.stdout

    second = boughs("demo")
    assert second.exit_code == 0, second.output
    assert login in second.stdout and "nothing changed" in second.stdout
    assert query(database, "SELECT count(*) FROM accounts") == accounts
    assert query(database, "SELECT count(*) FROM audit_events") == events
    assert query(database, "SELECT count(*), sum(quantity) FROM usage_events") == usage
    assert "Demo usage, for example: GET /api/v1/accounts/" in second.stdout
    password_hash = query(database, "SELECT password_hash FROM users WHERE email = ?", DEMO_ADMIN_EMAIL)[0][0]
    assert isinstance(password_hash, str) and verify_password(password_hash, DEMO_ADMIN_PASSWORD)


def test_demo_if_empty_leaves_a_real_install_alone(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os
    import subprocess
    import sys

    env = {**os.environ, "BOUGHS_DATABASE_URL": f"sqlite:///{tmp_path / 'real.sqlite3'}"}

    def boughs(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "boughs.cli", *args], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    boughs("db", "upgrade")
    boughs("init", "--admin-email", "owner@real-isp.test", "--admin-password", "Real-isp-pass-1")
    out = boughs("demo", "--if-empty")
    assert "not loaded" in out
    assert "admin@demo.boughs.test" not in out
    fresh = {**env, "BOUGHS_DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.sqlite3'}"}
    env.update(fresh)
    boughs("db", "upgrade")
    first = boughs("demo", "--if-empty")
    again = boughs("demo", "--if-empty")
    assert "Demo admin login: admin@demo.boughs.test" in first
    assert "Demo admin login: admin@demo.boughs.test" in again
    assert "already loaded" in again


def test_bill_run_bills_the_demo_once_and_previews_the_same(database: Path) -> None:
    assert boughs("db", "upgrade").exit_code == 0
    assert boughs("demo").exit_code == 0
    # The demo bills last month and drafts this one: the run is for the month after.
    today = datetime.now(UTC).date()
    first_after_next = date(today.year + (today.month + 1) // 12, (today.month + 1) % 12 + 1, 1)
    period_end = (first_after_next - timedelta(days=1)).isoformat()
    preview = boughs("bill-run", period_end, "--dry-run")
    assert preview.exit_code == 0, preview.output
    assert "succeeded" in preview.stdout and "previews made" in preview.stdout
    real = boughs("bill-run", period_end)
    assert real.exit_code == 0, real.output

    def invoices(status: str) -> list[tuple[object, ...]]:
        return query(
            database,
            "SELECT owner_account_id, total_amount FROM invoices "
            "WHERE status = ? AND period_end = ? ORDER BY 1",
            status,
            period_end,
        )

    drafts = invoices("draft")
    assert drafts and drafts == invoices("preview")
    again = boughs("bill-run", period_end)
    assert again.exit_code == 0 and f"0 invoices made, {len(drafts)} owners already billed" in again.stdout
    refused = boughs("bill-run", "30/11/2026")
    assert refused.exit_code == 2 and "YYYY-MM-DD" in refused.output
