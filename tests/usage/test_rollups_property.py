"""Rollups equal a naive sum over the accepted events, however batches interleave, repeat and conflict.

Each example gets meters and event ids of its own, so the rollups it reads are its alone; the tree,
the services and the tenant are shared by the examples of one engine.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from boughs.accounts import service as accounts
from boughs.kit.clock import FrozenClock
from boughs.usage import fold
from boughs.usage import service as usage
from boughs.usage.models import UsageRollup, UsageUniqueValue
from boughs.usage.schemas import Granularity, UsageScope
from tests.conftest import START
from tests.usage.support import new_account, new_meter, new_plan, new_service, send

AGGREGATIONS = ("sum", "max", "count", "unique_count")
PRECISION = {"sum": 0, "max": 2, "count": 0, "unique_count": 0}
HOURS = 30  # timestamps spread over the 30 hours before the clock, in no order


MOVED = START - timedelta(hours=15)  # leaf moves from under mid to under side


@dataclass(frozen=True)
class Tree:
    """top ── mid ── leaf (service "leaf-svc");  top ── side (service "side-svc");  lone.
    At MOVED, leaf moves under side: usage before it pools under mid, after it under side."""

    accounts: dict[str, int]
    parents: dict[str, str | None]
    services: dict[str, tuple[int, str]]  # service name → (id, account name)

    def chain(self, account: str, at: datetime) -> list[str]:
        names: list[str] = [account]
        while (parent := self.parents[names[-1]]) is not None:
            names.append("side" if names[-1] == "leaf" and at >= MOVED else parent)
        return names


@pytest.fixture
async def tree(ctx_factory: Any, clock: FrozenClock) -> Tree:
    clock.set(START - timedelta(hours=HOURS + 10))
    async with ctx_factory() as ctx:
        ids: dict[str, int] = {}
        parents: dict[str, str | None] = {
            "top": None,
            "mid": "top",
            "leaf": "mid",
            "side": "top",
            "lone": None,
        }
        for name, parent in parents.items():
            ids[name] = await new_account(
                ctx, name, ids[parent] if parent else None, external_id=f"ext-{name}"
            )
        plan = await new_plan(ctx)
        services = {
            "leaf-svc": (await new_service(ctx, ids["leaf"], plan, login="leaf-login"), "leaf"),
            "side-svc": (await new_service(ctx, ids["side"], plan, login="side-login"), "side"),
        }
    clock.set(MOVED)
    async with ctx_factory() as ctx:
        await accounts.move(ctx, ids["leaf"], ids["side"])
    clock.set(START)
    return Tree(ids, parents, services)


# --- what is sent --------------------------------------------------------------------------------

SUBJECTS = ["top", "mid", "leaf", "side", "lone", "leaf-svc", "side-svc"]


@dataclass(frozen=True)
class Content:
    """What an event says, by value: two spellings of one Content are the same event."""

    meter: int  # index into the example's meters
    subject: str
    quantity: Decimal
    hour: int  # hours before the clock
    minute: int
    device: str


contents = st.builds(
    Content,
    meter=st.integers(0, len(AGGREGATIONS) - 1),
    subject=st.sampled_from(SUBJECTS),
    quantity=st.integers(0, 10_000).map(lambda n: Decimal(n).scaleb(-2)),
    hour=st.integers(1, HOURS),
    minute=st.integers(0, 59),
    device=st.sampled_from(["a", "b", "c"]),
)


@dataclass(frozen=True)
class Sending:
    key: int  # which id
    content: Content
    spelling: int  # how the quantity, time and subject are written


@st.composite
def sendings(draw: Any) -> list[list[Sending]]:
    """Batches of sendings: each id has a content of its own, sent once or again (a duplicate, in
    any spelling) or with other content (a conflict); the batches come in random order."""
    originals = draw(st.lists(contents, min_size=1, max_size=12))
    flat: list[Sending] = []
    for key, content in enumerate(originals):
        flat.append(Sending(key, content, draw(st.integers(0, 3))))
        for _ in range(draw(st.integers(0, 2))):
            other = draw(st.one_of(st.just(content), contents))
            flat.append(Sending(key, other, draw(st.integers(0, 3))))
    order = draw(st.permutations(flat))
    cuts = sorted(draw(st.lists(st.integers(0, len(order)), max_size=4)))
    bounds = [0, *cuts, len(order)]
    return [list(order[a:b]) for a, b in itertools.pairwise(bounds) if a < b]


_examples = itertools.count(1)


def spelled(sending: Sending, prefix: str, meters: list[str], tree: Tree, now: datetime) -> dict[str, Any]:
    c, spelling = sending.content, sending.spelling
    agg = AGGREGATIONS[c.meter]
    quantity = c.quantity.quantize(Decimal(1).scaleb(-PRECISION[agg]), rounding="ROUND_DOWN")
    at = (now - timedelta(hours=c.hour)).replace(minute=c.minute, second=0, microsecond=0)
    plain = format(quantity, "f")
    padded = plain + "0" if "." in plain else plain + ".0"
    quantity_spellings = [str(quantity), padded, quantity, str(quantity.normalize())]
    time_spellings = [
        at.isoformat(),
        at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        at.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat(),
        at.astimezone(timezone(-timedelta(hours=8))).isoformat(),
    ]
    raw_quantity: Any = quantity_spellings[spelling]
    if isinstance(raw_quantity, Decimal):
        raw_quantity = int(raw_quantity) if raw_quantity == int(raw_quantity) else float(raw_quantity)
    event: dict[str, Any] = {
        "id": f"{prefix}-{sending.key}",
        "meter": meters[c.meter],
        "quantity": raw_quantity,
        "timestamp": time_spellings[spelling],
        "properties": {"device": c.device},
    }
    # The subject is named one way per id: another name for it is other content (what the sender said).
    if c.subject in tree.services:
        service_id = tree.services[c.subject][0]
        if sending.key % 2:
            event["service_id"] = service_id
        else:
            event["login"] = c.subject.replace("-svc", "-login")
    elif sending.key % 2:
        event["account_id"] = tree.accounts[c.subject]
    else:
        event["external_account_id"] = f"ext-{c.subject}"
    return event


def normal(sending: Sending) -> tuple[Any, ...]:
    """The content as the server should see it: the quantity in the meter's precision."""
    c = sending.content
    agg = AGGREGATIONS[c.meter]
    quantity = c.quantity.quantize(Decimal(1).scaleb(-PRECISION[agg]), rounding="ROUND_DOWN")
    return (c.meter, c.subject, quantity, c.hour, c.minute, c.device)


