"""Child connections (seed 000) and dual device users."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Response

from boughs.accounts.schemas import AccountOut, DeletionReport, StatusChange
from boughs.deps import CtxDep, Cursor, Limit, domain_router
from boughs.kit.pagination import DEFAULT_LIMIT, Page
from boughs.services import connections
from boughs.services import service as services
from boughs.services.connections_schemas import (
    ChildConnectionCreate,
    ChildConnectionCreated,
    ChildConnectionOut,
    ChildConnectionUpdate,
    DualDeviceKind,
    DualDeviceUserOut,
)

router = domain_router("", "child connections")


CONNECTIONS = "/accounts/{account_id}/child-connections"
CONNECTION = CONNECTIONS + "/{child_id}"


@router.post(CONNECTIONS, status_code=201, response_model=ChildConnectionCreated)
async def create_child_connection(
    ctx: CtxDep, account_id: int, body: ChildConnectionCreate, response: Response
) -> ChildConnectionCreated:
    """The child account and its internet service in one transaction: both, or neither."""
    account, service = await connections.create(ctx, account_id, body)
    response.headers["Location"] = f"/api/v1{CONNECTIONS.format(account_id=account_id)}/{account.id}"
    return ChildConnectionCreated(
        account=AccountOut.model_validate(account), service=await services.to_out(ctx, service)
    )


@router.get(CONNECTIONS, response_model=Page[ChildConnectionOut])
async def list_child_connections(
    ctx: CtxDep, account_id: int, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT
) -> Page[ChildConnectionOut]:
    """Every direct child with its effective status and expiry (and where the expiry comes from)."""
    page = await connections.list_connections(ctx, account_id, cursor, limit)
    return Page[ChildConnectionOut](
        items=[ChildConnectionOut.model_validate(row) for row in page.items], next_cursor=page.next_cursor
    )


@router.get(CONNECTION, response_model=ChildConnectionOut)
async def get_child_connection(ctx: CtxDep, account_id: int, child_id: int) -> ChildConnectionOut:
    return ChildConnectionOut.model_validate(await connections.get(ctx, account_id, child_id))


@router.patch(CONNECTION, response_model=ChildConnectionOut)
async def update_child_connection(
    ctx: CtxDep, account_id: int, child_id: int, body: ChildConnectionUpdate
) -> ChildConnectionOut:
    """Label, plan, IP, MAC, expiry (null: inherit the parent's again) and invoice mode."""
    return ChildConnectionOut.model_validate(await connections.update(ctx, account_id, child_id, body))


@router.post(CONNECTION + "/suspend", response_model=ChildConnectionOut)
async def suspend_child_connection(
    ctx: CtxDep, account_id: int, child_id: int, body: StatusChange | None = None
) -> ChildConnectionOut:
    """Block this connection only; its siblings and its parent are untouched."""
    reason = body.reason if body else ""
    return ChildConnectionOut.model_validate(await connections.suspend(ctx, account_id, child_id, reason))


@router.post(CONNECTION + "/unsuspend", response_model=ChildConnectionOut)
async def unsuspend_child_connection(
    ctx: CtxDep, account_id: int, child_id: int, body: StatusChange | None = None
) -> ChildConnectionOut:
    reason = body.reason if body else ""
    return ChildConnectionOut.model_validate(await connections.unsuspend(ctx, account_id, child_id, reason))


@router.get(CONNECTION + "/deletion", response_model=DeletionReport)
async def preview_child_connection_deletion(ctx: CtxDep, account_id: int, child_id: int) -> DeletionReport:
    """The confirmation: what DELETE would remove and keep, and whether it would be refused."""
    return DeletionReport.model_validate(await connections.deletion_report(ctx, account_id, child_id))


@router.delete(CONNECTION, response_model=DeletionReport)
async def delete_child_connection(ctx: CtxDep, account_id: int, child_id: int) -> DeletionReport:
    """Permanent: the child account and its services go."""
    return DeletionReport.model_validate(await connections.delete(ctx, account_id, child_id))


@router.get("/dual-device-users", response_model=Page[DualDeviceUserOut])
async def list_dual_device_users(
    ctx: CtxDep,
    kind: Annotated[
        DualDeviceKind,
        Query(
            description="children: customers with child accounts; companion: plans allowing a second device."
        ),
    ] = DualDeviceKind.all,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Page[DualDeviceUserOut]:
    page = await connections.dual_device_users(ctx, kind, cursor, limit)
    return Page[DualDeviceUserOut](
        items=[DualDeviceUserOut.model_validate(row) for row in page.items], next_cursor=page.next_cursor
    )
