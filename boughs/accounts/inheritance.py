"""Per-attribute inheritance down the tree, with the account each value comes from.

Pure functions over a chain of accounts ordered root first, the account itself last.
Nothing here reads the database, so the API, the sweep and the console agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol

from boughs.accounts.models import AccountStatus
from boughs.kit.clock import end_of_local_day


class ChainLink(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def status(self) -> str: ...
    @property
    def expiry_date(self) -> date | None: ...
    @property
    def timezone(self) -> str | None: ...


@dataclass(frozen=True)
class Inherited:
    value: Any
    source_account_id: int | None
    # own | inherited | provider | none
    source: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "source_account_id": self.source_account_id,
            "source": self.source,
        }


def resolve(chain: Sequence[Any], attribute: str, provider_default: Any = None) -> Inherited:
    """The nearest non-null value up the chain, else the provider's default."""
    own_id = chain[-1].id
    for account in reversed(chain):
        value = getattr(account, attribute)
        if value is not None:
            return Inherited(value, account.id, "own" if account.id == own_id else "inherited")
    if provider_default is not None:
        return Inherited(provider_default, None, "provider")
    return Inherited(None, None, "none")


# When an account and an ancestor both block, the more final state is the one reported.
_SEVERITY = {AccountStatus.cancelled.value: 2, AccountStatus.suspended.value: 1}


def has_expired(expiry_date: date | None, timezone: str, now: datetime) -> bool:
    """An expiry date is the last day of service, to its end in the account's timezone.

    The last day the calendar holds (9999-12-31, the usual way to write "never") has no
    end to compute, and never passes.
    """
    if expiry_date is None or expiry_date == date.max:
        return False
    return now >= end_of_local_day(expiry_date, timezone)


# The reason an account held for an unpaid invoice (``dunning_hold``) reports.
UNPAID = "unpaid"


def effective_status(chain: Sequence[ChainLink], now: datetime, provider_timezone: str) -> dict[str, Any]:
    blocker: ChainLink | None = None
    for account in reversed(chain):
        severity = _SEVERITY.get(account.status, 0)
        if severity and (blocker is None or severity > _SEVERITY[blocker.status]):
            blocker = account
    own = chain[-1]
    # A dunning hold suspends the account itself, never its descendants: only the last
    # account's own hold counts. Its own status, or a cancelled ancestor, says more.
    suspended_above = (
        blocker is not None and blocker.id != own.id and blocker.status == AccountStatus.suspended.value
    )
    if getattr(own, "dunning_hold", False) and (blocker is None or suspended_above):
        return {
            "value": AccountStatus.suspended.value,
            "source_account_id": own.id,
            "blocked": True,
            "reason": UNPAID,
        }
    if blocker is not None:
        return {"value": blocker.status, "source_account_id": blocker.id, "blocked": True}
    expiry = resolve(chain, "expiry_date")
    timezone = resolve(chain, "timezone", provider_timezone).value
    if has_expired(expiry.value, timezone, now):
        return {
            "value": AccountStatus.expired.value,
            "source_account_id": expiry.source_account_id,
            "blocked": True,
        }
    return {"value": AccountStatus.active.value, "source_account_id": None, "blocked": False}


def is_expired(chain: Sequence[ChainLink], now: datetime, provider_timezone: str) -> bool:
    expiry = resolve(chain, "expiry_date").value
    timezone = resolve(chain, "timezone", provider_timezone).value
    return has_expired(expiry, timezone, now)
