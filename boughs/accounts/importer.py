"""Bulk creation of a provider's existing customer base from CSV, all or nothing.

A file has a header row naming its columns (any order; only ``name`` is required):
external_id, parent_external_id, name, description, contact_email,
technical_contact_email, expiry_date (YYYY-MM-DD), invoice_mode (with_parent |
separate), timezone, currency, billing_address, billing_tax_id, billing_email.
Rows may come in any order: a child may precede its parent, and parent_external_id may
also name an account the provider already has.

Every row is checked before anything is written. If any row is rejected, nothing is
written and the report lists every rejected row with its line and the reason (rows
rejected only because their parent row was rejected say so). Otherwise the accounts
and their opening parent links are written in bulk, ids assigned here in tree order,
and one audit event records the import.

    with read_csv(path) as rows:
        report = await import_accounts(db, provider_id, rows, source_name=rows.name, clock=clock)

The checks are the API's (``AccountCreate``): same lengths, email rules, timezones,
currencies and depth cap, so an imported account could have been created one by one.
"""

from __future__ import annotations

import csv
import gc
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, NamedTuple, cast

from pydantic import EmailStr, TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from boughs.accounts import bulk_repository as bulk
from boughs.accounts.bulk_repository import Placed
from boughs.accounts.models import Account, AccountLink, AccountStatus, InvoiceMode, ParentAccess
from boughs.accounts.schemas import check_currency, check_timezone
from boughs.audit import service as audit
from boughs.auth.actor import Actor
from boughs.context import Ctx
from boughs.db import Database
from boughs.kit.clock import Clock
from boughs.kit.csv_header import check_header
from boughs.kit.errors import InvalidInput, NotFound
from boughs.kit.paths import child_path
from boughs.providers.models import Provider

COLUMNS = (
    "external_id", "parent_external_id", "name", "description", "contact_email",
    "technical_contact_email", "expiry_date", "invoice_mode", "timezone", "currency",
    "billing_address", "billing_tax_id", "billing_email",
)  # fmt: skip
REQUIRED_COLUMNS = ("name",)
_ALLOWED = frozenset(COLUMNS)
# The API's limits (AccountFields); the database's column sizes are the same or larger.
MAX_LENGTH = {
    "name": 200, "external_id": 100, "description": 10_000, "billing_address": 2_000,
    "billing_tax_id": 64,
}  # fmt: skip
_INVOICE_MODES = frozenset(m.value for m in InvoiceMode)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# Plain ASCII dot-atom local parts, which the email validator always accepts; anything
# else (quoted, unicode, "Name <a@b>") goes through the validator itself.
_SIMPLE_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_EMAIL = TypeAdapter(EmailStr)
AUDIT_ENTITY = "account"


class Rejection(NamedTuple):
    line: int
    external_id: str | None
    reason: str


@dataclass
class ImportReport:
    """What an import did: either ``created`` accounts, or nothing and every ``rejected`` row."""

    rows: int
    created: int
    rejected: list[Rejection] = field(default_factory=list)
    seconds: float = 0.0
    first_id: int | None = None
    last_id: int | None = None
    # Whether PostgreSQL's per-row foreign-key triggers were skipped (see bulk_repository).
    reference_checks_skipped: bool = False
    # Seconds spent in each phase, for benchmarks.
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.rejected

    @property
    def rate(self) -> float:
        """Accounts created per second."""
        return self.created / self.seconds if self.seconds > 0 else 0.0


class CsvRow(dict[str, str | None]):
    """A row of a CSV file by column, with the file line it starts on and any problem
    with its shape (a different number of fields than the header)."""

    __slots__ = ("line", "problem")

    line: int
    problem: str | None


# --- reading a file ------------------------------------------------------------------


def check_columns(names: Iterable[str]) -> list[str]:
    """The header's column names, normalised; refuses unknown, repeated and missing columns."""
    return check_header(names, COLUMNS, REQUIRED_COLUMNS)


