"""The demo's meters and three weeks of usage on the demo services and accounts.

Internet data on every internet service (by login, as RADIUS accounting reports it),
following each customer's day in its own timezone: evenings at home, office hours at the
business, school days at the school. Voice calls on the landlord's front-desk line, IoT
SIM data on the reseller's customers (the meter its pooled SIM plan charges), API calls
from the MSP's subtenants, and the devices seen on the clinic's hotspot and the
school's student network.

The usage runs up to the hour the demo meters were created and is sent through the
ingest path with ids derived from what each event measures, so loading again sends
the same events, which are answered as duplicates: nothing changes. The quantities come
from a generator seeded by the event, so they are the same every time too.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from boughs.catalog import repository as catalog_repository
from boughs.catalog.models import Plan
from boughs.context import Ctx
from boughs.providers import repository as providers
from boughs.services import service as services
from boughs.usage import fold, ingest
from boughs.usage import repository as usage_repository
from boughs.usage import service as usage
from boughs.usage.schemas import MAX_BATCH, EventStatus, MeterCreate

GB = 1_000_000_000
USAGE_DAYS = 21
# Internet data is reported in blocks of this many hours, as interim accounting does.
BLOCK_HOURS = 3

DEMO_METERS: tuple[MeterCreate, ...] = (
    MeterCreate(
        code="internet_bytes", name="Internet data", unit="bytes", aggregation="sum", counts_toward_cap=True,
        description="Bytes down and up on internet services; counts toward data caps",
    ),
    MeterCreate(
        code="voice_minutes", name="Voice minutes", unit="minutes", aggregation="sum", precision=2,
        description="Billable call time, to the hundredth of a minute",
    ),
    # The code the demo's "IoT SIM pooled" plan charges by.
    MeterCreate(
        code="data.mb", name="SIM data", unit="MB", aggregation="sum", precision=3,
        description="Mobile data of IoT SIMs, in megabytes",
    ),
    MeterCreate(
        code="api_calls", name="API calls", unit="calls", aggregation="count",
        description="Calls to the network-as-a-service API: one event per call",
    ),
    MeterCreate(
        code="active_devices", name="Active devices", unit="devices", aggregation="unique_count",
        unique_property="mac", description="Distinct devices (by MAC address) seen on a network",
    ),
)  # fmt: skip


@dataclass(frozen=True)
class Rhythm:
    """A customer's day: its busy local hours, and whether weekends are quiet."""

    timezone: str
    busy_from: int
    busy_until: int
    weekdays_only: bool = False
    # Share of the busy rate the quiet hours see.
    quiet: float = 0.08

    def weight(self, moment: datetime) -> float:
        local = moment.astimezone(ZoneInfo(self.timezone))
        busy = self.busy_from <= local.hour < self.busy_until
        if self.weekdays_only and local.weekday() >= 5:
            busy = False
        return 1.0 if busy else self.quiet


HOME = Rhythm("Europe/London", 18, 23, quiet=0.15)
CHICAGO_OFFICE = Rhythm("America/Chicago", 8, 18, weekdays_only=True, quiet=0.05)
SCHOOL = Rhythm("America/New_York", 8, 15, weekdays_only=True, quiet=0.03)
AMSTERDAM_OFFICE = Rhythm("Europe/Amsterdam", 8, 18, weekdays_only=True, quiet=0.05)
CLINIC = Rhythm("Europe/Amsterdam", 8, 18, quiet=0.02)
FIELDS = Rhythm("Europe/Paris", 5, 21, quiet=0.3)

