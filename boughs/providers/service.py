"""Reading and changing the provider's own settings (staff who manage the provider)."""

from __future__ import annotations

from typing import Any

from boughs.audit import service as audit
from boughs.authz.permissions import Permission
from boughs.authz.scope import require
from boughs.billing.terms import ppm_of
from boughs.context import Ctx
from boughs.kit.errors import Conflict, InvalidInput
from boughs.providers import repository
from boughs.providers.models import Provider
from boughs.providers.schemas import ProviderUpdate

ENTITY = "provider"
AUDITED = (
    "name", "default_timezone", "default_currency", "max_account_depth", "usage_retention_days",
    "default_tax_rate_ppm", "default_net_terms_days", "dunning_grace_days", "invoice_number_prefix",
    "credit_note_number_prefix",
)  # fmt: skip
# Only these may be null; the others always hold a value.
NULLABLE = frozenset({"max_account_depth"})


async def get(ctx: Ctx) -> Provider:
    return await repository.get(ctx.session, ctx.provider_id)


def _snapshot(provider: Provider) -> dict[str, Any]:
    return {name: getattr(provider, name) for name in AUDITED}


async def update(ctx: Ctx, data: ProviderUpdate) -> Provider:
    await require(ctx, "", Permission.manage_provider, "change the provider's settings")
    provider = await get(ctx)
    changes = data.model_dump(exclude_unset=True)
    for name, value in changes.items():
        if value is None and name not in NULLABLE:
            raise InvalidInput.on_field(name, "cannot be null", "leave it out to keep the current value")
    depth = changes.get("max_account_depth")
    if depth is not None:
        deepest = await repository.deepest_account(ctx.session, ctx.provider_id)
        if deepest is not None and deepest > depth:
            raise Conflict.on_field(
                "max_account_depth",
                f"accounts already sit at depth {deepest}",
                f"allow at least {deepest}, or move the deeper accounts up first",
            )
    if "default_tax_rate" in changes:
        changes["default_tax_rate_ppm"] = ppm_of(changes.pop("default_tax_rate"))
    before = _snapshot(provider)
    for name, value in changes.items():
        setattr(provider, name, value)
    old, new = audit.changed(before, _snapshot(provider))
    if new:
        provider.updated_at = ctx.now()
        await ctx.session.flush()
        await audit.record(
            ctx,
            entity=ENTITY,
            entity_id=provider.id,
            action="updated",
            account_id=None,
            before=old,
            after=new,
        )
    return provider
