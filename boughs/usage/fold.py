"""Adding what ingest stored to the rollups and the data caps: the fold.

Ingest only stores events, a batch at a time, so a request is answered as soon as its
events are durable. The fold then takes the oldest pending batches of a provider and, in
one transaction that also marks them folded, adds their events to the hourly rollups of
their service, their account, and (as usage below it) every account their account sat
under when the usage happened, records the distinct values of unique_count meters, and
counts cap-counting bytes toward the caps they fall under (acting on thresholds, see
``caps``). Each event is folded exactly once: marking its batch is part of the
transaction that adds it, and folding transactions of a provider run one after another.

Readers stay exact meanwhile: usage queries add the events of batches still pending
(``fold_repository.hourly_with_pending``, placed with ``LinkHistory`` as the fold places
them); work that rates rollups (bill runs, finalising, recalculating a draft, deleting an
account) folds what is pending first.

On SQLite, where a fold's transaction holds the one write lock every ingest waits for, the
workers' folds first read and group their span's sums in a read transaction (``stage``)
and then only add them in the write transaction, if they still hold.

The fold is asked for after every ingest that stored something (sent to the workers with
a short delay, so one fold takes many batches), and by every scheduler tick while batches
wait (an API process with a broker sends nothing itself; a worker may die mid-fold).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from boughs.context import Ctx
from boughs.kit.clock import start_of_hour
from boughs.kit.paths import ids_of
from boughs.usage import caps, fold_repository, repository
from boughs.usage.fold_repository import ACCOUNT, BELOW, SERVICE, SUBTREE, LooseEvent, Span
from boughs.usage.models import Aggregation, Meter
from boughs.usage.repository import RollupDelta

# Events per fold transaction: large enough that hours and ancestors shared by many events
# collapse into few rollup writes, small enough that one fold holds its locks briefly. On
# SQLite a fold holds the one write lock, which every ingest waits for; but the rollup
# pages it writes are shared by more events the more it takes, and the workers' folds
# there take up to three seconds' worth (see jobs.runtime.FOLD_WAIT_AT_MOST_SECONDS).
FOLD_EVENTS = {"postgresql": 50_000, "sqlite": 25_000}


async def fold_once(
    ctx: Ctx, max_events: int | None = None, *, whole_only: bool = False, staged: Span | None = None
) -> int:
    """Fold the provider's oldest pending batches in this unit of work; how many events.
    With ``whole_only``, only if a whole fold's worth (``max_events``) is pending. With
    ``staged`` (what ``stage`` read on this connection), that span's sums as staged if they
    still hold, otherwise whatever is pending now."""
    await fold_repository.lock_folding(ctx.session, ctx.provider_id)
    if staged is not None and await fold_repository.staged_sums_hold(ctx.session, staged):
        span = staged
        await fold_repository.add_staged_sums(ctx.session)
    else:
        found = await fold_repository.pending_span(
            ctx.session, ctx.provider_id, _max_events(ctx, max_events), whole_only=whole_only
        )
        if found is None:
            return 0
        span = found
        await fold_repository.fold_sums(ctx.session, ctx.provider_id, span)
    if await fold_repository.invoiced_since(ctx.session, ctx.provider_id, span):
        await fold_repository.flag_late(ctx.session, span)
    history = LinkHistory(ctx.session)
    await _fold_moved(ctx, span, history)
    meters = await repository.all_meters(ctx.session, ctx.provider_id)
    await _fold_distinct_values(ctx, span, meters, history)
    await _fold_caps(ctx, span, meters, history)
    await fold_repository.mark_folded(ctx.session, span, ctx.now())
    return span.events


async def stage(ctx: Ctx, max_events: int | None = None, *, whole_only: bool = False) -> Span | None:
    """Read the next fold's span (as ``fold_once`` would take it) and group its sums into
    this connection's temporary tables, in a read transaction: then the write transaction
    of ``fold_once(staged=...)`` on the same connection only adds them. None when nothing
    is pending (or, with ``whole_only``, less than a whole fold)."""
    span = await fold_repository.pending_span(
        ctx.session, ctx.provider_id, _max_events(ctx, max_events), whole_only=whole_only
    )
    if span is not None:
        await fold_repository.stage_sums(ctx.session, ctx.provider_id, span)
    return span


def _max_events(ctx: Ctx, max_events: int | None) -> int:
    return max_events or FOLD_EVENTS.get(ctx.session.get_bind().dialect.name, 5_000)


async def catch_up(ctx: Ctx) -> int:
    """Fold everything pending for the provider, in this unit of work."""
    folded = 0
    while events := await fold_once(ctx):
        folded += events
    return folded


class LinkHistory:
    """Accounts' chains (root first) as they stood at given moments, from account_links."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self._seen: dict[tuple[int, datetime], tuple[int, ...]] = {}

    async def chain(self, event: LooseEvent) -> tuple[int, ...]:
        if event.chain_is_current:
            return tuple(ids_of(event.path))
        key = (event.account_id, event.occurred_at)
        found = self._seen.get(key)
        if found is None:
            found = self._seen[key] = await self._chain_back_then(event.account_id, event.occurred_at)
        return found

    async def counts_for(self, event: LooseEvent, kind: str, subject_id: int) -> bool:
        """Whether a pending event a read found for the subject (``kind``: service, account
        or subtree) is the subject's: exact, except a subtree's candidate dated before its
        account's chain changed, which the link history places."""
        if kind != SUBTREE or event.chain_is_current:
            return True
        return subject_id in await self.chain(event)

    async def ancestors(self, event: LooseEvent) -> tuple[int, ...]:
        """The chain above the event's account (root first) when the usage happened."""
        return (await self.chain(event))[:-1]

    async def _chain_back_then(self, account_id: int, at: datetime) -> tuple[int, ...]:
        chain = [account_id]
        while True:
            found, parent = await repository.parent_at(self.session, chain[-1], at)
            if not found or parent is None or parent in chain:
                break
            chain.append(parent)
        return tuple(reversed(chain))


