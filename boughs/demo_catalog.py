"""The demo's catalog and subscriptions: what the demo accounts buy and on which network.

Plans in each currency the demo accounts bill in, offers that reach a customer's whole
subtree (seed 003), the provider's pools beside a pool and a port an MSP shares with
its subtenants (seed 002), and services on the demo accounts (seed 004), among them a
hotspot with a companion device (seed 000's dual device users). Idempotent like the
accounts: a plan, router, pool or port is created when its name is free, a service when
its login is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from boughs.accounts import service as account_service
from boughs.catalog import repository as catalog_repository
from boughs.catalog import service as catalog
from boughs.catalog.models import IpPool, Plan, Port, Router
from boughs.catalog.schemas import IpPoolCreate, PlanCreate, PortCreate, RouterCreate
from boughs.context import Ctx
from boughs.kit.clock import local_date
from boughs.providers import repository as providers
from boughs.services import repository as services_repository
from boughs.services import service as services
from boughs.services.schemas import ServiceCreate

GB = 1_000_000_000

DEMO_PLANS: tuple[dict[str, Any], ...] = (
    {"name": "Home Fibre 100", "kind": "internet", "price_amount": 3500, "currency": "GBP", "public": True,
     "download_rate": 100_000, "upload_rate": 20_000,
     "description": "100/20 Mbit/s residential fibre"},
    {"name": "Business Fibre 500", "kind": "internet", "price_amount": 12900, "currency": "USD",
     "download_rate": 500_000, "upload_rate": 500_000, "description": "Symmetric 500 Mbit/s"},
    {"name": "Campus 1G", "kind": "internet", "price_amount": 45000, "currency": "USD",
     "download_rate": 1_000_000, "upload_rate": 1_000_000,
     "data_cap_bytes": 20_000 * GB, "cap_action": "throttle",
     "throttle_download_rate": 100_000, "throttle_upload_rate": 100_000},
    {"name": "Hotspot Duo", "kind": "internet", "price_amount": 1500, "currency": "EUR", "public": True,
     "pay_period": "week", "download_rate": 30_000, "upload_rate": 10_000, "device_allowance": 2,
     "data_cap_bytes": 50 * GB, "cap_action": "disable",
     "description": "Hotspot access for a phone and a companion device"},
    {"name": "Managed SD-WAN site", "kind": "custom", "price_amount": 9900, "currency": "EUR",
     "description": "Per site, per month"},
    {"name": "Voice line", "kind": "voice", "price_amount": 800, "currency": "GBP", "public": True},
    {"name": "IoT SIM pooled", "kind": "sim", "price_amount": 150, "currency": "EUR",
     "usage_charges": [{"meter": "data.mb", "model": "graduated", "tiers": [
         {"up_to": 10, "unit_price": "0"}, {"up_to": 1000, "unit_price": "0.02"},
         {"up_to": None, "unit_price": "0.01"}]}],
     # Sensorly's customers' SIM data is pooled through the tiers and shared back per customer.
     "child_billing_mode": "parent_breakdown"},
)  # fmt: skip

# plan name → the demo accounts it is offered to (and so to their subtrees)
DEMO_OFFERS = {
    "Business Fibre 500": ("demo-acme",),
    "Campus 1G": ("demo-school",),
    "Managed SD-WAN site": ("demo-msp",),
    "IoT SIM pooled": ("demo-iot",),
}

DEMO_ROUTERS = (
    {
        "name": "bras-bristol-1",
        "address": "10.20.0.1",
        "type": "mikrotik",
        "radius_secret": "demo-bristol-nas",
    },
    {"name": "bng-chicago-1", "address": "10.30.0.1", "type": "juniper", "radius_secret": "demo-chicago-nas"},
)

DEMO_POOLS: tuple[dict[str, Any], ...] = (
    {"name": "Public static", "cidr": "203.0.113.0/24", "kind": "permanent"},
    {"name": "CGNAT", "cidr": "100.64.0.0/16", "kind": "dynamic"},
    {"name": "Northwind customer block", "cidr": "198.51.100.0/26", "kind": "permanent",
     "owner": "demo-msp", "shared_with_descendants": True},
)  # fmt: skip

DEMO_PORTS: tuple[dict[str, Any], ...] = (
    {"name": "AMS-IX 10G port 1", "location": "Amsterdam, Equinix AM3", "speed": 10_000,
     "owner": "demo-msp", "shared_with_descendants": True},
)  # fmt: skip


@dataclass(frozen=True)
class DemoService:
    account: str
    plan: str
    login: str | None = None
    router: str | None = None
    pool: str | None = None
    port: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


DEMO_SERVICES: tuple[DemoService, ...] = (
    *(
        DemoService(f"demo-landlord-unit-{n}", "Home Fibre 100", f"harbourside-unit{n}",
                    router="bras-bristol-1", pool="CGNAT", options={"ipv4_mode": "dynamic"})
        for n in range(1, 7)
    ),
    DemoService("demo-landlord-unit-7", "Home Fibre 100", "harbourside-unit7", router="bras-bristol-1",
                options={"ipv4_mode": "permanent", "ipv4_address": "203.0.113.17",
                         "mac_addresses": ["3C-22-FB-01-7A-10"]}),
    DemoService("demo-landlord", "Voice line", options={"description": "Front desk phone"}),
    DemoService("demo-acme-hq", "Business Fibre 500", "acme-hq", router="bng-chicago-1",
                options={"ipv4_mode": "permanent", "ipv4_address": "203.0.113.10",
                         "additional_networks": ["203.0.113.128/28"],
                         "geo_address": "400 W Lake St, Chicago",
                         "latitude": 41.8857, "longitude": -87.6388}),
    DemoService("demo-acme-warehouse", "Business Fibre 500", "acme-warehouse", router="bng-chicago-1",
                pool="CGNAT", options={"ipv4_mode": "dynamic"}),
    DemoService("demo-school-staff", "Campus 1G", "riverside-staff", options={"ipv4_mode": "dynamic"}),
    DemoService("demo-school-students", "Campus 1G", "riverside-students", options={"ipv4_mode": "dynamic"}),
    DemoService("demo-msp-contoso-north", "Managed SD-WAN site", options={"quantity": 2, "unit": "site"}),
    DemoService("demo-msp-contoso-north-wifi", "Hotspot Duo", "contoso-north-reception",
                options={"mac_addresses": ["a4:83:e7:12:9c:01", "A483.E712.9C02"]}),
    DemoService("demo-msp-fabrikam-downtown", "Home Fibre 100", "fabrikam-downtown", port="AMS-IX 10G port 1",
                options={"ipv4_mode": "permanent", "ipv4_address": "198.51.100.5",
                         "unit_price_amount": 4200}),
)  # fmt: skip


async def load_catalog(ctx: Ctx, ids: dict[str, int]) -> dict[str, int]:
    """Create what is missing; ``ids`` maps demo external ids to account ids.

    Returns how many of each kind were created.
    """
    created = {"plans": 0, "offers": 0, "routers": 0, "ip_pools": 0, "ports": 0, "services": 0}
    # Services began at the start of last month, so last month has a whole bill to show.
    provider = await providers.get(ctx.session, ctx.provider_id)
    since = (local_date(ctx.now(), provider.default_timezone).replace(day=1) - timedelta(days=1)).replace(
        day=1
    )
    plans: dict[str, int] = {}
    for plan_spec in DEMO_PLANS:
        plan = await catalog_repository.get_by_name(ctx.session, Plan, ctx.provider_id, plan_spec["name"])
        if plan is None:
            plan = await catalog.create_plan(ctx, PlanCreate(**plan_spec))
            created["plans"] += 1
        plans[plan.name] = plan.id
    for plan_name, account_keys in DEMO_OFFERS.items():
        for key in account_keys:
            if ids.get(key) is None:
                continue
            if await catalog_repository.get_offer(ctx.session, plans[plan_name], ids[key]) is None:
                await catalog.add_offer(ctx, plans[plan_name], ids[key])
                created["offers"] += 1

    def router(spec: dict[str, Any]) -> Any:
        return catalog.create_router(ctx, RouterCreate(**spec))

    def pool(spec: dict[str, Any]) -> Any:
        return catalog.create_pool(ctx, _owned(IpPoolCreate, spec, ids))

    def port(spec: dict[str, Any]) -> Any:
        return catalog.create_port(ctx, _owned(PortCreate, spec, ids))

    routers = await _named(ctx, Router, DEMO_ROUTERS, router, created, "routers")
    pools = await _named(ctx, IpPool, DEMO_POOLS, pool, created, "ip_pools")
    ports = await _named(ctx, Port, DEMO_PORTS, port, created, "ports")
    for spec in DEMO_SERVICES:
        account_id = ids.get(spec.account)
        if account_id is None:
            continue
        if spec.login is not None:
            if await services_repository.live_holder(ctx.session, ctx.provider_id, "login", spec.login, None):
                continue
        elif await services_repository.count_on_account(ctx.session, ctx.provider_id, account_id):
            continue  # the login-less demo services are each their account's only one
        account = await account_service.get(ctx, account_id)
        if account.msa_accepted_at is None or account.aup_accepted_at is None:
            await account_service.accept_agreements(ctx, account_id, msa=True, aup=True)
        options = dict(spec.options)
        if spec.pool is not None:
            options["ipv4_pool"] = pools[spec.pool]
        await services.create(
            ctx,
            account_id,
            ServiceCreate(
                plan_id=plans[spec.plan],
                start_date=since,
                login=spec.login,
                router_id=routers[spec.router] if spec.router else None,
                port_id=ports[spec.port] if spec.port else None,
                **options,
            ),
        )
        created["services"] += 1
    return created


def _owned(schema: Any, spec: dict[str, Any], ids: dict[str, int]) -> Any:
    values = {k: v for k, v in spec.items() if k != "owner"}
    if "owner" in spec:
        values["owner_account_id"] = ids[spec["owner"]]
    return schema(**values)


async def _named(
    ctx: Ctx, model: Any, specs: tuple[dict[str, Any], ...], make: Any, created: dict[str, int], kind: str
) -> dict[str, int]:
    found: dict[str, int] = {}
    for spec in specs:
        row = await catalog_repository.get_by_name(ctx.session, model, ctx.provider_id, spec["name"])
        if row is None:
            row = await make(spec)
            created[kind] += 1
        found[row.name] = row.id
    return found
