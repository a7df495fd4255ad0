"""Taking usage in: every event of a batch is accepted, a duplicate, a conflict or
rejected with its reason, and a valid event is never lost to a bad neighbour.

An event is stored once per provider (the sender's id is the key), as part of a batch
that the fold then adds to the rollups and caps (see ``fold``): a request waits for its
events to be durable, not for the rollups. A duplicate is stored nowhere, so rollups
equal the sum of the stored events however batches interleave or repeat.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

from pydantic import ValidationError

from boughs.authz.permissions import Permission
from boughs.authz.scope import scope_of
from boughs.context import Ctx
from boughs.providers import repository as providers
from boughs.usage import fold_repository, repository
from boughs.usage.models import Aggregation, Meter
from boughs.usage.repository import NewEvent, Subject
from boughs.usage.schemas import SUBJECTS, EventIn, EventStatus

# How far ahead of our clock an event's timestamp may be: senders' clocks drift.
FUTURE_TOLERANCE = timedelta(minutes=5)
# The largest quantity one event may carry, in the meter's smallest step: rollup rows are
# BIGINT sums, and this leaves room for a thousand such events in one row, so no batch of
# valid events can overflow one (far beyond any real measurement: 9 PB in bytes).
MAX_SCALED = 2**53


@dataclass(slots=True)
class Outcome:
    """How one event of a batch was taken; the API answers it as an ``EventResult``.

    Not a model: a batch makes a thousand, and the answer is serialised once.
    """

    index: int
    id: str | None
    status: EventStatus
    reason: str | None = None
    late: bool = False


class _MeterTerms(NamedTuple):
    meter: Meter
    meter_id: int
    precision: int
    counts_distinct: bool


@dataclass(slots=True)
class Candidate:
    """An event that passed its own checks, on its way to storage."""

    index: int
    event: EventIn
    meter_id: int
    scaled: int
    occurred_at: datetime  # in UTC
    subject_name: str  # which of SUBJECTS the event names
    fingerprint: str
    unique_value: str | None = None
    subject: Subject | None = None
    late: bool = False


@dataclass
class Batch:
    results: list[Outcome | None]
    candidates: list[Candidate] = field(default_factory=list)
    # The fingerprint stored under each id a candidate named: what a repeat is compared with.
    stored_prints: dict[str, str] = field(default_factory=dict)

    def reject(self, index: int, event_id: str | None, reason: str) -> None:
        self.results[index] = Outcome(index, event_id, EventStatus.rejected, reason)


def _reason(error: ValidationError) -> str:
    parts = []
    for problem in error.errors():
        where = ".".join(str(p) for p in problem["loc"])
        message = str(problem["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where and not message.startswith(f"{where}:") else message)
    return "; ".join(parts)


def subject_of(event: EventIn) -> str:
    """Which of SUBJECTS the event names (validation let through exactly one)."""
    for name in SUBJECTS:
        if getattr(event, name) is not None:
            return name
    raise AssertionError("an event that passed validation names a subject")


def fingerprint(event: EventIn, subject: str, occurred_at: datetime) -> str:
    """What the sender said, canonically: numbers and times compare by value, not spelling.
    ``subject`` is the event's, ``occurred_at`` its timestamp in UTC."""
    properties = "" if event.properties is None else json.dumps(event.properties, sort_keys=True, default=str)
    content = (
        f"{event.meter}\x1f{event.quantity.normalize():f}\x1f{occurred_at.isoformat()}\x1f"
        f"{subject}\x1f{getattr(event, subject)}\x1f{properties}"
    )
    return hashlib.blake2b(content.encode(), digest_size=16).hexdigest()


def scale(quantity: Decimal, precision: int) -> int | None:
    """The quantity in the meter's smallest step, or None when it has finer digits."""
    scaled = quantity.scaleb(precision)
    if scaled != scaled.to_integral_value():
        return None
    return int(scaled)


@dataclass(slots=True)
class Formed:
    """An event whose form, subject and time passed the checks that need no database."""

    index: int
    event: EventIn
    subject_name: str
    occurred_at: datetime  # in UTC
    fingerprint: str


@dataclass
class FormedBatch:
    """A batch through ``check_forms``: its events in good form, and those refused already."""

    size: int
    formed: list[Formed]
    refused: list[Outcome]