# login → (bytes an hour at its busiest, its rhythm). Even all three weeks together stay
# under 80% of the hotspot's weekly cap and the school's monthly one, wherever the caps
# count usage from before the services started: the demo starts with no cap reached.
INTERNET: dict[str, tuple[int, Rhythm]] = {
    **{f"harbourside-unit{n}": (int((1.0 + n / 10) * GB), HOME) for n in range(1, 8)},
    "acme-hq": (8 * GB, CHICAGO_OFFICE),
    "acme-warehouse": (2 * GB, CHICAGO_OFFICE),
    "riverside-staff": (5 * GB, SCHOOL),
    "riverside-students": (20 * GB, SCHOOL),
    "contoso-north-reception": (GB // 10, CLINIC),
    "fabrikam-downtown": (3 * GB, AMSTERDAM_OFFICE),
}
# external account id → (SIMs, megabytes a SIM sends in a busy hour)
SIM_FLEETS = {"demo-iot-clienticity": (12, 1.5), "demo-iot-agritrack": (30, 0.4)}
API_CLIENTS = {"demo-msp-contoso": 3, "demo-msp-fabrikam": 2}  # most calls in a busy hour
ENDPOINTS = ("GET /sites", "GET /ports", "POST /circuits", "GET /circuits", "GET /usage")
HOTSPOT_MACS = ("a4:83:e7:12:9c:01", "a4:83:e7:12:9c:02")
STUDENT_DEVICES = 40


def _rng(*key: object) -> random.Random:
    return random.Random(":".join(map(str, key)))


def _hours(end: datetime, step: int) -> Iterator[datetime]:
    moment = end - timedelta(days=USAGE_DAYS)
    while moment < end:
        yield moment
        moment += timedelta(hours=step)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M")


def demo_events(end: datetime, voice_service_id: int | None) -> list[dict[str, Any]]:
    """The demo's usage for the USAGE_DAYS before ``end`` (an hour, UTC), as ingest events."""
    events: list[dict[str, Any]] = []

    def add(event_id: str, meter: str, quantity: str | int, at: datetime, **subject: Any) -> None:
        events.append(
            {"id": event_id, "meter": meter, "quantity": str(quantity),
             "timestamp": at.isoformat().replace("+00:00", "Z"), **subject}
        )  # fmt: skip

    for login, (busy_bytes, rhythm) in INTERNET.items():
        for block in _hours(end, BLOCK_HOURS):
            rng = _rng("internet", login, block)
            hours = [block + timedelta(hours=h) for h in range(BLOCK_HOURS)]
            quantity = sum(int(busy_bytes * rhythm.weight(h) * rng.uniform(0.55, 1.3)) for h in hours)
            add(f"demo-net-{login}-{_stamp(block)}", "internet_bytes", quantity, block, login=login)

    for day in _hours(end, 24):
        if voice_service_id is not None and day.weekday() < 6:
            rng = _rng("voice", day)
            for call in range(rng.randint(1, 6)):
                at = day + timedelta(hours=rng.randint(8, 17), minutes=rng.randint(0, 59))
                minutes = f"{rng.randint(20, 1500) / 100:.2f}"
                add(
                    f"demo-voice-{voice_service_id}-{_stamp(day)}-{call}",
                    "voice_minutes",
                    minutes,
                    at,
                    service_id=voice_service_id,
                )
        if day.weekday() < 5:
            rng = _rng("students", day)
            for device in rng.sample(range(STUDENT_DEVICES), rng.randint(24, STUDENT_DEVICES)):
                mac = f"02:00:5e:10:{device // 256:02x}:{device % 256:02x}"
                at = day + timedelta(hours=13, minutes=rng.randint(0, 240))
                add(f"demo-dev-students-{_stamp(day)}-{device}", "active_devices", 1, at,
                    login="riverside-students", properties={"mac": mac})  # fmt: skip
        rng = _rng("hotspot", day)
        for n, mac in enumerate(HOTSPOT_MACS):
            if n == 0 or rng.random() < 0.7:
                at = day + timedelta(hours=rng.randint(7, 16), minutes=rng.randint(0, 59))
                add(f"demo-dev-hotspot-{_stamp(day)}-{n}", "active_devices", 1, at,
                    login="contoso-north-reception", properties={"mac": mac})  # fmt: skip

    for block in _hours(end, 4):
        for account, (sims, busy_mb) in SIM_FLEETS.items():
            rng = _rng("sim", account, block)
            megabytes = sum(busy_mb * FIELDS.weight(block + timedelta(hours=h)) for h in range(4)) * sims
            sent = f"{megabytes * rng.uniform(0.6, 1.4):.3f}"
            add(f"demo-sim-{account}-{_stamp(block)}", "data.mb", sent, block, external_account_id=account)
    for hour in _hours(end, 1):
        for account, most in API_CLIENTS.items():
            rng = _rng("api", account, hour)
            calls = round(most * AMSTERDAM_OFFICE.weight(hour) * rng.random() * 1.4)
            for call in range(calls):
                at = hour + timedelta(minutes=rng.randint(0, 59), seconds=rng.randint(0, 59))
                add(f"demo-api-{account}-{_stamp(hour)}-{call}", "api_calls", 1, at,
                    external_account_id=account, properties={"endpoint": rng.choice(ENDPOINTS)})  # fmt: skip
    return events


@dataclass(frozen=True)
class DemoUsage:
    meters_created: int
    events_sent: int
    events_accepted: int
    # Every event the demo sends should be taken; anything else is a bug in the demo.
    events_refused: list[str]
    start: datetime
    end: datetime


async def load_usage(ctx: Ctx, ids: dict[str, int]) -> DemoUsage:
    """Create the demo meters that are missing and send the demo's usage again."""
    codes = [m.code for m in DEMO_METERS]
    existing = await usage_repository.meters_by_code(ctx.session, ctx.provider_id, codes)
    created = 0
    for spec in DEMO_METERS:
        if spec.code not in existing:
            existing[spec.code] = await usage.create_meter(ctx, spec)
            created += 1
    anchor = existing["internet_bytes"].created_at.astimezone(UTC)
    end = anchor.replace(minute=0, second=0, microsecond=0)
    # What the retention window no longer takes is left out rather than refused.
    provider = await providers.get(ctx.session, ctx.provider_id)
    oldest = ctx.now() - timedelta(days=provider.usage_retention_days) + timedelta(hours=1)
    events = [
        e
        for e in demo_events(end, await _voice_service(ctx, ids.get("demo-landlord")))
        if datetime.fromisoformat(e["timestamp"]) >= oldest
    ]
    accepted = 0
    refused: list[str] = []
    for start in range(0, len(events), MAX_BATCH):
        batch = events[start : start + MAX_BATCH]
        for result in await ingest.ingest(ctx, batch):
            if result.status is EventStatus.accepted:
                accepted += 1
            elif result.status is not EventStatus.duplicate:
                refused.append(f"{result.id}: {result.status.value} {result.reason or ''}".strip())
    # The demo's invoices rate these rollups in the same unit of work.
    await fold.catch_up(ctx)
    return DemoUsage(created, len(events), accepted, refused, end - timedelta(days=USAGE_DAYS), end)


async def _voice_service(ctx: Ctx, landlord_id: int | None) -> int | None:
    if landlord_id is None:
        return None
    plan = await catalog_repository.get_by_name(ctx.session, Plan, ctx.provider_id, "Voice line")
    if plan is None:
        return None
    found = await services.list_for_account(ctx, landlord_id, None, plan.id, None, 1)
    return found.items[0].id if found.items else None
