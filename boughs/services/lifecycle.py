"""A service's status machine: every change goes through here and is kept as history."""

from __future__ import annotations

from boughs.audit import service as audit
from boughs.context import Ctx
from boughs.services.models import Service, ServiceStatusChange

ENTITY = "service"


async def record_created(ctx: Ctx, service: Service, note: str = "") -> None:
    """The first entry of a new service's history (the service must be flushed)."""
    service.status_changed_at = ctx.now()
    ctx.session.add(
        ServiceStatusChange(
            provider_id=service.provider_id,
            service_id=service.id,
            from_status=None,
            to_status=service.status,
            reason=service.status_reason,
            note=note,
            changed_by_user_id=ctx.actor.user_id,
            changed_at=ctx.now(),
        )
    )


async def set_status(ctx: Ctx, service: Service, status: str, reason: str, note: str = "") -> bool:
    """Move a service to ``status`` for ``reason``; False when it already is exactly that."""
    if service.status == status and service.status_reason == reason:
        return False
    before = {"status": service.status, "status_reason": service.status_reason}
    ctx.session.add(
        ServiceStatusChange(
            provider_id=service.provider_id,
            service_id=service.id,
            from_status=service.status,
            to_status=status,
            reason=reason,
            note=note,
            changed_by_user_id=ctx.actor.user_id,
            changed_at=ctx.now(),
        )
    )
    service.status, service.status_reason = status, reason
    service.status_changed_at = service.updated_at = ctx.now()
    await audit.record(
        ctx, entity=ENTITY, entity_id=service.id, action="status_changed",
        account_id=service.account_id, before=before,
        after={"status": status, "status_reason": reason, "note": note},
    )  # fmt: skip
    return True
