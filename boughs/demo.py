"""Demo data drawn from the seed manuals: the shapes of account trees operators really run.

- a landlord whose six units are billed together, and a seventh unit that pays its own bill;
- a business with two offices, one billed separately (seed 000);
- a school with a staff and a student connection (seed 000);
- a managed service provider with customers nested three deep (seed 002, subtenants);
- an IoT reseller with subaccounts (seed 003).

Beside them: the catalog and services they buy (``demo_catalog``), and the provider's
meters with three weeks of usage on those services and accounts (``demo_usage``).

Loading is idempotent: an account is created only when no account of the provider has
its external id yet, so running it again changes nothing. It goes through the service
layer, so audit events and parent links are written exactly as the API writes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from boughs.accounts import repository as accounts
from boughs.accounts import service
from boughs.accounts.schemas import AccountCreate
from boughs.auth import repository as users
from boughs.auth import service as auth
from boughs.auth.actor import Actor, StaffRole
from boughs.auth.passwords import verify_password
from boughs.context import Ctx
from boughs.db import Database
from boughs.demo_billing import load_billing
from boughs.demo_catalog import load_catalog
from boughs.demo_usage import load_usage
from boughs.kit.clock import Clock, local_date
from boughs.providers import repository as providers

DEMO_PROVIDER_NAME = "Boughs Demo ISP"
DEMO_ADMIN_EMAIL = "admin@demo.boughs.test"
DEMO_ADMIN_PASSWORD = "Boughs-demo-2026"


@dataclass(frozen=True)
class DemoAccount:
    external_id: str
    name: str
    parent: str | None = None
    # Days from today (in the provider's timezone) to an explicit expiry; None inherits.
    expires_in_days: int | None = None
    fields: dict[str, Any] = field(default_factory=dict)


def _billing(address: str, tax_id: str, email: str) -> dict[str, str]:
    return {"billing_address": address, "billing_tax_id": tax_id, "billing_email": email}


WITH_PARENT = {"invoice_mode": "with_parent"}
SEPARATE = {"invoice_mode": "separate"}

DEMO_ACCOUNTS: tuple[DemoAccount, ...] = (
    # A landlord pays for internet across multiple units: one combined invoice (seed 000).
    DemoAccount(
        "demo-landlord", "Harbourside Lofts", expires_in_days=60,
        fields={
            "description": "Landlord: internet for every unit, on one invoice",
            "contact_email": "manager@harbourside-lofts.example.com",
            "timezone": "Europe/London", "currency": "GBP",
            **_billing("Harbourside Lofts Ltd\n12 Quay Street\nBristol BS1 4DJ", "GB123456789",
                       "accounts@harbourside-lofts.example.com"),
        },
    ),
    *(
        DemoAccount(f"demo-landlord-unit-{n}", f"Unit {n}", parent="demo-landlord", fields=dict(WITH_PARENT))
        for n in range(1, 7)
    ),
    DemoAccount(
        "demo-landlord-unit-7", "Unit 7 (pays its own bill)", parent="demo-landlord", expires_in_days=25,
        fields={**SEPARATE, "contact_email": "unit7@example.com", "billing_email": "unit7@example.com"},
    ),
    # A business with offices at two locations; the warehouse pays its own bill (seed 000).
    DemoAccount(
        "demo-acme", "Acme Logistics", expires_in_days=90,
        fields={
            "contact_email": "it@acme-logistics.example.com",
            "timezone": "America/Chicago", "currency": "USD",
            **_billing("Acme Logistics Inc.\n400 W Lake St\nChicago, IL 60606", "US-36-4218861",
                       "ap@acme-logistics.example.com"),
        },
    ),
    DemoAccount("demo-acme-hq", "Acme - Head office", parent="demo-acme", fields=dict(WITH_PARENT)),
    DemoAccount(
        "demo-acme-warehouse", "Acme - Warehouse office", parent="demo-acme",
        fields={
            **SEPARATE,
            **_billing("Acme Logistics Warehouse\n2200 S Halsted St\nChicago, IL 60608", "US-36-4218861",
                       "warehouse-ap@acme-logistics.example.com"),
        },
    ),
    # A school with a staff connection and a student connection (seed 000).
    DemoAccount(
        "demo-school", "Riverside High School", expires_in_days=200,
        fields={
            "contact_email": "office@riverside-high.example.org",
            "technical_contact_email": "it@riverside-high.example.org",
            "timezone": "America/New_York",
            **_billing("Riverside High School\n1 College Ave\nAlbany, NY 12203", "NY-SD-0042",
                       "bursar@riverside-high.example.org"),
        },
    ),
    DemoAccount("demo-school-staff", "Staff connection", parent="demo-school", fields=dict(WITH_PARENT)),
    DemoAccount("demo-school-students", "Student connection", parent="demo-school", fields=dict(WITH_PARENT)),
    # A managed service provider: customers as subtenants, nested three deep (seed 002).
    DemoAccount(
        "demo-msp", "Northwind Managed Services",
        fields={
            "description": "MSP: each customer is a subtenant with its own sites",
            "technical_contact_email": "noc@northwind-msp.example.net",
            "features": {"subaccounts": True},
            **_billing("Northwind MSP BV\nHerengracht 100\n1015 BS Amsterdam", "NL853746190B01",
                       "finance@northwind-msp.example.net"),
            "timezone": "Europe/Amsterdam", "currency": "EUR",
        },
    ),
    DemoAccount(
        "demo-msp-contoso", "Contoso Dental", parent="demo-msp",
        fields={**SEPARATE, "technical_contact_email": "it@contoso-dental.example.com",
                "features": {"subaccounts": True},
                **_billing("Contoso Dental BV\nKeizersgracht 12\n1015 CR Amsterdam", "NL001234567B01",
                           "billing@contoso-dental.example.com")},
    ),
    DemoAccount(
        "demo-msp-contoso-north", "Contoso Dental - North clinic", parent="demo-msp-contoso",
        fields=dict(WITH_PARENT),
    ),
    DemoAccount(
        "demo-msp-contoso-north-wifi", "North clinic - Reception Wi-Fi", parent="demo-msp-contoso-north",
        fields=dict(WITH_PARENT),
    ),
    DemoAccount(
        "demo-msp-fabrikam", "Fabrikam Legal", parent="demo-msp",
        fields={**SEPARATE, "technical_contact_email": "helpdesk@fabrikam-legal.example.com"},
    ),
    DemoAccount(
        "demo-msp-fabrikam-downtown", "Fabrikam Legal - Downtown office", parent="demo-msp-fabrikam",
        fields=dict(WITH_PARENT),
    ),
    # An IoT SIM reseller with subaccounts for its own customers (seed 003).
    DemoAccount(
        "demo-iot", "Sensorly IoT",
        fields={
            "description": "IoT reseller: splits its SIM fleet between its customers",
            "contact_email": "sales@sensorly.example.io",
            "features": {"subaccounts": True},
            "timezone": "Europe/Paris", "currency": "EUR",
            **_billing("Sensorly SAS\n8 rue de la Paix\n75002 Paris", "FR40303265045",
                       "factures@sensorly.example.io"),
        },
    ),
    DemoAccount(
        "demo-iot-clienticity", "Clienticity", parent="demo-iot",
        fields={**SEPARATE, "contact_email": "fleet@clienticity.example.com",
                "billing_email": "ap@clienticity.example.com"},
    ),
    DemoAccount(
        "demo-iot-agritrack", "AgriTrack Farms", parent="demo-iot",
        fields={**SEPARATE, "contact_email": "ops@agritrack.example.com"},
    ),
)  # fmt: skip


@dataclass(frozen=True)
class DemoReport:
    provider_id: int
    provider_created: bool
    admin_email: str
    admin_password: str
    admin_created: bool
    # False when someone changed the demo admin's password after it was created.
    admin_password_works: bool
    accounts_created: int
    accounts_total: int
    # plans, offers, routers, ip_pools, ports, services → how many this load created
    catalog_created: dict[str, int]
    meters_created: int = 0
    usage_events_created: int = 0
    # Demo events not taken (say, a demo login now used by another account's service).
    usage_events_refused: list[str] = field(default_factory=list)
    # The demo usage's window and an account whose subtree has some of it, to try the API on.
    usage_start: datetime | None = None
    usage_end: datetime | None = None
    usage_account_id: int | None = None
    payment_methods_created: int = 0
    # Last month's invoices (finalized) and this month's (drafts, billed in advance).
    invoices_created: int = 0

    @property
    def usage_example(self) -> str | None:
        """A usage query that shows the demo's usage."""
        if self.usage_account_id is None or self.usage_start is None or self.usage_end is None:
            return None
        return (
            f"/api/v1/accounts/{self.usage_account_id}/usage?meter=internet_bytes&scope=subtree"
            f"&granularity=day&from={_z(self.usage_start)}&to={_z(self.usage_end)}"
        )