@dataclass
class _Columns:
    """Rows read column by column: each row's line, problems with a row's shape, and the
    values of each column (a column the rows do not have is absent)."""

    lines: list[int]
    shapes: dict[int, str]
    values: dict[str, list[str | None]]


class CsvFile:
    """A CSV file of accounts (UTF-8, with or without BOM), read once.

    Opening it reads and checks the header, so a file with unknown columns is refused
    before any row is read. Iterating gives ``CsvRow`` mappings; the importer reads the
    whole file column by column instead, which is much faster. Blank lines are skipped.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self._handle = open(self.path, encoding="utf-8-sig", newline="")  # noqa: SIM115 - see close()
        try:
            self._reader = csv.reader(self._handle)
            header = next(self._reader, None)
            if header is None:
                raise InvalidInput.on_field("columns", "the file is empty", "start it with a header row")
            self.columns = check_columns(header)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> CsvFile:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _rows(self) -> Iterator[tuple[int, str | None, list[str]]]:
        width = len(self.columns)
        reader = self._reader
        with self._handle:
            line = reader.line_num + 1
            for values in reader:
                if len(values) == width:
                    yield line, None, values
                elif values and (len(values) > 1 or values[0].strip()):
                    problem = (
                        f"has {len(values)} fields but the header has {width}; quote values that hold commas"
                    )
                    yield line, problem, [*values[:width], *[""] * (width - len(values))]
                line = reader.line_num + 1

    def read_columns(self) -> _Columns:
        width = len(self.columns)
        lines: list[int] = []
        shapes: dict[int, str] = {}
        flat: list[str | None] = []
        add_line, add_values = lines.append, flat.extend
        reader = self._reader
        with self._handle:
            # The loop of _rows, inline: this is the hot path of a large import.
            line = reader.line_num + 1
            for values in reader:
                if len(values) == width:
                    add_line(line)
                    add_values(values)
                elif values and (len(values) > 1 or values[0].strip()):
                    shapes[len(lines)] = (
                        f"has {len(values)} fields but the header has {width}; quote values that hold commas"
                    )
                    add_line(line)
                    add_values([*values[:width], *[""] * (width - len(values))])
                line = reader.line_num + 1
        columns: dict[str, list[str | None]] = {c: flat[i::width] for i, c in enumerate(self.columns)}
        return _Columns(lines, shapes, columns)

    def __iter__(self) -> Iterator[CsvRow]:
        for line, problem, values in self._rows():
            row = CsvRow(zip(self.columns, values, strict=True))
            row.line, row.problem = line, problem
            yield row


def read_csv(path: str | Path) -> CsvFile:
    """Open a CSV file of accounts for ``import_accounts``; see ``CsvFile``."""
    return CsvFile(path)


def _read_mappings(rows: Iterable[Mapping[str, str | None]], first_line: int) -> _Columns:
    lines: list[int] = []
    shapes: dict[int, str] = {}
    flat: list[str | None] = []
    width = len(COLUMNS)
    for index, row in enumerate(rows):
        if isinstance(row, CsvRow):
            lines.append(row.line)
            if row.problem:
                shapes[index] = row.problem
        else:
            lines.append(index + first_line)
        if not _ALLOWED.issuperset(row.keys()):
            unknown = sorted(str(k) for k in row.keys() - _ALLOWED)
            shapes[index] = f"has unknown column(s) {', '.join(unknown)}"
        flat.extend(map(row.get, COLUMNS))
    return _Columns(lines, shapes, {c: flat[i::width] for i, c in enumerate(COLUMNS)})


# --- checking rows -------------------------------------------------------------------


class _EmailCheck:
    """The API's email rule (pydantic EmailStr) at import speed: the validator runs once
    per domain, and again only for local parts that are not plain dot-atoms."""

    def __init__(self) -> None:
        self.domains: dict[str, str | ValueError] = {}

    @staticmethod
    def _full(value: str) -> str:
        try:
            return str(_EMAIL.validate_python(value))
        except ValidationError as exc:
            message = str(exc.errors()[0].get("msg", "is not a valid email address"))
            raise ValueError(message.removeprefix("value is not a valid email address: ")) from None

    def __call__(self, value: str) -> str:
        local, at, domain = value.rpartition("@")
        if not at or len(local) > 64 or len(value) > 254 or not _SIMPLE_LOCAL.fullmatch(local):
            return self._full(value)
        known = self.domains.get(domain)
        if known is None:
            try:
                known = self._full(f"x@{domain}").partition("@")[2]
            except ValueError as exc:
                known = exc
            self.domains[domain] = known
        if isinstance(known, ValueError):
            raise known
        return f"{local}@{known}"


@dataclass
class _Parsed:
    """The rows after the checks that need neither the database nor other rows, in file
    order, column by column."""

    lines: list[int] = field(default_factory=list)
    external_ids: list[str | None] = field(default_factory=list)
    parent_external_ids: list[str | None] = field(default_factory=list)
    # The account's own columns (name, description, ...) that some row fills, normalised;
    # the ones no row fills are absent and take their defaults.
    values: dict[str, list[Any]] = field(default_factory=dict)
    errors: dict[int, list[str]] = field(default_factory=dict)
    row_of: dict[str, int] = field(default_factory=dict)  # external id -> its first row
    repeated: dict[str, list[int]] = field(default_factory=dict)  # external id -> all its rows

    def reject(self, index: int, reason: str) -> None:
        self.errors.setdefault(index, []).append(reason)


_EMAIL_COLUMNS = ("contact_email", "technical_contact_email", "billing_email")


def _stripped(column: Sequence[str | None]) -> list[str | None]:
    """Values without surrounding blanks; empty ones become None."""
    if None in column:
        return [v.strip() or None if v else None for v in column]
    stripped: list[str | None] = list(map(str.strip, cast(Sequence[str], column)))
    return stripped if all(stripped) else [v or None for v in stripped]


def _check_lengths(parsed: _Parsed, name: str, column: list[str | None]) -> None:
    limit = MAX_LENGTH[name]
    if max(map(len, filter(None, column)), default=0) > limit:
        for i, v in enumerate(column):
            if v is not None and len(v) > limit:
                parsed.reject(i, f"{name} is {len(v)} characters long; the most is {limit}")


def _check_distinct(
    parsed: _Parsed, column: list[str | None], problem_of: Callable[[str], str | None]
) -> None:
    """Check each distinct value once; reject the rows holding a bad one."""
    problems = {v: p for v in set(column) - {None} if v is not None and (p := problem_of(v)) is not None}
    if problems:
        for i, v in enumerate(column):
            if v in problems:
                parsed.reject(i, problems[v])


def _date_problem(text: str) -> str | None:
    if not _DATE.fullmatch(text):
        return f"expiry_date '{text}' is not a date in the form YYYY-MM-DD"
    try:
        date.fromisoformat(text)
    except ValueError as exc:
        return f"expiry_date '{text}' is not a real date ({exc})"
    return None


def _value_problem(check: Callable[[str], object], column: str, value: str) -> str | None:
    try:
        check(value)
    except ValueError as exc:
        return f"{column} '{value}' {exc}"
    return None


def parse_rows(rows: Iterable[Mapping[str, str | None]], *, first_line: int = 2) -> _Parsed:
    """Check each row on its own (everything that needs neither the database nor other rows).

    ``CsvFile`` and ``CsvRow`` rows know their lines; other mappings are numbered from
    ``first_line`` (the line after a header). The checks run a column at a time.
    """
    parsed = _Parsed()
    read = rows.read_columns() if isinstance(rows, CsvFile) else _read_mappings(rows, first_line)
    for index, shape in read.shapes.items():
        parsed.reject(index, shape)
    parsed.lines = lines = read.lines
    n = len(lines)
    raw = read.values

    def column(name: str) -> list[str | None] | None:
        """A column's stripped values, or None when no row fills it."""
        values = raw.get(name)
        if values is None or not any(values):
            return None
        stripped = _stripped(values)
        if "\x00" in "".join(filter(None, stripped)):  # neither engine stores it faithfully
            for i, v in enumerate(stripped):
                if v is not None and "\x00" in v:
                    parsed.reject(i, f"{name} contains a NUL character")
        return stripped

    external_ids = column("external_id") or [None] * n
    _check_lengths(parsed, "external_id", external_ids)
    # The first row of each external id: later rows overwrite earlier ones, so go backwards.
    row_of: dict[str | None, int] = dict(zip(reversed(external_ids), range(n - 1, -1, -1), strict=True))
    row_of.pop(None, None)
    if len(row_of) != n - external_ids.count(None):
        for i, external_id in enumerate(external_ids):
            if external_id is not None and row_of[external_id] != i:
                parsed.repeated.setdefault(external_id, [row_of[external_id]]).append(i)
    for external_id, indexes in parsed.repeated.items():
        where = ", ".join(str(lines[i]) for i in indexes)
        for i in indexes:
            parsed.reject(i, f"external_id '{external_id}' is used by more than one row (lines {where})")
    parsed.external_ids = external_ids
    parsed.row_of = cast(dict[str, int], row_of)
    parsed.parent_external_ids = column("parent_external_id") or [None] * n

    names = column("name") or [None] * n
    if not all(names):
        for i, name in enumerate(names):
            if not name:
                parsed.reject(i, "name is missing; every account needs a name")
    _check_lengths(parsed, "name", names)
    parsed.values["name"] = names
    for name in ("description", "billing_address", "billing_tax_id"):
        if (values := column(name)) is not None:
            _check_lengths(parsed, name, values)
            parsed.values[name] = [v or "" for v in values] if name == "description" else values

    email = _EmailCheck()
    for name in _EMAIL_COLUMNS:
        if (values := column(name)) is not None:
            for i, value in enumerate(values):
                if value is not None:
                    try:
                        values[i] = email(value)
                    except ValueError as exc:
                        parsed.reject(i, f"{name} '{value}' is not a valid email address: {exc}")
            parsed.values[name] = values

    if (values := column("expiry_date")) is not None:
        _check_distinct(parsed, values, _date_problem)
        parsed.values["expiry_date"] = values
    if (values := column("invoice_mode")) is not None:
        modes = [v.lower() if v else InvoiceMode.separate.value for v in values]
        _check_distinct(
            parsed,
            cast(list[str | None], modes),
            lambda v: (
                None if v in _INVOICE_MODES else f"invoice_mode '{v}' is not one of separate, with_parent"
            ),
        )
        parsed.values["invoice_mode"] = modes
    if (values := column("timezone")) is not None:
        _check_distinct(parsed, values, lambda v: _value_problem(check_timezone, "timezone", v))
        parsed.values["timezone"] = values
    if (values := column("currency")) is not None:
        _check_distinct(parsed, values, lambda v: _value_problem(check_currency, "currency", v))
        parsed.values["currency"] = values
    return parsed


