"""The account switcher in the header: search by name or external id, pick, act as it."""

from __future__ import annotations

from fastapi.responses import HTMLResponse

from boughs.console.frame import ConsoleDep, console_router, fragment
from boughs.memberships import service as memberships

router = console_router()

SWITCHER_ROWS = 12


@router.get("/switcher", response_class=HTMLResponse)
async def switcher(con: ConsoleDep, q: str = "") -> HTMLResponse:
    found = await memberships.switcher(con.ctx, q.strip() or None, SWITCHER_ROWS)
    return fragment(con, "partials/switcher.html", {"accounts": found, "q": q})
