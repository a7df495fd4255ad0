"""Rating a slice of the forest for one period end: which invoice owner each charge belongs
to, and what it costs.

The unit is a set of root accounts. Everything under them is billed to the invoice owners
among them. Accounts that moved during the period are followed through the link history:
each day (recurring charges) and each hour (usage) goes to the owner the account had then,
so a move never rewrites what was billed before it. Only accounts that moved, and what sits
under them, need the history; every other account keeps its parent for the whole period.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from boughs.accounts.inheritance import resolve
from boughs.accounts.models import AccountLink, InvoiceMode
from boughs.billing import rating, terms
from boughs.billing import repository as repo
from boughs.billing.models import LineKind
from boughs.billing.payment_methods_repository import methods_for_accounts
from boughs.billing.repository import BilledService, TreeAccount
from boughs.catalog.models import ChildBillingMode, Plan
from boughs.kit.money import round_half_up, to_major
from boughs.kit.paths import ids_of
from boughs.providers.models import Provider
from boughs.usage.models import Aggregation, Meter

DAY = timedelta(days=1)
POOLED = (ChildBillingMode.parent_breakdown.value, ChildBillingMode.parent_summary.value)
ADDITIVE = (Aggregation.sum.value, Aggregation.count.value)
# Measured steps by (meter code, rollup kind), then by (subject, start, end).
Measured = dict[tuple[str, str], dict[tuple[int, datetime, datetime], int]]
# What a pool asks to be measured (by rollup kind, then window), and what to do with the answer.
Asked = tuple[dict[str, dict[tuple[datetime, datetime], set[int]]], Callable[[Measured], None]] | None
KIND_ORDER = {
    k: i for i, k in enumerate(("recurring", "proration", "discount", "usage", "adjustment", "tax"))
}


@lru_cache(maxsize=4096)
def midnight(day: date, zone: ZoneInfo) -> datetime:
    """The instant a local day begins. Cached: a run asks for the same few days of its
    periods tens of thousands of times."""
    return datetime.combine(day, datetime.min.time(), zone).astimezone(UTC)


@lru_cache(maxsize=4096)
def days_within(start: datetime, end: datetime, zone: ZoneInfo) -> tuple[date, date] | None:
    """The local days whose midnight falls in [start, end): a day belongs to whoever held it
    when it began."""
    first = start.astimezone(zone).date()
    if midnight(first, zone) < start:
        first += DAY
    last = end.astimezone(zone).date()
    if midnight(last, zone) >= end:
        last -= DAY
    return (first, last) if first <= last else None


@dataclass
class Line:
    kind: str
    account_id: int
    description: str
    period_start: date
    period_end: date
    quantity: Decimal
    unit_price: Decimal
    amount: int
    service_id: int | None = None
    plan_id: int | None = None
    meter_code: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Owner:
    account: TreeAccount
    period: tuple[date, date]
    zone: ZoneInfo
    window: tuple[datetime, datetime]
    currency: str
    lines: list[Line] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    summary: bool = False


@dataclass
class Rated:
    """One owner's invoice as the run would write it."""

    owner_account_id: int
    period: tuple[date, date]
    currency: str
    layout: str
    lines: list[Line]
    subtotal: int
    tax: int
    total: int
    tax_rate_ppm: int
    tax_exempt: bool
    net_terms_days: int
    bill_to: dict[str, Any]
    payer: dict[str, Any]
    account_ids: list[int]
    usage_until: datetime
    problems: list[str]


class Placement:
    """Where each account sat, and so who its invoice owner was, at any instant of the window."""

    def __init__(
        self, accounts: dict[int, TreeAccount], links: dict[int, list[AccountLink]], moved: set[int]
    ):
        self.accounts = accounts
        self.links = links
        # Accounts whose chain changed in the window: the movers and everything now under them.
        self.moved = moved
        self.breaks = sorted(
            {
                edge
                for child in links
                for link in links[child]
                for edge in (link.valid_from, link.valid_to)
                if edge is not None
            }
        )

    def parent_at(self, account_id: int, at: datetime) -> int | None:
        links = self.links.get(account_id)
        if links:
            for link in links:
                if link.valid_from <= at and (link.valid_to is None or at < link.valid_to):
                    return link.parent_id
            # Before the account existed (a service back-dated to before its creation): where it began.
            if at < links[0].valid_from:
                return links[0].parent_id
        return self.accounts[account_id].parent_id

    def chain_at(self, account_id: int, at: datetime) -> tuple[int, ...]:
        if account_id not in self.moved:
            return tuple(ids_of(self.accounts[account_id].path))
        chain = [account_id]
        parent = self.parent_at(account_id, at)
        while parent is not None and parent in self.accounts and len(chain) < 10_000:
            chain.append(parent)
            parent = self.parent_at(parent, at)
        return tuple(reversed(chain))

    def owner_of(self, chain: tuple[int, ...]) -> int:
        for position in range(len(chain) - 1, -1, -1):
            account = self.accounts.get(chain[position])
            if position == 0 or account is None or account.invoice_mode == InvoiceMode.separate.value:
                return chain[position]
        return chain[0]

    def intervals(
        self, account_id: int, start: datetime, end: datetime
    ) -> list[tuple[datetime, datetime, tuple[int, ...]]]:
        """[start, end) cut where the account's chain changed, each piece with its chain."""
        if account_id not in self.moved:
            return [(start, end, self.chain_at(account_id, start))]
        edges = [start, *(b for b in self.breaks if start < b < end), end]
        pieces: list[tuple[datetime, datetime, tuple[int, ...]]] = []
        for a, b in pairwise(edges):
            chain = self.chain_at(account_id, a)
            if pieces and pieces[-1][2] == chain:
                pieces[-1] = (pieces[-1][0], b, chain)
            else:
                pieces.append((a, b, chain))
        return pieces


