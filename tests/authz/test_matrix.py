"""The authorization matrix: every /api/v1 route, every kind of actor, every kind of target.

Each route has an entry in ``MATRIX`` saying how to call it and which rule decides who may;
the expected answer of every (actor, target) cell is derived from that rule and the world's
description (``matrix_world``), never written per cell. A route without an entry fails
``test_every_route_has_an_entry``.

The rules, from the README's "Who may do what" and issue 3:
- no credentials, a revoked token or an expired one → 401 on every authenticated route;
- an account outside the actor's scope → 404 with exactly the body of a missing id;
- a write the role does not allow on an account in scope → 403;
- an account named in a body (parent_id) outside the scope → 422 naming the field, like a missing one;
- top-level accounts and features are the provider's (owner/admin staff): 422 naming the field;
- otherwise allowed: not 401/403/404 (a 409 from a domain rule, e.g. "has children", is allowed).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi.routing import APIRoute

from boughs.auth import passwords
from boughs.db import Database
from boughs.kit.clock import FrozenClock
from tests.authz.matrix_world import (
    ACCOUNTS,
    ACTORS,
    PASSWORD,
    TARGET_KINDS,
    A,
    ActorSpec,
    World,
    ancestors_of,
    build_world,
    has_children,
)
from tests.billing import invoices_matrix_cases as invoices
from tests.billing import payment_methods_matrix_cases as payment_methods
from tests.billing import payments_matrix_cases as payments
from tests.catalog import matrix_cases as catalog
from tests.conftest import Tenant
from tests.services import lifecycle_matrix_cases as lifecycle
from tests.services import services_matrix_cases as services
from tests.usage import matrix_cases as usage

API = "/api/v1"
MISSING = 987_654_321
PROBLEM_JSON = "application/problem+json"

# --- what each role may do (the README's table) ----------------------------------------

READ, ACCOUNTS_, MEMBERS, BILLING, PROVIDER = "read", "accounts", "members", "billing", "provider"
SERVICES = "services"
EVERYTHING = frozenset({READ, ACCOUNTS_, MEMBERS, BILLING, SERVICES, PROVIDER})
STAFF_MAY = {
    "owner": EVERYTHING,
    "admin": EVERYTHING,
    "billing": frozenset({READ, BILLING}),
    "support": frozenset({READ}),
}
MEMBER_MAY = {
    "admin": frozenset({READ, ACCOUNTS_, MEMBERS, BILLING, SERVICES}),
    "billing": frozenset({READ, BILLING}),
    "technical": frozenset({READ, SERVICES}),
    "viewer": frozenset({READ}),
}


def in_scope(actor: ActorSpec, account: str) -> bool:
    """Staff reach their provider; members their account and below (no parent_access limits here)."""
    if ACCOUNTS[account].provider != actor.provider:
        return False
    if actor.staff_role:
        return True
    assert actor.grant is not None
    return actor.grant[0] == account or actor.grant[0] in ancestors_of(account)


def may(actor: ActorSpec, account: str, what: str) -> bool:
    if not in_scope(actor, account):
        return False
    if actor.staff_role:
        return what in STAFF_MAY[actor.staff_role]
    assert actor.grant is not None
    return what in MEMBER_MAY[actor.grant[1]]


def provider_staff(actor: ActorSpec) -> bool:
    return PROVIDER in STAFF_MAY.get(actor.staff_role or "", frozenset())


def scope_names(actor: ActorSpec) -> set[str]:
    return {name for name in ACCOUNTS if in_scope(actor, name)}


# --- expected outcomes -----------------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    status: int | None = None  # None: allowed
    field: str | None = None  # the field a 422 must name
    same_as_missing: bool = False  # the body must equal the answer for a nonexistent id

    def __str__(self) -> str:
        if self.status is None:
            return "allowed"
        return f"{self.status}" + (f" naming {self.field}" if self.field else "")


OK = Expect()
UNAUTHORIZED = Expect(401)
FORBIDDEN = Expect(403)
HIDDEN = Expect(404, same_as_missing=True)

Rule = Callable[[ActorSpec, str | None], Expect]


def authenticated(rule: Rule) -> Rule:
    def checked(actor: ActorSpec, target: str | None) -> Expect:
        return rule(actor, target) if actor.authenticated else UNAUTHORIZED

    checked.__name__ = rule.__name__
    return checked


def public(actor: ActorSpec, target: str | None) -> Expect:
    return OK


@authenticated
def anyone_signed_in(actor: ActorSpec, target: str | None) -> Expect:
    return OK


@authenticated
def read(actor: ActorSpec, target: str | None) -> Expect:
    assert target is not None
    return OK if in_scope(actor, target) else HIDDEN


def write(permission: str) -> Rule:
    @authenticated
    def rule(actor: ActorSpec, target: str | None) -> Expect:
        assert target is not None
        if not in_scope(actor, target):
            return HIDDEN
        return OK if may(actor, target, permission) else FORBIDDEN

    rule.__name__ = f"write_{permission}"
    return rule


@authenticated
def create_child(actor: ActorSpec, target: str | None) -> Expect:
    """POST /accounts with parent_id = target: the parent is named in the body."""
    assert target is not None
    if not in_scope(actor, target):
        return Expect(422, "parent_id", same_as_missing=True)
    if not may(actor, target, ACCOUNTS_):
        return FORBIDDEN
    if not actor.staff_role and not ACCOUNTS[target].subaccounts:
        return FORBIDDEN  # the subaccounts feature is off
    return OK


@authenticated
def create_child_with_features(actor: ActorSpec, target: str | None) -> Expect:
    expect = create_child(actor, target)
    if expect == OK and not provider_staff(actor):
        return Expect(422, "features")
    return expect


@authenticated
def create_top_level(actor: ActorSpec, target: str | None) -> Expect:
    return OK if provider_staff(actor) else Expect(422, "parent_id")


@authenticated
def set_features(actor: ActorSpec, target: str | None) -> Expect:
    expect = write(ACCOUNTS_)(actor, target)
    if expect == OK and not provider_staff(actor):
        return Expect(422, "features")
    return expect


@authenticated
def move_to_current_parent(actor: ActorSpec, target: str | None) -> Expect:
    """Moving the target under the parent it has: the path and the body both name an account."""
    assert target is not None
    expect = write(ACCOUNTS_)(actor, target)
    if expect != OK:
        return expect
    parent = ACCOUNTS[target].parent
    if parent is None:
        return OK if provider_staff(actor) else Expect(422, "parent_id")
    if not in_scope(actor, parent):
        return Expect(422, "parent_id")
    return OK if may(actor, parent, ACCOUNTS_) else FORBIDDEN


@authenticated
def provider_admins(actor: ActorSpec, target: str | None) -> Expect:
    """Provider-level actions: the provider's owner and admins, in their own provider."""
    return OK if actor.staff_role in ("owner", "admin") else FORBIDDEN


