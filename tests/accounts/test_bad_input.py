"""Bad input to the accounts API: a 4xx problem that names the field and the fix, and no change.

Every case runs against the same small world as a subtest, and the whole database
(accounts, parent links, audit events) is compared before and after the refused request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from boughs.accounts import service
from boughs.accounts.models import Account, AccountLink
from boughs.accounts.schemas import AccountCreate
from boughs.audit.models import AuditEvent
from boughs.auth.actor import Actor
from boughs.context import Ctx
from boughs.db import Database
from boughs.kit.clock import FrozenClock
from boughs.kit.pagination import encode_cursor
from boughs.providers.models import Provider
from tests.conftest import Tenant

API = "/api/v1/accounts"
PROBLEM = "application/problem+json"
HUGE = 2**70

World = dict[str, int]


async def create(client: httpx.AsyncClient, name: str, **fields: Any) -> int:
    r = await client.post(API, json={"name": name, **fields})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


async def foreign_account(db: Database, clock: FrozenClock) -> int:
    """An account of a second provider (made without a user: no password to hash)."""
    async with db.transaction() as session:
        provider = Provider(name="Other ISP", created_at=clock.now(), updated_at=clock.now())
        session.add(provider)
        await session.flush()
        ctx = Ctx(session=session, clock=clock, actor=Actor.system(provider.id, "tests"))
        account = await service.create(ctx, AccountCreate(name="Theirs", external_id="THEIRS-1"))
        return account.id


@pytest.fixture
async def world(client: httpx.AsyncClient, db: Database, clock: FrozenClock) -> World:
    """root ── child ── grandchild;  top (external id TOP-1);  never (expires 9998-12-31);
    theirs (another provider's)."""
    root = await create(client, "Root", external_id="ROOT-1", expiry_date="2026-06-30")
    child = await create(client, "Child", parent_id=root)
    grandchild = await create(client, "Grandchild", parent_id=child)
    top = await create(client, "Top", external_id="TOP-1")
    never = await create(client, "Never expires", expiry_date="9998-12-31")
    theirs = await foreign_account(db, clock)
    return {
        "root": root,
        "child": child,
        "grandchild": grandchild,
        "top": top,
        "never": never,
        "theirs": theirs,
    }


async def database_state(db: Database) -> dict[str, Any]:
    """Every row the accounts API can write, as plain values."""
    async with db.transaction(write=False) as session:
        accounts = (await session.execute(select(Account).order_by(Account.id))).scalars()
        links = (await session.execute(select(AccountLink).order_by(AccountLink.id))).scalars()
        audit_count = (await session.execute(select(func.count()).select_from(AuditEvent))).scalar_one()
        return {
            "accounts": [{c.name: getattr(a, c.name) for c in Account.__table__.columns} for a in accounts],
            "links": [{c.name: getattr(k, c.name) for c in AccountLink.__table__.columns} for k in links],
            "audit_events": audit_count,
        }


def assert_problem(r: httpx.Response, status: int, *fields: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    assert body["title"] and body["detail"] and body["type"]
    named = {e["field"]: e for e in body.get("errors", [])}
    for field in fields:
        assert field in named, f"{field} not named in {body}"
        assert named[field]["message"], body
        assert named[field]["fix"], body
    return body


def path_cursor(*ids: int) -> str:
    return encode_cursor("/" + "".join(f"{i}/" for i in ids))


Case = Callable[[World], tuple[str, str, Any]]

# (id, request built from the world, status, fields the problem must name)
CASES: list[tuple[str, Case, int, tuple[str, ...]]] = [
    # unknown or foreign parents
    (
        "create-unknown-parent",
        lambda w: ("POST", API, {"name": "X", "parent_id": 999_999}),
        422,
        ("parent_id",),
    ),
    (
        "create-foreign-parent",
        lambda w: ("POST", API, {"name": "X", "parent_id": w["theirs"]}),
        422,
        ("parent_id",),
    ),
    (
        "move-unknown-parent",
        lambda w: ("POST", f"{API}/{w['child']}/move", {"parent_id": 999_999}),
        422,
        ("parent_id",),
    ),
    # cycles
    (
        "move-under-itself",
        lambda w: ("POST", f"{API}/{w['child']}/move", {"parent_id": w["child"]}),
        422,
        ("parent_id",),
    ),
    (
        "move-under-child",
        lambda w: ("POST", f"{API}/{w['root']}/move", {"parent_id": w["child"]}),
        422,
        ("parent_id",),
    ),
    (
        "move-under-grandchild",
        lambda w: ("POST", f"{API}/{w['root']}/move", {"parent_id": w["grandchild"]}),
        422,
        ("parent_id",),
    ),
    # across providers
    (
        "move-to-foreign-account",
        lambda w: ("POST", f"{API}/{w['child']}/move", {"parent_id": w["theirs"]}),
        422,
        ("parent_id",),
    ),
    ("move-missing-parent-id", lambda w: ("POST", f"{API}/{w['child']}/move", {}), 422, ("parent_id",)),
    (
        "move-parent-id-not-int",
        lambda w: ("POST", f"{API}/{w['child']}/move", {"parent_id": "root"}),
        422,
        ("parent_id",),
    ),
    # duplicate external ids
    (
        "create-duplicate-external-id",
        lambda w: ("POST", API, {"name": "X", "external_id": "TOP-1"}),
        409,
        ("external_id",),
    ),
    (
        "patch-duplicate-external-id",
        lambda w: ("PATCH", f"{API}/{w['child']}", {"external_id": "ROOT-1", "name": "Renamed"}),
        409,
        ("external_id",),
    ),
    # malformed and impossible dates
    (
        "create-impossible-date",
        lambda w: ("POST", API, {"name": "X", "expiry_date": "2026-02-30"}),
        422,
        ("expiry_date",),
    ),
    (
        "create-word-date",
        lambda w: ("POST", API, {"name": "X", "expiry_date": "tomorrow"}),
        422,
        ("expiry_date",),
    ),
    (
        "create-month-13",
        lambda w: ("POST", API, {"name": "X", "expiry_date": "2026-13-01"}),
        422,
        ("expiry_date",),
    ),
    (
        "create-date-with-time",
        lambda w: ("POST", API, {"name": "X", "expiry_date": "2026-03-01T10:00"}),
        422,
        ("expiry_date",),
    ),
    (
        "patch-impossible-date",
        lambda w: ("PATCH", f"{API}/{w['child']}", {"expiry_date": "2026-02-30", "name": "Renamed"}),
        422,
        ("expiry_date",),
    ),
    (
        "patch-word-date",
        lambda w: ("PATCH", f"{API}/{w['child']}", {"expiry_date": "tomorrow"}),
        422,
        ("expiry_date",),
    ),
    (
        "renew-impossible-date",
        lambda w: ("POST", f"{API}/{w['root']}/renew", {"expiry_date": "2026-02-30"}),
        422,
        ("expiry_date",),
    ),
    (
        "renew-word-date",
        lambda w: ("POST", f"{API}/{w['root']}/renew", {"expiry_date": "tomorrow"}),
        422,
        ("expiry_date",),
    ),
    # unknown fields
    ("create-unknown-field", lambda w: ("POST", API, {"name": "X", "colour": "red"}), 422, ("colour",)),
    (
        "patch-unknown-field",
        lambda w: ("PATCH", f"{API}/{w['child']}", {"name": "Y", "parent": 1}),
        422,
        ("parent",),
    ),
    (
        "patch-parent-id-is-not-a-move",
        lambda w: ("PATCH", f"{API}/{w['child']}", {"parent_id": w["top"]}),
        422,
        ("parent_id",),
    ),
    (
        "move-unknown-field",
        lambda w: ("POST", f"{API}/{w['child']}/move", {"parent_id": None, "keep_children": True}),
        422,
        ("keep_children",),
    ),
    (
        "renew-unknown-field",
        lambda w: ("POST", f"{API}/{w['root']}/renew", {"period": "month", "months": 2}),
        422,
        ("months",),
    ),
    ("suspend-unknown-field", lambda w: ("POST", f"{API}/{w['child']}/suspend", {"why": "x"}), 422, ("why",)),
    (
        "create-unknown-feature",
        lambda w: ("POST", API, {"name": "X", "features": {"teleport": True}}),
        422,
        ("features",),
    ),
    # bad timezone, currency, email and other values
    (
        "create-bad-timezone",
        lambda w: ("POST", API, {"name": "X", "timezone": "Mars/Olympus"}),
        422,
        ("timezone",),
    ),
    (
        "patch-bad-timezone",
        lambda w: ("PATCH", f"{API}/{w['child']}", {"timezone": "GMT+25"}),
        422,
        ("timezone",),
    ),
    ("create-bad-currency", lambda w: ("POST", API, {"name": "X", "currency": "euro"}), 422, ("currency",)),
    (
        "patch-lowercase-currency",
        lambda w: ("PATCH", f"{API}/{w['child']}", {"currency": "eur"}),
        422,
        ("currency",),
    ),
    (
        "create-bad-email",
        lambda w: ("POST", API, {"name": "X", "contact_email": "not-an-email"}),
        422,
        ("contact_email",),
    ),
    (
        "patch-bad-billing-email",
        lambda w: ("PATCH", f"{API}/{w['child']}", {"billing_email": "a@b@c"}),
        422,
        ("billing_email",),
    ),
    ("create-missing-name", lambda w: ("POST", API, {"external_id": "NEW"}), 422, ("name",)),
    ("create-blank-name", lambda w: ("POST", API, {"name": "   "}), 422, ("name",)),
    (
        "create-bad-invoice-mode",
        lambda w: ("POST", API, {"name": "X", "invoice_mode": "monthly"}),
        422,
        ("invoice_mode",),
    ),
    ("patch-null-name", lambda w: ("PATCH", f"{API}/{w['child']}", {"name": None}), 422, ("name",)),
    (
        "patch-null-features",
        lambda w: ("PATCH", f"{API}/{w['child']}", {"features": None}),
        422,
        ("features",),
    ),
    (
        "patch-null-parent-access",
        lambda w: ("PATCH", f"{API}/{w['child']}", {"parent_access": None}),
        422,
        ("parent_access",),
    ),
    # renewals
    ("renew-neither", lambda w: ("POST", f"{API}/{w['root']}/renew", {}), 422, ("expiry_date", "period")),
    (
        "renew-neither-count-only",
        lambda w: ("POST", f"{API}/{w['root']}/renew", {"count": 2}),
        422,
        ("period",),
    ),
    (
        "renew-both",
        lambda w: ("POST", f"{API}/{w['root']}/renew", {"expiry_date": "2026-09-01", "period": "month"}),
        422,
        ("expiry_date", "period"),
    ),
    (
        "renew-past-date",
        lambda w: ("POST", f"{API}/{w['root']}/renew", {"expiry_date": "2026-01-14"}),
        422,
        ("expiry_date",),
    ),
    (
        "renew-bad-period",
        lambda w: ("POST", f"{API}/{w['root']}/renew", {"period": "fortnight"}),
        422,
        ("period",),
    ),
    (
        "renew-zero-count",
        lambda w: ("POST", f"{API}/{w['root']}/renew", {"period": "month", "count": 0}),
        422,
        ("count",),
    ),
    # cursors and paging
    ("list-garbage-cursor", lambda w: ("GET", f"{API}?cursor=%25%25not-a-cursor", None), 422, ("cursor",)),
    (
        "list-foreign-cursor",
        lambda w: ("GET", f"{API}?cursor={encode_cursor('/1/2/')}", None),
        422,
        ("cursor",),
    ),
    (
        "children-garbage-cursor",
        lambda w: ("GET", f"{API}/{w['root']}/children?cursor=!!!", None),
        422,
        ("cursor",),
    ),
    (
        "descendants-foreign-cursor",
        lambda w: ("GET", f"{API}/{w['root']}/descendants?cursor={encode_cursor(5)}", None),
        422,
        ("cursor",),
    ),
    (
        "descendants-cursor-of-another-subtree",
        lambda w: ("GET", f"{API}/{w['child']}/descendants?cursor={path_cursor(w['top'])}", None),
        422,
        ("cursor",),
    ),
    ("list-limit-zero", lambda w: ("GET", f"{API}?limit=0", None), 422, ("limit",)),
    ("list-limit-huge", lambda w: ("GET", f"{API}?limit=100000", None), 422, ("limit",)),
    ("list-bad-status", lambda w: ("GET", f"{API}?status=zombie", None), 422, ("status",)),
    ("list-negative-depth", lambda w: ("GET", f"{API}?depth=-1", None), 422, ("depth",)),
    ("get-non-integer-id", lambda w: ("GET", f"{API}/root", None), 422, ("account_id",)),
    # numbers past the 64-bit ids both engines store: bad input, never a database error
    ("get-id-beyond-64-bits", lambda w: ("GET", f"{API}/{HUGE}", None), 404, ()),
    ("patch-id-beyond-64-bits", lambda w: ("PATCH", f"{API}/{HUGE}", {"name": "X"}), 404, ()),
    (
        "create-parent-beyond-64-bits",
        lambda w: ("POST", API, {"name": "X", "parent_id": HUGE}),
        422,
        ("parent_id",),
    ),
    (
        "move-parent-beyond-64-bits",
        lambda w: ("POST", f"{API}/{w['child']}/move", {"parent_id": HUGE}),
        422,
        ("parent_id",),
    ),
    ("list-parent-beyond-64-bits", lambda w: ("GET", f"{API}?parent_id={HUGE}", None), 422, ("parent_id",)),
    ("list-root-beyond-64-bits", lambda w: ("GET", f"{API}?root_id={HUGE}", None), 422, ("root_id",)),
    ("list-depth-beyond-32-bits", lambda w: ("GET", f"{API}?depth={HUGE}", None), 422, ("depth",)),
    (
        "list-cursor-beyond-64-bits",
        lambda w: ("GET", f"{API}?cursor={encode_cursor(HUGE)}", None),
        422,
        ("cursor",),
    ),
    ("list-cursor-negative", lambda w: ("GET", f"{API}?cursor={encode_cursor(-5)}", None), 422, ("cursor",)),
    # a renewal past the end of the calendar
    (
        "renew-period-past-9999",
        lambda w: ("POST", f"{API}/{w['never']}/renew", {"period": "year", "count": 2}),
        422,
        ("period",),
    ),
]


async def test_refused_with_a_problem_and_nothing_changes(
    client: httpx.AsyncClient, db: Database, world: World, subtests: pytest.Subtests
) -> None:
    """One world for every case (each a subtest): nothing a refused request does may stick."""
    for name, make, status, fields in CASES:
        with subtests.test(msg=name):
            before = await database_state(db)
            method, url, body = make(world)
            r = await client.request(method, url, json=body)
            assert_problem(r, status, *fields)
            assert await database_state(db) == before


async def test_depth_cap(client: httpx.AsyncClient, db: Database, tenant: Tenant) -> None:
    """max_account_depth 2: top level is 0, so three levels in all."""
    async with db.transaction() as session:
        await session.execute(
            update(Provider).where(Provider.id == tenant.provider_id).values(max_account_depth=2)
        )
    root = await create(client, "Root")
    child = await create(client, "Child", parent_id=root)
    grandchild = await create(client, "Grandchild", parent_id=child)
    other = await create(client, "Other")
    other_child = await create(client, "Other child", parent_id=other)
    before = await database_state(db)

    body = assert_problem(
        await client.post(API, json={"name": "Too deep", "parent_id": grandchild}), 422, "parent_id"
    )
    assert "depth 3" in body["detail"] and "cap of 2" in body["detail"]
    assert await database_state(db) == before

    # Moving a subtree two deep under an account at depth 1 would put its leaf at depth 3.
    r = await client.post(f"{API}/{other}/move", json={"parent_id": child})
    assert_problem(r, 422, "parent_id")
    assert await database_state(db) == before
    # The move that fits is allowed, and so is a create at the cap.
    r = await client.post(f"{API}/{other}/move", json={"parent_id": root})
    assert r.status_code == 200, r.text
    r = await client.post(f"{API}/{other_child}/move", json={"parent_id": None})
    assert r.status_code == 200, r.text
    assert (await client.post(API, json={"name": "At the cap", "parent_id": child})).status_code == 201


@pytest.mark.parametrize(
    ("action", "from_status"),
    [("unsuspend", "active"), ("suspend", "suspended"), ("cancel", "cancelled"), ("suspend", "cancelled")],
)
async def test_status_changes_from_the_wrong_status(
    client: httpx.AsyncClient, db: Database, world: World, action: str, from_status: str
) -> None:
    account = world["child"]
    if from_status != "active":
        verb = {"suspended": "suspend", "cancelled": "cancel"}[from_status]
        assert (await client.post(f"{API}/{account}/{verb}")).status_code == 200
    before = await database_state(db)
    body = assert_problem(await client.post(f"{API}/{account}/{action}"), 409)
    assert from_status in body["detail"]
    assert body["fix"]
    assert await database_state(db) == before


async def test_deleting_a_parent_changes_nothing(
    client: httpx.AsyncClient, db: Database, world: World
) -> None:
    before = await database_state(db)
    body = assert_problem(await client.delete(f"{API}/{world['child']}"), 409)
    assert "child accounts" in body["detail"]
    assert await database_state(db) == before


async def test_invalid_json_body(client: httpx.AsyncClient, db: Database, world: World) -> None:
    before = await database_state(db)
    r = await client.post(API, content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["errors"][0]["fix"]
    assert await database_state(db) == before


async def test_every_field_error_is_reported_at_once(client: httpx.AsyncClient) -> None:
    r = await client.post(
        API,
        json={"name": "", "expiry_date": "2026-02-30", "timezone": "Nowhere", "currency": "x", "extra": 1},
    )
    assert_problem(r, 422, "name", "expiry_date", "timezone", "currency", "extra")
