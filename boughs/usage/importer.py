"""Usage from mediation files: a CSV of events, taken in batches like the ingest API.

A file has a header row naming its columns, in any order: ``id``, ``meter``,
``quantity`` and ``timestamp`` are required; the subject columns (``account_id``,
``external_account_id``, ``service_id``, ``login``, ``iccid``) name whose usage a row
is, one per row (empty cells are absent), and ``properties`` is an optional JSON object.
A header with a required column missing, no subject column, or a column it does not
know is refused before anything is written.

Unlike the accounts import this is not all or nothing. The file is read as a stream
and sent through ``ingest.ingest`` a batch of rows at a time, one transaction per batch,
as the provider's system actor. A row the file itself gets wrong (its number of fields,
its quoting, its JSON) is rejected here with its line; every other row is answered by
ingestion exactly as the API answers an event: accepted, a duplicate, a conflict or
rejected with its reason. A crash keeps the batches already committed, and running the
file again counts their rows as duplicates, so a file can always be imported again.

Rows not taken (rejected, or in conflict with an event already taken under the same
id) are written, as they are found, to a report CSV of ``line, id, reason``.

    report = await import_usage(db, provider_id, path, clock=clock)
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from boughs.accounts import bulk_repository
from boughs.audit import service as audit
from boughs.auth.actor import Actor
from boughs.context import Ctx
from boughs.db import Database
from boughs.kit.clock import Clock
from boughs.kit.csv_header import check_header
from boughs.kit.errors import InvalidInput, NotFound
from boughs.usage import ingest
from boughs.usage.ingest import Outcome
from boughs.usage.schemas import MAX_BATCH, SUBJECTS, EventStatus
from boughs.usage.tasks import fold_pending

REQUIRED_COLUMNS = ("id", "meter", "quantity", "timestamp")
COLUMNS = (*REQUIRED_COLUMNS, *SUBJECTS, "properties")
REPORT_COLUMNS = ("line", "id", "reason")
AUDIT_ENTITY = "usage_events"
ACTOR_NAME = "usage-import"


@dataclass
class UsageImportReport:
    """What an import did, row by row counted: every row is in exactly one count."""

    rows: int = 0
    accepted: int = 0
    duplicates: int = 0
    conflicts: int = 0
    rejected: int = 0
    late: int = 0
    # Events added to the rollups at the end (this import's, and any pending before it).
    folded: int = 0
    seconds: float = 0.0
    rejects_path: Path | None = None
    # The first rows not taken, for a summary on screen; the report file has them all.
    first_problems: list[tuple[int, str | None, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every row was taken: accepted now, or already taken with the same content."""
        return not self.rejected and not self.conflicts

    @property
    def rate(self) -> float:
        """Rows per second."""
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def rejects_path_for(path: Path) -> Path:
    """The report's default place: beside the input, ``usage.csv`` → ``usage.rejects.csv``."""
    return path.with_name(f"{path.stem}.rejects.csv")


def check_columns(names: list[str]) -> list[str]:
    """The header's column names, normalised; refuses unknown, repeated and missing columns."""
    columns = check_header(names, COLUMNS, REQUIRED_COLUMNS)
    if not any(c in SUBJECTS for c in columns):
        raise InvalidInput.on_field(
            "columns",
            "the header has no subject column",
            f"add the column that says whose usage each row is: one of {', '.join(SUBJECTS)}",
        )
    return columns


@dataclass
class Row:
    """A row of the file: the event it describes, or why it cannot describe one."""

    line: int
    event_id: str | None
    event: dict[str, Any] | None = None
    problem: str | None = None