@authenticated
def job_reads(actor: ActorSpec, target: str | None) -> Expect:
    """Staff see every job of their provider; account users only the jobs they started."""
    if target == "own_job":
        return OK
    return OK if actor.staff_role and actor.provider == A else HIDDEN


@authenticated
def own_token(actor: ActorSpec, target: str | None) -> Expect:
    return OK if target == "own" else HIDDEN


# --- the table -------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    path: str
    body: Any = None


# fill(world, actor, target account id or None for "missing") → the request to send
Fill = Callable[[World, str, int | None], Awaitable[Request]]


@dataclass(frozen=True)
class Case:
    name: str
    rule: Rule
    fill: Fill
    targets: tuple[str, ...] = TARGET_KINDS  # account target kinds, or ("self",) etc.
    destructive: bool = False  # rebuild the world after any success
    also_ok: frozenset[int] = frozenset()  # domain answers that still mean "allowed"
    check: Check | None = None  # more to check on an allowed answer


def on_account(suffix: str = "", body: Any = None) -> Fill:
    async def fill(world: World, actor: str, account_id: int | None) -> Request:
        return Request(f"{API}/accounts/{account_id or MISSING}{suffix}", body)

    return fill


def fixed(path: str, body: Callable[[World], Any] | None = None) -> Fill:
    async def fill(world: World, actor: str, account_id: int | None) -> Request:
        return Request(f"{API}{path}", body(world) if body else None)

    return fill


def child_of(**extra: Any) -> Fill:
    async def fill(world: World, actor: str, account_id: int | None) -> Request:
        return Request(f"{API}/accounts", {"name": "New child", "parent_id": account_id or MISSING, **extra})

    return fill


async def move_fill(world: World, actor: str, account_id: int | None) -> Request:
    by_id = {v: k for k, v in world.ids.items()}
    parent = ACCOUNTS[by_id[account_id]].parent if account_id else "Root"
    parent_id = world.ids[parent] if parent else None
    return Request(f"{API}/accounts/{account_id or MISSING}/move", {"parent_id": parent_id})


async def new_membership(world: World, actor: str, account_id: int | None) -> Request:
    return Request(
        f"{API}/accounts/{account_id or MISSING}/memberships",
        {"email": world.email("member"), "role": "viewer"},
    )


async def delete_membership(world: World, actor: str, account_id: int | None) -> Request:
    if account_id is None:
        return Request(f"{API}/memberships/{MISSING}")
    by_id = {v: k for k, v in world.ids.items()}
    return Request(f"{API}/memberships/{await world.membership_on(by_id[account_id])}")


async def revoke_token(world: World, actor: str, target: int | None) -> Request:
    # target: 1 = one of the actor's own tokens, 2 = another user's, None = a missing id
    if target is None:
        return Request(f"{API}/me/tokens/{MISSING}")
    user_id = world.user_ids[actor] if target == 1 else world.bystanders[A]
    return Request(f"{API}/me/tokens/{await world.fresh_token_of(user_id)}")


async def sign_in(world: World, actor: str, target: int | None) -> Request:
    return Request("", {"email": await world.user_with_password(), "password": PASSWORD})


async def new_token(world: World, actor: str, target: int | None) -> Request:
    body = {"email": await world.user_with_password(), "password": PASSWORD, "name": "matrix"}
    return Request(f"{API}/auth/tokens", body)


async def login(world: World, actor: str, target: int | None) -> Request:
    return Request(f"{API}/auth/login", (await sign_in(world, actor, target)).body)


async def accept_invitation(world: World, actor: str, target: int | None) -> Request:
    token = await world.invitation_token()
    return Request(f"{API}/invitations/{token}/accept", {"name": "Invitee", "password": PASSWORD})


async def job(world: World, actor: str, target: int | None) -> Request:
    # target: 1 = a job the tenant's owner started, 2 = one the actor started, None = a missing id
    if target is None:
        return Request(f"{API}/jobs/{MISSING}")
    return Request(f"{API}/jobs/{await world.job_id(actor if target == 2 else None)}")


