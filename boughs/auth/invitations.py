"""Invitations: an email invited to an account with a role, accepted once through a secret link.

No mail server is needed: the message is composed as an email would be and written to
the ``boughs.mail`` log once the invitation is committed; the inviter is shown the link.
Only the SHA-256 of the link's token is stored.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from boughs.accounts.models import Account
from boughs.audit import service as audit
from boughs.auth import repository, throttle
from boughs.auth import service as auth
from boughs.auth.models import Invitation, User
from boughs.auth.passwords import check_password_strength
from boughs.context import Ctx
from boughs.db import Database
from boughs.kit.clock import Clock
from boughs.kit.errors import BoughsError, Conflict, InvalidInput, NotFound
from boughs.kit.ids import token_digest
from boughs.middleware import request_id_var
from boughs.providers import repository as providers

mail_log = logging.getLogger("boughs.mail")

INVITATION_LIFETIME = timedelta(days=7)
ACCOUNT_ROLES = ("admin", "billing", "technical", "viewer")
LINK_PREFIX = "/invitations/"


class Gone(BoughsError):
    status = 410
    slug = "gone"
    title = "No longer valid"


@dataclass(frozen=True)
class MailMessage:
    """A message composed as for mail: who it is to, its subject and its plain-text body."""

    to: str
    subject: str
    body: str

    def as_email(self) -> EmailMessage:
        message = EmailMessage()
        message["To"] = self.to
        message["Subject"] = self.subject
        message.set_content(self.body)
        return message

    def __str__(self) -> str:
        return self.as_email().as_string()


@dataclass(frozen=True)
class IssuedInvitation:
    invitation: Invitation
    # The only place the secret appears: show it to the inviter once.
    link: str
    message: MailMessage


def _compose(invitation: Invitation, link: str, account: Account, provider_name: str, by: str) -> MailMessage:
    article = "an" if invitation.role[0] in "aeiou" else "a"
    body = (
        f"Hello,\n\n"
        f"{by} invites you to {account.name} on {provider_name}, as {article} {invitation.role}.\n\n"
        f"To accept, open this link and choose a password (or enter yours, if you already "
        f"have a user with this email):\n\n"
        f"    {link}\n\n"
        f"The link works once and expires on {invitation.expires_at:%Y-%m-%d %H:%M} UTC.\n"
        f"If you did not expect this invitation, ignore this message.\n"
    )
    return MailMessage(
        to=invitation.email,
        subject=f"You are invited to {account.name} on {provider_name}",
        body=body,
    )


async def invite(ctx: Ctx, *, account_id: int, email: str, role: str) -> IssuedInvitation:
    """Invite ``email`` to the account with ``role``. Permissions are the caller's to check."""
    email = auth.normalize_email(email)
    if "@" not in email or email.startswith("@") or email.endswith("@"):
        raise InvalidInput.on_field(
            "email", "is not an email address", "give an address like ana@example.com"
        )
    if role not in ACCOUNT_ROLES:
        raise InvalidInput.on_field(
            "role", f"is not a role: {role!r}", f"use one of {', '.join(ACCOUNT_ROLES)}"
        )
    account = (
        await ctx.session.execute(
            select(Account).where(Account.provider_id == ctx.provider_id, Account.id == account_id)
        )
    ).scalar_one_or_none()
    if account is None:
        raise NotFound.on_field("account_id", f"there is no account {account_id}", "check the account id")
    provider = await providers.get(ctx.session, ctx.provider_id)
    token = secrets.token_urlsafe(32)
    now = ctx.now()
    invitation = Invitation(
        provider_id=ctx.provider_id,
        account_id=account.id,
        email=email,
        role=role,
        digest=token_digest(token),
        created_by_user_id=ctx.actor.user_id,
        created_at=now,
        expires_at=now + INVITATION_LIFETIME,
    )
    ctx.session.add(invitation)
    await ctx.session.flush()
    link = f"{LINK_PREFIX}{token}"
    by = ctx.actor.label.removeprefix("user:")
    message = _compose(invitation, link, account, provider.name, by)
    await audit.record(
        ctx,
        entity="invitation",
        entity_id=invitation.id,
        action="created",
        account_id=account.id,
        after={"email": email, "role": role, "expires_at": invitation.expires_at},
    )
    text = str(message)
    # Written only once the invitation exists for good: a rolled-back invite sends nothing.
    ctx.after_commit(lambda: mail_log.info("invitation %s to %s\n%s", invitation.id, email, text))
    return IssuedInvitation(invitation=invitation, link=link, message=message)


