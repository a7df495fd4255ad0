"""`boughs demo`: the seed manuals' account trees, loaded once however often it runs."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from boughs.accounts import service
from boughs.accounts.models import Account, AccountLink
from boughs.audit.models import AuditEvent
from boughs.auth.actor import Actor
from boughs.auth.models import User
from boughs.auth.passwords import check_password_strength, verify_password
from boughs.context import Ctx
from boughs.db import Database
from boughs.demo import DEMO_ACCOUNTS, DEMO_ADMIN_EMAIL, DEMO_ADMIN_PASSWORD, load_demo
from boughs.demo_usage import DEMO_METERS, USAGE_DAYS
from boughs.kit.clock import FrozenClock
from boughs.providers.models import Provider
from boughs.usage.models import Meter, UsageEvent, UsageRollup
from tests.conftest import Tenant


async def counts(db: Database) -> dict[str, int]:
    async with db.transaction(write=False) as session:
        return {
            model.__name__: int((await session.execute(select(func.count()).select_from(model))).scalar_one())
            for model in (Provider, User, Account, AccountLink, AuditEvent, Meter, UsageEvent, UsageRollup)
        }


async def demo_accounts(db: Database) -> dict[str, Account]:
    async with db.transaction(write=False) as session:
        result = await session.execute(select(Account).where(Account.external_id.like("demo-%")))
        return {a.external_id: a for a in result.scalars() if a.external_id}


def children(accounts: dict[str, Account], parent: Account) -> list[Account]:
    return sorted((a for a in accounts.values() if a.parent_id == parent.id), key=lambda a: a.id)


async def test_demo_fills_an_empty_database(db: Database, clock: FrozenClock) -> None:
    report = await load_demo(db, clock)

    assert report.provider_created and report.admin_created and report.admin_password_works
    assert report.accounts_created == report.accounts_total == len(DEMO_ACCOUNTS)
    assert (report.admin_email, report.admin_password) == (DEMO_ADMIN_EMAIL, DEMO_ADMIN_PASSWORD)
    check_password_strength(report.admin_password)  # raises if the demo password were too weak
    async with db.transaction(write=False) as session:
        admin = (await session.execute(select(User).where(User.email == DEMO_ADMIN_EMAIL))).scalar_one()
        provider = (await session.execute(select(Provider))).scalar_one()
    assert admin.staff_role == "owner" and admin.provider_id == provider.id == report.provider_id
    assert verify_password(admin.password_hash, DEMO_ADMIN_PASSWORD)
    assert (await counts(db))["Account"] == len(DEMO_ACCOUNTS)


async def test_demo_has_the_seed_shapes(db: Database, clock: FrozenClock) -> None:
    report = await load_demo(db, clock)
    accounts = await demo_accounts(db)
    assert len(accounts) == len(DEMO_ACCOUNTS)

    # A landlord with six units billed together, and one that pays its own bill.
    landlord = accounts["demo-landlord"]
    units = children(accounts, landlord)
    together = [u for u in units if u.invoice_mode == "with_parent"]
    apart = [u for u in units if u.invoice_mode == "separate"]
    assert len(together) == 6 and len(apart) == 1
    assert all(u.expiry_date is None for u in together)  # they inherit the landlord's expiry
    assert landlord.expiry_date is not None and apart[0].expiry_date is not None
    assert apart[0].expiry_date != landlord.expiry_date
    assert landlord.billing_address and landlord.billing_tax_id and landlord.billing_email
    assert landlord.timezone == "Europe/London" and landlord.currency == "GBP"

    # A business with two offices, one billed separately.
    offices = children(accounts, accounts["demo-acme"])
    assert sorted(o.invoice_mode for o in offices) == ["separate", "with_parent"]

    # A school with a staff and a student connection.
    connections = children(accounts, accounts["demo-school"])
    assert [c.name for c in connections] == ["Staff connection", "Student connection"]

    # An MSP with customers nested three deep.
    msp = accounts["demo-msp"]
    below = [a for a in accounts.values() if a.path.startswith(msp.path) and a.id != msp.id]
    assert max(a.depth for a in below) - msp.depth == 3
    assert len(children(accounts, msp)) == 2
    wifi = accounts["demo-msp-contoso-north-wifi"]
    assert (
        wifi.path
        == f"{msp.path}{accounts['demo-msp-contoso'].id}/{accounts['demo-msp-contoso-north'].id}/{wifi.id}/"
    )

    # An IoT reseller with subaccounts.
    reseller = accounts["demo-iot"]
    assert reseller.features == {"subaccounts": True}
    assert {a.name for a in children(accounts, reseller)} >= {"Clienticity", "AgriTrack Farms"}

    # Inheritance works on the demo: a unit's expiry is the landlord's, unit 7's is its own.
    async with db.transaction(write=False) as session:
        ctx = Ctx(session=session, clock=clock, actor=Actor(report.provider_id, "test", staff_role="owner"))
        unit = await service.effective(ctx, together[0].id)
        own = await service.effective(ctx, apart[0].id)
    assert unit["expiry_date"]["value"] == landlord.expiry_date
    assert unit["expiry_date"]["source_account_id"] == landlord.id
    assert own["expiry_date"]["source_account_id"] == apart[0].id
    assert (
        unit["currency"]["value"] == "GBP"
        and unit["billing_details"]["email"]["source_account_id"] == landlord.id
    )
    assert landlord.expiry_date is not None and landlord.expiry_date > clock.now().date() + timedelta(days=30)

    # Written through the service layer: a link and a "created" audit event per account.
    async with db.transaction(write=False) as session:
        links = list((await session.execute(select(AccountLink))).scalars())
        created = (
            await session.execute(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.entity == "account", AuditEvent.action == "created")
            )
        ).scalar_one()
    assert {(link.child_id, link.parent_id) for link in links} == {
        (a.id, a.parent_id) for a in accounts.values()
    }
    assert created == len(DEMO_ACCOUNTS)


async def test_demo_is_idempotent(db: Database, clock: FrozenClock) -> None:
    first = await load_demo(db, clock)
    before = await counts(db)
    clock.advance(timedelta(days=3))
    again = await load_demo(db, clock)
    assert await counts(db) == before
    assert again.accounts_created == 0 and not again.admin_created and not again.provider_created
    assert again.provider_id == first.provider_id
    assert (again.admin_email, again.admin_password) == (first.admin_email, first.admin_password)


async def test_demo_joins_an_existing_provider(db: Database, clock: FrozenClock, tenant: Tenant) -> None:
    report = await load_demo(db, clock)
    assert report.provider_id == tenant.provider_id and not report.provider_created
    assert report.admin_created
    assert (await counts(db))["Provider"] == 1


async def test_demo_fills_in_what_is_missing(db: Database, clock: FrozenClock, ctx_factory: Any) -> None:
    await load_demo(db, clock)
    accounts = await demo_accounts(db)
    async with db.transaction() as session:
        actor = Actor(accounts["demo-iot"].provider_id, "test", staff_role="owner")
        await service.delete(
            Ctx(session=session, clock=clock, actor=actor), accounts["demo-iot-agritrack"].id
        )
    report = await load_demo(db, clock)
    assert report.accounts_created == 1
    restored = await demo_accounts(db)
    assert restored["demo-iot-agritrack"].parent_id == accounts["demo-iot"].id


async def test_demo_catalog_and_services_load_once(db: Database, clock: FrozenClock) -> None:
    from boughs.catalog.models import IpPool, Offer, Plan, Port, Router
    from boughs.demo_catalog import DEMO_PLANS, DEMO_SERVICES
    from boughs.services.models import Service

    first = await load_demo(db, clock)
    assert first.catalog_created["plans"] == len(DEMO_PLANS)
    assert first.catalog_created["services"] == len(DEMO_SERVICES)
    async with db.transaction(write=False) as session:
        services = (await session.execute(select(Service))).scalars().all()
        by_login = {s.login: s for s in services if s.login}
        duo = (await session.execute(select(Plan).where(Plan.name == "Hotspot Duo"))).scalar_one()
    assert all(s.status == "active" for s in services)
    # Every common MAC notation ends up in one form; permanent addresses come from allowed pools.
    assert by_login["contoso-north-reception"].mac_addresses == ["a4:83:e7:12:9c:01", "a4:83:e7:12:9c:02"]
    assert by_login["contoso-north-reception"].plan_id == duo.id and duo.device_allowance == 2
    assert by_login["fabrikam-downtown"].ipv4_address == "198.51.100.5"  # the MSP's shared pool

    again = await load_demo(db, clock)
    assert not any(again.catalog_created.values())
    async with db.transaction(write=False) as session:
        for model, expected in ((Service, len(DEMO_SERVICES)), (Plan, len(DEMO_PLANS))):
            assert (await session.execute(select(func.count()).select_from(model))).scalar_one() == expected
        for model in (Offer, Router, IpPool, Port):
            assert (await session.execute(select(func.count()).select_from(model))).scalar_one() > 0


async def test_demo_usage_is_plausible_and_loads_once(db: Database, clock: FrozenClock) -> None:
    from boughs.usage import service as usage
    from boughs.usage.schemas import Granularity, UsageScope

    first = await load_demo(db, clock)
    assert first.meters_created == len(DEMO_METERS) and not first.usage_events_refused
    assert first.usage_events_created > 2000
    assert first.usage_end == clock.now().replace(
        minute=0
    ) and first.usage_start == first.usage_end - timedelta(days=USAGE_DAYS)
    accounts = await demo_accounts(db)
    landlord = accounts["demo-landlord"]
    assert first.usage_example is not None and first.usage_example.startswith(
        f"/api/v1/accounts/{landlord.id}/usage?meter=internet_bytes&scope=subtree"
    )
    async with db.transaction(write=False) as session:
        ctx = Ctx(session=session, clock=clock, actor=Actor(first.provider_id, "test", staff_role="owner"))

        async def used(account: str, meter: str, granularity: Granularity = Granularity.day) -> Any:
            return await usage.account_usage(
                ctx, accounts[account].id, meter, first.usage_start, first.usage_end, granularity,
                UsageScope.subtree,
            )  # fmt: skip

        # The landlord's subtree pools its seven units' internet data: the stored events' sum.
        stored = (
            await session.execute(
                select(func.sum(UsageEvent.quantity))
                .join(Meter, Meter.id == UsageEvent.meter_id)
                .join(Account, Account.id == UsageEvent.account_id)
                .where(Meter.code == "internet_bytes", Account.path.startswith(landlord.path))
            )
        ).scalar_one()
        internet = await used("demo-landlord", "internet_bytes")
        assert int(internet.quantity) == stored > 7 * USAGE_DAYS * 5 * 10**9
        # Homes are busier in the evening than before dawn (London time).
        hourly = await used("demo-landlord-unit-1", "internet_bytes", Granularity.hour)
        by_hour: dict[int, int] = {}
        for bucket in hourly.buckets:
            hour = bucket.start.astimezone(ZoneInfo("Europe/London")).hour
            by_hour[hour] = by_hour.get(hour, 0) + int(bucket.quantity)
        assert by_hour[18] + by_hour[21] > 3 * (by_hour[3] + by_hour[6])
        voice = await used("demo-landlord", "voice_minutes")
        assert "." in voice.quantity and len(voice.quantity.split(".")[1]) == 2 and voice.events > 20
        assert Decimal((await used("demo-iot", "data.mb")).quantity) > 0
        assert (await used("demo-msp", "api_calls")).events > 100
        assert (await used("demo-msp-contoso-north-wifi", "active_devices")).quantity == "2"
        assert 24 <= int((await used("demo-school", "active_devices")).quantity) <= 40

    before = await counts(db)
    clock.advance(timedelta(days=2))
    again = await load_demo(db, clock)
    assert (again.meters_created, again.usage_events_created, again.usage_events_refused) == (0, 0, [])
    assert again.usage_end == first.usage_end
    assert await counts(db) == before
