"""Console pages: the dashboard — what needs attention, at a glance.

Staff see the whole provider; an account user sees their own subtrees. Every number is a
GROUP BY over an indexed column and every list is cut short, so the page costs the same
with a hundred accounts or a hundred thousand.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.responses import HTMLResponse
from starlette.routing import Match

from boughs.accounts import service as accounts
from boughs.accounts.models import AccountStatus
from boughs.billing import service as billing
from boughs.console.frame import Console, ConsoleDep, console_router, page
from boughs.jobs import service as jobs
from boughs.kit.errors import Forbidden
from boughs.services import service as services
from boughs.services.models import ServiceStatus

router = console_router()

OVERDUE_ROWS = 5
JOB_ROWS = 5
BILL_RUN_ROWS = 5


def linker(con: Console) -> Callable[[str], str | None]:
    """``link(url)``: the url when some console page answers it, else None — so a card never
    links to a page that is not there."""
    routes = con.request.app.router.routes
    known: dict[str, bool] = {}

    def link(url: str) -> str | None:
        path = url.split("?", 1)[0]
        if path not in known:
            scope = {"type": "http", "path": path, "method": "GET"}
            known[path] = any(route.matches(scope)[0] == Match.FULL for route in routes)
        return url if known[path] else None

    return link


def _in_order(counts: dict[str, int], order: list[str]) -> list[tuple[str, int]]:
    """Every status in its usual order, zeros included, then any the enum does not know."""
    known = [(status, counts.get(status, 0)) for status in order]
    return known + [(status, n) for status, n in sorted(counts.items()) if status not in order]


@router.get("/", response_class=HTMLResponse)
async def dashboard(con: ConsoleDep) -> HTMLResponse:
    staff = con.scope.whole_provider
    account_counts = await accounts.status_counts(con.ctx)
    service_counts = await services.status_counts(con.ctx)
    overdue = await billing.overdue_summary(con.ctx, OVERDUE_ROWS)
    job_counts, live_jobs = await jobs.live(con.ctx, JOB_ROWS)
    bill_runs: list[Any] | None
    try:
        bill_runs = (await billing.list_bill_runs(con.ctx, None, BILL_RUN_ROWS)).items
    except Forbidden:
        bill_runs = None  # not this role's to see
    # A member's lists are the pages of the account they hold a role on (the first, if several).
    home = None if staff or not con.scope.grants else con.scope.grants[0].account_id
    context: dict[str, Any] = {
        "staff": staff,
        "home": home,
        "accounts_by_status": _in_order(account_counts, [s.value for s in AccountStatus]),
        "accounts_total": sum(account_counts.values()),
        "services_by_status": _in_order(service_counts, [s.value for s in ServiceStatus]),
        "services_total": sum(service_counts.values()),
        "overdue": overdue,
        "job_counts": job_counts,
        "live_jobs": live_jobs,
        "bill_runs": bill_runs,
        "link": linker(con),
    }
    return await page(con, "dashboard.html", context, section="dashboard")