async def _by_token(session: AsyncSession, token: str) -> Invitation | None:
    result = await session.execute(select(Invitation).where(Invitation.digest == token_digest(token)))
    return result.scalar_one_or_none()


def _check_usable(invitation: Invitation | None, now: datetime) -> Invitation:
    if invitation is None:
        raise NotFound(
            detail="This invitation link is not valid.",
            fix="open the link exactly as it was sent, or ask whoever invited you for a new invitation",
        )
    if invitation.accepted_at is not None:
        raise Gone(
            detail="This invitation has already been accepted; a link works only once.",
            fix="sign in with your email and password, or ask for a new invitation",
        )
    if invitation.expires_at <= now:
        raise Gone(
            detail="This invitation has expired.",
            fix="ask whoever invited you to send a new invitation",
        )
    return invitation


@dataclass(frozen=True)
class Accepted:
    invitation: Invitation
    user: User
    created_user: bool


async def accept(
    db: Database, clock: Clock, token: str, *, name: str, password: str, address: str
) -> Accepted:
    """Accept an invitation: make the user (or check an existing one's password), then the membership."""
    now = clock.now()
    async with db.transaction(write=False) as session:
        invitation = _check_usable(await _by_token(session, token), now)
        existing = await repository.user_by_email(session, invitation.email)
        if existing is not None:
            await throttle.check(session, invitation.email, address, now)
    if existing is not None:
        if existing.provider_id != invitation.provider_id or not existing.is_active:
            raise Conflict.on_field(
                "email",
                f"{invitation.email} belongs to a user who cannot join this provider",
                "ask whoever invited you to invite another email",
            )
        if not await auth.password_matches(existing.password_hash, password):
            async with db.transaction() as session:
                await throttle.record_failure(session, invitation.email, address, existing.provider_id, now)
            raise InvalidInput.on_field(
                "password",
                f"is not the password of the existing user {invitation.email}",
                "enter the password you sign in with (the name is not changed)",
            )
    else:
        if not name.strip():
            raise InvalidInput.on_field("name", "is empty", "give your name")
        check_password_strength(password)

    from boughs.memberships.service import add_membership_for_invitation  # written beside this

    async with db.transaction() as session:
        # The link is spent by whoever gets here first; a second acceptance changes nothing.
        spent = await session.execute(
            update(Invitation)
            .where(
                Invitation.id == invitation.id,
                Invitation.accepted_at.is_(None),
                Invitation.expires_at > now,
            )
            .values(accepted_at=now)
        )
        if spent.rowcount != 1:  # type: ignore[attr-defined]
            _check_usable(await _by_token(session, token), now)
            raise Gone(detail="This invitation can no longer be used.", fix="ask for a new invitation")
        if existing is None:
            user = await auth.create_user(
                session, invitation.provider_id, invitation.email, password, now, name=name.strip()
            )
        else:
            user = await session.merge(existing, load=True)
        row = (await session.execute(select(Invitation).where(Invitation.id == invitation.id))).scalar_one()
        row.accepted_user_id = user.id
        await session.flush()
        await add_membership_for_invitation(session, row, user, now)
        ctx = Ctx(
            session=session,
            clock=clock,
            actor=auth.actor_for(user),
            request_id=request_id_var.get(),
            acting_account_id=row.account_id,
        )
        await audit.record(
            ctx,
            entity="invitation",
            entity_id=row.id,
            action="accepted",
            account_id=row.account_id,
            before={"accepted_at": None},
            after={"accepted_at": now, "accepted_user_id": user.id, "created_user": existing is None},
        )
        if existing is None:
            await audit.record(
                ctx,
                entity="user",
                entity_id=user.id,
                action="created",
                account_id=row.account_id,
                after={"email": user.email, "name": user.name, "invitation_id": row.id},
            )
        if existing is not None:
            await throttle.clear_email(session, invitation.email)
    return Accepted(invitation=row, user=user, created_user=existing is None)


async def usable(session: AsyncSession, token: str, now: datetime) -> Invitation:
    """The invitation behind a link, or the error that says why it cannot be used."""
    return _check_usable(await _by_token(session, token), now)
