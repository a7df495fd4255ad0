"""Cursor pagination: lists answer ``{"items": [...], "next_cursor": ...}``.

A cursor is an opaque, URL-safe encoding of the last row's sort key; clients pass it
back unchanged. Keyset pagination keeps deep pages as fast as the first one.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from boughs.kit.errors import BoughsError, InvalidInput
from boughs.kit.types import storable_id

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


@dataclass
class PageOf(Generic[T]):
    """One page of rows as services return it; the API turns it into a ``Page``."""

    items: list[T]
    next_cursor: str | None


def _row_id(row: Any) -> Any:
    return row.id


def page_of(rows: Sequence[T], limit: int, key: Callable[[T], Any] = _row_id) -> PageOf[T]:
    """Rows fetched with ``limit + 1``: the extra row only says another page exists."""
    if len(rows) > limit:
        kept = list(rows[:limit])
        return PageOf(kept, encode_cursor(key(kept[-1])))
    return PageOf(list(rows), None)


def encode_cursor(key: Any) -> str:
    raw = json.dumps(key, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> Any:
    if cursor is None or cursor == "":
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, TypeError) as exc:
        raise InvalidInput.on_field(
            "cursor",
            "is not a cursor this API issued",
            "pass back the next_cursor value of the previous page unchanged, or omit it",
        ) from exc


def check_limit(limit: int) -> int:
    if limit < 1 or limit > MAX_LIMIT:
        raise InvalidInput.on_field(
            "limit", f"must be between 1 and {MAX_LIMIT}", f"ask for at most {MAX_LIMIT} rows"
        )
    return limit


def not_this_list() -> BoughsError:
    return InvalidInput.on_field(
        "cursor", "is not a cursor of this list", "omit it to start from the first page"
    )


def id_cursor(cursor: str | None) -> int | None:
    """The row id a list sorted by id resumes after (or before)."""
    key = decode_cursor(cursor)
    if key is None:
        return None
    if not isinstance(key, int) or isinstance(key, bool) or not storable_id(key):
        raise not_this_list()
    return key
