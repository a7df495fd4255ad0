"""Typed domain errors that carry their HTTP status and render as RFC 9457 problems.

Every error says what was wrong and how to fix it; field errors name the field by its
JSON path (``parent_id``, ``billing.email``) so clients can show them beside the input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class FieldProblem:
    field: str
    message: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        out = {"field": self.field, "message": self.message}
        if self.fix:
            out["fix"] = self.fix
        return out


PROBLEM_BASE = "https://boughs.dev/problems/"


@dataclass
class BoughsError(Exception):
    """Base of every error the application raises on purpose."""

    detail: str
    fix: str = ""
    errors: list[FieldProblem] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    status: ClassVar[int] = 400
    slug: ClassVar[str] = "bad-request"
    title: ClassVar[str] = "Bad request"

    def __post_init__(self) -> None:
        super().__init__(self.detail)

    @classmethod
    def on_field(cls, name: str, message: str, fix: str = "", **extra: Any) -> BoughsError:
        """An error about one input field: the common case for 4xx answers."""
        return cls(
            detail=f"{name}: {message}",
            fix=fix,
            errors=[FieldProblem(name, message, fix)],
            extra=extra,
        )

    def problem(self, instance: str | None = None, request_id: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.fix:
            body["fix"] = self.fix
        if self.errors:
            body["errors"] = [e.as_dict() for e in self.errors]
        if instance:
            body["instance"] = instance
        if request_id:
            body["request_id"] = request_id
        body.update(self.extra)
        return body


class InvalidInput(BoughsError):
    status = 422
    slug = "invalid-input"
    title = "The request has invalid input"


class NotFound(BoughsError):
    status = 404
    slug = "not-found"
    title = "Not found"


class Conflict(BoughsError):
    status = 409
    slug = "conflict"
    title = "The request conflicts with the current state"


class Unauthorized(BoughsError):
    status = 401
    slug = "unauthorized"
    title = "Authentication required"


class Forbidden(BoughsError):
    status = 403
    slug = "forbidden"
    title = "Not allowed"


class SchemaOutOfDate(RuntimeError):
    """The database schema is older than the code: refuse to serve."""
