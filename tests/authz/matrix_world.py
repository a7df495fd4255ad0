"""The world the authorization matrix runs in, described once and built as often as needed.

The description (accounts, actors, targets) is static so expected outcomes are derived from
it without touching the database; ``build_world`` turns it into rows, users and tokens.
Every build uses fresh emails, so a test can rebuild the world in the same database after a
destructive cell (a deleted account) without colliding with the previous build.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from boughs.accounts import service as accounts
from boughs.accounts.schemas import AccountCreate
from boughs.auth import service as auth
from boughs.auth.actor import Actor, StaffRole
from boughs.auth.invitations import LINK_PREFIX, invite
from boughs.auth.models import User
from boughs.catalog.models import Plan, PlanKind
from boughs.context import Ctx
from boughs.db import Database
from boughs.jobs import service as jobs
from boughs.kit.clock import FrozenClock
from boughs.memberships import repository as memberships
from boughs.memberships.models import Membership
from boughs.services import repository as services_repository
from boughs.services import service as services
from boughs.services.models import ServiceDiscount
from boughs.services.schemas import ServiceCreate
from tests.conftest import Tenant, make_tenant

A, B = "A", "B"  # the tenant under test and another provider
PASSWORD = "Correct-Horse-42"


@dataclass(frozen=True)
class AccountSpec:
    parent: str | None
    provider: str
    subaccounts: bool = False


# Root → Parent → Child → Grandchild; Sibling under Root; OtherTree top level; another provider.
# The *Kid accounts give every admin actor a descendant of its own account.
ACCOUNTS: dict[str, AccountSpec] = {
    "Root": AccountSpec(None, A, subaccounts=True),
    "Parent": AccountSpec("Root", A, subaccounts=True),
    "Child": AccountSpec("Parent", A),
    "Grandchild": AccountSpec("Child", A),
    "Sibling": AccountSpec("Root", A),
    "SiblingKid": AccountSpec("Sibling", A),
    "OtherTree": AccountSpec(None, A),
    "OtherKid": AccountSpec("OtherTree", A),
    "Foreign": AccountSpec(None, B),
    "ForeignKid": AccountSpec("Foreign", B),
}


@dataclass(frozen=True)
class ActorSpec:
    provider: str
    staff_role: str | None = None
    grant: tuple[str, str] | None = None  # (account, role)
    credential: str = "live"  # live | none | revoked | expired
    # target kind → account name (None: this actor has no such target)
    targets: dict[str, str | None] = field(default_factory=dict)

    @property
    def authenticated(self) -> bool:
        return self.credential == "live"


TARGET_KINDS = ("own", "descendant", "ancestor", "sibling", "other_tree", "other_provider")


def _targets(*names: str | None) -> dict[str, str | None]:
    return dict(zip(TARGET_KINDS, names, strict=True))


# For staff "own" is the Parent account, as for the members of Parent.
FROM_PARENT = _targets("Parent", "Child", "Root", "Sibling", "OtherTree", "Foreign")

ACTORS: dict[str, ActorSpec] = {
    "owner": ActorSpec(A, staff_role=StaffRole.owner, targets=FROM_PARENT),
    "support": ActorSpec(A, staff_role=StaffRole.support, targets=FROM_PARENT),
    "parent_admin": ActorSpec(A, grant=("Parent", "admin"), targets=FROM_PARENT),
    "child_admin": ActorSpec(
        A,
        grant=("Child", "admin"),
        targets=_targets("Child", "Grandchild", "Parent", "Sibling", "OtherTree", "Foreign"),
    ),
    "billing": ActorSpec(A, grant=("Parent", "billing"), targets=FROM_PARENT),
    "technical": ActorSpec(A, grant=("Parent", "technical"), targets=FROM_PARENT),
    "viewer": ActorSpec(A, grant=("Parent", "viewer"), targets=FROM_PARENT),
    "sibling_admin": ActorSpec(
        A,
        grant=("Sibling", "admin"),
        targets=_targets("Sibling", "SiblingKid", "Root", "Parent", "OtherTree", "Foreign"),
    ),
    "other_tree_admin": ActorSpec(
        A,
        grant=("OtherTree", "admin"),
        targets=_targets("OtherTree", "OtherKid", None, None, "Parent", "Foreign"),
    ),
    "other_provider": ActorSpec(
        B,
        staff_role=StaffRole.owner,
        targets=_targets("Foreign", "ForeignKid", None, None, "OtherTree", "Parent"),
    ),
    "anonymous": ActorSpec(A, credential="none", targets=FROM_PARENT),
    "revoked": ActorSpec(A, staff_role=StaffRole.owner, credential="revoked", targets=FROM_PARENT),
    "expired": ActorSpec(A, staff_role=StaffRole.owner, credential="expired", targets=FROM_PARENT),
}


def ancestors_of(name: str) -> list[str]:
    chain: list[str] = []
    parent = ACCOUNTS[name].parent
    while parent is not None:
        chain.append(parent)
        parent = ACCOUNTS[parent].parent
    return chain


def has_children(name: str) -> bool:
    return any(spec.parent == name for spec in ACCOUNTS.values())


# --- building it -----------------------------------------------------------------------

_builds = itertools.count(1)


@dataclass
class World:
    n: int
    db: Database
    clock: FrozenClock
    tenants: dict[str, Tenant]
    ids: dict[str, int]
    tokens: dict[str, str | None]
    user_ids: dict[str, int]
    bystanders: dict[str, int]  # provider → a user with no role, for memberships and tokens
    # A public internet plan of each provider, and one service (with its own login) per account.
    plan_ids: dict[str, int] = field(default_factory=dict)
    service_ids: dict[str, int] = field(default_factory=dict)
    password_user: str | None = None
    _emails: itertools.count = field(default_factory=lambda: itertools.count(1))

    def headers(self, actor: str) -> dict[str, str]:
        token = self.tokens[actor]
        return {"Authorization": f"Bearer {token}"} if token else {}

    def email(self, what: str) -> str:
        return f"{what}-{self.n}-{next(self._emails)}@matrix.example"

    def staff_ctx(self, session: AsyncSession, provider: str = A) -> Ctx:
        return Ctx(session=session, clock=self.clock, actor=self.tenants[provider].actor())

    async def membership_on(self, account: str) -> int:
        """A bystander's membership on the account (made once, reused until deleted)."""
        provider = ACCOUNTS[account].provider
        user_id, account_id = self.bystanders[provider], self.ids[account]
        async with self.db.transaction() as session:
            found = await memberships.find(session, user_id, account_id)
            if found is not None:
                return found.id
            row = Membership(
                provider_id=self.tenants[provider].provider_id,
                user_id=user_id,
                account_id=account_id,
                role="viewer",
                created_at=self.clock.now(),
            )
            session.add(row)
            await session.flush()
            return row.id

    async def discount_on(self, account: str) -> int:
        """A discount on the account's service (made once, reused until deleted)."""
        provider = ACCOUNTS[account].provider
        async with self.db.transaction() as session:
            ctx = self.staff_ctx(session, provider)
            service_id = self.service_ids[account]
            found = await services_repository.discounts_of(session, ctx.provider_id, [service_id])
            if found[service_id]:
                return found[service_id][0].id
            session.add(
                ServiceDiscount(
                    provider_id=ctx.provider_id, service_id=service_id, percent_bp=1000,
                    start_date=self.clock.now().date(), created_at=self.clock.now(),
                )
            )  # fmt: skip
            await session.flush()
            found = await services_repository.discounts_of(session, ctx.provider_id, [service_id])
            return found[service_id][0].id

    async def fresh_token_of(self, user_id: int) -> int:
        async with self.db.transaction() as session:
            user = await session.get(User, user_id)
            assert user is not None
            return (await auth.issue_token(session, user, "to revoke", self.clock.now())).row.id

    async def invitation_token(self) -> str:
        async with self.db.transaction() as session:
            issued = await invite(
                self.staff_ctx(session),
                account_id=self.ids["Root"],
                email=self.email("invitee"),
                role="viewer",
            )
            return issued.link.removeprefix(LINK_PREFIX).split("/")[0]

    async def job_id(self, started_by: str | None = None) -> int:
        """A job the tenant's owner started, or the given actor (its provider's owner if anonymous)."""
        async with self.db.transaction() as session:
            ctx = self.staff_ctx(session)
            if started_by is not None and ACTORS[started_by].authenticated:
                spec = ACTORS[started_by]
                user_id = self.user_ids[started_by]
                ctx = Ctx(
                    session=session,
                    clock=self.clock,
                    actor=Actor(
                        provider_id=self.tenants[spec.provider].provider_id,
                        label=f"user:{user_id}",
                        user_id=user_id,
                        staff_role=spec.staff_role,
                    ),
                )
            return (await jobs.enqueue(ctx, "accounts.expiry_sweep")).id

    async def user_with_password(self) -> str:
        if self.password_user is None:
            email = self.email("signin")
            async with self.db.transaction() as session:
                await auth.create_user(
                    session, self.tenants[A].provider_id, email, PASSWORD, self.clock.now()
                )
            self.password_user = email
        return self.password_user