@dataclass
class _Plan:
    """Where every row goes: tree order (parents first), parents, depths, rejections."""

    order: list[int]
    parent_row: list[int]  # index of the parent row in the file, or -1
    existing_parent: dict[int, Placed]  # rows whose parent is already in the database
    depth: list[int]
    rejected: list[Rejection]


def _label(parsed: _Parsed, index: int) -> str:
    external_id = parsed.external_ids[index]
    return f"line {parsed.lines[index]}" + (f" ({external_id})" if external_id else "")


def plan(parsed: _Parsed, existing: Mapping[str, Placed], max_depth: int | None) -> _Plan:
    """Resolve parents, order the rows parents first, and find every rejected row.

    ``existing`` maps external ids the provider already uses to their accounts.
    """
    n = len(parsed.lines)
    errors = parsed.errors
    external_ids, parent_ids, row_of = parsed.external_ids, parsed.parent_external_ids, parsed.row_of
    existing_parent: dict[int, Placed] = {}
    for external_id in row_of.keys() & existing.keys():
        for i in parsed.repeated.get(external_id, [row_of[external_id]]):
            parsed.reject(
                i, f"external_id '{external_id}' already belongs to account {existing[external_id].id}"
            )
    find = row_of.get
    parent_row = [-1 if parent is None else find(parent, -1) for parent in parent_ids]
    # Rows whose parent is not another row of the file: own parent, existing or unknown.
    for i, (parent, p) in enumerate(zip(parent_ids, parent_row, strict=True)):
        if parent is None or 0 <= p != i:
            continue
        parent_row[i] = -1
        if p == i:
            parsed.reject(i, f"parent_external_id '{parent}' is the row's own external_id")
        elif (placed := existing.get(parent)) is not None:
            existing_parent[i] = placed
        else:
            parsed.reject(
                i,
                f"parent_external_id '{parent}' is neither an external_id in this file "
                "nor an existing account of this provider",
            )
    children: dict[int, list[int]] = {}
    roots: list[int] = []
    for i, p in enumerate(parent_row):
        if p < 0:
            roots.append(i)
        else:
            children.setdefault(p, []).append(i)

    # Tree order: depth-first from the rows whose parent is not a row of the file.
    depth = [0] * n
    bad = bytearray(n)
    parent_note: dict[int, str] = {}
    order: list[int] = []
    stack = roots[::-1]
    while stack:
        i = stack.pop()
        order.append(i)
        p = parent_row[i]
        if p >= 0:
            depth[i] = depth[p] + 1
            if bad[p]:
                bad[i] = 1
                parent_note[i] = f"its parent row ({_label(parsed, p)}) was rejected"
        else:
            placed = existing_parent.get(i)
            depth[i] = placed.depth + 1 if placed is not None else 0
        if i in errors:
            bad[i] = 1
        # Only the topmost row that is too deep says so; the rows below it follow their parent.
        if max_depth is not None and depth[i] > max_depth and (p < 0 or depth[p] <= max_depth):
            bad[i] = 1
            parsed.reject(
                i,
                f"would put the account at depth {depth[i]}, deeper than this provider's cap of "
                f"{max_depth} (top level is depth 0)",
            )
        kids = children.get(i)
        if kids:
            stack.extend(reversed(kids))

    if len(order) < n:
        _reject_cycles(parsed, parent_row, order, bad, parent_note)

    rejected: list[Rejection] = []
    for i in range(n):
        if bad[i]:
            reasons = list(errors.get(i, ()))
            note = parent_note.get(i)
            if note:
                reasons.append(note if not reasons else f"also, {note}")
            rejected.append(Rejection(parsed.lines[i], external_ids[i], "; ".join(reasons)))
    rejected.sort(key=lambda r: r.line)
    return _Plan(order, parent_row, existing_parent, depth, rejected)


