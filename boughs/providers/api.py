"""The provider's settings."""

from __future__ import annotations

from boughs.deps import CtxDep, domain_router
from boughs.providers import service
from boughs.providers.schemas import ProviderOut, ProviderUpdate

router = domain_router("", "provider")


@router.get("/provider", response_model=ProviderOut)
async def get_provider(ctx: CtxDep) -> ProviderOut:
    """The provider whose API this is: its defaults and its usage retention."""
    return ProviderOut.model_validate(await service.get(ctx))


@router.patch("/provider", response_model=ProviderOut)
async def update_provider(ctx: CtxDep, data: ProviderUpdate) -> ProviderOut:
    return ProviderOut.model_validate(await service.update(ctx, data))
