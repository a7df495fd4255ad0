"""Every console list pages, sorts, filters and searches the same way.

A repository builds the scoped, filtered statement; this module only orders it by one of
the columns the list offers, cuts the page, and says whether another page follows. Pages
are numbered (an operator says "page 3"); the next page is known by reading one row more.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode

from sqlalchemy import ColumnElement, Select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute

from boughs.kit.errors import InvalidInput

T = TypeVar("T")

PER_PAGE_CHOICES = (25, 50, 100)
MAX_PAGE = 10_000


@dataclass(frozen=True)
class ListQuery:
    """The list's state as the URL carries it: search, filters, sort, page."""

    q: str = ""
    sort: str = ""
    descending: bool = False
    page: int = 1
    per_page: int = 25
    filters: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(
        cls,
        params: Mapping[str, str],
        *,
        sorts: Sequence[str],
        default_sort: str,
        filters: Sequence[str] = (),
        default_descending: bool = False,
    ) -> ListQuery:
        sort = params.get("sort", default_sort)
        if sort not in sorts:
            raise InvalidInput.on_field(
                "sort", f"cannot sort by {sort!r}", f"sort by one of {', '.join(sorts)}"
            )
        direction = params.get("dir", "desc" if default_descending else "asc")
        if direction not in ("asc", "desc"):
            raise InvalidInput.on_field("dir", f"{direction!r} is not a direction", "use asc or desc")
        try:
            page = int(params.get("page", "1"))
            per_page = int(params.get("per_page", str(PER_PAGE_CHOICES[0])))
        except ValueError as error:
            raise InvalidInput.on_field("page", "is not a whole number", "use 1, 2, 3 …") from error
        if not 1 <= page <= MAX_PAGE:
            raise InvalidInput.on_field(
                "page", f"must be between 1 and {MAX_PAGE}", "narrow the search instead"
            )
        if per_page not in PER_PAGE_CHOICES:
            raise InvalidInput.on_field(
                "per_page", f"{per_page} rows is not offered", f"use one of {PER_PAGE_CHOICES}"
            )
        chosen = {name: params[name].strip() for name in filters if params.get(name, "").strip()}
        return cls(
            q=params.get("q", "").strip(),
            sort=sort,
            descending=direction == "desc",
            page=page,
            per_page=per_page,
            filters=chosen,
        )

    def url(self, base: str, **changes: Any) -> str:
        """This list's URL with some of its state changed (a page, a sort, a filter)."""
        state: dict[str, Any] = {
            "q": self.q,
            "sort": self.sort,
            "dir": "desc" if self.descending else "asc",
            "page": self.page,
            "per_page": self.per_page,
            **self.filters,
        }
        state.update(changes)
        kept = {k: v for k, v in state.items() if v not in ("", None) and not (k == "page" and v == 1)}
        return base + ("?" + urlencode(kept) if kept else "")

    def sort_url(self, base: str, column: str) -> str:
        """Clicking a header sorts by it; clicking it again turns the order round."""
        descending = not self.descending if column == self.sort else False
        return self.url(base, sort=column, dir="desc" if descending else "asc", page=1)


@dataclass(frozen=True)
class ListPage(Generic[T]):
    items: list[T]
    query: ListQuery
    has_next: bool

    @property
    def has_previous(self) -> bool:
        return self.query.page > 1

    @property
    def first_row(self) -> int:
        return (self.query.page - 1) * self.query.per_page + 1 if self.items else 0

    @property
    def last_row(self) -> int:
        return self.first_row + len(self.items) - 1 if self.items else 0


async def fetch_page(
    session: AsyncSession,
    statement: Select[*tuple[Any, ...]],
    query: ListQuery,
    sort_columns: Mapping[str, ColumnElement[Any] | QueryableAttribute[Any]],
    tie_breaker: ColumnElement[Any] | QueryableAttribute[Any],
    *,
    scalars: bool = True,
) -> ListPage[Any]:
    """One page of a repository's statement, in the order the list asked for."""
    column = sort_columns[query.sort]
    ordered = statement.order_by(
        column.desc() if query.descending else column.asc(),
        tie_breaker.desc() if query.descending else tie_breaker.asc(),
    )
    cut = ordered.offset((query.page - 1) * query.per_page).limit(query.per_page + 1)
    result = await session.execute(cut)
    rows: list[Any] = list(result.scalars()) if scalars else list(result.all())
    return ListPage(items=rows[: query.per_page], query=query, has_next=len(rows) > query.per_page)