Check = Callable[[World, ActorSpec, "str | None", httpx.Response], "str | None"]


def root_of(name: str) -> str:
    return ([name, *ancestors_of(name)])[-1]


def lists(expected: Callable[[str | None], set[str]], *, paths: bool = False) -> Check:
    """The answer lists exactly ``expected(target)`` within the actor's scope, and nothing outside it.

    With ``paths``, the switcher's path_names name no account outside the scope (never upward).
    """

    def check(world: World, actor: ActorSpec, target: str | None, response: httpx.Response) -> str | None:
        data = response.json()
        items = data["items"] if isinstance(data, dict) else data
        by_id = {v: k for k, v in world.ids.items()}
        seen = {item["id"] for item in items}
        want = {world.ids[name] for name in expected(target) & scope_names(actor)}
        if seen & set(by_id) != want or (not actor.staff_role and seen - set(by_id)):
            return (
                f"listed {sorted(by_id.get(i, str(i)) for i in seen)}, "
                f"expected {sorted(by_id[i] for i in want)}"
            )
        if paths:
            visible = scope_names(actor)
            for item in items:
                hidden = [n for n in item["path_names"][:-1] if n != "…" and n not in visible]
                if hidden or item["path_names"][-1] != item["name"]:
                    return f"path_names {item['path_names']} name accounts outside the scope"
        return None

    return check


def everything(target: str | None) -> set[str]:
    return set(ACCOUNTS)


def children_of(target: str | None) -> set[str]:
    return {name for name, spec in ACCOUNTS.items() if spec.parent == target}


def below(target: str | None) -> set[str]:
    return {name for name in ACCOUNTS if target in ancestors_of(name)}


def above(target: str | None) -> set[str]:
    assert target is not None
    return set(ancestors_of(target))


def rooted_at(target: str | None) -> set[str]:
    return {name for name in ACCOUNTS if root_of(name) == target}


def named_like(target: str | None) -> set[str]:
    assert target is not None
    return {name for name in ACCOUNTS if target.lower() in name.lower()}


def with_query(path: str, param: str) -> Fill:
    """A list filtered by the target: by its id, or (param "q") by its name."""

    async def fill(world: World, actor: str, account_id: int | None) -> Request:
        by_id = {v: k for k, v in world.ids.items()}
        value = by_id[account_id] if param == "q" and account_id else account_id or MISSING
        return Request(f"{API}{path}?{param}={value}")

    return fill


# --- child connections: the target is the parent; the connection acted on is its first child ---


def first_child(name: str | None) -> str | None:
    return next((n for n, spec in ACCOUNTS.items() if spec.parent == name), None)


def on_connection(rule: Rule) -> Rule:
    """A rule about the target's first child connection; a target without children answers 404."""

    @authenticated
    def checked(actor: ActorSpec, target: str | None) -> Expect:
        assert target is not None
        if not in_scope(actor, target):
            return HIDDEN
        if first_child(target) is None:
            return Expect(404)
        return rule(actor, target)

    checked.__name__ = f"connection_{rule.__name__}"
    return checked


@authenticated
def create_connection(actor: ActorSpec, target: str | None) -> Expect:
    """The parent is in the path; a child of it is made as POST /accounts would make one."""
    assert target is not None
    if not in_scope(actor, target):
        return HIDDEN
    if not may(actor, target, ACCOUNTS_):
        return FORBIDDEN
    if not actor.staff_role and not ACCOUNTS[target].subaccounts:
        return FORBIDDEN  # the subaccounts feature is off
    return OK


def on_child_connection(suffix: str = "", body: Any = None) -> Fill:
    async def fill(world: World, actor: str, account_id: int | None) -> Request:
        by_id = {v: k for k, v in world.ids.items()}
        child = first_child(by_id[account_id]) if account_id else None
        child_id = world.ids[child] if child else MISSING
        return Request(f"{API}/accounts/{account_id or MISSING}/child-connections/{child_id}{suffix}", body)

    return fill


async def new_connection(world: World, actor: str, account_id: int | None) -> Request:
    """A connection form on the public internet plan of the actor's provider."""
    body = {
        "label": "Matrix connection",
        "username": world.email("login"),
        "password": PASSWORD,
        "plan_id": world.plan_ids[ACTORS[actor].provider],
        "invoice_mode": "with_parent",
    }
    return Request(f"{API}/accounts/{account_id or MISSING}/child-connections", body)


def connection_rows(
    world: World, actor: ActorSpec, target: str | None, response: httpx.Response
) -> str | None:
    """The target's Connections list: exactly its children, each once."""
    by_id = {v: k for k, v in world.ids.items()}
    seen = [by_id.get(item["account_id"], str(item["account_id"])) for item in response.json()["items"]]
    want = {n for n, spec in ACCOUNTS.items() if spec.parent == target}
    return None if sorted(seen) == sorted(want) else f"listed {sorted(seen)}, expected {sorted(want)}"


def dual_device_rows(
    world: World, actor: ActorSpec, target: str | None, response: httpx.Response
) -> str | None:
    """kind=children lists exactly the accounts in scope with a child in scope, and nothing else."""
    by_id = {v: k for k, v in world.ids.items()}
    seen = {by_id.get(item["account_id"], str(item["account_id"])) for item in response.json()["items"]}
    visible = scope_names(actor)
    want = {n for n in visible if any(ACCOUNTS[k].parent == n for k in visible)}
    return None if seen == want else f"listed {sorted(seen)}, expected {sorted(want)}"


