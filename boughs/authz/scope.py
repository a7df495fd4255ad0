"""The one scoping helper.

A Scope is what an actor may reach within its provider. Provider staff reach every
account. An account user reaches, through each membership, the member account and its
whole subtree (the chain of command), except where a descendant's ``parent_access``
narrows it: ``view`` makes ancestors' members viewers there, ``none`` shuts them out.
Never upward, never sideways. Repositories turn the scope into a WHERE clause;
anything outside it is answered exactly as if it did not exist (404).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, and_, false, not_, or_, true
from sqlalchemy.orm import InstrumentedAttribute

from boughs.auth.actor import Actor
from boughs.authz import permissions
from boughs.authz.permissions import Permission
from boughs.context import Ctx
from boughs.kit.paths import upper_bound
from boughs.memberships.models import AccountRole


@dataclass(frozen=True)
class Grant:
    """A membership: ``role`` on the account at ``path`` and below."""

    account_id: int
    path: str
    role: str


@dataclass(frozen=True)
class Limit:
    """A descendant of a grant whose ``parent_access`` is view or none."""

    account_id: int
    path: str
    access: str


@dataclass(frozen=True)
class Scope:
    provider_id: int
    whole_provider: bool = False
    staff_role: str | None = None
    grants: tuple[Grant, ...] = field(default_factory=tuple)
    limits: tuple[Limit, ...] = field(default_factory=tuple)

    def roles_at(self, path: str) -> frozenset[str]:
        """The account roles that reach the account at ``path``, after parent_access."""
        roles: set[str] = set()
        for grant in self.grants:
            if not path.startswith(grant.path):
                continue
            role: str | None = grant.role
            for limit in self.limits:
                # Only limits strictly below the grant, on the way down to the account.
                below_grant = limit.path != grant.path and limit.path.startswith(grant.path)
                if below_grant and path.startswith(limit.path):
                    if limit.access == "none":
                        role = None
                        break
                    role = AccountRole.viewer.value
            if role is not None:
                roles.add(role)
        return frozenset(roles)

    def permissions_at(self, path: str) -> frozenset[Permission]:
        if self.whole_provider:
            return permissions.for_staff_role(self.staff_role or "")
        return permissions.for_account_roles(self.roles_at(path))

    def allows(self, path: str, permission: Permission) -> bool:
        return permission in self.permissions_at(path)

    def allows_everywhere(self, permission: Permission) -> bool:
        """Whether every account of the provider allows it, without asking account by account."""
        # Staff permissions hold at every path alike.
        return self.whole_provider and self.allows("", permission)

    def covers_path(self, path: str) -> bool:
        return self.whole_provider or bool(self.roles_at(path))

    def path_condition(self, path_column: InstrumentedAttribute[str]) -> ColumnElement[bool]:
        """Rows whose account path lies in the scope (the provider filter is separate)."""
        if self.whole_provider:
            return true()
        if not self.grants:
            return false()
        terms = []
        for grant in self.grants:
            term = and_(path_column >= grant.path, path_column < upper_bound(grant.path))
            shut = [
                and_(path_column >= limit.path, path_column < upper_bound(limit.path))
                for limit in self.limits
                if limit.access == "none" and limit.path != grant.path and limit.path.startswith(grant.path)
            ]
            terms.append(and_(term, not_(or_(*shut))) if shut else term)
        return or_(*terms)


def staff_scope(actor: Actor) -> Scope:
    return Scope(provider_id=actor.provider_id, whole_provider=True, staff_role=actor.staff_role)


async def _compute_scope(ctx: Ctx) -> Scope:
    actor = ctx.actor
    if actor.is_staff:
        return staff_scope(actor)
    if actor.user_id is None:
        return Scope(provider_id=actor.provider_id)
    from boughs.memberships import repository as memberships

    grants = await memberships.grants_of(ctx.session, actor.provider_id, actor.user_id)
    limits = await memberships.limits_under(ctx.session, actor.provider_id, [g[1] for g in grants])
    return Scope(
        provider_id=actor.provider_id,
        grants=tuple(Grant(*g) for g in grants),
        limits=tuple(Limit(*limit) for limit in limits),
    )


async def scope_of(ctx: Ctx) -> Scope:
    """The actor's scope, computed once per unit of work."""
    scope: Scope | None = ctx.cache.get("scope")
    if scope is None:
        scope = await _compute_scope(ctx)
        ctx.cache["scope"] = scope
    return scope


async def require(ctx: Ctx, path: str, permission: Permission, doing: str) -> None:
    """Refuse (403) an action the actor's roles on this account do not allow."""
    scope = await scope_of(ctx)
    if not scope.allows(path, permission):
        from boughs.kit.errors import Forbidden

        held = sorted(scope.roles_at(path)) or ([scope.staff_role] if scope.staff_role else [])
        raise Forbidden(
            detail=f"Your role ({', '.join(held) or 'none'}) does not allow you to {doing} here.",
            fix="ask an administrator of this account, or of the provider, to do it or to give you the role",
        )
