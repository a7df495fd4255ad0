"""Catalog pages: plans and their offers, meters, routers, IPv4 pools and ports with their sharing."""

from __future__ import annotations

import re

from boughs.accounts import service as accounts
from boughs.accounts.schemas import AccountCreate
from boughs.auth.actor import StaffRole
from boughs.authz.scope import scope_of
from boughs.catalog import repository
from boughs.catalog import service as catalog
from boughs.catalog.models import IpPool, Plan, Port, Router
from boughs.catalog.schemas import PlanCreate
from boughs.memberships import service as memberships
from boughs.memberships.models import AccountRole
from boughs.usage import service as usage
from tests.console.conftest import ConsoleClient, MakeConsoleUser, SignIn

PAGES = (
    "/plans", "/plans/new", "/meters", "/meters/new", "/routers", "/routers/new",
    "/ip-pools", "/ip-pools/new", "/ports", "/ports/new",
)  # fmt: skip


def _field_error(html: str, name: str) -> str:
    found = re.search(rf'data-field-error="{re.escape(name)}">([^<]*)<', html)
    assert found, f"no error beside {name}"
    return found.group(1)


async def _rows(ctx_factory, model: type) -> list:  # type: ignore[no-untyped-def, type-arg]
    async with ctx_factory() as ctx:
        return await repository.list_rows(ctx.session, model, await scope_of(ctx), None, 100)


async def test_every_catalog_page_renders_for_the_owner_and_refuses_a_member(
    owner_console: ConsoleClient, sign_in: SignIn, make_console_user: MakeConsoleUser, ctx_factory
) -> None:  # type: ignore[no-untyped-def]
    async with ctx_factory() as ctx:
        fibre = PlanCreate(name="Fibre 100", kind="internet", price_amount=2500)
        plan = await catalog.create_plan(ctx, fibre)
        mine = await accounts.create(ctx, AccountCreate(name="Member Co"))
    for url in (*PAGES, f"/plans/{plan.id}", f"/plans/{plan.id}/delete"):
        answer = await owner_console.get(url)
        assert answer.status_code == 200, url
    listed = await owner_console.get("/plans", params={"q": "fibre", "kind": "internet", "sort": "price"})
    assert f'href="/plans/{plan.id}"' in listed.text and "25.00 USD" in listed.text
    voice = await owner_console.get("/plans", params={"kind": "voice"})
    assert f'href="/plans/{plan.id}"' not in voice.text

    # Support staff read the catalog and may change none of it.
    support = await sign_in((await make_console_user("support@isp.test", staff_role=StaffRole.support)).id)
    read_only = await support.get(f"/plans/{plan.id}")
    assert read_only.status_code == 200 and f'action="/plans/{plan.id}"' not in read_only.text
    refused = await support.submit("/plans/new", {"name": "Sneaky", "kind": "voice", "price": "1"})
    assert refused.status_code == 403
    assert [p.name for p in await _rows(ctx_factory, Plan)] == ["Fibre 100"]

    user = await make_console_user("admin@member.test")
    async with ctx_factory() as ctx:
        await memberships.add(ctx, mine.id, user.email, AccountRole.admin)
    member = await sign_in(user.id)
    for url in (*PAGES, f"/plans/{plan.id}"):
        assert (await member.get(url)).status_code == 403, url
    refused = await member.submit("/routers/new", {"name": "r", "address": "10.0.0.1", "type": "other"})
    assert refused.status_code == 403
    assert await _rows(ctx_factory, Router) == []


