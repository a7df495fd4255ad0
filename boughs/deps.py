"""Route dependencies: the unit of work and the actor behind a request."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.routing import APIRoute
from sqlalchemy import update

from boughs.auth import service as auth
from boughs.auth import sessions
from boughs.auth.models import ApiToken
from boughs.context import Ctx
from boughs.db import Database
from boughs.idempotency import service as idempotency
from boughs.kit.clock import Clock
from boughs.kit.errors import Unauthorized
from boughs.kit.pagination import MAX_LIMIT
from boughs.kit.secrets import box_for
from boughs.kit.types import MAX_ID
from boughs.middleware import request_id_var

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# Query parameters every list shares.
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Rows per page.")]
Cursor = Annotated[str | None, Query(description="next_cursor of the previous page.")]
IdFilter = Annotated[int | None, Query(ge=1, le=MAX_ID)]


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(
            detail="This endpoint needs an API token.",
            fix="send 'Authorization: Bearer <token>'; `boughs token create` makes one",
        )
    return token.strip()


async def _touch_token(db: Database, token_id: int, clock: Clock) -> None:
    async with db.transaction() as session:
        await session.execute(
            update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=clock.now())
        )


def _acting_account(request: Request) -> int | None:
    """The account a request acts as: /api/v1/accounts/{id}/... paths carry it explicitly."""
    raw = request.path_params.get("account_id")
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


async def unit_of_work(request: Request) -> AsyncIterator[Ctx]:
    """One transaction per request, committed before the response is sent.

    A request with an Authorization header is a Bearer API token; one without it may
    come with the console's session cookie, and then every unsafe method must also
    carry the session's CSRF token.
    """
    db: Database = request.app.state.db
    clock: Clock = request.app.state.clock
    cookie = request.cookies.get(sessions.SESSION_COOKIE)
    token = _bearer(request) if "authorization" in request.headers or not cookie else None
    write = request.method not in SAFE_METHODS
    async with db.transaction(write=write) as session:
        if token is not None:
            actor = await auth.authenticate(session, token, clock.now())
        else:
            assert cookie is not None
            actor = await sessions.authenticate(
                session,
                cookie,
                clock.now(),
                unsafe=write,
                csrf_token=request.headers.get(sessions.CSRF_HEADER),
            )
        if actor.token_id is not None and session.dirty:
            # Recording last use is its own small write, so reads stay reads.
            session.expunge_all()
            token_id = actor.token_id
            session.info["after_commit"].append(lambda: _touch_token(db, token_id, clock))
        ctx = Ctx(
            session=session,
            clock=clock,
            actor=actor,
            request_id=request_id_var.get(),
            acting_account_id=_acting_account(request),
            secrets=box_for(request.app.state.settings.secret_key),
        )
        if write:
            request.state.idempotency = await idempotency.begin(request, ctx)
        yield ctx


# "function" scope: the commit happens before the response is sent, and a failed
# commit becomes an error response instead of a success the database never saw.
CtxDep = Annotated[Ctx, Depends(unit_of_work, scope="function")]


class UnitOfWorkRoute(APIRoute):
    """Stores the answer of an idempotent write inside the request's own transaction.

    The handler returns its response while the unit of work is still open (it closes
    when the route's dependencies exit), so the stored answer commits with the work.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handle_and_remember(request: Request) -> Response:
            response = await handle(request)
            pending = getattr(request.state, "idempotency", None)
            if pending is not None and response.status_code < 400:
                pending.record(response)
            return response

        return handle_and_remember


def domain_router(prefix: str, tag: str) -> APIRouter:
    """The router every domain's api.py uses."""
    return APIRouter(prefix=prefix, tags=[tag], route_class=UnitOfWorkRoute)