# Rows of a cycle a rejection names before it abbreviates the rest.
CYCLE_SHOWN = 6


def _reject_cycles(
    parsed: _Parsed, parent_row: list[int], order: list[int], bad: bytearray, parent_note: dict[int, str]
) -> None:
    """Rows never reached from a root are in a cycle of parents or hang below one."""
    state = bytearray(len(parent_row))  # 0 unseen, 1 on the current walk, 2 decided
    for i in order:
        state[i] = 2
    for start in range(len(parent_row)):
        if state[start]:
            continue
        walk: list[int] = []
        i = start
        while not state[i]:
            state[i] = 1
            walk.append(i)
            i = parent_row[i]
        if state[i] == 1:  # came back to the walk: a cycle from i
            cycle = walk[walk.index(i) :]
            for k, c in enumerate(cycle):
                around = [*cycle[k:], *cycle[:k]]
                labels = [_label(parsed, r) for r in around[:CYCLE_SHOWN]]
                if len(around) > CYCLE_SHOWN:
                    labels.append(f"… ({len(around) - CYCLE_SHOWN} more rows)")
                shown = " → ".join([*labels, _label(parsed, c)])
                parsed.reject(
                    c,
                    f"parent_external_id makes a cycle: {shown} (each arrow points to the row's "
                    "parent); give one of these rows a parent outside the cycle, or none",
                )
                bad[c] = 1
                state[c] = 2
            walk = walk[: walk.index(i)]
        for c in reversed(walk):  # each hangs below a decided row: its parent
            p = parent_row[c]
            bad[c] = 1
            parent_note[c] = f"its parent row ({_label(parsed, p)}) was rejected"
            state[c] = 2


