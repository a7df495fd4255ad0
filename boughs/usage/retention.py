"""Raw usage events are kept for the provider's retention window; rollups forever."""

from __future__ import annotations

from datetime import timedelta

from boughs.context import Ctx
from boughs.providers import repository as providers
from boughs.usage import fold_repository, repository

CHUNK = 5000


async def purge_expired(ctx: Ctx, limit: int = CHUNK) -> int:
    """Delete up to ``limit`` events older than the window; returns how many went."""
    provider = await providers.get(ctx.session, ctx.provider_id)
    before = ctx.now() - timedelta(days=provider.usage_retention_days)
    purged = await repository.purge_events_before(ctx.session, ctx.provider_id, before, limit)
    if purged < limit:
        await fold_repository.purge_folded_batches(ctx.session, ctx.provider_id, before)
    return purged
