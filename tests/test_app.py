"""The application as an operator starts it."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from boughs.app import create_app
from boughs.config import Settings
from boughs.kit.errors import SchemaOutOfDate
from boughs.schema import upgrade


def test_refuses_to_start_on_an_empty_or_old_schema(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'empty.sqlite3'}"
    with pytest.raises(SchemaOutOfDate, match="boughs db upgrade"):
        create_app(Settings(database_url=url))
    upgrade(url, "0001")
    with pytest.raises(SchemaOutOfDate, match="revision 0001"):
        create_app(Settings(database_url=url))
    upgrade(url)
    assert create_app(Settings(database_url=url)) is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _boughs(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "boughs.cli", *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _serving(env: dict[str, str], port: int, *args: str) -> subprocess.Popen[bytes]:
    """`boughs serve` on the port, once it answers /healthz."""
    server = subprocess.Popen(
        [sys.executable, "-m", "boughs.cli", "serve", "--port", str(port), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            output = server.communicate()[0].decode()
            raise AssertionError(f"the server did not come up:\n{output}")
        time.sleep(0.2)


def _initialised(database: Path) -> tuple[dict[str, str], str]:
    """An environment on a fresh SQLite database with its owner, and an API token of theirs."""
    env = {**os.environ, "BOUGHS_DATABASE_URL": f"sqlite:///{database}"}
    env.pop("BOUGHS_BROKER_URL", None)
    _boughs(env, "db", "upgrade")
    _boughs(env, "init", "--admin-email", "owner@isp.test", "--admin-password", "Correct-Horse-9")
    token = _boughs(env, "token", "create", "--email", "owner@isp.test", "--name", "smoke").strip()
    return env, token


def test_serve_end_to_end_with_embedded_jobs(tmp_path: Path) -> None:
    env, token = _initialised(tmp_path / "boughs.sqlite3")
    port = _free_port()
    server = _serving({**env, "BOUGHS_SCHEDULER_INTERVAL_SECONDS": "0.5"}, port)
    base = f"http://127.0.0.1:{port}"
    try:
        auth = {"Authorization": f"Bearer {token}"}
        created = httpx.post(
            f"{base}/api/v1/accounts", json={"name": "Lapsed", "expiry_date": "2020-01-01"}, headers=auth
        )
        assert created.status_code == 201, created.text
        assert created.headers["x-request-id"]
        account_url = f"{base}/api/v1/accounts/{created.json()['id']}"
        # The embedded worker runs the expiry sweep without any broker.
        job = httpx.post(f"{base}/api/v1/jobs", json={"kind": "accounts.expiry_sweep"}, headers=auth)
        assert job.status_code == 202, job.text
        deadline = time.monotonic() + 30
        job_url = f"{base}/api/v1/jobs/{job.json()['id']}"
        while httpx.get(job_url, headers=auth).json()["status"] != "succeeded":
            assert time.monotonic() < deadline, "the embedded expiry sweep never ran"
            time.sleep(0.2)
        assert httpx.get(account_url, headers=auth).json()["status"] == "expired"
        assert httpx.get(f"{base}/api/docs").status_code == 200
        assert httpx.get(f"{base}/api/v1/accounts").headers["content-type"] == "application/problem+json"
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_serve_on_several_processes_folds_usage_with_their_workers(tmp_path: Path) -> None:
    database = tmp_path / "boughs.sqlite3"
    env, token = _initialised(database)
    port = _free_port()
    server = _serving(env, port, "--processes", "2")
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {token}"}
    try:
        meter = {"code": "data", "name": "Data", "unit": "bytes", "aggregation": "sum"}
        assert httpx.post(f"{base}/api/v1/meters", json=meter, headers=auth).status_code == 201
        account = httpx.post(f"{base}/api/v1/accounts", json={"name": "Metered"}, headers=auth).json()["id"]
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
        for batch in range(6):
            events = [
                {
                    "id": f"e{batch}-{i}",
                    "meter": "data",
                    "quantity": "10",
                    "timestamp": now,
                    "account_id": account,
                }
                for i in range(50)
            ]
            answer = httpx.post(f"{base}/api/v1/usage-events", json={"events": events}, headers=auth)
            assert answer.status_code == 200 and answer.json()["accepted"] == 50, answer.text
        deadline = time.monotonic() + 30
        with sqlite3.connect(database) as conn:
            while conn.execute("SELECT count(*) FROM usage_batches WHERE folded_at IS NULL").fetchone()[0]:
                assert time.monotonic() < deadline, "the workers never folded the usage"
                time.sleep(0.2)
            (total,) = conn.execute(
                "SELECT sum(total) FROM usage_rollups WHERE kind = 'account' AND subject_id = ?", (account,)
            ).fetchone()
        assert total == 3000
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0].decode()
    assert output.count("Started server process") == 2, output