@dataclass
class Terms:
    plan_id: int
    unit_price_amount: int
    quantity: int


def _timeline(
    service: BilledService,
    plans: dict[int, Plan],
    applied: Sequence[Any],
    scheduled: Sequence[Any],
) -> list[tuple[date, Terms]]:
    """The service's terms from its start: applied plan changes after the period began (read
    back from what they changed), then pending scheduled changes (billing in advance)."""

    def price(plan_id: int, override: int | None) -> int:
        return plans[plan_id].price_amount if override is None else override

    current = Terms(service.plan_id, price(service.plan_id, service.unit_price_amount), service.quantity)
    if applied:
        first = applied[0]
        details = first.details or {}
        start_terms = Terms(
            first.from_plan_id,
            int(details.get("from_unit_price_amount", first.from_price_amount)),
            int(details.get("from_quantity", 1)),
        )
    else:
        start_terms = current
    timeline = [(service.start_date, start_terms)]
    for change in applied:
        details = change.details or {}
        timeline.append(
            (
                change.effective_date,
                Terms(
                    change.to_plan_id,
                    int(details.get("to_unit_price_amount", change.to_price_amount)),
                    int(details.get("to_quantity", 1)),
                ),
            )
        )
    timeline[-1] = (timeline[-1][0], current) if applied else timeline[-1]
    override = service.unit_price_amount
    terms_now = current
    for change in scheduled:
        plan_id = (
            change.plan_id if change.plan_id is not None and change.plan_id in plans else terms_now.plan_id
        )
        if change.sets_unit_price:
            override = change.unit_price_amount
        quantity = change.quantity if change.quantity is not None else terms_now.quantity
        terms_now = Terms(plan_id, price(plan_id, override), quantity)
        timeline.append((change.effective_date, terms_now))
    return timeline


def _segments(timeline: list[tuple[date, Terms]], start: date, end: date) -> list[rating.Segment]:
    segments: list[rating.Segment] = []
    for i, (since, t) in enumerate(timeline):
        until = timeline[i + 1][0] - DAY if i + 1 < len(timeline) else end
        a, b = max(since, start), min(until, end)
        if a <= b:
            segments.append(rating.Segment(a, b, t.unit_price_amount, t.quantity, t.plan_id))
    return segments