def _z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def is_foreign_install(db: Database) -> bool:
    """A database with a provider but no demo admin belongs to someone: keep demo data out."""
    async with db.transaction(write=False) as session:
        if await users.user_by_email(session, DEMO_ADMIN_EMAIL) is not None:
            return False
        return await providers.first(session) is not None


async def load_demo(db: Database, clock: Clock) -> DemoReport:
    """Load the demo provider, admin and accounts; whatever is there already is left alone."""
    async with db.transaction() as session:
        now = clock.now()
        admin = await users.user_by_email(session, DEMO_ADMIN_EMAIL)
        provider_created = False
        if admin is None:
            existing = await providers.first(session)
            provider = await auth.ensure_provider(session, DEMO_PROVIDER_NAME, now, timezone="UTC")
            provider_created = existing is None
            admin = await auth.create_user(
                session, provider.id, DEMO_ADMIN_EMAIL, DEMO_ADMIN_PASSWORD, now,
                name="Demo admin", staff_role=StaffRole.owner,
            )  # fmt: skip
            admin_created = True
        else:
            admin_created = False
        ctx = Ctx(
            session=session,
            clock=clock,
            actor=Actor(
                provider_id=admin.provider_id,
                label=f"user:{admin.email}",
                user_id=admin.id,
                staff_role=admin.staff_role or StaffRole.owner.value,
            ),
        )
        created, ids = await _load_accounts(ctx)
        catalog_created = await load_catalog(ctx, ids)
        usage = await load_usage(ctx, ids)
        billing = await load_billing(ctx, ids)
        return DemoReport(
            provider_id=admin.provider_id,
            provider_created=provider_created,
            admin_email=DEMO_ADMIN_EMAIL,
            admin_password=DEMO_ADMIN_PASSWORD,
            admin_created=admin_created,
            admin_password_works=verify_password(admin.password_hash, DEMO_ADMIN_PASSWORD),
            accounts_created=created,
            accounts_total=len(DEMO_ACCOUNTS),
            catalog_created=catalog_created,
            meters_created=usage.meters_created,
            usage_events_created=usage.events_accepted,
            usage_events_refused=usage.events_refused,
            usage_start=usage.start,
            usage_end=usage.end,
            usage_account_id=ids.get("demo-landlord"),
            payment_methods_created=billing.payment_methods_created,
            invoices_created=billing.invoices_created,
        )


async def _load_accounts(ctx: Ctx) -> tuple[int, dict[str, int]]:
    provider = await providers.get(ctx.session, ctx.provider_id)
    today = local_date(ctx.now(), provider.default_timezone)
    ids: dict[str, int] = {}
    created = 0
    for spec in DEMO_ACCOUNTS:  # parents come before their children
        existing = await accounts.get_by_external_id(ctx.session, ctx.provider_id, spec.external_id)
        if existing is not None:
            ids[spec.external_id] = existing.id
            continue
        expiry = today + timedelta(days=spec.expires_in_days) if spec.expires_in_days is not None else None
        account = await service.create(
            ctx,
            AccountCreate(
                name=spec.name,
                external_id=spec.external_id,
                parent_id=ids[spec.parent] if spec.parent else None,
                expiry_date=expiry,
                **spec.fields,
            ),
        )
        ids[spec.external_id] = account.id
        created += 1
    return created, ids