SELF = ("self",)
STATUS = {"reason": "matrix"}

MATRIX: dict[tuple[str, str], tuple[Case, ...]] = {
    # accounts
    ("POST", "/accounts"): (
        Case("child of the target", create_child, child_of()),
        Case("child with features", create_child_with_features, child_of(features={"subaccounts": True})),
        Case("top level", create_top_level, fixed("/accounts", lambda w: {"name": "New top"}), SELF),
    ),
    ("GET", "/accounts"): (
        Case("list", anyone_signed_in, fixed("/accounts"), SELF, check=lists(everything)),
        Case("by parent", anyone_signed_in, with_query("/accounts", "parent_id"), check=lists(children_of)),
        Case("by root", anyone_signed_in, with_query("/accounts", "root_id"), check=lists(rooted_at)),
        Case("by name", anyone_signed_in, with_query("/accounts", "q"), check=lists(named_like)),
    ),
    ("GET", "/accounts/{account_id}"): (Case("get", read, on_account()),),
    ("PATCH", "/accounts/{account_id}"): (
        Case("description", write(ACCOUNTS_), on_account(body={"description": "matrix"})),
        Case("parent_access", write(ACCOUNTS_), on_account(body={"parent_access": "manage"})),
        Case("features", set_features, on_account(body={"features": {"subaccounts": True}})),
    ),
    ("GET", "/accounts/{account_id}/deletion"): (Case("preview", read, on_account("/deletion")),),
    ("DELETE", "/accounts/{account_id}"): (Case("delete", write(ACCOUNTS_), on_account(), destructive=True),),
    ("GET", "/accounts/{account_id}/children"): (
        Case("children", read, on_account("/children"), check=lists(children_of)),
    ),
    ("GET", "/accounts/{account_id}/descendants"): (
        Case("descendants", read, on_account("/descendants"), check=lists(below)),
    ),
    ("GET", "/accounts/{account_id}/ancestors"): (
        Case("ancestors", read, on_account("/ancestors"), check=lists(above)),
    ),
    ("GET", "/accounts/{account_id}/subtree-summary"): (
        Case("summary", read, on_account("/subtree-summary")),
    ),
    ("GET", "/accounts/{account_id}/effective"): (Case("effective", read, on_account("/effective")),),
    ("GET", "/accounts/{account_id}/links"): (Case("links", read, on_account("/links")),),
    ("POST", "/accounts/{account_id}/agreements"): (
        Case("accept", write(ACCOUNTS_), on_account("/agreements", {"msa": True, "aup": True})),
    ),
    ("POST", "/accounts/{account_id}/move"): (Case("to its own parent", move_to_current_parent, move_fill),),
    ("POST", "/accounts/{account_id}/renew"): (
        Case("renew", write(ACCOUNTS_), on_account("/renew", {"period": "month"})),
    ),
    ("POST", "/accounts/{account_id}/suspend"): (
        Case("suspend", write(ACCOUNTS_), on_account("/suspend", STATUS)),
    ),
    ("POST", "/accounts/{account_id}/unsuspend"): (
        Case("unsuspend", write(ACCOUNTS_), on_account("/unsuspend", STATUS)),
    ),
    ("POST", "/accounts/{account_id}/cancel"): (
        Case("cancel", write(ACCOUNTS_), on_account("/cancel", STATUS)),
    ),
    # audit
    ("GET", "/accounts/{account_id}/audit"): (Case("audit", read, on_account("/audit")),),
    # memberships
    ("GET", "/accounts/{account_id}/memberships"): (Case("list", read, on_account("/memberships")),),
    ("POST", "/accounts/{account_id}/memberships"): (Case("add", write(MEMBERS), new_membership),),
    ("DELETE", "/memberships/{membership_id}"): (
        Case("remove a membership on the target", write(MEMBERS), delete_membership),
    ),
    ("GET", "/me/accounts"): (
        Case("switcher", anyone_signed_in, fixed("/me/accounts"), SELF, check=lists(everything, paths=True)),
        Case(
            "search",
            anyone_signed_in,
            with_query("/me/accounts", "q"),
            check=lists(named_like, paths=True),
        ),
    ),
    # identity
    ("POST", "/auth/tokens"): (Case("sign in", public, new_token, SELF),),
    ("POST", "/auth/login"): (Case("log in", public, login, SELF),),
    # With a bearer token there is no session to end: 409 is the domain's answer.
    ("POST", "/auth/logout"): (Case("log out", anyone_signed_in, fixed("/auth/logout"), SELF),),
    ("GET", "/me"): (Case("me", anyone_signed_in, fixed("/me"), SELF),),
    ("GET", "/me/tokens"): (Case("my tokens", anyone_signed_in, fixed("/me/tokens"), SELF),),
    ("DELETE", "/me/tokens/{token_id}"): (Case("revoke", own_token, revoke_token, ("own", "other_user")),),
    # The matrix users have no password, so a signed-in actor gets 422 on current_password.
    ("POST", "/me/password"): (
        Case(
            "change",
            anyone_signed_in,
            fixed("/me/password", lambda w: {"current_password": "x", "new_password": PASSWORD}),
            SELF,
            also_ok=frozenset({422}),
        ),
    ),
    ("POST", "/users"): (
        Case("create", provider_admins, fixed("/users", lambda w: {"email": w.email("user")}), SELF),
    ),
    ("POST", "/invitations/{token}/accept"): (Case("accept", public, accept_invitation, SELF),),
    # jobs
    ("POST", "/jobs"): (
        Case("start", provider_admins, fixed("/jobs", lambda w: {"kind": "accounts.expiry_sweep"}), SELF),
    ),
    ("GET", "/jobs/{job_id}"): (Case("a job", job_reads, job, ("provider_job", "own_job")),),
    # the provider's settings
    ("GET", "/provider"): (Case("settings", anyone_signed_in, fixed("/provider"), SELF),),
    ("PATCH", "/provider"): (
        Case("retention", provider_admins, fixed("/provider", lambda w: {"usage_retention_days": 400}), SELF),
    ),
    # catalog
    ("GET", "/plans"): (Case("list", anyone_signed_in, fixed("/plans"), SELF),),
    ("POST", "/plans"): (Case("create", provider_admins, fixed("/plans", catalog.new_plan), SELF),),
    ("GET", "/plans/{plan_id}"): (Case("offered to the target", catalog.plan_read, catalog.plan_offered()),),
    ("PATCH", "/plans/{plan_id}"): (
        Case("offered to the target", catalog.plan_write, catalog.plan_offered(body={"description": "m"})),
    ),
    ("DELETE", "/plans/{plan_id}"): (
        Case("offered to the target", catalog.plan_write, catalog.plan_offered()),
    ),
    ("GET", "/plans/{plan_id}/offers"): (
        Case("offered to the target", catalog.plan_read, catalog.plan_offered("/offers")),
    ),
    ("POST", "/plans/{plan_id}/offers"): (
        Case("pass on the parent's plan", catalog.offer_create, catalog.offer_to_target),
    ),
    ("DELETE", "/plans/{plan_id}/offers/{account_id}"): (
        Case("withdraw from the target", catalog.offer_delete, catalog.withdraw_from_target),
    ),
    ("GET", "/routers"): (Case("list", anyone_signed_in, fixed("/routers"), SELF),),
    ("POST", "/routers"): (Case("create", provider_admins, fixed("/routers", catalog.new_router), SELF),),
    ("GET", "/routers/{router_id}"): (Case("get", catalog.router_read, catalog.router(), SELF),),
    ("PATCH", "/routers/{router_id}"): (
        Case("edit", catalog.router_write, catalog.router(body={"description": "m"}), SELF),
    ),
    ("DELETE", "/routers/{router_id}"): (Case("delete", catalog.router_write, catalog.router(), SELF),),
    ("POST", "/routers/{router_id}/reveal-secret"): (
        Case("reveal", catalog.router_write, catalog.router("/reveal-secret"), SELF),
    ),
    ("GET", "/ip-pools"): (Case("list", anyone_signed_in, fixed("/ip-pools"), SELF),),
    ("POST", "/ip-pools"): (Case("owned by the target", catalog.owned_create, catalog.create_owned("pool")),),
    ("GET", "/ip-pools/{pool_id}"): (Case("owned by the target", catalog.owned_read, catalog.owned("pool")),),
    ("PATCH", "/ip-pools/{pool_id}"): (
        Case(
            "owned by the target",
            catalog.owned_write,
            catalog.owned("pool", {"shared_with_descendants": False}),
        ),
    ),
    ("DELETE", "/ip-pools/{pool_id}"): (
        Case("owned by the target", catalog.owned_write, catalog.owned("pool")),
    ),
    ("GET", "/ports"): (Case("list", anyone_signed_in, fixed("/ports"), SELF),),
    ("POST", "/ports"): (Case("owned by the target", catalog.owned_create, catalog.create_owned("port")),),
    ("GET", "/ports/{port_id}"): (Case("owned by the target", catalog.owned_read, catalog.owned("port")),),
    ("PATCH", "/ports/{port_id}"): (
        Case("owned by the target", catalog.owned_write, catalog.owned("port", {"location": "m"})),
    ),
    ("DELETE", "/ports/{port_id}"): (
        Case("owned by the target", catalog.owned_write, catalog.owned("port")),
    ),
    # services
    ("POST", "/accounts/{account_id}/services"): (Case("add", write(SERVICES), services.new_service),),
    ("GET", "/accounts/{account_id}/services"): (
        Case("list", read, on_account("/services"), check=services.lists_services(services.only_target)),
    ),
    ("GET", "/services"): (
        Case("list", anyone_signed_in, fixed("/services"), SELF, check=services.lists_services(everything)),
        Case(
            "by account",
            anyone_signed_in,
            with_query("/services", "account_id"),
            check=services.lists_services(services.only_target),
        ),
    ),
    ("GET", "/services/{service_id}"): (Case("get", read, services.on_service()),),
    ("PATCH", "/services/{service_id}"): (
        Case("description", write(SERVICES), services.on_service(body={"description": "matrix"})),
    ),
    ("DELETE", "/services/{service_id}"): (
        Case("delete", write(SERVICES), services.on_service(), destructive=True),
    ),
    ("POST", "/services/{service_id}/status"): (
        Case("stop", write(SERVICES), services.on_service("/status", {"status": "stopped", "note": "m"})),
    ),
    ("GET", "/services/{service_id}/status-history"): (
        Case("history", read, services.on_service("/status-history")),
    ),
    ("GET", "/services/{service_id}/discounts"): (Case("list", read, services.on_service("/discounts")),),
    ("POST", "/services/{service_id}/discounts"): (
        Case("add", write(SERVICES), services.on_service("/discounts", {"percent": 5})),
    ),
    ("DELETE", "/services/{service_id}/discounts/{discount_id}"): (
        Case("remove", write(SERVICES), services.on_discount),
    ),
    ("POST", "/services/{service_id}/reveal-password"): (
        Case("reveal", write(SERVICES), services.on_service("/reveal-password")),
    ),
    ("PUT", "/accounts/{account_id}/service-password"): (
        Case("set", write(SERVICES), on_account("/service-password", {"password": "matrix-Pass-1"})),
    ),
    # service lifecycle and changes
    ("POST", "/services/{service_id}/change-plan"): (
        Case("same plan, new price", write(SERVICES), lifecycle.change_plan),
    ),
    ("GET", "/services/{service_id}/scheduled-changes"): (
        Case("list", read, services.on_service("/scheduled-changes")),
    ),
    ("POST", "/services/{service_id}/scheduled-changes"): (
        Case(
            "quantity",
            write(SERVICES),
            services.on_service("/scheduled-changes", {"effective_date": "2026-03-01", "quantity": 2}),
        ),
    ),
    ("DELETE", "/services/{service_id}/scheduled-changes/{change_id}"): (
        Case("cancel", write(SERVICES), lifecycle.cancel_scheduled),
    ),
    # The matrix plan has no data cap and its services are active: 409 is the domain's answer.
    ("POST", "/services/{service_id}/cap-reached"): (
        Case("cap", write(SERVICES), services.on_service("/cap-reached")),
    ),
    # The matrix plan has no data cap: reading the cap and topping it up answer 409 too.
    ("GET", "/services/{service_id}/cap"): (Case("cap", read, services.on_service("/cap")),),
    ("GET", "/services/{service_id}/top-ups"): (Case("list", read, services.on_service("/top-ups")),),
    ("POST", "/services/{service_id}/top-ups"): (
        Case("top up", write(SERVICES), services.on_service("/top-ups", {"bytes": 1000})),
    ),
    # child connections
    ("POST", "/accounts/{account_id}/child-connections"): (
        Case("create", create_connection, new_connection),
    ),
    ("GET", "/accounts/{account_id}/child-connections"): (
        Case("list", read, on_account("/child-connections"), check=connection_rows),
    ),
    ("GET", "/accounts/{account_id}/child-connections/{child_id}"): (
        Case("get", on_connection(read), on_child_connection()),
    ),
    ("PATCH", "/accounts/{account_id}/child-connections/{child_id}"): (
        Case("label", on_connection(write(ACCOUNTS_)), on_child_connection(body={"label": "Matrix"})),
    ),
    ("POST", "/accounts/{account_id}/child-connections/{child_id}/suspend"): (
        Case("suspend", on_connection(write(ACCOUNTS_)), on_child_connection("/suspend", STATUS)),
    ),
    ("POST", "/accounts/{account_id}/child-connections/{child_id}/unsuspend"): (
        Case("unsuspend", on_connection(write(ACCOUNTS_)), on_child_connection("/unsuspend", STATUS)),
    ),
    ("GET", "/accounts/{account_id}/child-connections/{child_id}/deletion"): (
        Case("preview", on_connection(read), on_child_connection("/deletion")),
    ),
    ("DELETE", "/accounts/{account_id}/child-connections/{child_id}"): (
        Case("delete", on_connection(write(ACCOUNTS_)), on_child_connection(), destructive=True),
    ),
    ("GET", "/dual-device-users"): (
        Case(
            "children",
            anyone_signed_in,
            fixed("/dual-device-users?kind=children"),
            SELF,
            check=dual_device_rows,
        ),
        Case("all", anyone_signed_in, fixed("/dual-device-users"), SELF),
    ),
    # usage: meters are the provider's catalog; a batch of events is answered per event
    ("GET", "/meters"): (Case("list", anyone_signed_in, fixed("/meters"), SELF),),
    # bill runs and invoices
    ("POST", "/bill-runs"): (
        Case("dry run", invoices.billing_staff, fixed("/bill-runs", invoices.new_bill_run), SELF),
    ),
    ("GET", "/bill-runs"): (Case("list", invoices.billing_staff, fixed("/bill-runs"), SELF),),
    ("GET", "/bill-runs/{bill_run_id}"): (Case("get", invoices.bill_run_read, invoices.bill_run(), SELF),),
    ("GET", "/invoices"): (Case("of the account", read, invoices.invoices_of_account()),),
    ("GET", "/invoices/{invoice_id}"): (Case("get", invoices.invoice_read, invoices.invoice()),),
    ("GET", "/invoices/{invoice_id}.pdf"): (Case("pdf", invoices.invoice_read, invoices.invoice(".pdf")),),
    ("GET", "/invoices/{invoice_id}.html"): (Case("html", invoices.invoice_read, invoices.invoice(".html")),),
    ("POST", "/invoices/{invoice_id}/finalize"): (
        Case("finalize", invoices.invoice_write, invoices.invoice("/finalize"), also_ok=frozenset({409})),
    ),
    ("POST", "/invoices/{invoice_id}/recalculate"): (
        Case(
            "recalculate", invoices.invoice_write, invoices.invoice("/recalculate"), also_ok=frozenset({409})
        ),
    ),
    ("POST", "/invoices/{invoice_id}/void"): (
        Case("void", invoices.invoice_write, invoices.invoice("/void", {"reason": "matrix"})),
    ),
    ("POST", "/invoices/{invoice_id}/uncollectible"): (
        Case(
            "write off", invoices.invoice_write, invoices.invoice("/uncollectible"), also_ok=frozenset({409})
        ),
    ),
    ("POST", "/meters"): (Case("create", provider_admins, fixed("/meters", usage.new_meter), SELF),),
    ("GET", "/meters/{meter_id}"): (Case("get", usage.meter_read, usage.meter(), SELF),),
    ("PATCH", "/meters/{meter_id}"): (
        Case("rename", usage.meter_write, usage.meter(body={"name": "Renamed"}), SELF),
    ),
    ("DELETE", "/meters/{meter_id}"): (Case("delete", usage.meter_write, usage.meter(), SELF),),
    ("POST", "/usage-events"): (
        Case("by account", usage.report_usage, usage.report("account_id"), check=usage.reported),
        Case("by service", usage.report_usage, usage.report("service_id"), check=usage.reported),
    ),
    ("GET", "/accounts/{account_id}/usage"): (Case("subtree", read, usage.account_usage()),),
    ("GET", "/services/{service_id}/usage"): (Case("service", read, usage.service_usage()),),
    # payment methods: read like the account, written with billing.manage on it
    ("GET", "/accounts/{account_id}/payment-methods"): (Case("list", read, payment_methods.on_methods()),),
    ("POST", "/accounts/{account_id}/payment-methods"): (
        Case("add a card", write(BILLING), payment_methods.on_methods(create=True)),
    ),
    ("GET", "/accounts/{account_id}/payment-methods/{method_id}"): (
        Case("get", read, payment_methods.on_method()),
    ),
    ("PATCH", "/accounts/{account_id}/payment-methods/{method_id}"): (
        Case("make default", write(BILLING), payment_methods.on_method({"is_default": True})),
    ),
    ("DELETE", "/accounts/{account_id}/payment-methods/{method_id}"): (
        Case("delete", write(BILLING), payment_methods.on_method()),
    ),
    # payments, credit notes, the ledger: money is recorded by the provider's billing staff
    ("POST", "/accounts/{account_id}/payments"): (
        Case("record", payments.billing_staff, payments.new_payment()),
    ),
    ("GET", "/accounts/{account_id}/payments"): (Case("list", read, on_account("/payments")),),
    ("GET", "/payments/{payment_id}"): (Case("get", read, payments.on_payment()),),
    ("POST", "/payments/{payment_id}/refunds"): (
        Case("refund", payments.billing_staff, payments.on_payment("/refunds", {"amount": 1, "reason": "m"})),
    ),
    ("POST", "/credit-notes"): (
        Case("on the target's invoice", payments.credit_note_create, payments.new_credit_note()),
    ),
    ("GET", "/credit-notes"): (
        Case(
            "by account",
            anyone_signed_in,
            payments.credit_notes_of("account_id"),
            check=payments.listed_credit_notes,
        ),
        Case(
            "by invoice",
            anyone_signed_in,
            payments.credit_notes_of("invoice_id"),
            check=payments.listed_credit_notes,
        ),
    ),
    ("GET", "/credit-notes/{credit_note_id}"): (Case("get", read, payments.on_credit_note()),),
    ("POST", "/credit-notes/{credit_note_id}/void"): (
        Case("void", payments.billing_staff, payments.on_credit_note("/void")),
    ),
    ("GET", "/accounts/{account_id}/transactions"): (Case("ledger", read, on_account("/transactions")),),
}