async def test_a_plan_is_created_refused_with_errors_beside_its_fields_edited_and_deleted(
    owner_console: ConsoleClient, ctx_factory
) -> None:  # type: ignore[no-untyped-def]
    bad = await owner_console.submit(
        "/plans/new", {"name": "", "kind": "internet", "price": "abc", "data_cap_gb": "100"}
    )
    assert bad.status_code == 422
    assert _field_error(bad.text, "price") == "is not an amount — write it like 25 or 25.00"
    assert await _rows(ctx_factory, Plan) == []
    capped = await owner_console.submit(
        "/plans/new", {"name": "Capped", "kind": "internet", "price": "10", "data_cap_gb": "100"}
    )
    assert capped.status_code == 422
    assert "is required with a data cap" in _field_error(capped.text, "cap_action")
    charges = '[{"meter": "data_gb", "model": "per_unit"}]'
    wrong = await owner_console.submit(
        "/plans/new", {"name": "Metered", "kind": "custom", "price": "1", "usage_charges": charges}
    )
    assert wrong.status_code == 422 and "unit_price" in _field_error(wrong.text, "usage_charges")
    assert await _rows(ctx_factory, Plan) == []

    good = await owner_console.submit(
        "/plans/new",
        {"name": "Hotspot Duo", "kind": "internet", "price": "19.99", "pay_period": "month",
         "download_rate": "20000", "upload_rate": "5000", "device_allowance": "2", "public": "on"},
    )  # fmt: skip
    assert good.status_code == 303
    [plan] = await _rows(ctx_factory, Plan)
    assert good.headers["location"] == f"/plans/{plan.id}"
    assert (plan.price_amount, plan.currency, plan.device_allowance, plan.public) == (1999, "USD", 2, True)

    edited = await owner_console.submit(
        f"/plans/{plan.id}",
        {"name": "Hotspot Duo", "kind": "internet", "price": "24", "pay_period": "month", "retired": "on"},
    )
    assert edited.status_code == 303
    async with ctx_factory() as ctx:
        plan = await catalog.get_plan(ctx, plan.id)
        assert (plan.price_amount, plan.download_rate, plan.public) == (2400, None, False)
        assert plan.retired_at is not None

    confirm = await owner_console.get(f"/plans/{plan.id}/delete")
    assert "Its 0 offer(s) to accounts" in confirm.text and 'data-testid="confirm-delete"' in confirm.text
    assert (await owner_console.submit(f"/plans/{plan.id}/delete")).status_code == 303
    assert await _rows(ctx_factory, Plan) == []


async def test_a_plan_is_offered_to_an_account_by_external_id_and_withdrawn(
    owner_console: ConsoleClient, ctx_factory
) -> None:  # type: ignore[no-untyped-def]
    async with ctx_factory() as ctx:
        pack = PlanCreate(name="Landlord pack", kind="internet", price_amount=900)
        plan = await catalog.create_plan(ctx, pack)
        lofts = await accounts.create(ctx, AccountCreate(name="Harbour Lofts", external_id="lofts-1"))
    url = f"/plans/{plan.id}"
    unknown = await owner_console.submit(f"{url}/offers", {"account": "nobody-here"})
    assert unknown.status_code == 422 and "no account has the id or external id" in _field_error(
        unknown.text, "account"
    )
    offered = await owner_console.submit(f"{url}/offers", {"account": "lofts-1"})
    assert offered.status_code == 303 and offered.headers["location"] == url
    async with ctx_factory() as ctx:
        assert [o["account_id"] for o in await catalog.list_offers(ctx, plan.id)] == [lofts.id]
    shown = await owner_console.get(url)
    assert f'href="/accounts/{lofts.id}">Harbour Lofts<' in shown.text
    again = await owner_console.submit(f"{url}/offers", {"account": str(lofts.id)})
    assert again.status_code == 422 and "already offered" in _field_error(again.text, "account")

    withdrawn = await owner_console.submit(f"{url}/offers/{lofts.id}/withdraw")
    assert withdrawn.status_code == 303
    async with ctx_factory() as ctx:
        assert await catalog.list_offers(ctx, plan.id) == []
    assert "Not offered to any account." in (await owner_console.get(url)).text