class Engine:
    def __init__(self, session: AsyncSession, provider: Provider, period_end: date, now: datetime):
        self.session = session
        self.provider = provider
        self.period_end = period_end
        self.now = now
        self.meters: dict[str, Meter] = {}
        # Each charge document parsed once, by its id: the document is kept beside its
        # pricing, so no other object can take that id while the engine lives.
        self._pricings: dict[int, tuple[Mapping[str, Any], rating.Pricing]] = {}

    async def rate(self, roots: Sequence[int]) -> list[Rated]:
        s = self.session
        tree = await repo.trees(s, self.provider.id, roots)
        accounts = {a.id: a for a in tree}
        owners = self._owners(accounts)
        if not owners:
            return []
        window_start = min(o.window[0] for o in owners.values())
        window_end = max(o.window[1] for o in owners.values())
        moved_ids = await repo.moved_during(s, self.provider.id, window_start, window_end)
        moved_accounts = await repo.accounts_with_subtrees(s, self.provider.id, moved_ids)
        for account in moved_accounts:
            accounts.setdefault(account.id, account)
        moved = {a.id for a in moved_accounts}
        links = await repo.links_overlapping(s, sorted(moved), window_start, window_end)
        wanted = repo.ancestors_missing(accounts) | {
            link.parent_id for ls in links.values() for link in ls if link.parent_id is not None
        }
        while wanted - accounts.keys():
            extra = await repo.accounts_by_id(s, wanted - accounts.keys())
            if not extra:
                break
            accounts.update(extra)
            wanted = repo.ancestors_missing(accounts)
        placement = Placement(accounts, links, moved)
        self.meters = await repo.meters_by_code(s, self.provider.id)

        root_paths = tuple(accounts[r].path for r in roots)
        relevant = [a for a in accounts.values() if a.path.startswith(root_paths) or a.id in moved]
        relevant_ids = sorted({a.id for a in relevant})
        # Who owes what, piece by piece: (account, start, end, chain) per owner in this slice.
        pieces: dict[int, list[tuple[int, datetime, datetime, tuple[int, ...]]]] = defaultdict(list)
        every_piece: list[tuple[int, datetime, datetime, tuple[int, ...]]] = []
        for account_id in relevant_ids:
            for a, b, chain in placement.intervals(account_id, window_start, window_end):
                every_piece.append((account_id, a, b, chain))
                owner_id = placement.owner_of(chain)
                owner = owners.get(owner_id)
                if owner is None:
                    continue
                a2, b2 = max(a, owner.window[0]), min(b, owner.window[1])
                if a2 < b2:
                    pieces[owner_id].append((account_id, a2, b2, chain))

        services = await repo.services_billable(
            s, sorted(accounts), window_start.date() - DAY, window_end.date()
        )
        plan_ids = {sv.plan_id for sv in services}
        period_starts = min(o.period[0] for o in owners.values())
        applied = await repo.plan_changes_after(s, [sv.id for sv in services], period_starts - DAY)
        scheduled = await repo.scheduled_changes_between(
            s, [sv.id for sv in services], period_starts - DAY, self.period_end
        )
        for changes in applied.values():
            plan_ids.update(c.from_plan_id for c in changes)
            plan_ids.update(c.to_plan_id for c in changes)
        for changes2 in scheduled.values():
            plan_ids.update(c.plan_id for c in changes2 if c.plan_id is not None)
        plans = await repo.plans_by_id(s, plan_ids)
        discounts = await repo.discounts_of(
            s, [sv.id for sv in services], period_starts, self.period_end + DAY * 400
        )
        by_account: dict[int, list[BilledService]] = defaultdict(list)
        for sv in services:
            by_account[sv.account_id].append(sv)

        # Pools: accounts whose service pools (or rates per child) a meter for their subtree.
        pools: dict[int, list[tuple[BilledService, Plan]]] = defaultdict(list)
        pooled_meters: dict[int, set[str]] = defaultdict(set)
        for sv in services:
            plan = plans[sv.plan_id]
            if plan.child_billing_mode:
                pools[sv.account_id].append((sv, plan))
                pooled_meters[sv.account_id].update(c["meter"] for c in plan.usage_charges)

        for owner_id, owner in owners.items():
            for account_id, a, b, _chain in pieces[owner_id]:
                for sv in by_account.get(account_id, []):
                    self._recurring(
                        owner,
                        sv,
                        plans,
                        applied.get(sv.id, []),
                        scheduled.get(sv.id, []),
                        discounts.get(sv.id, []),
                        a,
                        b,
                        window_end,
                    )

        await self._usage(owners, pieces, every_piece, by_account, plans, pools, pooled_meters, placement)
        await self._late(owners, pieces, by_account, plans, pooled_meters, placement)
        return await self._finish(owners, accounts)

    # --- who is billed --------------------------------------------------------------------------

    def _owners(self, accounts: dict[int, TreeAccount]) -> dict[int, Owner]:
        owners: dict[int, Owner] = {}
        for account in accounts.values():
            if account.parent_id is not None and account.invoice_mode != InvoiceMode.separate.value:
                continue
            period = rating.period_ending(self.period_end, account.billing_anchor_day)
            if period is None:
                continue
            chain = [accounts[i] for i in ids_of(account.path) if i in accounts]
            zone = ZoneInfo(resolve(chain, "timezone", self.provider.default_timezone).value)
            currency = resolve(chain, "currency", self.provider.default_currency).value
            window = (midnight(period[0], zone), midnight(period[1] + DAY, zone))
            owners[account.id] = Owner(account, period, zone, window, currency)
        return owners

    # --- recurring --------------------------------------------------------------------------------

    def _recurring(
        self,
        owner: Owner,
        service: BilledService,
        plans: dict[int, Plan],
        applied: Sequence[Any],
        scheduled: Sequence[Any],
        discounts: Sequence[Any],
        start: datetime,
        end: datetime,
        window_end: datetime,
    ) -> None:
        plan = plans[service.plan_id]
        if plan.currency != owner.currency:
            owner.problems.append(
                f"service {service.id} is priced in {plan.currency}, the invoice of account "
                f"{owner.account.id} in {owner.currency}: not billed"
            )
            return
        days = days_within(start, end, owner.zone)
        if days is None:
            return
        timeline = _timeline(service, plans, applied, scheduled)
        pay_period = service.pay_period or plan.pay_period
        for cycle, divisor in rating.cycles_billed_in(
            owner.period, pay_period, owner.account.billing_anchor_day
        ):
            first = max(cycle.start, days[0], service.start_date)
            # Billed in advance: a cycle reaching past the period stays with this owner.
            held_to = cycle.end if end >= owner.window[1] else days[1]
            last = min(cycle.end, held_to, service.end_date or cycle.end)
            if first > last:
                continue
            segments = _segments(timeline, first, last)
            full = rating.is_full_cycle(segments, cycle)
            for segment in segments:
                if not segment.unit_price_amount:
                    continue  # a free plan (one that only rates usage) has no recurring line
                exact = rating.recurring_amount(segment, divisor)
                seg_plan = plans.get(segment.plan_id, plan)
                kind = LineKind.recurring.value if full else LineKind.proration.value
                days_count = (segment.end - segment.start).days + 1
                owner.lines.append(
                    Line(
                        kind=kind,
                        account_id=service.account_id,
                        description=service.description or seg_plan.name,
                        period_start=segment.start,
                        period_end=segment.end,
                        quantity=Decimal(segment.quantity),
                        unit_price=to_major(segment.unit_price_amount, owner.currency),
                        amount=round_half_up(exact),
                        service_id=service.id,
                        plan_id=segment.plan_id,
                        details={}
                        if full
                        else {
                            "days": days_count,
                            "days_in_cycle": (cycle.end - cycle.start).days + 1,
                            "divisor": divisor,
                            "cycle_start": cycle.start.isoformat(),
                            "cycle_end": cycle.end.isoformat(),
                        },
                    )
                )
                for discount in discounts:
                    off = rating.discount_amount(
                        exact,
                        segment.start,
                        segment.end,
                        discount.percent_bp,
                        discount.start_date,
                        discount.end_date,
                    )
                    if off:
                        owner.lines.append(
                            Line(
                                kind=LineKind.discount.value,
                                account_id=service.account_id,
                                description=discount.description
                                or f"Discount {rating.format_ppm(discount.percent_bp * 100)}%",
                                period_start=max(segment.start, discount.start_date),
                                period_end=min(segment.end, discount.end_date or segment.end),
                                quantity=Decimal(1),
                                unit_price=Decimal(0),
                                amount=-round_half_up(off),
                                service_id=service.id,
                                plan_id=segment.plan_id,
                                details={"percent_bp": discount.percent_bp},
                            )
                        )

    # --- usage ---------------------------------------------------------------------------------------

    async def _measure(
        self, meter: Meter, kind: str, requests: dict[tuple[datetime, datetime], set[int]]
    ) -> dict[tuple[int, datetime, datetime], int]:
        """Measured quantity (in meter steps) per (subject, start, end)."""
        found: dict[tuple[int, datetime, datetime], int] = {}
        for (a, b), subjects in requests.items():
            if meter.aggregation == Aggregation.unique_count.value:
                counts = await repo.distinct_counts(self.session, meter.id, kind, sorted(subjects), a, b)
                for subject, count in counts.items():
                    found[(subject, a, b)] = count
                continue
            measures = await repo.measures(self.session, meter.id, kind, sorted(subjects), a, b)
            for subject, m in measures.items():
                found[(subject, a, b)] = {
                    Aggregation.sum.value: m.total,
                    Aggregation.max.value: m.peak,
                    Aggregation.count.value: m.events,
                }[meter.aggregation]
        return found

    def _price(self, charge: Mapping[str, Any], quantity: Decimal, currency: str) -> rating.UsagePrice:
        known = self._pricings.get(id(charge))
        if known is None:
            known = self._pricings[id(charge)] = (charge, rating.pricing_of(charge))
        return known[1].price(quantity, currency)

    def _quantity(self, meter: Meter, steps: int) -> Decimal:
        if meter.aggregation in (Aggregation.sum.value, Aggregation.max.value):
            return Decimal(steps).scaleb(-meter.precision)
        return Decimal(steps)

    def _usage_line(
        self,
        owner: Owner,
        meter: Meter,
        charge: dict[str, Any],
        steps: int,
        account_id: int,
        service: BilledService,
        plan: Plan,
        start: datetime,
        end: datetime,
        extra: dict[str, Any] | None = None,
        amount: int | None = None,
        description: str | None = None,
    ) -> None:
        quantity = self._quantity(meter, steps)
        price = self._price(charge, quantity, owner.currency)
        if not steps and amount is None and not round_half_up(price.amount):
            return  # no usage and nothing owed: no line
        days = days_within(start, end, owner.zone) or (owner.period[0], owner.period[1])
        owner.lines.append(
            Line(
                kind=LineKind.usage.value,
                account_id=account_id,
                description=description or f"{meter.name} ({plan.name})",
                period_start=days[0],
                period_end=days[1],
                quantity=quantity,
                unit_price=price.unit_price,
                amount=round_half_up(price.amount) if amount is None else amount,
                service_id=service.id,
                plan_id=plan.id,
                meter_code=meter.code,
                details={"unit": meter.unit, "model": charge["model"], **price.details, **(extra or {})},
            )
        )

    def _covered(self, chain: tuple[int, ...], meter: str, pooled_meters: dict[int, set[str]]) -> int | None:
        """The nearest account up the chain whose plan pools this meter for its subtree."""
        for account_id in reversed(chain):
            if meter in pooled_meters.get(account_id, ()):
                return account_id
        return None

    async def _usage(
        self,
        owners: dict[int, Owner],
        pieces: dict[int, list[tuple[int, datetime, datetime, tuple[int, ...]]]],
        every_piece: list[tuple[int, datetime, datetime, tuple[int, ...]]],
        by_account: dict[int, list[BilledService]],
        plans: dict[int, Plan],
        pools: dict[int, list[tuple[BilledService, Plan]]],
        pooled_meters: dict[int, set[str]],
        placement: Placement,
    ) -> None:
        # What each account's own services charge, per meter, with the pieces they cover.
        own: list[
            tuple[Owner, int, datetime, datetime, BilledService, Plan, dict[str, Any], Meter, bool]
        ] = []
        for owner_id, owner in owners.items():
            for account_id, a, b, chain in pieces[owner_id]:
                first_for_meter: set[str] = set()
                for sv in by_account.get(account_id, []):
                    plan = plans[sv.plan_id]
                    if plan.child_billing_mode or plan.currency != owner.currency:
                        continue
                    s_a = max(a, midnight(sv.start_date, owner.zone))
                    s_b = min(b, midnight(sv.end_date + DAY, owner.zone)) if sv.end_date else b
                    if s_a >= s_b:
                        continue
                    for charge in plan.usage_charges:
                        meter = self.meters.get(charge["meter"])
                        if meter is None or self._covered(chain, meter.code, pooled_meters) is not None:
                            continue
                        first = meter.code not in first_for_meter
                        first_for_meter.add(meter.code)
                        own.append((owner, account_id, s_a, s_b, sv, plan, charge, meter, first))
        by_meter: dict[str, list[Any]] = defaultdict(list)
        for item in own:
            by_meter[item[7].code].append(item)
        for code, items in by_meter.items():
            meter = self.meters[code]
            service_requests: dict[tuple[datetime, datetime], set[int]] = defaultdict(set)
            account_requests: dict[tuple[datetime, datetime], set[int]] = defaultdict(set)
            # Ingest adds every event to its account's rollup and, when it names a service, to
            # that service's too. So an account's rollup holds all of its usage, and for an
            # account with a single service it is exactly what that service is billed for:
            # the service's own usage plus what was reported on the account itself. Only
            # accounts with several services need their services' rollups read as well.
            alone = {item[1] for item in items if len(by_account.get(item[1], ())) == 1}
            for _owner, account_id, a, b, sv, _plan, _charge, _meter, first in items:
                if meter.aggregation in ADDITIVE:
                    if first:
                        account_requests[(a, b)].add(account_id)
                    if account_id not in alone:
                        service_requests[(a, b)].add(sv.id)
                        if first:
                            service_requests[(a, b)].update(x.id for x in by_account.get(account_id, []))
                elif first:
                    account_requests[(a, b)].add(account_id)
            by_service = await self._measure(meter, "service", service_requests)
            by_acct = await self._measure(meter, "account", account_requests)
            for owner, account_id, a, b, sv, plan, charge, _meter, first in items:
                if meter.aggregation in ADDITIVE and account_id in alone:
                    steps = by_acct.get((account_id, a, b), 0)
                elif meter.aggregation in ADDITIVE:
                    steps = by_service.get((sv.id, a, b), 0)
                    if first:
                        # Usage reported on the account itself, not on one of its services.
                        on_services = sum(
                            by_service.get((x.id, a, b), 0) for x in by_account.get(account_id, [])
                        )
                        steps += max(by_acct.get((account_id, a, b), 0) - on_services, 0)
                elif first:
                    steps = by_acct.get((account_id, a, b), 0)
                else:
                    continue
                self._usage_line(owner, meter, charge, steps, account_id, sv, plan, a, b)

        await self._pools(owners, every_piece, plans, pools, pooled_meters, placement)

    async def _pools(
        self,
        owners: dict[int, Owner],
        every_piece: list[tuple[int, datetime, datetime, tuple[int, ...]]],
        plans: dict[int, Plan],
        pools: dict[int, list[tuple[BilledService, Plan]]],
        pooled_meters: dict[int, set[str]],
        placement: Placement,
    ) -> None:
        # Every pool's question first, then one measure per meter and kind for all of them.
        finishers: list[Callable[[Measured], None]] = []
        wanted: dict[tuple[str, str], dict[tuple[datetime, datetime], set[int]]] = defaultdict(
            lambda: defaultdict(set)
        )
        # The pieces of time spent under each pool account, found once for every pool.
        under: dict[int, list[tuple[int, datetime, datetime, tuple[int, ...]]]] = defaultdict(list)
        for piece in every_piece:
            for member in piece[3]:
                if member in pools:
                    under[member].append(piece)
        for pool_account, entries in sorted(pools.items()):
            for sv, plan in entries:
                for charge in plan.usage_charges:
                    meter = self.meters.get(charge["meter"])
                    if meter is None:
                        continue
                    # Contributors: pieces of time an account sat under this pool, not under a nearer one.
                    contributions = [
                        piece
                        for piece in under[pool_account]
                        if self._covered(piece[3], meter.code, pooled_meters) == pool_account
                    ]
                    if plan.child_billing_mode == ChildBillingMode.child.value:
                        asked = self._per_child(owners, sv, plan, charge, meter, contributions, placement)
                    else:
                        asked = self._pooled(owners, sv, plan, charge, meter, contributions, placement)
                    if asked is None:
                        continue
                    requests, finish = asked
                    for kind, windows in requests.items():
                        for window, subjects in windows.items():
                            wanted[(meter.code, kind)][window].update(subjects)
                    finishers.append(finish)
        measured: Measured = {}
        for (code, kind), windows in wanted.items():
            measured[(code, kind)] = await self._measure(self.meters[code], kind, windows)
        for finish in finishers:
            finish(measured)

    def _per_child(
        self,
        owners: dict[int, Owner],
        sv: BilledService,
        plan: Plan,
        charge: dict[str, Any],
        meter: Meter,
        contributions: list[tuple[int, datetime, datetime, tuple[int, ...]]],
        placement: Placement,
    ) -> Asked:
        """Child mode: every account under the pool is rated alone, on its own invoice owner's bill."""
        targets: list[tuple[Owner, int, datetime, datetime]] = []
        requests: dict[tuple[datetime, datetime], set[int]] = defaultdict(set)
        for account_id, a, b, chain in contributions:
            owner = owners.get(placement.owner_of(chain))
            if owner is None or plan.currency != owner.currency:
                continue
            a2, b2 = max(a, owner.window[0]), min(b, owner.window[1])
            if a2 < b2:
                targets.append((owner, account_id, a2, b2))
                requests[(a2, b2)].add(account_id)

        def finish(measured: Measured) -> None:
            by_account = measured.get((meter.code, "account"), {})
            for owner, account_id, a, b in targets:
                steps = by_account.get((account_id, a, b), 0)
                if steps:
                    self._usage_line(
                        owner,
                        meter,
                        charge,
                        steps,
                        account_id,
                        sv,
                        plan,
                        a,
                        b,
                        extra={"child_billing_mode": "child", "pool_account_id": sv.account_id},
                    )

        return {"account": requests}, finish

    def _pooled(
        self,
        owners: dict[int, Owner],
        sv: BilledService,
        plan: Plan,
        charge: dict[str, Any],
        meter: Meter,
        contributions: list[tuple[int, datetime, datetime, tuple[int, ...]]],
        placement: Placement,
    ) -> Asked:
        """Pooled: tiers apply to the subtree's total as the tree was; the cost is shared back to
        the accounts in proportion to their usage (breakdown) or shown once (summary)."""
        owner = owners.get(placement.owner_of(placement.chain_at(sv.account_id, placement_end(owners))))
        if owner is None or plan.currency != owner.currency:
            return None
        a = max(owner.window[0], midnight(sv.start_date, owner.zone))
        b = min(owner.window[1], midnight(sv.end_date + DAY, owner.zone)) if sv.end_date else owner.window[1]
        if a >= b:
            return None
        requests: dict[tuple[datetime, datetime], set[int]] = defaultdict(set)
        shares: list[tuple[int, datetime, datetime]] = []
        for account_id, x, y, _chain in contributions:
            x2, y2 = max(x, a), min(y, b)
            if x2 < y2:
                requests[(x2, y2)].add(account_id)
                shares.append((account_id, x2, y2))
        asked: dict[str, dict[tuple[datetime, datetime], set[int]]] = {"account": requests}
        if meter.aggregation not in ADDITIVE:
            asked["subtree"] = {(a, b): {sv.account_id}}

        def finish(measured: Measured) -> None:
            by_account = measured.get((meter.code, "account"), {})
            weights: dict[int, int] = defaultdict(int)
            for account_id, x, y in shares:
                weights[account_id] += by_account.get((account_id, x, y), 0)
            if meter.aggregation in ADDITIVE:
                total_steps = sum(weights.values())
            else:
                total_steps = measured.get((meter.code, "subtree"), {}).get((sv.account_id, a, b), 0)
            self._pooled_lines(owner, sv, plan, charge, meter, weights, total_steps, a, b)

        return asked, finish

    def _pooled_lines(
        self,
        owner: Owner,
        sv: BilledService,
        plan: Plan,
        charge: dict[str, Any],
        meter: Meter,
        weights: dict[int, int],
        total_steps: int,
        a: datetime,
        b: datetime,
    ) -> None:
        quantity = self._quantity(meter, total_steps)
        price = self._price(charge, quantity, owner.currency)
        amount = round_half_up(price.amount)
        if not amount and not total_steps:
            return
        pool_details = {
            "pool_service_id": sv.id,
            "pool_account_id": sv.account_id,
            "pool_quantity": str(quantity),
            "pool_amount": amount,
        }
        if plan.child_billing_mode == ChildBillingMode.parent_summary.value:
            owner.summary = True
            self._usage_line(
                owner,
                meter,
                charge,
                total_steps,
                sv.account_id,
                sv,
                plan,
                a,
                b,
                extra={
                    "child_billing_mode": plan.child_billing_mode,
                    "accounts": len([w for w in weights.values() if w]),
                },
                amount=amount,
                description=f"{meter.name}, pooled ({plan.name})",
            )
            return
        ordered = {
            k: weights[k] for k in sorted(weights, key=lambda k: (k != sv.account_id, k)) if weights[k]
        }
        if not ordered:
            ordered = {sv.account_id: 1}
        parts = rating.allocate(amount, ordered)
        for account_id, part in parts.items():
            share = weights.get(account_id, 0)
            self._usage_line(
                owner,
                meter,
                charge,
                share,
                account_id,
                sv,
                plan,
                a,
                b,
                extra={
                    "child_billing_mode": plan.child_billing_mode,
                    "allocation": {**pool_details, "share_quantity": str(self._quantity(meter, share))},
                },
                amount=part,
                description=f"{meter.name}, share of pooled usage ({plan.name})",
            )

    # --- late usage -----------------------------------------------------------------------------------

    async def _late(
        self,
        owners: dict[int, Owner],
        pieces: dict[int, list[tuple[int, datetime, datetime, tuple[int, ...]]]],
        by_account: dict[int, list[BilledService]],
        plans: dict[int, Plan],
        pooled_meters: dict[int, set[str]],
        placement: Placement,
    ) -> None:
        """Usage reported after its period was invoiced: the difference between what the period
        costs now and what was billed, on this invoice."""
        current_owner: dict[int, int] = {}
        for owner_id, owner_pieces in pieces.items():
            for account_id, _a, b, _chain in owner_pieces:
                if b == owners[owner_id].window[1]:
                    current_owner[account_id] = owner_id
        late = await repo.late_usage(self.session, sorted(current_owner), self.now)
        meters_by_id = {m.id: m for m in self.meters.values()}
        grouped: dict[tuple[int, int, str, date, date], list[repo.LateUsage]] = defaultdict(list)
        for row in late:
            owner = owners[current_owner[row.account_id]]
            meter = meters_by_id.get(row.meter_id)
            if meter is None:
                continue
            period = _period_holding(
                row.first.astimezone(owner.zone).date(), owner.account.billing_anchor_day
            )
            if period[1] >= owner.period[0]:
                continue  # not late for this owner's periods: billed in the period itself
            chain = placement.chain_at(row.account_id, row.first)
            pool = self._covered(chain, meter.code, pooled_meters)
            service = None
            candidates = by_account.get(pool, []) if pool is not None else by_account.get(row.account_id, [])
            for sv in candidates:
                plan = plans[sv.plan_id]
                charged = any(c["meter"] == meter.code for c in plan.usage_charges)
                matches = row.service_id is None or row.service_id == sv.id or pool is not None
                if charged and (pool is not None) == bool(plan.child_billing_mode) and matches:
                    service = sv
                    break
            if service is None:
                continue
            grouped[(owner.account.id, service.id, meter.code, period[0], period[1])].append(row)
        services = {sv.id: sv for svs in by_account.values() for sv in svs}
        for (owner_id, service_id, code, p_start, p_end), rows in sorted(grouped.items()):
            owner, sv, meter = owners[owner_id], services[service_id], self.meters[code]
            plan = plans[sv.plan_id]
            charge = next(c for c in plan.usage_charges if c["meter"] == code)
            billed = await repo.billed_for_service_lines(self.session, [sv.id], code, p_start, p_end)
            billed_amount, billed_quantity = (billed[0], Decimal(billed[1])) if billed else (0, Decimal(0))
            late_steps = sum(
                r.quantity if meter.aggregation == Aggregation.sum.value else r.events for r in rows
            )
            added = self._quantity(meter, late_steps)
            new = round_half_up(self._price(charge, billed_quantity + added, owner.currency).amount)
            owner.lines.append(
                Line(
                    kind=LineKind.adjustment.value,
                    account_id=rows[0].account_id,
                    description=f"Late usage: {meter.name} ({plan.name})",
                    period_start=p_start,
                    period_end=p_end,
                    quantity=added,
                    unit_price=(Decimal(new - billed_amount) / added).quantize(Decimal("1e-10"))
                    if added
                    else Decimal(0),
                    amount=new - billed_amount,
                    service_id=sv.id,
                    plan_id=plan.id,
                    meter_code=code,
                    details={
                        "late_events": sum(r.events for r in rows),
                        "billed_quantity": str(billed_quantity),
                        "billed_amount": billed_amount,
                        "unit": meter.unit,
                    },
                )
            )

    # --- invoices -------------------------------------------------------------------------------------

    async def _finish(self, owners: dict[int, Owner], accounts: dict[int, TreeAccount]) -> list[Rated]:
        methods = await methods_for_accounts(
            self.session,
            self.provider.id,
            sorted({i for o in owners.values() for i in ids_of(o.account.path)}),
        )
        rated: list[Rated] = []
        for owner_id, owner in sorted(owners.items()):
            chain = [accounts[i] for i in ids_of(owner.account.path) if i in accounts]
            tax = terms.tax_rate_of(chain, self.provider).value
            net = terms.net_terms_of(chain, self.provider).value
            lines = sorted(
                owner.lines,
                key=lambda ln: (
                    ln.account_id != owner_id,
                    accounts[ln.account_id].name if ln.account_id in accounts else "",
                    ln.account_id,
                    KIND_ORDER[ln.kind],
                    ln.service_id or 0,
                    ln.period_start,
                ),
            )
            subtotal = sum(ln.amount for ln in lines)
            tax_amount = 0 if tax["exempt"] else rating.tax_amount(subtotal, tax["rate_ppm"])
            if tax_amount:
                lines.append(
                    Line(
                        kind=LineKind.tax.value,
                        account_id=owner_id,
                        description=f"Tax {rating.format_ppm(tax['rate_ppm'])}%",
                        period_start=owner.period[0],
                        period_end=owner.period[1],
                        quantity=Decimal(1),
                        unit_price=Decimal(0),
                        amount=tax_amount,
                        details={"rate_ppm": tax["rate_ppm"]},
                    )
                )
            payer = terms.payer_of(chain, methods).value or {}
            rated.append(
                Rated(
                    owner_account_id=owner_id,
                    period=owner.period,
                    currency=owner.currency,
                    layout="summary" if owner.summary else "breakdown",
                    lines=lines,
                    subtotal=subtotal,
                    tax=tax_amount,
                    total=subtotal + tax_amount,
                    tax_rate_ppm=0 if tax["exempt"] else tax["rate_ppm"],
                    tax_exempt=bool(tax["exempt"]),
                    net_terms_days=int(net),
                    bill_to=terms.bill_to_of(chain, self.provider),
                    payer=payer,
                    account_ids=sorted({owner_id, *(ln.account_id for ln in lines)}),
                    usage_until=owner.window[1],
                    problems=owner.problems,
                )
            )
        return rated


