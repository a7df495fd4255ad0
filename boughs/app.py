"""The application factory: the REST API, the console and their middleware."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from boughs import __version__
from boughs.accounts.api import router as accounts_router
from boughs.audit.api import router as audit_router
from boughs.auth.api import router as auth_router
from boughs.billing.api import router as billing_router
from boughs.billing.payment_methods_api import router as payment_methods_router
from boughs.billing.payments_api import router as payments_router
from boughs.catalog.api import router as catalog_router
from boughs.config import Settings, get_settings
from boughs.console import install_console
from boughs.db import Database
from boughs.jobs.api import router as jobs_router
from boughs.kit.clock import Clock, SystemClock
from boughs.kit.collector import settle_after_start
from boughs.memberships.api import router as memberships_router
from boughs.middleware import RequestIdMiddleware, install_error_handlers
from boughs.providers.api import router as provider_router
from boughs.schema import ensure_current
from boughs.services.api import router as services_router
from boughs.services.changes_api import router as service_changes_router
from boughs.services.connections_api import router as connections_router
from boughs.usage.api import router as usage_router

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"


def api_router() -> APIRouter:
    router = APIRouter(prefix=API_PREFIX)
    router.include_router(accounts_router)
    router.include_router(audit_router)
    router.include_router(auth_router)
    router.include_router(billing_router)
    router.include_router(payment_methods_router)
    router.include_router(payments_router)
    router.include_router(catalog_router)
    router.include_router(connections_router)
    router.include_router(jobs_router)
    router.include_router(memberships_router)
    router.include_router(provider_router)
    router.include_router(services_router)
    router.include_router(service_changes_router)
    router.include_router(usage_router)
    return router


def create_app(
    settings: Settings | None = None,
    *,
    db: Database | None = None,
    clock: Clock | None = None,
    check_schema: bool = True,
    run_jobs: bool | None = None,
) -> FastAPI:
    settings = settings or get_settings()
    if check_schema:
        ensure_current(settings.database_url)
    database = db or Database(settings.database_url, echo=settings.sql_echo)
    the_clock = clock or SystemClock()
    embedded = settings.embedded_worker and not settings.broker_url if run_jobs is None else run_jobs

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = None
        if embedded:
            from boughs.jobs.runtime import JobRuntime

            runtime = JobRuntime(settings, clock=the_clock)
            await runtime.start_embedded()
            app.state.jobs = runtime
        try:
            yield
        finally:
            if runtime is not None:
                await runtime.stop()
            if db is None:
                await database.dispose()

    app = FastAPI(
        title="Boughs",
        version=__version__,
        summary="Subscriber management and billing for account hierarchies.",
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.db = database
    app.state.clock = the_clock
    app.add_middleware(RequestIdMiddleware)
    install_error_handlers(app)
    app.include_router(api_router())
    install_console(app)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def app_from_environment() -> FastAPI:
    """The app of one of several `boughs serve --processes` processes, configured from the
    environment like the first (which checked the schema)."""
    from boughs.middleware import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level)
    application = create_app(settings, check_schema=False)
    settle_after_start()
    return application