def check_forms(raw_events: Sequence[Any]) -> FormedBatch:
    """Each event's form, subject and time, checked with no database and no clock."""
    formed: list[Formed] = []
    refused: list[Outcome] = []
    for index, raw in enumerate(raw_events):
        if not isinstance(raw, dict):
            refused.append(Outcome(index, None, EventStatus.rejected, "event: must be a JSON object"))
            continue
        try:
            event = EventIn.model_validate(raw)
        except ValidationError as error:
            raw_id = raw.get("id")
            event_id = raw_id if isinstance(raw_id, str) else None
            refused.append(Outcome(index, event_id, EventStatus.rejected, _reason(error)))
            continue
        subject = subject_of(event)
        occurred_at = event.timestamp.astimezone(UTC)
        formed.append(Formed(index, event, subject, occurred_at, fingerprint(event, subject, occurred_at)))
    return FormedBatch(len(raw_events), formed, refused)


async def ingest(ctx: Ctx, raw_events: Sequence[Any]) -> list[Outcome]:
    """Store the batch's events in good form that pass the provider's checks (time window,
    meters, subjects, ids); every event of the batch answered, in order."""
    return await take(ctx, check_forms(raw_events))


async def take(ctx: Ctx, sent: FormedBatch) -> list[Outcome]:
    """``ingest`` for a batch whose forms were checked already (``check_forms``): the API
    checks them before its unit of work begins, since they need no database."""
    batch = Batch(results=[None] * sent.size)
    for outcome in sent.refused:
        batch.results[outcome.index] = outcome
    provider = await providers.get(ctx.session, ctx.provider_id)
    now = ctx.now()
    oldest = now - timedelta(days=provider.usage_retention_days)

    parsed: list[Formed] = []
    for formed in sent.formed:
        index, event = formed.index, formed.event
        if formed.occurred_at > now + FUTURE_TOLERANCE:
            batch.reject(index, event.id, "timestamp: is in the future; send the time the usage happened")
            continue
        if formed.occurred_at < oldest:
            batch.reject(
                index, event.id,
                f"timestamp: is older than the {provider.usage_retention_days}-day retention window; "
                "usage that old can no longer be taken",
            )  # fmt: skip
            continue
        parsed.append(formed)

    meters = await repository.meters_by_code(
        ctx.session, ctx.provider_id, sorted({f.event.meter for f in parsed})
    )
    # Read once per meter, not once per event through the mapped attributes.
    terms = {
        code: _MeterTerms(m, m.id, m.precision, m.aggregation == Aggregation.unique_count.value)
        for code, m in meters.items()
    }
    first_of: dict[str, Candidate] = {}
    repeats: list[tuple[int, EventIn, str]] = []
    for formed in parsed:
        index, event = formed.index, formed.event
        known = terms.get(event.meter)
        if known is None:
            batch.reject(
                index,
                event.id,
                f"meter: there is no meter '{event.meter}'; create it with POST /api/v1/meters",
            )
            continue
        meter = known.meter
        scaled = scale(event.quantity, known.precision)
        if scaled is None:
            step = "whole numbers" if meter.precision == 0 else f"at most {meter.precision} decimal places"
            batch.reject(index, event.id, f"quantity: meter '{meter.code}' takes {step} of {meter.unit}")
            continue
        if scaled > MAX_SCALED:
            most = format(Decimal(MAX_SCALED).scaleb(-meter.precision), "f")
            batch.reject(
                index, event.id,
                f"quantity: is more than one event may carry ({most} {meter.unit}); split it into events",
            )  # fmt: skip
            continue
        unique_value: str | None = None
        if known.counts_distinct:
            value = (event.properties or {}).get(meter.unique_property or "")
            if (
                not isinstance(value, str | int)
                or isinstance(value, bool)
                or not str(value)
                or len(str(value)) > 200
            ):
                batch.reject(
                    index, event.id,
                    f"properties.{meter.unique_property}: meter '{meter.code}' counts distinct values of "
                    "this property; give it as a string or integer of at most 200 characters",
                )  # fmt: skip
                continue
            unique_value = str(value)
        if event.id in first_of:
            repeats.append((index, event, formed.fingerprint))
            continue
        candidate = Candidate(
            index, event, known.meter_id, scaled, formed.occurred_at, formed.subject_name,
            formed.fingerprint, unique_value,
        )  # fmt: skip
        first_of[event.id] = candidate
        batch.candidates.append(candidate)

    await _resolve_subjects(ctx, batch)
    stored = await _store(ctx, batch)
    if stored:
        fold_soon(ctx)
    for index, event, print_ in repeats:
        first = first_of[event.id]
        earlier = batch.results[first.index]
        assert earlier is not None
        if earlier.status == EventStatus.rejected:
            batch.reject(index, event.id, earlier.reason or "rejected")
        elif print_ == batch.stored_prints.get(event.id):
            batch.results[index] = Outcome(index, event.id, EventStatus.duplicate)
        else:
            batch.results[index] = _conflict(index, event.id)
    return [r for r in batch.results if r is not None]