# --- running the grid ------------------------------------------------------------------


@dataclass
class Grid:
    mismatches: list[str] = field(default_factory=list)
    not_problem_json: list[str] = field(default_factory=list)
    cells: int = 0


def target_account(actor: ActorSpec, kind: str) -> str | None:
    return actor.targets.get(kind)


def ids_in(req: Request) -> list[int]:
    """The ids a request names: in its path, and the parent it references in its body."""
    found = [int(i) for i in re.findall(r"/(\d+)(?=/|\.|$)", req.path)]
    if isinstance(req.body, dict) and isinstance(req.body.get("parent_id"), int):
        found.append(req.body["parent_id"])
    return found


def normalised(body: Any, *ids: int) -> str:
    body = {k: v for k, v in body.items() if k not in ("request_id", "instance")}
    text = json.dumps(body, sort_keys=True)
    for i in ids:
        text = re.sub(rf"\b{i}\b", "<id>", text)
    return text


async def send(
    http: httpx.AsyncClient, world: World, actor: str, method: str, req: Request
) -> httpx.Response:
    http.cookies.clear()  # a login must not turn later requests into a session
    return await http.request(method, req.path, json=req.body, headers=world.headers(actor))


def target_ref(world: World, actor: ActorSpec, kind: str) -> tuple[str | None, int | None]:
    """The account name (for rules) and the id handed to fill for a target kind."""
    if kind in TARGET_KINDS:
        name = target_account(actor, kind)
        return name, world.ids[name] if name else None
    return kind, {"self": 0, "own": 1, "other_user": 2, "provider_job": 1, "own_job": 2}[kind]


