"""Console pages: the dashboard."""

from __future__ import annotations

from fastapi.responses import HTMLResponse

from boughs.console.frame import ConsoleDep, console_router, page

router = console_router()


@router.get("/", response_class=HTMLResponse)
async def dashboard(con: ConsoleDep) -> HTMLResponse:
    return await page(con, "dashboard.html", {}, section="dashboard")
