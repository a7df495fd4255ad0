"""The access matrix, extended to the console: every page renders for every role that may
see it, and every page and action refuses a role that may not.

Every console route must be listed in REQUIRES with what it needs; a new route without an
entry fails here, so nothing joins the console without saying who may use it. GET pages are
requested by every role (200 or 403, never anything else); POST actions are sent only by
the roles that may not do them (403, and nothing changes), so the world stays as built.
Members hold their roles on Parent; Other is a tree none of them reaches (404).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from boughs.accounts import service as accounts
from boughs.accounts.models import Account
from boughs.accounts.schemas import AccountCreate
from boughs.auth.actor import StaffRole
from boughs.authz.permissions import Permission, for_account_roles, for_staff_role
from boughs.billing import payment_methods
from boughs.billing.models import BillRun, Invoice
from boughs.billing.payment_methods_schemas import PaymentMethodCreate
from boughs.catalog import service as catalog
from boughs.catalog.schemas import IpPoolCreate, PortCreate, RouterCreate
from boughs.console import console_routes
from boughs.jobs.models import Job
from boughs.memberships import repository as memberships_repository
from boughs.memberships import service as memberships
from boughs.memberships.models import AccountRole
from boughs.services import changes
from boughs.services import service as services
from boughs.services.schemas import DiscountCreate
from boughs.usage import service as usage
from boughs.usage.schemas import MeterCreate
from tests.billing.support import bill_run
from tests.console.conftest import ConsoleClient, MakeConsoleUser, SignIn
from tests.services.lifecycle_support import make_plan, make_service

# What a route needs: a permission on the account it concerns, or one of these for
# provider-level pages. "staff": any staff role; "staff_billing": staff who bill;
# "staff_provider": staff who manage the provider (catalog, top-level accounts).
STAFF, STAFF_BILLING, STAFF_PROVIDER = "staff", "staff_billing", "staff_provider"
R, ACC, SRV, BIL, MEM = (
    Permission.read,
    Permission.manage_accounts,
    Permission.manage_services,
    Permission.manage_billing,
    Permission.manage_members,
)
PUBLIC = {"/login", "/logout", "/invitations/{token}"}

REQUIRES: dict[tuple[str, str], Any] = {
    ("GET", "/"): R,
    ("GET", "/switcher"): R,
    ("GET", "/accounts"): R,
    ("GET", "/accounts/new"): STAFF_PROVIDER,
    ("POST", "/accounts/new"): STAFF_PROVIDER,
    ("GET", "/accounts/tree"): R,
    ("GET", "/accounts/{account_id}/tree-children"): R,
    ("GET", "/accounts/{account_id}"): R,
    ("GET", "/accounts/{account_id}/edit"): ACC,
    ("POST", "/accounts/{account_id}/edit"): ACC,
    ("POST", "/accounts/{account_id}/suspend"): ACC,
    ("POST", "/accounts/{account_id}/unsuspend"): ACC,
    ("GET", "/accounts/{account_id}/renew"): ACC,
    ("POST", "/accounts/{account_id}/renew"): ACC,
    ("GET", "/accounts/{account_id}/move"): ACC,
    ("POST", "/accounts/{account_id}/move"): ACC,
    ("POST", "/accounts/{account_id}/detach"): ACC,
    ("GET", "/accounts/{account_id}/delete"): ACC,
    ("POST", "/accounts/{account_id}/delete"): ACC,
    ("GET", "/accounts/{account_id}/children"): R,
    ("POST", "/accounts/{account_id}/children/{child_id}/suspend"): ACC,
    ("POST", "/accounts/{account_id}/children/{child_id}/unsuspend"): ACC,
    ("GET", "/accounts/{account_id}/children/new-connection"): ACC,
    ("POST", "/accounts/{account_id}/children/new-connection"): ACC,
    ("GET", "/accounts/{account_id}/children/{child_id}/edit"): ACC,
    ("POST", "/accounts/{account_id}/children/{child_id}/edit"): ACC,
    ("GET", "/accounts/{account_id}/children/new-account"): ACC,
    ("POST", "/accounts/{account_id}/children/new-account"): ACC,
    ("GET", "/accounts/{account_id}/children/new-subaccount"): ACC,
    ("POST", "/accounts/{account_id}/children/new-subaccount"): ACC,
    ("GET", "/dual-device-users"): R,
    ("GET", "/accounts/{account_id}/services"): R,
    ("GET", "/accounts/{account_id}/services/new"): SRV,
    ("POST", "/accounts/{account_id}/services/new"): SRV,
    ("GET", "/services/{service_id}"): R,
    ("POST", "/services/{service_id}/discounts"): SRV,
    ("POST", "/services/{service_id}/discounts/{discount_id}/delete"): SRV,
    ("POST", "/services/{service_id}/change-plan"): SRV,
    ("POST", "/services/{service_id}/scheduled-changes"): SRV,
    ("POST", "/services/{service_id}/scheduled-changes/{change_id}/cancel"): SRV,
    ("POST", "/services/{service_id}/status"): SRV,
    ("POST", "/services/{service_id}/top-ups"): SRV,
    ("GET", "/services/{service_id}/edit"): SRV,
    ("POST", "/services/{service_id}/edit"): SRV,
    ("GET", "/services/{service_id}/delete"): SRV,
    ("POST", "/services/{service_id}/delete"): SRV,
    ("GET", "/accounts/{account_id}/usage"): R,
    ("GET", "/services/{service_id}/usage"): R,
    ("GET", "/accounts/{account_id}/invoices"): R,
    ("GET", "/accounts/{account_id}/transactions"): R,
    ("POST", "/accounts/{account_id}/payments"): STAFF_BILLING,
    ("GET", "/accounts/{account_id}/payment-methods"): R,
    ("POST", "/accounts/{account_id}/payment-methods"): BIL,
    ("GET", "/accounts/{account_id}/payment-methods/{method_id}/edit"): BIL,
    ("POST", "/accounts/{account_id}/payment-methods/{method_id}"): BIL,
    ("GET", "/accounts/{account_id}/payment-methods/{method_id}/delete"): BIL,
    ("POST", "/accounts/{account_id}/payment-methods/{method_id}/delete"): BIL,
    ("GET", "/invoices/{invoice_id}.pdf"): R,
    ("GET", "/invoices/{invoice_id}/document"): R,
    ("GET", "/invoices/{invoice_id}"): R,
    ("POST", "/invoices/{invoice_id}/finalize"): STAFF_BILLING,
    ("POST", "/invoices/{invoice_id}/recalculate"): STAFF_BILLING,
    ("POST", "/invoices/{invoice_id}/void"): STAFF_BILLING,
    ("POST", "/invoices/{invoice_id}/uncollectible"): STAFF_BILLING,
    ("GET", "/invoices"): STAFF,
    ("GET", "/bill-runs"): STAFF_BILLING,
    ("POST", "/bill-runs"): STAFF_BILLING,
    ("GET", "/bill-runs/{bill_run_id}"): STAFF_BILLING,
    ("GET", "/bill-runs/{bill_run_id}/progress"): STAFF_BILLING,
    ("GET", "/plans"): STAFF,
    ("GET", "/plans/new"): STAFF_PROVIDER,
    ("POST", "/plans/new"): STAFF_PROVIDER,
    ("GET", "/plans/{plan_id}"): STAFF,
    ("POST", "/plans/{plan_id}"): STAFF_PROVIDER,
    ("POST", "/plans/{plan_id}/offers"): STAFF_PROVIDER,
    ("POST", "/plans/{plan_id}/offers/{account_id}/withdraw"): STAFF_PROVIDER,
    ("GET", "/plans/{plan_id}/delete"): STAFF_PROVIDER,
    ("POST", "/plans/{plan_id}/delete"): STAFF_PROVIDER,
    ("GET", "/meters"): STAFF,
    ("GET", "/meters/new"): STAFF_PROVIDER,
    ("POST", "/meters/new"): STAFF_PROVIDER,
    ("GET", "/meters/{meter_id}"): STAFF,
    ("POST", "/meters/{meter_id}"): STAFF_PROVIDER,
    ("GET", "/routers"): STAFF,
    ("GET", "/routers/new"): STAFF_PROVIDER,
    ("POST", "/routers/new"): STAFF_PROVIDER,
    ("GET", "/routers/{router_id}"): STAFF,
    ("POST", "/routers/{router_id}"): STAFF_PROVIDER,
    ("POST", "/routers/{router_id}/reveal-secret"): STAFF_PROVIDER,
    ("GET", "/routers/{router_id}/delete"): STAFF_PROVIDER,
    ("POST", "/routers/{router_id}/delete"): STAFF_PROVIDER,
    ("GET", "/ip-pools"): STAFF,
    ("GET", "/ip-pools/new"): STAFF_PROVIDER,
    ("POST", "/ip-pools/new"): STAFF_PROVIDER,
    ("GET", "/ip-pools/{pool_id}"): STAFF,
    ("POST", "/ip-pools/{pool_id}"): STAFF_PROVIDER,
    ("GET", "/ip-pools/{pool_id}/delete"): STAFF_PROVIDER,
    ("POST", "/ip-pools/{pool_id}/delete"): STAFF_PROVIDER,
    ("GET", "/ports"): STAFF,
    ("GET", "/ports/new"): STAFF_PROVIDER,
    ("POST", "/ports/new"): STAFF_PROVIDER,
    ("GET", "/ports/{port_id}"): STAFF,
    ("POST", "/ports/{port_id}"): STAFF_PROVIDER,
    ("GET", "/ports/{port_id}/delete"): STAFF_PROVIDER,
    ("POST", "/ports/{port_id}/delete"): STAFF_PROVIDER,
    ("GET", "/accounts/{account_id}/users"): R,
    ("POST", "/accounts/{account_id}/users"): MEM,
    ("POST", "/accounts/{account_id}/users/{membership_id}/remove"): MEM,
    ("GET", "/accounts/{account_id}/agreements"): R,
    ("POST", "/accounts/{account_id}/agreements"): ACC,
    ("GET", "/accounts/{account_id}/activity"): R,
    ("GET", "/operations"): STAFF,
    ("POST", "/operations/run"): STAFF_PROVIDER,
    ("GET", "/operations/{job_id}"): STAFF,
    ("GET", "/operations/{job_id}/progress"): STAFF,
}

STAFF_ROLES = (StaffRole.owner, StaffRole.admin, StaffRole.billing, StaffRole.support)
MEMBER_ROLES = (AccountRole.admin, AccountRole.billing, AccountRole.technical, AccountRole.viewer)


@dataclass(frozen=True)
class Who:
    name: str
    staff_role: str | None = None
    account_role: str | None = None

    def may(self, need: Any) -> bool:
        if need == STAFF:
            return self.staff_role is not None
        if need == STAFF_BILLING:
            return self.staff_role in (StaffRole.owner, StaffRole.admin, StaffRole.billing)
        if need == STAFF_PROVIDER:
            return self.staff_role in (StaffRole.owner, StaffRole.admin)
        if self.staff_role is not None:
            return need in for_staff_role(self.staff_role)
        return need in for_account_roles(frozenset({str(self.account_role)}))


ACTORS = [Who(f"staff-{r}", staff_role=r) for r in STAFF_ROLES] + [
    Who(f"member-{r}", account_role=r) for r in MEMBER_ROLES
]
PARAM = re.compile(r"{(\w+)}")


def routes() -> list[tuple[str, str]]:
    found = []
    for route in console_routes():
        for method in sorted(route.methods - {"HEAD"}):
            if route.path not in PUBLIC:
                found.append((method, route.path))
    return found


def test_every_console_route_says_who_may_use_it() -> None:
    listed = set(REQUIRES)
    present = set(routes())
    assert present - listed == set(), "console routes without an entry in REQUIRES"
    assert listed - present == set(), "REQUIRES names routes the console no longer has"


@dataclass
class World:
    ids: dict[str, int]
    other: int
    clients: dict[str, ConsoleClient]


@pytest.fixture
async def world(
    ctx_factory: Any,
    sign_in: SignIn,
    make_console_user: MakeConsoleUser,
    tenant: Any,
    client: httpx.AsyncClient,
    settings: Any,
    db: Any,
    clock: Any,
) -> World:
    async with ctx_factory() as ctx:
        root = await accounts.create(ctx, AccountCreate(name="Root", preaccept_agreements=True))
        parent = await accounts.create(
            ctx, AccountCreate(name="Parent", parent_id=root.id, preaccept_agreements=True)
        )
        child = await accounts.create(
            ctx, AccountCreate(name="Child", parent_id=parent.id, preaccept_agreements=True)
        )
        other = await accounts.create(ctx, AccountCreate(name="Other", preaccept_agreements=True))
        plan = await make_plan(ctx, "Office line", 3000)
        service_id = await make_service(ctx, parent.id, plan.id, start_date=date(2026, 1, 1))
        discount = await services.add_discount(ctx, service_id, DiscountCreate(percent=Decimal("10")))
        change = await changes.schedule_change(
            ctx, service_id, changes.ScheduledChangeCreate(effective_date=date(2026, 3, 1), quantity=2)
        )
        meter = await usage.create_meter(
            ctx, MeterCreate(code="data", name="Data", unit="bytes", aggregation="sum")
        )
        router = await catalog.create_router(
            ctx, RouterCreate(name="bras-1", address="10.0.0.1", type="mikrotik", radius_secret="s3cret")
        )
        pool = await catalog.create_pool(
            ctx, IpPoolCreate(name="CGNAT", cidr="100.64.0.0/24", kind="dynamic")
        )
        port = await catalog.create_port(ctx, PortCreate(name="IX port 1"))
        method = await payment_methods.create_method(
            ctx, parent.id, PaymentMethodCreate(kind="manual", label="Bank transfer")
        )
    await bill_run(client, settings, db, clock, "2026-01-31")
    users: dict[str, int] = {}
    for who in ACTORS:
        user = await make_console_user(f"{who.name}@matrix.example", staff_role=who.staff_role)
        users[who.name] = user.id
    async with ctx_factory() as ctx:
        for who in ACTORS:
            if who.account_role is not None:
                await memberships.add(
                    ctx, parent.id, f"{who.name}@matrix.example", AccountRole(who.account_role)
                )
        on_parent = await memberships_repository.on_account(ctx.session, tenant.provider_id, parent.id)
        membership = on_parent[0][0]
        invoice_id = await ctx.session.scalar(
            select(func.min(Invoice.id)).where(Invoice.owner_account_id == parent.id)
        )
        bill_run_id = await ctx.session.scalar(select(func.min(BillRun.id)))
        job_id = await ctx.session.scalar(select(func.min(Job.id)))
    ids = {
        "account_id": parent.id,
        "child_id": child.id,
        "service_id": service_id,
        "discount_id": discount.id,
        "change_id": change.id,
        "plan_id": plan.id,
        "meter_id": meter.id,
        "router_id": router.id,
        "pool_id": pool.id,
        "port_id": port.id,
        "method_id": method.id,
        "membership_id": membership.id,
        "invoice_id": int(invoice_id),
        "bill_run_id": int(bill_run_id),
        "job_id": int(job_id),
    }
    clients = {who.name: await sign_in(users[who.name]) for who in ACTORS}
    return World(ids=ids, other=other.id, clients=clients)


def _url(path: str, ids: dict[str, int]) -> str:
    return PARAM.sub(lambda m: str(ids[m.group(1)]), path)


async def test_every_page_renders_or_refuses_for_every_role(world: World) -> None:
    wrong: list[str] = []
    for who in ACTORS:
        console = world.clients[who.name]
        for method, path in routes():
            if method != "GET":
                continue
            allowed = who.may(REQUIRES[(method, path)])
            answer = await console.get(_url(path, world.ids))
            # Refused: 403, or 404 for an object the role cannot see at all (another user's job).
            if answer.status_code not in ({200} if allowed else {403, 404}):
                expected = 200 if allowed else 403
                wrong.append(f"{who.name} GET {path}: {answer.status_code}, expected {expected}")
    assert not wrong, "\n".join(wrong)


async def test_every_action_refuses_a_role_that_may_not(world: World, ctx_factory: Any) -> None:
    async with ctx_factory() as ctx:
        before = await ctx.session.scalar(select(func.count()).select_from(Account))
    wrong: list[str] = []
    for who in ACTORS:
        console = world.clients[who.name]
        for method, path in routes():
            if method != "POST" or who.may(REQUIRES[(method, path)]):
                continue
            answer = await console.submit(_url(path, world.ids))
            if answer.status_code not in (403, 404):
                wrong.append(f"{who.name} POST {path}: {answer.status_code}, expected 403")
    assert not wrong, "\n".join(wrong)
    async with ctx_factory() as ctx:
        assert await ctx.session.scalar(select(func.count()).select_from(Account)) == before


async def test_a_tree_outside_the_members_reach_is_not_there(world: World) -> None:
    wrong: list[str] = []
    ids = {**world.ids, "account_id": world.other}
    for who in ACTORS:
        if who.staff_role is not None:
            continue
        console = world.clients[who.name]
        for method, path in routes():
            if method != "GET" or "{account_id}" not in path or "{" in path.replace("{account_id}", ""):
                continue
            answer = await console.get(_url(path, ids))
            if answer.status_code != 404:
                wrong.append(f"{who.name} GET {path} of Other: {answer.status_code}, expected 404")
    assert not wrong, "\n".join(wrong)