# --- writing -------------------------------------------------------------------------


async def _existing_external_ids(
    session: AsyncSession, provider_id: int, parsed: _Parsed
) -> dict[str, Placed]:
    """The provider's accounts whose external ids the file uses or names as a parent."""
    known = await bulk.count_with_external_id(session, provider_id)
    if not known:
        return {}
    wanted = set(parsed.row_of)
    wanted.update(p for p in parsed.parent_external_ids if p is not None)
    if not wanted:
        return {}
    if known <= len(wanted):  # one pass over the provider beats many look-ups
        every = await bulk.placed_by_external_id(session, provider_id, None)
        return {external_id: every[external_id] for external_id in wanted & every.keys()}
    return await bulk.placed_by_external_id(session, provider_id, sorted(wanted))


async def _provider(session: AsyncSession, provider_id: int) -> Provider:
    provider = await bulk.provider(session, provider_id)
    if provider is None:
        raise NotFound(detail=f"There is no provider {provider_id}.", fix="check the provider id")
    return provider


async def _write(
    session: AsyncSession,
    provider_id: int,
    parsed: _Parsed,
    planned: _Plan,
    first_id: int,
    now: datetime,
    on_rows: Callable[[int], None],
    timings: dict[str, float],
) -> None:
    """Accounts in tree order with ids from ``first_id``, then their opening parent links."""
    mark = time.perf_counter()
    order, parent_row, existing_parent = planned.order, planned.parent_row, planned.existing_parent
    n = len(order)
    # Column by column, in tree order: position k of every list is account first_id + k.
    ids = list(range(first_id, first_id + n))
    parent_ids: list[int | None] = [None] * n
    root_ids = [0] * n
    paths = [""] * n
    position = [0] * len(parent_row)
    for k, i in enumerate(order):
        position[i] = k
        p = parent_row[i]
        if p >= 0:
            q = position[p]
            parent_ids[k], root_ids[k], paths[k] = ids[q], root_ids[q], child_path(paths[q], ids[k])
        elif (placed := existing_parent.get(i)) is not None:
            parent_ids[k], root_ids[k], paths[k] = placed.id, placed.root_id, child_path(placed.path, ids[k])
        else:
            root_ids[k], paths[k] = ids[k], child_path(None, ids[k])
    del position
    depth, external_ids = planned.depth, parsed.external_ids
    columns: dict[str, list[Any]] = {
        "id": ids,
        "parent_id": parent_ids,
        "root_id": root_ids,
        "path": paths,
        "depth": [depth[i] for i in order],
        "external_id": [external_ids[i] for i in order],
    }
    for name, values in parsed.values.items():
        columns[name] = [values[i] for i in order]
    # Columns no row fills take their default: the API's, or null.
    constants = {
        name: default
        for name, default in (("description", ""), ("invoice_mode", InvoiceMode.separate.value))
        if name not in columns
    }
    timings["place"] = time.perf_counter() - mark
    mark = time.perf_counter()
    await bulk.insert_accounts(
        session,
        columns,
        constants={
            "provider_id": provider_id,
            "status": AccountStatus.active.value,
            "parent_access": ParentAccess.manage.value,
            "features": {},
            "created_at": now,
            "updated_at": now,
            **constants,
        },
        on_rows=on_rows,
    )
    columns.clear()
    timings["write_accounts"] = time.perf_counter() - mark
    mark = time.perf_counter()
    await bulk.insert_links(
        session,
        {"child_id": ids, "parent_id": parent_ids},
        constants={"provider_id": provider_id, "valid_from": now},
        on_rows=on_rows,
    )
    timings["write_links"] = time.perf_counter() - mark


