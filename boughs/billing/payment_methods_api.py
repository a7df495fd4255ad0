"""Payment methods of an account: `/api/v1/accounts/{account_id}/payment-methods`."""

from __future__ import annotations

from fastapi import Response

from boughs.billing import payment_methods as service
from boughs.billing.payment_methods_schemas import (
    PaymentMethodCreate,
    PaymentMethodOut,
    PaymentMethodUpdate,
)
from boughs.deps import CtxDep, Cursor, Limit, domain_router
from boughs.kit.pagination import DEFAULT_LIMIT, Page

router = domain_router("", "billing")

METHODS = "/accounts/{account_id}/payment-methods"


@router.get(METHODS, response_model=Page[PaymentMethodOut])
async def list_payment_methods(
    ctx: CtxDep, account_id: int, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT
) -> Page[PaymentMethodOut]:
    """The account's own methods, oldest first (`effective` shows the one it pays with)."""
    page = await service.list_methods(ctx, account_id, cursor, limit)
    return Page[PaymentMethodOut](
        items=[PaymentMethodOut.model_validate(m) for m in page.items], next_cursor=page.next_cursor
    )


@router.post(METHODS, status_code=201, response_model=PaymentMethodOut)
async def create_payment_method(
    ctx: CtxDep, account_id: int, data: PaymentMethodCreate, response: Response
) -> PaymentMethodOut:
    """`token_reference` is the gateway's opaque reference; a card number is refused.
    `shared_with_children`: allow child accounts to use this payment method."""
    method = await service.create_method(ctx, account_id, data)
    response.headers["Location"] = f"/api/v1/accounts/{account_id}/payment-methods/{method.id}"
    return PaymentMethodOut.model_validate(method)


@router.get(METHODS + "/{method_id}", response_model=PaymentMethodOut)
async def get_payment_method(ctx: CtxDep, account_id: int, method_id: int) -> PaymentMethodOut:
    return PaymentMethodOut.model_validate(await service.get_method(ctx, account_id, method_id))


@router.patch(METHODS + "/{method_id}", response_model=PaymentMethodOut)
async def update_payment_method(
    ctx: CtxDep, account_id: int, method_id: int, data: PaymentMethodUpdate
) -> PaymentMethodOut:
    """`is_default: true` takes the default from the account's other methods."""
    return PaymentMethodOut.model_validate(await service.update_method(ctx, account_id, method_id, data))


@router.delete(METHODS + "/{method_id}", status_code=204)
async def delete_payment_method(ctx: CtxDep, account_id: int, method_id: int) -> Response:
    await service.delete_method(ctx, account_id, method_id)
    return Response(status_code=204)
