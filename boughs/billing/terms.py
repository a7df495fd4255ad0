"""Who is billed, who pays, and on what terms: pure functions over a chain of accounts.

A chain is ordered root first, the account itself last (as ``accounts.inheritance``
takes it). Nothing here reads the database, so ``GET .../effective``, the bill run and
the console agree on every answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from boughs.accounts.inheritance import Inherited, resolve
from boughs.accounts.models import InvoiceMode

# A percent with at most this many decimals is a whole number of parts per million.
RATE_DECIMALS = 4
_PPM_PER_PERCENT = 10**RATE_DECIMALS
MAX_RATE_PPM = 100 * _PPM_PER_PERCENT


# What each rule reads of an account: ``accounts.models.Account`` has all of it, and a
# bill run may pass lighter rows.


class Node(Protocol):
    @property
    def id(self) -> int: ...


class OwnerLink(Node, Protocol):
    @property
    def invoice_mode(self) -> str: ...


class TermsLink(Node, Protocol):
    @property
    def tax_rate_ppm(self) -> int | None: ...
    @property
    def tax_exempt(self) -> bool: ...
    @property
    def net_terms_days(self) -> int | None: ...


class BillToLink(Node, Protocol):
    @property
    def name(self) -> str: ...
    @property
    def external_id(self) -> str | None: ...
    @property
    def contact_email(self) -> str | None: ...
    @property
    def billing_address(self) -> str | None: ...
    @property
    def billing_tax_id(self) -> str | None: ...
    @property
    def billing_email(self) -> str | None: ...


class ProviderTerms(Protocol):
    """The provider's defaults (``providers.models.Provider`` has them)."""

    @property
    def default_tax_rate_ppm(self) -> int: ...
    @property
    def default_net_terms_days(self) -> int: ...


class MethodLike(Protocol):
    """A payment method as ``billing.models.PaymentMethod`` stores it."""

    @property
    def id(self) -> int: ...
    @property
    def account_id(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def label(self) -> str: ...
    @property
    def last_four(self) -> str | None: ...
    @property
    def holder(self) -> str | None: ...
    @property
    def is_default(self) -> bool: ...
    @property
    def shared_with_children(self) -> bool: ...


# --- tax rates as text ---------------------------------------------------------------------------


def rate_text(ppm: int) -> str:
    """Parts per million as a percent without trailing zeros: 88750 → "8.875", 0 → "0"."""
    percent = (Decimal(ppm) / _PPM_PER_PERCENT).normalize()
    return format(percent, "f")


def parse_rate(value: Any) -> Decimal:
    """A percent from a request ("8.875", 8.875 or 8): 0 to 100 with at most four decimals.

    Raises ValueError worded "what is wrong; how to fix it", as field validators answer.
    """
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise ValueError("is not a percent; write it as a decimal string such as '8.875'")
    try:
        percent = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"'{value}' is not a percent; write it as a decimal such as '8.875'") from None
    if not percent.is_finite():
        raise ValueError("is not a finite number; write the percent as a decimal string such as '8.875'")
    if percent < 0 or percent > 100:
        raise ValueError(f"{value} is outside 0..100; give a percent between 0 and 100")
    exponent = percent.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -RATE_DECIMALS:
        raise ValueError(f"{value} has more than {RATE_DECIMALS} decimals; round it to {RATE_DECIMALS}")
    return percent


def ppm_of(percent: Decimal) -> int:
    """A percent checked by ``parse_rate`` in parts per million (exact: at most four decimals)."""
    return int(percent * _PPM_PER_PERCENT)


# --- who is billed -------------------------------------------------------------------------------


def invoice_owner_of(chain: Sequence[OwnerLink]) -> int:
    """The account whose invoice carries the last account's charges.

    Separate (or top level) bills itself; with_parent hands its charges to its parent's
    invoice owner, recursively. ``chain`` must reach the root.
    """
    for position in range(len(chain) - 1, 0, -1):
        if chain[position].invoice_mode != InvoiceMode.with_parent.value:
            return chain[position].id
    return chain[0].id


def invoice_owner(chain: Sequence[OwnerLink]) -> Inherited:
    """``invoice_owner_of`` with its source: own when the account bills itself."""
    owner = invoice_owner_of(chain)
    return Inherited(owner, owner, "own" if owner == chain[-1].id else "inherited")


# --- who pays ------------------------------------------------------------------------------------


def method_snapshot(method: MethodLike) -> dict[str, Any]:
    """What an invoice keeps of its payer: never the gateway token."""
    return {
        "id": method.id,
        "kind": method.kind,
        "label": method.label,
        "last_four": method.last_four,
        "holder": method.holder,
        "account_id": method.account_id,
    }


def payer_of(
    owner_chain: Sequence[Node], methods_by_account: Mapping[int, Sequence[MethodLike]]
) -> Inherited:
    """The owner's default method, else the nearest ancestor's method shared with its
    children (that ancestor's default first, then its oldest), else none."""
    owner = owner_chain[-1]
    default = next((m for m in methods_by_account.get(owner.id, ()) if m.is_default), None)
    if default is not None:
        return Inherited(method_snapshot(default), owner.id, "own")
    for ancestor in reversed(owner_chain[:-1]):
        shared = [m for m in methods_by_account.get(ancestor.id, ()) if m.shared_with_children]
        if shared:
            chosen = min(shared, key=lambda m: (not m.is_default, m.id))
            return Inherited(method_snapshot(chosen), ancestor.id, "inherited")
    return Inherited(None, None, "none")


# --- on what terms -------------------------------------------------------------------------------


def _rate(ppm: int, exempt: bool) -> dict[str, Any]:
    return {"rate_ppm": ppm, "exempt": exempt, "rate": rate_text(ppm)}


def tax_rate_of(chain: Sequence[TermsLink], provider: ProviderTerms) -> Inherited:
    """The nearest account that is exempt (0) or sets a rate; else the provider's default.
    An account that is both exempt and has a rate is exempt."""
    own_id = chain[-1].id
    for account in reversed(chain):
        source = "own" if account.id == own_id else "inherited"
        if account.tax_exempt:
            return Inherited(_rate(0, True), account.id, source)
        if account.tax_rate_ppm is not None:
            return Inherited(_rate(account.tax_rate_ppm, False), account.id, source)
    return Inherited(_rate(provider.default_tax_rate_ppm, False), None, "provider")


def net_terms_of(chain: Sequence[TermsLink], provider: ProviderTerms) -> Inherited:
    """Days from issue to due date: the nearest account's, else the provider's default."""
    return resolve(chain, "net_terms_days", provider.default_net_terms_days)


def bill_to_of(chain: Sequence[BillToLink], provider: ProviderTerms) -> dict[str, Any]:
    """The invoice owner's details as an invoice snapshots them (``chain`` ends at the owner).

    Address, tax id and billing email inherit one by one; with no billing email anywhere
    up the chain, the owner's contact email receives the invoice.
    """
    owner = chain[-1]
    email = resolve(chain, "billing_email").value or owner.contact_email
    return {
        "name": owner.name,
        "external_id": owner.external_id,
        "account_id": owner.id,
        "address": resolve(chain, "billing_address").value,
        "tax_id": resolve(chain, "billing_tax_id").value,
        "email": email,
    }