async def build_world(db: Database, clock: FrozenClock, tenant: Tenant) -> World:
    n = next(_builds)
    tenants = {A: tenant, B: await make_tenant(db, clock, f"Foreign ISP {n}")}
    world = World(n, db, clock, tenants, {}, {}, {}, {})
    async with db.transaction() as session:
        ctxs = {p: world.staff_ctx(session, p) for p in (A, B)}
        for name, spec in ACCOUNTS.items():
            parent_id = world.ids[spec.parent] if spec.parent else None
            body = AccountCreate(
                name=name,
                parent_id=parent_id,
                features={"subaccounts": True} if spec.subaccounts else {},
                preaccept_agreements=True,
            )
            world.ids[name] = (await accounts.create(ctxs[spec.provider], body)).id
        for provider, ctx in ctxs.items():
            plan = Plan(
                provider_id=ctx.provider_id, kind=PlanKind.internet.value, name=f"Matrix internet {n}",
                price_amount=2_000, currency="USD", pay_period="month", public=True,
                created_at=clock.now(), updated_at=clock.now(),
            )  # fmt: skip
            session.add(plan)
            await session.flush()
            world.plan_ids[provider] = plan.id
        for name, spec in ACCOUNTS.items():
            data = ServiceCreate(plan_id=world.plan_ids[spec.provider], login=f"{name.lower()}-{n}")
            service = await services.create(ctxs[spec.provider], world.ids[name], data)
            world.service_ids[name] = service.id

        owner = await session.get(User, tenant.owner_id)
        assert owner is not None
        for name, actor in ACTORS.items():
            provider_id = tenants[actor.provider].provider_id
            if name == "owner":
                world.tokens[name], world.user_ids[name] = tenant.token, tenant.owner_id
                continue
            if name == "other_provider":
                world.tokens[name] = tenants[B].token
                world.user_ids[name] = tenants[B].owner_id
                continue
            if actor.credential == "none":
                world.tokens[name] = None
                world.user_ids[name] = tenant.owner_id
                continue
            if actor.credential in ("revoked", "expired"):
                issued = await auth.issue_token(session, owner, name, clock.now())
                if actor.credential == "revoked":
                    issued.row.revoked_at = clock.now() - timedelta(minutes=1)
                else:
                    issued.row.expires_at = clock.now() - timedelta(seconds=1)
                world.tokens[name], world.user_ids[name] = issued.token, tenant.owner_id
                continue
            user = await auth.create_user(
                session,
                provider_id,
                world.email(name),
                None,
                clock.now(),
                staff_role=StaffRole(actor.staff_role) if actor.staff_role else None,
            )
            if actor.grant is not None:
                account, role = actor.grant
                session.add(
                    Membership(
                        provider_id=provider_id,
                        user_id=user.id,
                        account_id=world.ids[account],
                        role=role,
                        created_at=clock.now(),
                    )
                )
            world.tokens[name] = (await auth.issue_token(session, user, "matrix", clock.now())).token
            world.user_ids[name] = user.id
        for provider in (A, B):
            bystander = await auth.create_user(
                session, tenants[provider].provider_id, world.email("bystander"), None, clock.now()
            )
            world.bystanders[provider] = bystander.id
        await session.flush()
    return world
