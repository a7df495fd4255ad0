"""Payment methods on accounts (seed 002): how an account pays, and whether its children may
pay with it too ("allow child accounts to use this payment method").

Reads need read on the account; every write needs ``billing.manage`` there. An account has
at most one default method: making one the default takes it from the others in the same
transaction (the unique partial index ``uq_payment_methods_default`` makes it true under
races, and the account's row lock makes concurrent writers wait instead of failing).
Who pays an invoice is decided in ``billing.terms.payer_of``.
"""

from __future__ import annotations

from typing import Any

from boughs.accounts import repository as accounts_repository
from boughs.accounts import service as accounts
from boughs.accounts.models import Account
from boughs.audit import service as audit
from boughs.authz.permissions import Permission
from boughs.authz.scope import require
from boughs.billing import payment_methods_repository as repository
from boughs.billing.models import PaymentMethod, PaymentMethodKind
from boughs.billing.payment_methods_schemas import PaymentMethodCreate, PaymentMethodUpdate
from boughs.context import Ctx
from boughs.kit.errors import InvalidInput, NotFound
from boughs.kit.pagination import PageOf, check_limit, id_cursor, page_of

ENTITY = "payment_method"
# Kinds that have a number whose last four digits identify them to the customer.
NUMBERED = frozenset({PaymentMethodKind.card.value, PaymentMethodKind.bank_account.value})


def snapshot(method: PaymentMethod) -> dict[str, Any]:
    """What an audit event shows: whether a gateway token is set, not the token."""
    return {
        "account_id": method.account_id,
        "kind": method.kind,
        "label": method.label,
        "last_four": method.last_four,
        "holder": method.holder,
        "has_token_reference": method.token_reference is not None,
        "is_default": method.is_default,
        "shared_with_children": method.shared_with_children,
    }


def not_found(account_id: int, method_id: int) -> NotFound:
    return NotFound(
        detail=f"There is no payment method {method_id} on account {account_id}.",
        fix=f"GET /api/v1/accounts/{account_id}/payment-methods lists them",
    )


async def _writable(ctx: Ctx, account_id: int, doing: str) -> Account:
    account = await accounts.get(ctx, account_id)
    await require(ctx, account.path, Permission.manage_billing, doing)
    # One writer per account at a time, so two "make this the default" requests queue.
    await accounts_repository.lock(ctx.session, ctx.provider_id, [account.id])
    return account


async def _found(ctx: Ctx, account_id: int, method_id: int) -> PaymentMethod:
    method = await repository.get(ctx.session, ctx.provider_id, account_id, method_id)
    if method is None:
        raise not_found(account_id, method_id)
    return method


def _check_last_four(kind: str, last_four: str | None, field: str) -> None:
    if last_four is not None and kind not in NUMBERED:
        raise InvalidInput.on_field(
            field,
            f"a {kind} method has no card or account number, so no last four digits",
            "leave last_four out (or null) for mobile_money and manual methods"
            if field == "last_four"
            else "clear last_four (null) in the same request, or keep a card or bank_account kind",
        )


# --- reading -------------------------------------------------------------------------------------


async def list_methods(ctx: Ctx, account_id: int, cursor: str | None, limit: int) -> PageOf[PaymentMethod]:
    check_limit(limit)
    account = await accounts.get(ctx, account_id)
    rows = await repository.list_for_account(
        ctx.session, ctx.provider_id, account.id, id_cursor(cursor), limit + 1
    )
    return page_of(rows, limit)


async def get_method(ctx: Ctx, account_id: int, method_id: int) -> PaymentMethod:
    account = await accounts.get(ctx, account_id)
    return await _found(ctx, account.id, method_id)


# --- writing -------------------------------------------------------------------------------------


async def _audit_lost_default(ctx: Ctx, account_id: int, ids: list[int]) -> None:
    await audit.record_many(
        ctx,
        [
            audit.event(
                ctx,
                entity=ENTITY,
                entity_id=i,
                action="updated",
                account_id=account_id,
                before={"is_default": True},
                after={"is_default": False},
            )
            for i in ids
        ],
    )


async def create_method(ctx: Ctx, account_id: int, data: PaymentMethodCreate) -> PaymentMethod:
    account = await _writable(ctx, account_id, "add payment methods to this account")
    _check_last_four(data.kind.value, data.last_four, "last_four")
    is_default = data.is_default
    if is_default is None:
        # The first method is how the account pays until it says otherwise.
        is_default = not await repository.has_any(ctx.session, ctx.provider_id, account.id)
    lost: list[int] = []
    if is_default:
        lost = await repository.clear_default(ctx.session, ctx.provider_id, account.id)
    now = ctx.now()
    method = PaymentMethod(
        provider_id=ctx.provider_id,
        account_id=account.id,
        kind=data.kind.value,
        label=data.label,
        last_four=data.last_four,
        holder=data.holder,
        token_reference=data.token_reference,
        is_default=is_default,
        shared_with_children=data.shared_with_children,
        created_at=now,
        updated_at=now,
    )
    ctx.session.add(method)
    await ctx.session.flush()
    await _audit_lost_default(ctx, account.id, lost)
    await audit.record(
        ctx, entity=ENTITY, entity_id=method.id, action="created",
        account_id=account.id, after=snapshot(method),
    )  # fmt: skip
    return method


async def update_method(
    ctx: Ctx, account_id: int, method_id: int, data: PaymentMethodUpdate
) -> PaymentMethod:
    account = await _writable(ctx, account_id, "change this account's payment methods")
    method = await _found(ctx, account.id, method_id)
    changes = data.model_dump(exclude_unset=True)
    kind = changes["kind"].value if "kind" in changes else method.kind
    last_four = changes.get("last_four", method.last_four)
    _check_last_four(kind, last_four, "last_four" if "last_four" in changes else "kind")
    lost: list[int] = []
    if changes.get("is_default") and not method.is_default:
        # Before this row is written: the index holds one default at every moment.
        lost = await repository.clear_default(ctx.session, ctx.provider_id, account.id, keep_id=method.id)
    before, token_before = snapshot(method), method.token_reference
    for name, value in changes.items():
        setattr(method, name, value.value if isinstance(value, PaymentMethodKind) else value)
    old, new = audit.changed(before, snapshot(method))
    # Replacing one token with another shows in no snapshot field, yet it is a change.
    if "has_token_reference" not in new and method.token_reference != token_before:
        new["token_reference"] = "replaced"
    if new:
        method.updated_at = ctx.now()
        await ctx.session.flush()
        await _audit_lost_default(ctx, account.id, lost)
        await audit.record(
            ctx, entity=ENTITY, entity_id=method.id, action="updated",
            account_id=account.id, before=old, after=new,
        )  # fmt: skip
    return method


async def delete_method(ctx: Ctx, account_id: int, method_id: int) -> None:
    """Deleting the default leaves the account without one: it pays with an ancestor's
    shared method, if any, until another is made the default."""
    account = await _writable(ctx, account_id, "remove this account's payment methods")
    method = await _found(ctx, account.id, method_id)
    await audit.record(
        ctx, entity=ENTITY, entity_id=method.id, action="deleted",
        account_id=account.id, before=snapshot(method),
    )  # fmt: skip
    await repository.delete_method(ctx.session, method)
    ctx.session.expunge(method)
