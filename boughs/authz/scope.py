"""The one scoping helper.

A Scope is the set of account subtrees an actor may reach within its provider.
Repositories turn it into a WHERE clause; anything outside it is answered exactly
as if it did not exist (404), so existence is never revealed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, and_, false, or_, true
from sqlalchemy.orm import InstrumentedAttribute

from boughs.auth.actor import Actor
from boughs.context import Ctx
from boughs.kit.paths import upper_bound


@dataclass(frozen=True)
class Scope:
    provider_id: int
    whole_provider: bool = False
    subtree_paths: tuple[str, ...] = field(default_factory=tuple)

    def covers_path(self, path: str) -> bool:
        return self.whole_provider or any(path.startswith(p) for p in self.subtree_paths)

    def path_condition(self, path_column: InstrumentedAttribute[str]) -> ColumnElement[bool]:
        """Rows whose account path lies in the scope (the provider filter is separate)."""
        if self.whole_provider:
            return true()
        if not self.subtree_paths:
            return false()
        return or_(*(and_(path_column >= p, path_column < upper_bound(p)) for p in self.subtree_paths))


def _compute_scope(actor: Actor) -> Scope:
    if actor.is_staff:
        return Scope(provider_id=actor.provider_id, whole_provider=True)
    return Scope(provider_id=actor.provider_id)


async def scope_of(ctx: Ctx) -> Scope:
    """The actor's scope, computed once per unit of work."""
    scope: Scope | None = ctx.cache.get("scope")
    if scope is None:
        scope = _compute_scope(ctx.actor)
        ctx.cache["scope"] = scope
    return scope