async def import_accounts(
    db: Database,
    provider_id: int,
    rows: Iterable[Mapping[str, str | None]],
    *,
    source_name: str,
    clock: Clock,
    on_progress: Callable[[int, int], None] | None = None,
    actor: Actor | None = None,
) -> ImportReport:
    """Create the accounts described by ``rows`` under ``provider_id``, all or nothing.

    ``rows`` is a ``CsvFile`` (see ``read_csv``) or any mappings of column names (see
    ``COLUMNS``) to text, such as ``csv.DictReader`` rows; those are numbered from line
    2, after the header. Returns a report of what was created or, when any row is
    rejected, of every rejected row, and then nothing has been written.
    ``on_progress(done, total)`` follows the writing (called from the event loop).
    ``actor`` is who the audit event names (default: the system, "accounts-import").
    Raises ``NotFound`` for an unknown provider.

    Python's cyclic garbage collector is paused while it runs: the import allocates
    millions of small objects, none in cycles, and the collector would otherwise scan
    them all again and again.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        return await _import(db, provider_id, rows, source_name, clock, on_progress, actor)
    finally:
        if collecting:
            gc.enable()


async def _import(
    db: Database,
    provider_id: int,
    rows: Iterable[Mapping[str, str | None]],
    source_name: str,
    clock: Clock,
    on_progress: Callable[[int, int], None] | None,
    actor: Actor | None,
) -> ImportReport:
    started = time.perf_counter()
    timings: dict[str, float] = {}
    parsed = parse_rows(rows)
    n = len(parsed.lines)
    timings["read_and_check_rows"] = time.perf_counter() - started
    async with db.transaction(write=True) as session:
        mark = time.perf_counter()
        await bulk.lock_for_bulk_insert(session)
        provider = await _provider(session, provider_id)
        existing = await _existing_external_ids(session, provider_id, parsed)
        planned = plan(parsed, existing, provider.max_account_depth)
        timings["check_tree"] = time.perf_counter() - mark
        if planned.rejected or n == 0:
            return ImportReport(n, 0, planned.rejected, time.perf_counter() - started, timings=timings)

        mark = time.perf_counter()
        ctx = Ctx(session=session, clock=clock, actor=actor or Actor.system(provider_id, "accounts-import"))
        first_id = await bulk.next_account_id(session)
        last_id = first_id + n - 1
        written = 0
        if on_progress is not None:
            on_progress(0, n)

        def on_rows(count: int) -> None:
            # Each account is two rows (the account and its link): count it half at a time.
            nonlocal written
            written += count
            if on_progress is not None:
                on_progress(written // 2, n)

        tables = [Account.__tablename__, AccountLink.__tablename__]
        async with (
            bulk.cache_for_bulk_insert(session, n),
            bulk.references_checked_by_caller(session, tables) as skipped,
        ):
            await _write(session, provider_id, parsed, planned, first_id, ctx.now(), on_rows, timings)
        await bulk.advance_account_sequence(session, last_id)
        mark = time.perf_counter()
        await bulk.analyze_after_bulk_insert(session, n)
        await audit.record(
            ctx, entity=AUDIT_ENTITY, entity_id=f"{first_id}..{last_id}", action="imported",
            account_id=None, after={"count": n, "file": source_name},
        )  # fmt: skip
    timings["analyze_and_commit"] = time.perf_counter() - mark
    return ImportReport(
        n, n, [], time.perf_counter() - started, first_id, last_id,
        reference_checks_skipped=skipped, timings=timings,
    )  # fmt: skip


async def import_csv(
    db: Database,
    provider_id: int,
    path: str | Path,
    *,
    clock: Clock,
    on_progress: Callable[[int, int], None] | None = None,
    actor: Actor | None = None,
) -> ImportReport:
    """``import_accounts`` of a CSV file, reported under the file's name."""
    with read_csv(path) as rows:
        return await import_accounts(
            db, provider_id, rows, source_name=rows.name, clock=clock, on_progress=on_progress, actor=actor
        )


__all__ = [
    "COLUMNS",
    "CsvFile",
    "CsvRow",
    "ImportReport",
    "Rejection",
    "check_columns",
    "import_accounts",
    "import_csv",
    "parse_rows",
    "plan",
    "read_csv",
]
