"""Every query about payment methods, and the account rows the billing rules read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy import and_, bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from boughs.accounts.models import Account
from boughs.billing.models import PaymentMethod
from boughs.kit.paths import upper_bound
from boughs.kit.types import storable_id

# Ids per statement when many accounts are asked for at once (a bill run's chunk).
_IN_BATCH = 1000


# Built once: building a statement costs more than running it on the hottest reads.
_METHODS_OF = (
    select(PaymentMethod)
    .where(
        PaymentMethod.provider_id == bindparam("provider_id"),
        PaymentMethod.account_id.in_(bindparam("account_ids", expanding=True)),
    )
    .order_by(PaymentMethod.account_id, PaymentMethod.id)
)


async def methods_for_accounts(
    session: AsyncSession, provider_id: int, account_ids: Sequence[int]
) -> dict[int, list[PaymentMethod]]:
    """Each account's methods, oldest first; every asked id is a key. One statement for up
    to a thousand accounts (a chain always fits)."""
    wanted = sorted({i for i in account_ids if storable_id(i)})
    found: dict[int, list[PaymentMethod]] = {i: [] for i in account_ids}
    for start in range(0, len(wanted), _IN_BATCH):
        params = {"provider_id": provider_id, "account_ids": wanted[start : start + _IN_BATCH]}
        for method in (await session.execute(_METHODS_OF, params)).scalars():
            found[method.account_id].append(method)
    return found


async def get(
    session: AsyncSession, provider_id: int, account_id: int, method_id: int
) -> PaymentMethod | None:
    """Only a method of this account: another account's id answers None, like a missing one."""
    if not storable_id(method_id):
        return None
    result = await session.execute(
        select(PaymentMethod).where(
            PaymentMethod.provider_id == provider_id,
            PaymentMethod.account_id == account_id,
            PaymentMethod.id == method_id,
        )
    )
    return result.scalar_one_or_none()


async def list_for_account(
    session: AsyncSession, provider_id: int, account_id: int, after_id: int | None, limit: int
) -> list[PaymentMethod]:
    stmt = select(PaymentMethod).where(
        PaymentMethod.provider_id == provider_id, PaymentMethod.account_id == account_id
    )
    if after_id is not None:
        stmt = stmt.where(PaymentMethod.id > after_id)
    result = await session.execute(stmt.order_by(PaymentMethod.id).limit(limit))
    return list(result.scalars())


async def has_any(session: AsyncSession, provider_id: int, account_id: int) -> bool:
    result = await session.execute(
        select(PaymentMethod.id)
        .where(PaymentMethod.provider_id == provider_id, PaymentMethod.account_id == account_id)
        .limit(1)
    )
    return result.first() is not None


async def clear_default(
    session: AsyncSession, provider_id: int, account_id: int, keep_id: int | None = None
) -> list[int]:
    """Unset the account's default (except ``keep_id``); returns the ids that lost it.

    Run before the new default is written: the unique partial index allows one at a time.
    """
    conditions = [
        PaymentMethod.provider_id == provider_id,
        PaymentMethod.account_id == account_id,
        PaymentMethod.is_default.is_(True),
    ]
    if keep_id is not None:
        conditions.append(PaymentMethod.id != keep_id)
    result = await session.execute(
        update(PaymentMethod)
        .where(and_(*conditions))
        .values(is_default=False)
        .returning(PaymentMethod.id)
        # Methods already loaded in the session see the change.
        .execution_options(synchronize_session="fetch")
    )
    return [row[0] for row in result.all()]


async def delete_method(session: AsyncSession, method: PaymentMethod) -> None:
    await session.execute(
        delete(PaymentMethod)
        .where(PaymentMethod.provider_id == method.provider_id, PaymentMethod.id == method.id)
        .execution_options(synchronize_session=False)
    )


# --- the currency rule ---------------------------------------------------------------------------


class CurrencyRow(NamedTuple):
    id: int
    path: str
    invoice_mode: str
    currency: str


async def explicit_currencies_below(session: AsyncSession, account: Account) -> list[CurrencyRow]:
    """Accounts strictly below ``account`` that set their own currency, in tree order.

    Only these can disagree with an invoice owner: an account that inherits its currency
    has its parent's by definition.
    """
    result = await session.execute(
        select(Account.id, Account.path, Account.invoice_mode, Account.currency)
        .where(
            Account.provider_id == account.provider_id,
            Account.path > account.path,
            Account.path < upper_bound(account.path),
            Account.currency.is_not(None),
        )
        .order_by(Account.path)
    )
    return [CurrencyRow(r[0], r[1], r[2], str(r[3])) for r in result.all()]
