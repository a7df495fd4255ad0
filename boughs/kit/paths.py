"""Materialised paths: ``/1/5/23/`` is account 23 under 5 under 1.

A subtree is every path that starts with its root's path, which is the half-open
range ``[path, upper_bound(path))`` — a range scan of the ``(provider_id, path)``
index on both engines.
"""

from __future__ import annotations

SEPARATOR = "/"


def child_path(parent_path: str | None, account_id: int) -> str:
    return f"{parent_path or SEPARATOR}{account_id}{SEPARATOR}"


def upper_bound(path: str) -> str:
    # "/" + 1 == "0": every extension of "/1/5/" sorts below "/1/50".
    return path[:-1] + chr(ord(SEPARATOR) + 1)


def ids_of(path: str) -> list[int]:
    """The ids along a path, root first."""
    return [int(part) for part in path.strip(SEPARATOR).split(SEPARATOR) if part]


def depth_of(path: str) -> int:
    return path.count(SEPARATOR) - 2