class UsageCsv:
    """A usage CSV (UTF-8, with or without BOM), read once, row by row.

    Opening it reads and checks the header. Bytes that are not UTF-8 reach the rows as
    lone surrogates, so only the rows holding them are rejected. Blank lines are skipped.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self._handle: TextIO = open(  # noqa: SIM115 - closed by close()
            self.path, encoding="utf-8-sig", errors="surrogateescape", newline=""
        )
        try:
            # strict: a broken quote is an error on its row rather than a silently odd value.
            self._reader = csv.reader(self._handle, strict=True)
            try:
                header = next(self._reader, None)
            except csv.Error as exc:
                raise InvalidInput.on_field(
                    "columns", f"the header row is not valid CSV ({exc})", "fix the first row"
                ) from None
            if header is None:
                raise InvalidInput.on_field("columns", "the file is empty", "start it with a header row")
            self.columns = check_columns(header)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> UsageCsv:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def estimated_rows(self) -> int:
        """Lines after the header: the row count unless values span lines or lines are blank."""
        newlines = 0
        last = b"\n"
        with self.path.open("rb") as raw:
            while chunk := raw.read(1 << 20):
                newlines += chunk.count(b"\n")
                last = chunk[-1:]
        lines = newlines + (last != b"\n")
        return max(lines - 1, 0)

    def rows(self) -> Iterator[Row]:
        reader = self._reader
        columns = self.columns
        width = len(columns)
        id_at = columns.index("id")
        while True:
            line = reader.line_num + 1
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield Row(line, None, problem=_csv_problem(str(exc), line, reader.line_num))
                continue
            if not values or (len(values) == 1 and not values[0].strip()):
                continue
            event_id = values[id_at].strip() or None if len(values) > id_at else None
            if event_id is not None and not event_id.isascii() and not _is_text(event_id):
                event_id = None  # undecodable bytes: the row is rejected, and its id unreadable
            if len(values) != width:
                yield Row(
                    line, event_id,
                    problem=f"row: has {len(values)} fields but the header has {width}; "
                    "quote values that hold commas",
                )  # fmt: skip
                continue
            yield _row(line, event_id, columns, values)


def _csv_problem(message: str, line: int, last_line: int) -> str:
    if "unexpected end of data" in message:
        return (
            f"row: a quoted value opened here is never closed, so lines {line}-{last_line} "
            "were read as one row; close the quote"
        )
    return (
        f"row: is not valid CSV ({message}); quote a value that holds commas or quotes, "
        'doubling the quotes inside: "a ""b"""'
    )


def _row(line: int, event_id: str | None, columns: list[str], values: list[str]) -> Row:
    joined = "".join(values)
    if not joined.isascii():
        try:
            joined.encode("utf-8")
        except UnicodeEncodeError:
            return Row(line, event_id, problem="row: is not valid UTF-8; save the file as UTF-8")
    if "\x00" in joined:
        return Row(line, event_id, problem="row: contains a NUL character; remove it")
    event: dict[str, Any] = {}
    for name, value in zip(columns, values, strict=True):
        value = value.strip()
        if not value:
            if name in REQUIRED_COLUMNS:
                return Row(line, event_id, problem=f"{name}: is empty; every row needs one")
            continue
        if name == "properties":
            try:
                parsed = json.loads(value, parse_constant=_no_constant)
            except ValueError as exc:
                return Row(line, event_id, problem=f"properties: is not valid JSON ({exc})")
            if not isinstance(parsed, dict):
                return Row(line, event_id, problem='properties: must be a JSON object, like {"cell": "A1"}')
            if _holds_nul(parsed):
                return Row(
                    line, event_id, problem="properties: contains a NUL character (\\u0000); remove it"
                )
            event[name] = parsed
        else:
            event[name] = value
    return Row(line, event_id, event=event)


def _no_constant(name: str) -> Any:
    # Python's JSON reader takes NaN and Infinity; JSON (and PostgreSQL's jsonb) do not.
    raise ValueError(f"{name} is not a JSON value")