async def run_grid(
    route: tuple[str, str],
    world_factory: Callable[[], Awaitable[World]],
    http: httpx.AsyncClient,
) -> Grid:
    method, _ = route
    grid = Grid()
    world = await world_factory()
    for case in MATRIX[route]:
        missing: dict[tuple[int, str], httpx.Response] = {}
        for actor_name, actor in ACTORS.items():
            for kind in case.targets:
                if kind in TARGET_KINDS and target_account(actor, kind) is None:
                    continue  # this actor has no such target (e.g. the ancestor of a top-level account)
                name, ref = target_ref(world, actor, kind)
                rule_target = name if kind in TARGET_KINDS else kind
                expect = case.rule(actor, rule_target)
                req = await case.fill(world, actor_name, ref)
                response = await send(http, world, actor_name, method, req)
                grid.cells += 1
                where = f"{method} {req.path} [{case.name}] as {actor_name} on {kind} ({name})"
                problem = check(case, expect, response)
                if problem is None and expect.same_as_missing:
                    key = (world.n, actor_name)
                    if key not in missing:
                        missing[key] = await send(
                            http, world, actor_name, method, await case.fill(world, actor_name, None)
                        )
                    other = missing[key]
                    if other.status_code != response.status_code or normalised(
                        response.json(), *ids_in(req)
                    ) != normalised(other.json(), MISSING):
                        problem = f"differs from a missing id: {response.text} vs {other.text}"
                if problem is None and case.check is not None and expect == OK:
                    problem = case.check(world, actor, name, response)
                if problem is not None:
                    grid.mismatches.append(f"{where}: expected {expect}, {problem}")
                if response.status_code >= 400 and not response.headers.get("content-type", "").startswith(
                    PROBLEM_JSON
                ):
                    grid.not_problem_json.append(f"{where}: {response.status_code} {response.headers}")
                if case.destructive and response.status_code < 300:
                    world = await world_factory()
    return grid


