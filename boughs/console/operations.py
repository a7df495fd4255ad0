"""Console pages: operations — the long-running work (bill runs, bulk actions, sweeps) as the
jobs table records it, with progress that updates by itself and each job's per-item results.

The list is for provider staff; a job's own page follows the jobs service, which also shows
account users the jobs they started themselves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from fastapi.responses import HTMLResponse, Response

from boughs.auth import repository as users
from boughs.authz.permissions import Permission
from boughs.authz.scope import require
from boughs.console.frame import (
    Console,
    ConsoleDep,
    Rendered,
    console_router,
    form_errors,
    form_values,
    fragment,
    page,
    redirect,
)
from boughs.console.lists import ListQuery, fetch_page
from boughs.jobs import service as jobs
from boughs.jobs.models import Job, JobStatus
from boughs.kit.errors import BoughsError, Forbidden, InvalidInput

router = console_router()

SORTS: dict[str, Any] = {"created": Job.id, "kind": Job.kind, "status": Job.status}
LIVE = (JobStatus.queued.value, JobStatus.running.value)
# The most rows of one result table a page shows; the rest is counted, not drawn.
RESULT_ROWS = 500
LIST_ITEMS = 200


def _staff_only(con: Console) -> None:
    if not con.scope.whole_provider:
        raise Forbidden(
            detail="The operations list is for provider staff.",
            fix="open an operation you started from the link you were given",
        )


async def _list_context(con: Console) -> dict[str, Any]:
    lq = ListQuery.parse(
        con.request.query_params,
        sorts=list(SORTS),
        default_sort="created",
        default_descending=True,
        filters=["status", "kind"],
    )
    status = lq.filters.get("status")
    if status is not None and status not in {s.value for s in JobStatus}:
        raise InvalidInput.on_field("status", f"'{status}' is not a job status", "pick one from the list")
    statement = jobs.list_statement(con.ctx, status, lq.filters.get("kind"))
    pg = await fetch_page(con.ctx.session, statement, lq, SORTS, Job.id.expression, scalars=False)
    filters = [
        ("status", "Status", [(s.value, s.value) for s in JobStatus]),
        ("kind", "Kind", [(k, k) for k in jobs.known_kinds()]),
    ]
    may_run = con.can_provider(Permission.manage_provider)
    return {
        "pg": pg,
        "filters": filters,
        "periodic": [(k, k) for k in jobs.periodic_kinds()] if may_run else [],
        "live": LIVE,
    }


@router.get("/operations", response_class=HTMLResponse)
async def operations(con: ConsoleDep) -> HTMLResponse:
    _staff_only(con)
    return await page(con, "operations/list.html", await _list_context(con), section="operations")


@router.post("/operations/run", response_class=HTMLResponse)
async def run_now(con: ConsoleDep) -> Response:
    """Start a periodic task now rather than at its next turn."""
    _staff_only(con)
    await require(con.ctx, "", Permission.manage_provider, "start periodic tasks")
    values = form_values(await con.request.form())
    try:
        job = await jobs.run_periodic_now(con.ctx, str(values.get("kind", "")))
    except BoughsError as error:
        context = await _list_context(con)
        context["form"] = form_errors(values, error)
        response = await page(con, "operations/list.html", context, status=error.status, section="operations")
        raise Rendered(response) from None
    return redirect(con, f"/operations/{job.id}", flash=f"{job.kind} queued.")


# --- one operation ---------------------------------------------------------------------------


@dataclass
class ResultTable:
    title: str
    columns: list[str]
    rows: list[list[str]]
    more: int = 0


@dataclass
class ResultView:
    """A job's result JSON, laid out: single values, tables of items, and plain lists."""

    values: list[tuple[str, str]] = field(default_factory=list)
    tables: list[ResultTable] = field(default_factory=list)
    lists: list[tuple[str, list[str], int]] = field(default_factory=list)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(", ", ": "), default=str)


def _table(title: str, items: list[dict[str, Any]], first_column: str | None = None) -> ResultTable:
    columns: list[str] = [first_column] if first_column else []
    for item in items[:RESULT_ROWS]:
        columns += [key for key in item if key not in columns]
    rows = [[_cell(item.get(c)) for c in columns] for item in items[:RESULT_ROWS]]
    return ResultTable(title, columns, rows, max(0, len(items) - RESULT_ROWS))


def result_view(result: Any) -> ResultView:
    """Per-item results as tables: a list of objects, or an object of objects keyed by item."""
    view = ResultView()
    if result is None:
        return view
    if not isinstance(result, dict):
        result = {"items": result}
    for key, value in result.items():
        title = key.replace("_", " ")
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            view.tables.append(_table(title, value))
        elif isinstance(value, list):
            view.lists.append(
                (title, [_cell(v) for v in value[:LIST_ITEMS]], max(0, len(value) - LIST_ITEMS))
            )
        elif isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            view.tables.append(_table(title, [{"item": k, **v} for k, v in value.items()], "item"))
        elif isinstance(value, dict):
            view.tables.append(_table(title, [{"name": k, "value": v} for k, v in value.items()]))
        else:
            view.values.append((title, _cell(value)))
    return view


async def _starter(con: Console, job: Job) -> str | None:
    if job.created_by_user_id is None:
        return None
    user = await users.user_by_id(con.ctx.session, con.ctx.provider_id, job.created_by_user_id)
    return user.email if user is not None else None


@router.get("/operations/{job_id}", response_class=HTMLResponse)
async def operation(con: ConsoleDep, job_id: int) -> HTMLResponse:
    job = await jobs.get(con.ctx, job_id)
    context = {
        "job": job,
        "running": job.status in LIVE,
        "starter": await _starter(con, job),
        "result": result_view(job.result),
        "args": result_view(job.args or None),
        "staff": con.scope.whole_provider,
    }
    return await page(con, "operations/detail.html", context, section="operations")


@router.get("/operations/{job_id}/progress", response_class=HTMLResponse)
async def progress(con: ConsoleDep, job_id: int, live: int = 0) -> HTMLResponse:
    """The progress bar alone; it asks again every second while the job runs. On the job's own
    page (``live=1``) the finish reloads the page, so the results appear."""
    job = await jobs.get(con.ctx, job_id)
    running = job.status in LIVE
    response = fragment(con, "operations/_progress.html", {"job": job, "running": running, "live": live})
    if live and not running:
        response.headers["HX-Refresh"] = "true"
    return response