# --- the property ----------------------------------------------------------------------------------


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batches=sendings(), folds=st.sets(st.integers(0, 8)))
async def test_rollups_equal_a_naive_sum_over_the_accepted_events(
    batches: list[list[Sending]], folds: set[int], ctx_factory: Any, tree: Tree, clock: FrozenClock
) -> None:
    """``folds``: after which batches the fold runs; the rest wait for the last fold, and the
    answers are checked both while some are pending and once all are folded."""
    n = next(_examples)
    now = clock.now()
    async with ctx_factory() as ctx:
        meter_ids = [
            await new_meter(
                ctx, f"m{n}-{agg.replace('_', '')}", agg, precision=PRECISION[agg],
                unique_property="device" if agg == "unique_count" else None,
            )
            for agg in AGGREGATIONS
        ]  # fmt: skip
    codes = [f"m{n}-{agg.replace('_', '')}" for agg in AGGREGATIONS]

    # Send, and check each answer against the sequential model: first content wins, the same
    # content again is a duplicate, other content a conflict.
    stored: dict[int, tuple[Any, ...]] = {}
    accepted: list[Sending] = []
    for position, batch in enumerate(batches):
        async with ctx_factory() as ctx:
            results = await send(ctx, [spelled(s, f"e{n}", codes, tree, now) for s in batch])
        if position in folds:
            async with ctx_factory() as ctx:
                await fold.catch_up(ctx)
        for sending, result in zip(batch, results, strict=True):
            if sending.key not in stored:
                expected = "accepted"
                stored[sending.key] = normal(sending)
                accepted.append(sending)
            else:
                expected = "duplicate" if stored[sending.key] == normal(sending) else "conflict"
            assert result.status == expected, (sending, result)

    # The naive sums, hour by hour, for every service, account, and the usage below every
    # account the event's account sat under at the time.
    want: dict[tuple[int, str, int, datetime], list[int]] = {}
    want_unique: set[tuple[int, str, int, datetime, str]] = set()
    for sending in accepted:
        c = sending.content
        agg = AGGREGATIONS[c.meter]
        scaled = int(normal(sending)[2].scaleb(PRECISION[agg]))
        at = (now - timedelta(hours=c.hour)).replace(minute=c.minute, second=0, microsecond=0)
        hour = at.replace(minute=0)
        account = tree.services[c.subject][1] if c.subject in tree.services else c.subject
        subjects = [("account", tree.accounts[account])]
        subjects += [("below", tree.accounts[name]) for name in tree.chain(account, at)[1:]]
        if c.subject in tree.services:
            subjects.append(("service", tree.services[c.subject][0]))
        for kind, subject in subjects:
            key = (meter_ids[c.meter], kind, subject, hour)
            row = want.setdefault(key, [0, 0, 0])
            row[0] += scaled
            row[1] = max(row[1], scaled)
            row[2] += 1
            if agg == "unique_count":
                want_unique.add((meter_ids[c.meter], kind, subject, hour, c.device))

    async def check_answers() -> None:
        """The question a customer asks: the whole tree's usage over the window, per meter."""
        async with ctx_factory() as ctx:
            for index, agg in enumerate(AGGREGATIONS):
                answer = await usage.account_usage(
                    ctx, tree.accounts["top"], codes[index], now - timedelta(hours=HOURS + 1), now,
                    Granularity.month, UsageScope.subtree,
                )  # fmt: skip
                mine = [s for s in accepted if s.content.meter == index and s.content.subject != "lone"]
                values = [normal(s)[2] for s in mine]
                expected_quantity = {
                    "sum": sum(values, Decimal(0)),
                    "max": max(values, default=Decimal(0)),
                    "count": Decimal(len(values)),
                    "unique_count": Decimal(len({s.content.device for s in mine})),
                }[agg]
                assert Decimal(answer.quantity) == expected_quantity, (agg, answer)
                assert answer.events == len(mine)

    await check_answers()  # with the batches after the last fold still pending
    async with ctx_factory() as ctx:
        await fold.catch_up(ctx)
        rows = await ctx.session.execute(select(UsageRollup).where(UsageRollup.meter_id.in_(meter_ids)))
        got = {
            (r.meter_id, r.kind, r.subject_id, r.hour): [r.total, r.peak, r.events] for r in rows.scalars()
        }
        assert got == want
        uniques = await ctx.session.execute(
            select(UsageUniqueValue).where(UsageUniqueValue.meter_id.in_(meter_ids))
        )
        got_unique = {(u.meter_id, u.kind, u.subject_id, u.hour, u.value) for u in uniques.scalars()}
        assert got_unique == want_unique
    await check_answers()


def test_spellings_are_one_content() -> None:
    """The generator's spellings really are the same event: otherwise the property proves less."""
    tree = Tree({"top": 1}, {"top": None}, {})
    now = START
    base = Content(1, "top", Decimal("12.30"), 3, 15, "a")
    spelled_all = [spelled(Sending(0, base, i), "x", ["a", "b", "c", "d"], tree, now) for i in range(4)]
    quantities = {Decimal(str(e["quantity"])) for e in spelled_all}
    instants = {datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")) for e in spelled_all}
    assert len(quantities) == 1 and len(instants) == 1
    assert (
        len({e["timestamp"] for e in spelled_all}) == 4
        and len({str(e["quantity"]) for e in spelled_all}) >= 3
    )