def check(case: Case, expect: Expect, response: httpx.Response) -> str | None:
    status = response.status_code
    got = f"got {status}: {response.text[:300]}"
    if status >= 500:
        return got
    if expect.status is None:
        allowed = status < 400 or status == 409 or status in case.also_ok
        return None if allowed else got
    if status != expect.status:
        return got
    if expect.field is not None:
        fields = [e.get("field") for e in response.json().get("errors", [])]
        if expect.field not in fields:
            return f"{got} (does not name {expect.field})"
    return None


# --- the tests -------------------------------------------------------------------------


def api_routes(app: Any) -> set[tuple[str, str]]:
    """Every (method, path) the app serves under /api/v1, however its routers are included."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before lazily included routers
        contexts: Any = app.routes
    else:
        contexts = iter_route_contexts(app.routes)
    found: set[tuple[str, str]] = set()
    for route in contexts:
        original = getattr(route, "original_route", route)
        path = route.path or ""
        if isinstance(original, APIRoute) and path.startswith(API + "/"):
            found |= {(m, path.removeprefix(API)) for m in route.methods or () if m != "HEAD"}
    return found


async def test_every_route_has_an_entry(app: Any) -> None:
    served = api_routes(app)
    assert len(served) > 30, served  # the enumeration itself works
    missing = sorted(served - MATRIX.keys())
    stale = sorted(MATRIX.keys() - served)
    assert not missing, f"routes without an authorization matrix entry: {missing}"
    assert not stale, f"matrix entries for routes the app no longer serves: {stale}"


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Argon2 at its production cost would be most of this file's time; the rules do not depend on it."""
    monkeypatch.setattr(passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    passwords._dummy_hash.cache_clear()
    yield
    passwords._dummy_hash.cache_clear()


@pytest.fixture
def world_factory(db: Database, clock: FrozenClock, tenant: Tenant) -> Callable[[], Awaitable[World]]:
    async def factory() -> World:
        return await build_world(db, clock, tenant)

    return factory


@pytest.fixture
async def http(app: Any) -> Any:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
        yield c


def _route_id(route: tuple[str, str]) -> str:
    return f"{route[0]} {route[1]}"


@pytest.mark.parametrize("route", sorted(MATRIX), ids=_route_id)
async def test_route_grid(route: tuple[str, str], world_factory: Any, http: httpx.AsyncClient) -> None:
    grid = await run_grid(route, world_factory, http)
    assert grid.cells > 0
    assert not grid.mismatches, f"{len(grid.mismatches)} of {grid.cells} cells:\n" + "\n".join(
        grid.mismatches
    )
    assert not grid.not_problem_json, "errors not as application/problem+json:\n" + "\n".join(
        grid.not_problem_json
    )


def test_rules_are_derived_as_the_readme_says() -> None:
    """A few cells spelled out, so a wrong rule cannot silently agree with a wrong app."""
    parent_admin, viewer, support = ACTORS["parent_admin"], ACTORS["viewer"], ACTORS["support"]
    assert read(viewer, "Grandchild") == OK and read(viewer, "Root") == HIDDEN
    assert write(ACCOUNTS_)(viewer, "Child") == FORBIDDEN
    assert write(ACCOUNTS_)(support, "Foreign") == HIDDEN
    assert write(MEMBERS)(ACTORS["billing"], "Parent") == FORBIDDEN
    assert create_child(parent_admin, "Child") == FORBIDDEN  # no subaccounts feature
    assert create_child(parent_admin, "Sibling") == Expect(422, "parent_id", same_as_missing=True)
    assert move_to_current_parent(parent_admin, "Parent") == Expect(422, "parent_id")
    assert move_to_current_parent(parent_admin, "Child") == OK
    assert create_top_level(ACTORS["other_provider"], None) == OK
    assert read(ACTORS["expired"], "Parent") == UNAUTHORIZED
    assert has_children("Parent") and not has_children("Grandchild")
