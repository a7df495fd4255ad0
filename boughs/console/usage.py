"""Console pages: usage of an account (alone or its pooled subtree) and of one service.

Each meter is drawn as a bar chart in inline SVG, rendered here on the server (the console
works offline and without scripts), with a table of the same numbers beside it for anyone
who cannot see the chart.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from boughs.accounts import inheritance
from boughs.accounts import repository as accounts_repository
from boughs.accounts import service as accounts
from boughs.accounts.models import Account
from boughs.console.frame import ConsoleDep, FormState, console_router, form_errors, page, reject
from boughs.kit.errors import BoughsError, InvalidInput
from boughs.services import lifecycle
from boughs.services import service as services
from boughs.services.models import Service
from boughs.usage import service as usage
from boughs.usage.models import Meter
from boughs.usage.schemas import Granularity, UsageOut, UsageScope

router = console_router()

ALL_METERS = "*"
# One page draws at most this many meters; more would make a slow, unreadable page.
MAX_CHARTS = 12
BYTE_UNITS = frozenset({"byte", "bytes", "b", "octet", "octets"})
BYTE_STEPS = ("B", "KB", "MB", "GB", "TB", "PB", "EB")

# The chart's drawing box, in SVG user units (it scales to the page's width).
WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 8, 8, 18, 22


def format_quantity(value: Decimal | int | str, unit: str) -> str:
    """A quantity as a person reads it: bytes in KB/MB/GB (powers of 1000), others with their unit."""
    amount = Decimal(value)
    if unit.strip().lower() in BYTE_UNITS:
        step = 0
        while abs(amount) >= 1000 and step < len(BYTE_STEPS) - 1:
            amount /= 1000
            step += 1
        if step == 0:
            return f"{amount:,.0f} B"
        return f"{amount:,.2f} {BYTE_STEPS[step]}"
    return f"{amount:,} {unit}"


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    text: str


@dataclass(frozen=True)
class Row:
    label: str
    quantity: str
    raw: str
    events: int


@dataclass(frozen=True)
class Chart:
    meter: Meter
    answer: UsageOut
    bars: list[Bar]
    rows: list[Row]
    total: str
    peak: str
    description: str
    first_label: str
    last_label: str
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    top: int = TOP
    bottom: int = HEIGHT - BOTTOM


def _bucket_label(start: datetime, granularity: Granularity) -> str:
    if granularity is Granularity.hour:
        return start.strftime("%Y-%m-%d %H:00 UTC")
    if granularity is Granularity.day:
        return start.strftime("%Y-%m-%d")
    return start.strftime("%Y-%m")


def chart_of(meter: Meter, answer: UsageOut, subject: str) -> Chart:
    values = [Decimal(b.quantity) for b in answer.buckets]
    labels = [_bucket_label(b.start, answer.granularity) for b in answer.buckets]
    peak = max(values, default=Decimal(0))
    plot_width = WIDTH - LEFT - RIGHT
    plot_height = HEIGHT - TOP - BOTTOM
    slot = plot_width / max(len(values), 1)
    bars = []
    for i, (value, label) in enumerate(zip(values, labels, strict=True)):
        if value <= 0 or peak <= 0:
            continue  # nothing to draw; the table still lists the bucket
        height = max(float(value / peak) * plot_height, 1.0)
        bars.append(
            Bar(
                x=round(LEFT + i * slot + slot * 0.1, 2),
                y=round(TOP + plot_height - height, 2),
                width=round(max(slot * 0.8, 0.5), 2),
                height=round(height, 2),
                label=label,
                text=format_quantity(value, meter.unit),
            )
        )
    rows = [
        Row(label, format_quantity(value, meter.unit), b.quantity, b.events)
        for label, value, b in zip(labels, values, answer.buckets, strict=True)
    ]
    total = format_quantity(answer.quantity, meter.unit)
    first, last = (labels[0], labels[-1]) if labels else ("", "")
    description = (
        f"{meter.name} ({meter.unit}) of {subject} per {answer.granularity.value} "
        f"from {first} to {last}: total {total}, highest bucket {format_quantity(peak, meter.unit)}"
    )
    return Chart(
        meter=meter,
        answer=answer,
        bars=bars,
        rows=rows,
        total=total,
        peak=format_quantity(peak, meter.unit),
        description=description,
        first_label=first,
        last_label=last,
    )


# --- the query the form asks -----------------------------------------------------------------


@dataclass
class UsageQuery:
    meter: str
    granularity: Granularity
    scope: UsageScope
    start: datetime | None
    end: datetime | None


def _parse_day(value: str, name: str, state: FormState) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        state.errors[name] = f"'{value}' is not a date; write it as YYYY-MM-DD"
        return None


def parse_query(
    params: Any, meters: list[Meter], timezone: str, default_scope: UsageScope = UsageScope.self
) -> tuple[UsageQuery, FormState]:
    """The form's values as typed, and the query they ask; errors are collected in the state."""
    values = {
        name: str(params.get(name, "")).strip() for name in ("meter", "scope", "granularity", "from", "to")
    }
    values["scope"] = values["scope"] or default_scope.value
    state = FormState(values=values)
    meter = values["meter"] or (meters[0].code if meters else "")
    values["meter"] = meter
    if meter != ALL_METERS and meters and meter not in {m.code for m in meters}:
        state.errors["meter"] = f"there is no meter '{meter}'; choose one from the list"
    granularity = Granularity.day
    try:
        granularity = Granularity(values["granularity"] or "day")
    except ValueError:
        state.errors["granularity"] = (
            f"'{values['granularity']}' is not a granularity; choose hour, day or month"
        )
    scope = UsageScope.self
    try:
        scope = UsageScope(values["scope"] or "self")
    except ValueError:
        state.errors["scope"] = f"'{values['scope']}' is not a scope; choose self or subtree"
    first = _parse_day(values["from"], "from", state)
    last = _parse_day(values["to"], "to", state)
    if first is not None and last is not None and last < first:
        state.errors["to"] = "is before the start date; give an end on or after it"
    # Dates are the account's calendar days; the end date is included.
    start = lifecycle.local_midnight(first, timezone) if first is not None else None
    end = lifecycle.local_midnight(last + timedelta(days=1), timezone) if last is not None else None
    if state.errors:
        state.message = "Some fields need attention."
    query = UsageQuery(meter=meter, granularity=granularity, scope=scope, start=start, end=end)
    return query, state