def _holds_nul(value: Any) -> bool:
    """Whether a parsed JSON value holds a NUL character, which no engine stores faithfully."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any("\x00" in key or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def batches(rows: Iterator[Row], size: int) -> Iterator[list[Row]]:
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _report_path(source: Path, explicit: str | Path | None) -> Path:
    path = Path(explicit) if explicit is not None else rejects_path_for(source)
    if path.resolve() == source.resolve():
        raise InvalidInput.on_field(
            "rejects", "is the file being imported", "write the report to another file"
        )
    return path


class _Rejects:
    """The report file, written as rows are found so that a crash keeps what was found."""

    SHOWN = 10

    def __init__(self, path: Path, report: UsageImportReport) -> None:
        self.path = path
        self.report = report
        self._handle = path.open("w", encoding="utf-8", newline="")
        self._writer = csv.writer(self._handle)
        self._writer.writerow(REPORT_COLUMNS)

    def add(self, line: int, event_id: str | None, reason: str) -> None:
        self._writer.writerow((line, event_id or "", reason))
        if len(self.report.first_problems) < self.SHOWN:
            self.report.first_problems.append((line, event_id, reason))

    def flush(self) -> None:
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


async def import_usage(
    db: Database,
    provider_id: int,
    path: str | Path,
    *,
    clock: Clock,
    rejects_path: str | Path | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    actor: Actor | None = None,
    batch_size: int = MAX_BATCH,
) -> UsageImportReport:
    """Take the events of a usage CSV; see the module's doc.

    ``on_progress(done, total)`` follows the rows (``total`` is an estimate until the
    end). ``actor`` defaults to the provider's system actor. Raises ``InvalidInput`` for
    a header it cannot use and ``NotFound`` for an unknown provider, both before
    anything is written.
    """
    if not 1 <= batch_size <= MAX_BATCH:
        raise ValueError(f"batch_size must be between 1 and {MAX_BATCH}")
    started = time.perf_counter()
    source = Path(path)
    with UsageCsv(source) as file:
        async with db.transaction(write=False) as session:
            if await bulk_repository.provider(session, provider_id) is None:
                raise NotFound(detail=f"There is no provider {provider_id}.", fix="check the provider id")
        actor = actor or Actor.system(provider_id, ACTOR_NAME)
        report = UsageImportReport()
        report.rejects_path = _report_path(source, rejects_path)
        total = file.estimated_rows()
        if on_progress is not None:
            on_progress(0, total)
        rejects = _Rejects(report.rejects_path, report)
        try:
            for batch in batches(file.rows(), batch_size):
                await _take(db, clock, actor, batch, report, rejects)
                rejects.flush()
                if on_progress is not None:
                    on_progress(report.rows, max(total, report.rows))
        finally:
            rejects.close()
    # Usage queries are exact meanwhile, but bill runs and caps read the rollups: the import
    # ends with what it took folded into them.
    report.folded = await fold_pending(db, provider_id, clock)
    report.seconds = time.perf_counter() - started
    if on_progress is not None:
        on_progress(report.rows, report.rows)
    async with db.transaction() as session:
        ctx = Ctx(session=session, clock=clock, actor=actor)
        await audit.record(
            ctx, entity=AUDIT_ENTITY, entity_id=source.name, action="imported", account_id=None,
            after={
                "file": source.name, "rows": report.rows, "accepted": report.accepted,
                "duplicates": report.duplicates, "conflicts": report.conflicts, "rejected": report.rejected,
            },
        )  # fmt: skip
    return report


async def _take(
    db: Database, clock: Clock, actor: Actor, batch: list[Row], report: UsageImportReport, rejects: _Rejects
) -> None:
    report.rows += len(batch)
    problems = [(row.line, row.event_id, row.problem) for row in batch if row.problem is not None]
    report.rejected += len(problems)
    sent = [row for row in batch if row.event is not None]
    if sent:
        async with db.transaction() as session:
            results = await ingest.ingest(
                Ctx(session=session, clock=clock, actor=actor), [row.event for row in sent]
            )
        for result in results:
            _count(report, result)
            if result.status in (EventStatus.rejected, EventStatus.conflict):
                row = sent[result.index]
                problems.append((row.line, row.event_id, result.reason or result.status.value))
    for line, event_id, reason in sorted(problems, key=lambda p: p[0]):
        rejects.add(line, event_id, reason)


def _count(report: UsageImportReport, result: Outcome) -> None:
    if result.status is EventStatus.accepted:
        report.accepted += 1
        report.late += result.late
    elif result.status is EventStatus.duplicate:
        report.duplicates += 1
    elif result.status is EventStatus.conflict:
        report.conflicts += 1
    else:
        report.rejected += 1


__all__ = [
    "COLUMNS",
    "REQUIRED_COLUMNS",
    "UsageCsv",
    "UsageImportReport",
    "check_columns",
    "import_usage",
    "rejects_path_for",
]
