"""The Usage tab and a service's usage: a bar chart per meter drawn on the server, the same
numbers in a table, an account alone or pooled with its children, and clear refusals."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from boughs.kit.clock import FrozenClock
from boughs.memberships import service as memberships
from boughs.memberships.models import AccountRole
from tests.console.conftest import ConsoleClient, MakeConsoleUser, SignIn
from tests.usage.support import event, new_account, new_meter, new_plan, new_service, send, statuses


@dataclass
class Tree:
    root: int
    child: int
    service: int


@pytest.fixture
async def tree(ctx_factory: Any, clock: FrozenClock) -> Tree:
    """Root ── Child (a service, login "child-1"); January's data: 1 KB, 2 MB and 500 B."""
    now = clock.now()
    clock.set(datetime(2026, 1, 1, tzinfo=UTC))
    async with ctx_factory() as ctx:
        root = await new_account(ctx, "Root Co")
        child = await new_account(ctx, "Child Co", root)
        service = await new_service(ctx, child, await new_plan(ctx), login="child-1")
        await new_meter(ctx, "data")
        await new_meter(ctx, "minutes", unit="minutes", precision=2)
    clock.set(now)
    async with ctx_factory() as ctx:
        results = await send(
            ctx,
            [
                event("r1", "1000", "2026-01-10T10:00:00Z", account_id=root),
                event("c1", "2000000", "2026-01-11T10:00:00Z", account_id=child),
                event("s1", "500", "2026-01-12T10:00:00Z", service_id=service),
                event("m1", "12.5", "2026-01-12T10:00:00Z", meter="minutes", account_id=root),
            ],
        )
    assert statuses(results) == ["accepted"] * 4
    return Tree(root, child, service)


async def test_the_usage_tab_draws_this_month_by_day(owner_console: ConsoleClient, tree: Tree) -> None:
    # A parent opens on its subtree's pooled usage; "self" is its own alone.
    pooled = await owner_console.get(f"/accounts/{tree.root}/usage")
    assert pooled.text.count('<rect class="bar"') == 3
    assert 'data-testid="usage-total">2.00 MB<' in pooled.text and '<data value="2000000">' in pooled.text

    page = await owner_console.get(f"/accounts/{tree.root}/usage", params={"scope": "self"})
    assert page.status_code == 200, page.text
    assert 'aria-current="page">Usage<' in page.text
    # The first meter, this month, by day: one bar for the root's own day of use.
    assert (
        '<div class="chart">' in page.text
        and '<svg role="img" aria-label="Data (bytes) of Root Co' in page.text
    )
    assert page.text.count('<rect class="bar"') == 1
    assert 'data-testid="usage-total">1.00 KB<' in page.text
    assert 'value="2026-01-01"' in page.text and 'value="2026-01-31"' in page.text
    assert '<th scope="col">Day</th>' in page.text and '<data value="1000">1.00 KB</data>' in page.text

    every = await owner_console.get(
        f"/accounts/{tree.root}/usage",
        params={
            "meter": "*",
            "scope": "self",
            "granularity": "month",
            "from": "2026-01-01",
            "to": "2026-01-31",
        },
    )
    assert every.text.count('<svg role="img"') == 2 and "12.50 minutes" in every.text


async def test_bad_usage_questions_answer_422_beside_the_field(
    owner_console: ConsoleClient, tree: Tree
) -> None:
    week = await owner_console.get(f"/accounts/{tree.root}/usage", params={"granularity": "week"})
    assert week.status_code == 422 and 'data-field-error="granularity"' in week.text
    assert "<svg" not in week.text
    backwards = await owner_console.get(
        f"/accounts/{tree.root}/usage", params={"from": "2026-01-20", "to": "2026-01-10"}
    )
    assert backwards.status_code == 422 and 'data-field-error="to"' in backwards.text
    too_many = await owner_console.get(
        f"/accounts/{tree.root}/usage",
        params={"granularity": "hour", "from": "2025-01-01", "to": "2026-01-01"},
    )
    assert too_many.status_code == 422 and 'data-field-error="from"' in too_many.text


async def test_a_service_has_its_own_usage_and_strangers_see_none(
    owner_console: ConsoleClient,
    tree: Tree,
    sign_in: SignIn,
    make_console_user: MakeConsoleUser,
    ctx_factory: Any,
) -> None:
    page = await owner_console.get(f"/services/{tree.service}/usage")
    assert page.status_code == 200 and page.text.count('<rect class="bar"') == 1
    assert 'data-testid="usage-total">500 B<' in page.text and f'href="/services/{tree.service}"' in page.text

    user = await make_console_user("kid@child.test")
    async with ctx_factory() as ctx:
        await memberships.add(ctx, tree.child, user.email, AccountRole.viewer)
    viewer = await sign_in(user.id)
    assert (await viewer.get(f"/accounts/{tree.child}/usage")).status_code == 200
    assert (await viewer.get(f"/accounts/{tree.root}/usage")).status_code == 404