async def test_routers_pools_and_ports_are_added_with_their_sharing_and_bad_input_is_refused(
    owner_console: ConsoleClient, ctx_factory
) -> None:  # type: ignore[no-untyped-def]
    async with ctx_factory() as ctx:
        parent = await accounts.create(ctx, AccountCreate(name="MSP North", external_id="msp-n"))
    router = {"name": "nas1", "address": "not an address!", "type": "mikrotik", "radius_secret": "Sekret-9"}
    bad = await owner_console.submit("/routers/new", router)
    assert bad.status_code == 422
    assert "neither an IP address nor a hostname" in _field_error(bad.text, "address")
    assert "Sekret-9" not in bad.text and await _rows(ctx_factory, Router) == []
    added = await owner_console.submit("/routers/new", {**router, "address": "192.0.2.1"})
    assert added.status_code == 303
    [nas] = await _rows(ctx_factory, Router)
    revealed = await owner_console.htmx("POST", f"/routers/{nas.id}/reveal-secret")
    assert "Sekret-9" in revealed.text

    pool = {"name": "North private", "cidr": "10.20.0.5/24", "kind": "permanent", "owner": "msp-n"}
    bad_pool = await owner_console.submit("/ip-pools/new", {**pool, "shared_with_descendants": "on"})
    assert bad_pool.status_code == 422 and "has host bits set" in _field_error(bad_pool.text, "cidr")
    good_pool = await owner_console.submit(
        "/ip-pools/new", {**pool, "cidr": "10.20.0.0/24", "shared_with_descendants": "on"}
    )
    assert good_pool.status_code == 303
    [made] = await _rows(ctx_factory, IpPool)
    assert (made.owner_account_id, made.shared_with_descendants) == (parent.id, True)
    listed = await owner_console.get("/ip-pools", params={"sharing": "shared"})
    assert "MSP North</a> and its subtree" in listed.text
    page = await owner_console.get(f"/ip-pools/{made.id}")
    assert 'data-testid="sharing">MSP North and every account below it<' in page.text

    bad_port = await owner_console.submit("/ports/new", {"name": "xe-0/0/1", "speed": "0", "owner": "msp-n"})
    assert bad_port.status_code == 422 and _field_error(bad_port.text, "speed")
    port_form = {"name": "xe-0/0/1", "speed": "10000", "owner": "msp-n"}
    good_port = await owner_console.submit("/ports/new", port_form)
    assert good_port.status_code == 303
    [port] = await _rows(ctx_factory, Port)
    assert (port.owner_account_id, port.shared_with_descendants) == (parent.id, False)
    assert "MSP North only" in (await owner_console.get(f"/ports/{port.id}")).text
    shared = await owner_console.submit(
        f"/ports/{port.id}", {"name": "xe-0/0/1", "owner": "", "shared_with_descendants": "on"}
    )
    assert shared.status_code == 303
    [port] = await _rows(ctx_factory, Port)
    assert (port.owner_account_id, port.speed) == (None, None)
    assert (await owner_console.submit(f"/ports/{port.id}/delete")).status_code == 303
    assert await _rows(ctx_factory, Port) == []


async def test_a_meter_is_created_refused_and_edited(owner_console: ConsoleClient, ctx_factory) -> None:  # type: ignore[no-untyped-def]
    bad = await owner_console.submit(
        "/meters/new", {"code": "calls", "name": "Calls", "unit": "calls", "aggregation": "unique_count"}
    )
    assert bad.status_code == 422 and "is required for a unique_count meter" in _field_error(
        bad.text, "unique_property"
    )
    good = await owner_console.submit(
        "/meters/new", {"code": "data_bytes", "name": "Data", "unit": "bytes", "aggregation": "sum"}
    )
    assert good.status_code == 303
    async with ctx_factory() as ctx:
        [meter] = (await usage.list_meters(ctx, None, 10)).items
    assert "data_bytes" in (await owner_console.get("/meters")).text
    edited = await owner_console.submit(
        f"/meters/{meter.id}", {"name": "Data volume", "unit": "bytes", "counts_toward_cap": "on"}
    )
    assert edited.status_code == 303
    async with ctx_factory() as ctx:
        meter = await usage.get_meter(ctx, meter.id)
    assert (meter.name, meter.counts_toward_cap) == ("Data volume", True)