async def _fold_moved(ctx: Ctx, span: Span, history: LinkHistory) -> None:
    """Below rows for usage dated before its account's chain last changed: along the
    chain it had then, which the set-based fold cannot follow."""
    if not await fold_repository.moved_since(ctx.session, ctx.provider_id, span):
        return
    moved = await fold_repository.moved_chain_events(ctx.session, span)
    if not moved:
        return
    sums: dict[tuple[int, str, int, datetime], list[int]] = {}
    for event in moved:
        hour = start_of_hour(event.occurred_at)
        for member in await history.ancestors(event):
            row = sums.get((event.meter_id, BELOW, member, hour))
            if row is None:
                sums[(event.meter_id, BELOW, member, hour)] = [member, event.quantity, event.quantity, 1]
            else:
                row[1] += event.quantity
                row[2] = max(row[2], event.quantity)
                row[3] += 1
    deltas = [RollupDelta(*key, *values) for key, values in sorted(sums.items())]
    await repository.add_to_rollups(ctx.session, ctx.provider_id, deltas)


async def _fold_distinct_values(ctx: Ctx, span: Span, meters: Sequence[Meter], history: LinkHistory) -> None:
    counted = {m.id: m for m in meters if m.aggregation == Aggregation.unique_count.value}
    if not counted:
        return
    events = await fold_repository.events_of_meters(ctx.session, span, sorted(counted))
    rows: set[tuple[int, str, int, datetime, str, int]] = set()
    for event in events:
        value = distinct_value(counted[event.meter_id], event)
        if value is None:
            continue
        for kind, subject, owner in await subjects_of(event, history):
            rows.add((event.meter_id, kind, subject, start_of_hour(event.occurred_at), value, owner))
    await repository.add_unique_values(
        ctx.session,
        [
            {
                "meter_id": m, "kind": k, "subject_id": s, "hour": h, "value": v,
                "provider_id": ctx.provider_id, "account_id": a,
            }
            for m, k, s, h, v, a in sorted(rows)
        ],
    )  # fmt: skip


def distinct_value(meter: Meter, event: LooseEvent) -> str | None:
    """The property a unique_count meter counts, as ingest checked it."""
    value = (event.properties or {}).get(meter.unique_property or "")
    return None if value is None or isinstance(value, bool) else str(value)


async def subjects_of(event: LooseEvent, history: LinkHistory) -> list[tuple[str, int, int]]:
    """Every rollup subject an event counts for: (kind, subject id, owning account)."""
    found = [(ACCOUNT, event.account_id, event.account_id)]
    if event.service_id is not None:
        found.append((SERVICE, event.service_id, event.account_id))
    found += [(BELOW, member, member) for member in await history.ancestors(event)]
    return found


async def _fold_caps(ctx: Ctx, span: Span, meters: Sequence[Meter], history: LinkHistory) -> None:
    counting = sorted(m.id for m in meters if m.counts_toward_cap)
    if not counting or not await fold_repository.has_capped_services(ctx.session, ctx.provider_id):
        return
    events = await fold_repository.capped_usage_events(ctx.session, ctx.provider_id, span, counting)
    await caps.observe(ctx, [await _cap_delta(event, history) for event in events])


async def _cap_delta(event: LooseEvent, history: LinkHistory) -> caps.CapUsageDelta:
    return caps.CapUsageDelta(
        service_id=event.service_id,
        account_id=event.account_id,
        chain=await history.chain(event),
        occurred_at=event.occurred_at,
        bytes=event.quantity,
    )
