"""The web console: server-rendered pages at the site root, one module per domain."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles

from boughs.console import (
    accounts,
    auth,
    billing,
    catalog,
    dashboard,
    members,
    operations,
    services,
    switcher,
    usage,
)
from boughs.console.frame import STATIC

MODULES = (auth, dashboard, switcher, accounts, services, usage, billing, catalog, members, operations)


def console_routes() -> list[APIRoute]:
    """Every console route, as its module declares it."""
    return [route for module in MODULES for route in module.router.routes if isinstance(route, APIRoute)]


def console_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)
    for module in MODULES:
        router.include_router(module.router)
    return router


def install_console(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(console_router())
