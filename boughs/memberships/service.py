"""Who holds which role on which account, and the accounts a user may switch to."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from boughs.accounts import repository as accounts_repository
from boughs.accounts import service as accounts
from boughs.accounts.models import Account
from boughs.accounts.repository import AccountFilter
from boughs.accounts.schemas import AccountCreate
from boughs.audit import service as audit
from boughs.auth import repository as users
from boughs.authz.permissions import Permission
from boughs.authz.scope import require, scope_of
from boughs.context import Ctx
from boughs.kit.errors import Conflict, NotFound
from boughs.kit.paths import ids_of
from boughs.memberships import repository
from boughs.memberships.models import AccountRole, Membership

ENTITY = "membership"


def _row(membership: Membership, email: str, name: str) -> dict[str, Any]:
    return {
        "id": membership.id,
        "account_id": membership.account_id,
        "user_id": membership.user_id,
        "email": email,
        "name": name,
        "role": membership.role,
        "created_at": membership.created_at,
    }


async def list_for_account(ctx: Ctx, account_id: int) -> list[dict[str, Any]]:
    account = await accounts.get(ctx, account_id)
    rows = await repository.on_account(ctx.session, ctx.provider_id, account.id)
    return [_row(m, u.email, u.name) for m, u in rows]


async def _create(ctx: Ctx, account: Account, user_id: int, role: str) -> Membership:
    membership = Membership(
        provider_id=ctx.provider_id,
        user_id=user_id,
        account_id=account.id,
        role=role,
        created_by_user_id=ctx.actor.user_id,
        created_at=ctx.now(),
    )
    ctx.session.add(membership)
    await ctx.session.flush()
    await audit.record(
        ctx, entity=ENTITY, entity_id=membership.id, action="created", account_id=account.id,
        after={"user_id": user_id, "role": role},
    )  # fmt: skip
    return membership


async def add(ctx: Ctx, account_id: int, email: str, role: AccountRole) -> dict[str, Any]:
    """Give an existing user a role on the account, or invite the email to it."""
    account = await accounts.get(ctx, account_id)
    await require(ctx, account.path, Permission.manage_members, "manage this account's users")
    email = email.strip().lower()
    user = await users.user_by_email(ctx.session, email)
    if user is not None and user.provider_id != ctx.provider_id:
        raise Conflict.on_field(
            "email",
            "cannot be added to this provider's accounts",
            "ask the person for another email address",
        )
    if user is not None:
        if await repository.find(ctx.session, user.id, account.id) is not None:
            raise Conflict.on_field(
                "email",
                f"{email} is already a member of this account",
                "remove the membership first to give another role",
            )
        membership = await _create(ctx, account, user.id, role.value)
        return {"membership": _row(membership, user.email, user.name)}
    from boughs.auth.invitations import invite

    issued = await invite(ctx, account_id=account.id, email=email, role=role.value)
    invitation = issued.invitation
    return {
        "invitation": {
            "id": invitation.id,
            "account_id": invitation.account_id,
            "email": invitation.email,
            "role": invitation.role,
            "expires_at": invitation.expires_at,
            "link": issued.link,
        }
    }


async def create_account(ctx: Ctx, data: AccountCreate) -> tuple[Account, list[dict[str, Any]]]:
    """Create an account and name its administrators (seed 003): existing users get the
    role at once, other emails an invitation whose link is returned to the creator."""
    account = await accounts.create(ctx, data)
    added = [await add(ctx, account.id, str(email), AccountRole.admin) for email in data.administrators]
    return account, added


async def remove(ctx: Ctx, membership_id: int) -> None:
    membership = await repository.get(ctx.session, ctx.provider_id, membership_id)
    scope = await scope_of(ctx)
    account = await accounts_repository.get(ctx.session, scope, membership.account_id) if membership else None
    if membership is None or account is None:
        raise NotFound(detail=f"There is no membership {membership_id}.", fix="check the id")
    await require(ctx, account.path, Permission.manage_members, "manage this account's users")
    await audit.record(
        ctx, entity=ENTITY, entity_id=membership.id, action="deleted", account_id=account.id,
        before={"user_id": membership.user_id, "role": membership.role},
    )  # fmt: skip
    await ctx.session.delete(membership)


async def add_membership_for_invitation(
    session: AsyncSession, invitation: Any, user: Any, now: datetime
) -> Membership:
    """An accepted invitation becomes a membership (the inviter's rights were checked then)."""
    existing = await repository.find(session, user.id, invitation.account_id)
    if existing is not None:
        return existing
    membership = Membership(
        provider_id=invitation.provider_id,
        user_id=user.id,
        account_id=invitation.account_id,
        role=invitation.role,
        created_by_user_id=invitation.created_by_user_id,
        created_at=now,
    )
    session.add(membership)
    await session.flush()
    return membership


async def switcher(ctx: Ctx, q: str | None, limit: int) -> list[dict[str, Any]]:
    """Accounts the user may act on: their own top accounts first, each with its path."""
    scope = await scope_of(ctx)
    found: dict[int, Account] = {}
    if not scope.whole_provider and not q:
        granted = await accounts_repository.get_many(ctx.session, scope, [g.account_id for g in scope.grants])
        found.update((a.id, a) for a in granted)
    if scope.whole_provider and not q:
        # Staff have no accounts of their own: the top of every tree comes first.
        tops = await accounts_repository.list_by_id(
            ctx.session, scope, AccountFilter(top_level=True), None, limit
        )
        found.update((a.id, a) for a in tops)
    page = await accounts_repository.list_by_path(
        ctx.session, scope, AccountFilter(q=q or None), None, limit + len(found)
    )
    for account in page:
        found.setdefault(account.id, account)
    own = {g.account_id for g in scope.grants}
    ordered = sorted(found.values(), key=lambda a: (a.id not in own, a.depth, a.name.lower(), a.id))[:limit]
    ancestor_ids = {i for a in ordered for i in ids_of(a.path)[:-1]}
    # Ancestors the user cannot reach stay nameless: never upward.
    names = {a.id: a.name for a in await accounts_repository.get_many(ctx.session, scope, list(ancestor_ids))}
    return [
        {
            "id": a.id,
            "name": a.name,
            "external_id": a.external_id,
            "status": a.status,
            "depth": a.depth,
            "path_names": [names.get(i, "…") for i in ids_of(a.path)[:-1]] + [a.name],
            "roles": sorted(scope.roles_at(a.path)) or ([scope.staff_role] if scope.staff_role else []),
        }
        for a in ordered
    ]


async def pending_invitations(ctx: Ctx, account_id: int) -> list[dict[str, Any]]:
    """Invitations to the account not yet accepted and not expired."""
    account = await accounts.get(ctx, account_id)
    rows = await repository.pending_invitations(ctx.session, ctx.provider_id, account.id, ctx.now())
    return [
        {"id": i.id, "email": i.email, "role": i.role, "created_at": i.created_at, "expires_at": i.expires_at}
        for i in rows
    ]