def _shown_window(state: FormState, answer: UsageOut) -> None:
    """Fill blank dates with the window the service chose, in the account's calendar."""
    zone = ZoneInfo(answer.timezone)
    if not state.values.get("from"):
        state.values["from"] = answer.start.astimezone(zone).date().isoformat()
    if not state.values.get("to"):
        state.values["to"] = (answer.end.astimezone(zone) - timedelta(microseconds=1)).date().isoformat()


def _chosen(meters: list[Meter], code: str) -> list[Meter]:
    if code == ALL_METERS:
        return meters[:MAX_CHARTS]
    return [m for m in meters if m.code == code]


def _options_context(meters: list[Meter]) -> dict[str, Any]:
    meter_options = [(m.code, f"{m.name} ({m.unit})") for m in meters]
    if len(meters) > 1:
        meter_options.append(
            (ALL_METERS, "All meters" + (f" (first {MAX_CHARTS})" if len(meters) > MAX_CHARTS else ""))
        )
    return {
        "meter_options": meter_options,
        "granularity_options": [(g.value, g.value.title()) for g in Granularity],
        "scope_options": [("self", "This account alone"), ("subtree", "With its child accounts (pooled)")],
    }


async def _account_timezone(con: ConsoleDep, account: Account) -> str:
    chain = await accounts_repository.chain_of(con.ctx.session, con.scope, account.id)
    if chain is None:
        raise accounts.not_found(account.id)
    return str(inheritance.resolve(chain.accounts, "timezone", chain.provider_timezone).value)


async def _usage_page(
    con: ConsoleDep,
    account: Account,
    service: Service | None,
    timezone: str,
    fetch: Callable[[Meter, UsageQuery], Awaitable[UsageOut]],
    subject: Callable[[UsageQuery], str],
) -> HTMLResponse:
    """The form, and a chart and table per chosen meter; bad input shows the form again (422)."""
    meters = list((await usage.list_meters(con.ctx, None, 500)).items)
    # A parent's own usage is usually nothing: its children's, pooled, is what is asked about.
    has_children = service is None and bool((await accounts.children(con.ctx, account.id, None, 1)).items)
    default_scope = UsageScope.subtree if has_children else UsageScope.self
    query, state = parse_query(con.request.query_params, meters, timezone, default_scope)
    context: dict[str, Any] = {
        "account": account,
        "tab": "services" if service is not None else "usage",
        "service": service,
        "meters": meters,
        "timezone": timezone,
        "action": f"/services/{service.id}/usage" if service is not None else f"/accounts/{account.id}/usage",
        "charts": [],
        **_options_context(meters),
    }
    template = "usage/usage.html"
    if state.errors:
        raise await reject(con, template, state, context, account=account, section="account")
    charts = []
    try:
        for meter in _chosen(meters, query.meter):
            charts.append(chart_of(meter, await fetch(meter, query), subject(query)))
    except (BoughsError, ValidationError) as error:
        if isinstance(error, BoughsError) and not (isinstance(error, InvalidInput) or error.errors):
            raise
        failed = form_errors(state.values, error)
        raise await reject(con, template, failed, context, account=account, section="account") from None
    if charts:
        _shown_window(state, charts[0].answer)
    context.update(form=state, charts=charts)
    return await page(con, template, context, account=account, section="account")


@router.get("/accounts/{account_id}/usage")
async def account_usage(con: ConsoleDep, account_id: int) -> HTMLResponse:
    account = await accounts.get(con.ctx, account_id)

    async def fetch(meter: Meter, q: UsageQuery) -> UsageOut:
        return await usage.account_usage(
            con.ctx, account.id, meter.code, q.start, q.end, q.granularity, q.scope
        )

    def subject(q: UsageQuery) -> str:
        return account.name + (" and its child accounts" if q.scope is UsageScope.subtree else "")

    return await _usage_page(con, account, None, await _account_timezone(con, account), fetch, subject)


@router.get("/services/{service_id}/usage")
async def service_usage(con: ConsoleDep, service_id: int) -> HTMLResponse:
    service = await services.get(con.ctx, service_id)
    account = await accounts.get(con.ctx, service.account_id)
    timezone = (await lifecycle.where_is(con.ctx, service)).timezone

    async def fetch(meter: Meter, q: UsageQuery) -> UsageOut:
        return await usage.service_usage(con.ctx, service.id, meter.code, q.start, q.end, q.granularity)

    return await _usage_page(con, account, service, timezone, fetch, lambda q: f"service {service.id}")