def placement_end(owners: dict[int, Owner]) -> datetime:
    return max(o.window[1] for o in owners.values()) - timedelta(microseconds=1)


def _period_holding(day: date, anchor_day: int) -> tuple[date, date]:
    """The billing period of an owner with this anchor that holds ``day``."""
    end = day
    for _ in range(40):
        found = rating.period_ending(end, anchor_day)
        if found is not None and found[0] <= day:
            return found
        end += DAY
    raise ValueError(f"no billing period holds {day}")


def line_columns(invoices: Iterable[tuple[int, Sequence[Line]]]) -> dict[str, list[Any]]:
    """The lines of many invoices (id, lines) column by column, for a bulk write: dates as
    ISO text and details as JSON text, which both engines store as given."""
    columns: dict[str, list[Any]] = {name: [] for name in LINE_COLUMNS}
    (invoice_ids, positions, kinds, account_ids, service_ids, plan_ids, meter_codes, descriptions,
     starts, ends, quantities, unit_prices, amounts, details) = columns.values()  # fmt: skip
    for invoice_id, lines in invoices:
        for position, ln in enumerate(lines, start=1):
            invoice_ids.append(invoice_id)
            positions.append(position)
            kinds.append(ln.kind)
            account_ids.append(ln.account_id)
            service_ids.append(ln.service_id)
            plan_ids.append(ln.plan_id)
            meter_codes.append(ln.meter_code)
            descriptions.append(ln.description)
            starts.append(ln.period_start.isoformat())
            ends.append(ln.period_end.isoformat())
            quantities.append(_plain(ln.quantity))
            unit_prices.append(_plain(ln.unit_price))
            amounts.append(ln.amount)
            details.append(json.dumps(ln.details))
    return columns


LINE_COLUMNS = (
    "invoice_id", "position", "kind", "account_id", "service_id", "plan_id", "meter_code", "description",
    "period_start", "period_end", "quantity", "unit_price", "amount", "details",
)  # fmt: skip


def _plain(value: Decimal) -> str:
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"
