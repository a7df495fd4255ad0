"""The header row every CSV import checks the same way."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from boughs.kit.errors import InvalidInput


def check_header(names: Iterable[str], columns: Sequence[str], required: Sequence[str]) -> list[str]:
    """The header's column names, normalised; refuses unknown, repeated and missing columns."""
    found = [n.strip().lower() for n in names]
    allowed = frozenset(columns)
    unknown = [c for c in found if c not in allowed]
    if unknown:
        shown = ", ".join(repr(c) if c else "an empty column name" for c in unknown)
        raise InvalidInput.on_field(
            "columns",
            f"unknown column(s) {shown}",
            f"rename or remove them; the columns this import understands are: {', '.join(columns)}",
        )
    repeated = sorted({c for c in found if found.count(c) > 1})
    if repeated:
        raise InvalidInput.on_field(
            "columns", f"column(s) {', '.join(map(repr, repeated))} appear more than once", "keep one of each"
        )
    missing = [c for c in required if c not in found]
    if missing:
        raise InvalidInput.on_field(
            "columns",
            f"the header has no {', '.join(map(repr, missing))} column",
            f"the first row must name the columns; {', '.join(map(repr, required))} required",
        )
    return found
