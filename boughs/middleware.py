"""Request ids and RFC 9457 problem responses for every error."""

from __future__ import annotations

import contextvars
import logging
import sqlite3
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import IntegrityError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from boughs.kit.errors import PROBLEM_BASE, BoughsError, Conflict, FieldProblem, InvalidInput
from boughs.kit.ids import new_request_id

log = logging.getLogger("boughs")
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
PROBLEM_JSON = "application/problem+json"


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get() or "-"
        return True


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)


class RequestIdMiddleware:
    """Takes the caller's X-Request-ID (or makes one) and returns it on every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming[:64] if incoming and incoming.isprintable() else new_request_id()
        token = request_id_var.set(request_id)
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"].append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


def problem_response(error: BoughsError, request: Request) -> JSONResponse:
    body = error.problem(instance=request.url.path, request_id=request_id_var.get())
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return JSONResponse(body, status_code=error.status, media_type=PROBLEM_JSON, headers=headers)


_FIXES = {
    "extra_forbidden": "remove this field; it is not part of this resource",
    "missing": "add this field",
    "date_from_datetime_parsing": "write the date as YYYY-MM-DD",
    "date_parsing": "write the date as YYYY-MM-DD, a real calendar date",
    "date_from_datetime_inexact": "write the date as YYYY-MM-DD",
    "datetime_parsing": "write the time as ISO 8601 with a timezone, e.g. 2026-01-31T12:00:00Z",
    "datetime_from_date_parsing": "write the time as ISO 8601 with a timezone",
    "int_parsing": "give a whole number",
    "int_type": "give a whole number",
    "string_type": "give a string",
    "enum": "use one of the allowed values",
    "json_invalid": "send a valid JSON document",
    "value_error": "correct the value as described",
    "string_too_short": "give a longer value",
    "string_too_long": "give a shorter value",
    "greater_than_equal": "give a larger number",
    "less_than_equal": "give a smaller number",
    "bool_parsing": "give true or false",
}


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def validation_problem(exc: RequestValidationError) -> InvalidInput:
    problems = []
    for err in exc.errors():
        message = str(err.get("msg", "is invalid"))
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        kind = str(err.get("type", ""))
        fix = _FIXES.get(kind, "correct this field")
        if kind == "enum" and "ctx" in err and "expected" in err["ctx"]:
            fix = f"use one of {err['ctx']['expected']}"
        if kind == "value_error" and "; " in message:
            # Our validators say "what is wrong; how to fix it".
            message, fix = message.split("; ", 1)
        field = "body" if kind == "json_invalid" else _field_name(tuple(err.get("loc", ())))
        problems.append(FieldProblem(field, message, fix))
    summary = "; ".join(f"{p.field}: {p.message}" for p in problems)
    return InvalidInput(detail=summary or "The request is invalid.", errors=problems)


def install_error_handlers(app: FastAPI) -> None:
    from boughs.idempotency.service import Replay

    @app.exception_handler(Replay)
    async def _replay(request: Request, exc: Replay) -> Response:
        return exc.response()

    @app.exception_handler(BoughsError)
    async def _boughs(request: Request, exc: BoughsError) -> JSONResponse:
        return problem_response(exc, request)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem_response(validation_problem(exc), request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error = BoughsError(detail=str(exc.detail))
        body = error.problem(instance=request.url.path, request_id=request_id_var.get())
        body.update(status=exc.status_code, title=str(exc.detail))
        body["type"] = "about:blank"
        return JSONResponse(body, status_code=exc.status_code, media_type=PROBLEM_JSON)

    @app.exception_handler(IntegrityError)
    async def _integrity(request: Request, exc: IntegrityError) -> JSONResponse:
        log.warning("integrity error: %s", exc.orig)
        return problem_response(
            Conflict(
                detail="The change conflicts with data written at the same time.",
                fix="reload and retry the request",
            ),
            request,
        )

    async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.exception("database error", exc_info=exc)
        if "database is locked" in str(exc):
            # SQLite's one writer stayed busy (another process's write) past the busy timeout;
            # the lock is taken before anything is written, so nothing of this request was.
            error = BoughsError(
                detail="The database was busy with other writes and could not take this one in time; "
                "nothing was changed.",
                fix="retry in a moment (see Retry-After)",
            )
        else:
            error = BoughsError(detail="The database could not complete the request.", fix="retry")
        body = error.problem(instance=request.url.path, request_id=request_id_var.get())
        body.update(type=PROBLEM_BASE + "service-unavailable", status=503, title="Service unavailable")
        return JSONResponse(body, status_code=503, media_type=PROBLEM_JSON, headers={"Retry-After": "1"})

    # SQLite's BEGIN IMMEDIATE runs in an engine event, outside SQLAlchemy's wrapping of
    # driver errors: its busy timeout arrives as the driver's own error.
    app.add_exception_handler(OperationalError, _unavailable)
    app.add_exception_handler(sqlite3.OperationalError, _unavailable)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        error = BoughsError(
            detail="Something went wrong on our side.",
            fix="retry; if it persists, report the request id to the operator",
        )
        body = error.problem(instance=request.url.path, request_id=request_id_var.get())
        body.update(type=PROBLEM_BASE + "internal-error", status=500, title="Internal error")
        return JSONResponse(body, status_code=500, media_type=PROBLEM_JSON)