def fold_soon(ctx: Ctx) -> None:
    """Once this unit of work commits, ask this process's workers to fold (if it has any:
    otherwise the periodic fold, or the caller, does)."""
    provider_id = ctx.provider_id
    ctx.after_commit(lambda: _request_fold(provider_id))


def _request_fold(provider_id: int) -> None:
    from boughs.jobs import runtime

    current = runtime.current()
    if current is not None:
        current.request_fold(provider_id)


_CONFLICT = (
    "id: an event with this id and different content was already taken; "
    "give a new event a new id, and resend an event exactly as first sent"
)


def _conflict(index: int, event_id: str) -> Outcome:
    return Outcome(index, event_id, EventStatus.conflict, _CONFLICT)


async def _resolve_subjects(ctx: Ctx, batch: Batch) -> None:
    scope = await scope_of(ctx)
    wanted: dict[str, set[Any]] = {name: set() for name in SUBJECTS}
    for c in batch.candidates:
        wanted[c.subject_name].add(getattr(c.event, c.subject_name))
    found: dict[str, dict[Any, Subject]] = {
        "account_id": await repository.accounts_by_id(ctx.session, scope, sorted(wanted["account_id"])),
        "external_account_id": await repository.accounts_by_external_id(
            ctx.session, scope, sorted(wanted["external_account_id"])
        ),
        "service_id": await repository.services_by_id(ctx.session, scope, sorted(wanted["service_id"])),
        "login": await repository.services_by_login(ctx.session, scope, sorted(wanted["login"])),
        # SIMs arrive with the inventory; until then no ICCID names a subject.
        "iccid": {},
    }
    kept: list[Candidate] = []
    everywhere = scope.allows_everywhere(Permission.manage_services)
    for c in batch.candidates:
        name = c.subject_name
        value = getattr(c.event, name)
        subject = found[name].get(value)
        if subject is None:
            batch.reject(
                c.index, c.event.id, f"{name}: no {_subject_noun(name)} {value!r} that you can reach"
            )
            continue
        if not everywhere and not scope.allows(subject.path, Permission.manage_services):
            batch.reject(
                c.index, c.event.id,
                f"{name}: your role does not allow reporting usage for account {subject.account_id}",
            )  # fmt: skip
            continue
        c.subject = subject
        c.late = subject.billed_until is not None and c.occurred_at < subject.billed_until
        kept.append(c)
    batch.candidates = kept


def _subject_noun(name: str) -> str:
    return {
        "account_id": "account",
        "external_account_id": "account with external id",
        "service_id": "service",
        "login": "live service with login",
        "iccid": "SIM with ICCID",
    }[name]


async def _store(ctx: Ctx, batch: Batch) -> list[Candidate]:
    """Insert what is new; classify the rest against what is stored."""
    now = ctx.now()
    ordered = sorted(batch.candidates, key=lambda c: c.event.id)
    rows = []
    for c in ordered:
        subject = c.subject
        assert subject is not None
        rows.append(
            NewEvent(
                c.event.id, c.meter_id, subject.account_id, subject.service_id, c.scaled, c.occurred_at, now,
                c.fingerprint, c.late, c.event.properties,
            )
        )  # fmt: skip
    batch_id = await fold_repository.open_batch(ctx.session, ctx.provider_id, now)
    inserted = await repository.insert_new_events(ctx.session, ctx.provider_id, batch_id, rows)
    accepted = [c for c in ordered if c.event.id in inserted]
    seen = [c for c in ordered if c.event.id not in inserted]
    await fold_repository.close_batch(
        ctx.session, batch_id, list(inserted.values()), min((c.occurred_at for c in accepted), default=None)
    )
    stored_prints = await repository.fingerprints(ctx.session, ctx.provider_id, [c.event.id for c in seen])
    batch.stored_prints.update(stored_prints)
    batch.stored_prints.update({c.event.id: c.fingerprint for c in accepted})
    for c in seen:
        if stored_prints.get(c.event.id) == c.fingerprint:
            batch.results[c.index] = Outcome(c.index, c.event.id, EventStatus.duplicate)
        else:
            batch.results[c.index] = _conflict(c.index, c.event.id)
    for c in accepted:
        batch.results[c.index] = Outcome(c.index, c.event.id, EventStatus.accepted, None, c.late)
    return accepted
