"""The rules of the account forest: creating, moving, deleting, inheritance, lifecycle."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from boughs.accounts import inheritance, repository
from boughs.accounts.models import Account, AccountLink, AccountStatus, InvoiceMode
from boughs.accounts.repository import AccountFilter, SubtreeSummary
from boughs.accounts.schemas import AccountCreate, AccountUpdate, RenewRequest
from boughs.audit import service as audit
from boughs.authz.permissions import Permission
from boughs.authz.scope import require, scope_of
from boughs.billing import ledger, terms
from boughs.billing import payment_methods_repository as billing_repository
from boughs.billing import repository as invoices_repository
from boughs.billing.models import PaymentMethod
from boughs.context import Ctx
from boughs.kit.clock import local_date
from boughs.kit.errors import BoughsError, Conflict, FieldProblem, Forbidden, InvalidInput, NotFound
from boughs.kit.pagination import PageOf, check_limit, decode_cursor, id_cursor, not_this_list, page_of
from boughs.kit.paths import child_path, ids_of
from boughs.kit.periods import add_period
from boughs.providers import repository as providers
from boughs.providers.models import Provider
from boughs.services import lifecycle
from boughs.services import repository as services_repository
from boughs.usage import repository as usage_repository

ENTITY = "account"
# Attributes an audit event shows; internal bookkeeping (path, root) is left out.
AUDITED = (
    "name", "external_id", "description", "contact_email", "technical_contact_email",
    "status", "expiry_date", "invoice_mode", "parent_access", "timezone", "currency",
    "features", "billing_address", "billing_tax_id", "billing_email", "parent_id",
    "tax_rate_ppm", "tax_exempt", "net_terms_days", "billing_anchor_day",
)  # fmt: skip
# Fields whose change can break the currency rule (see _check_billing_currency).
CURRENCY_RULE_FIELDS = ("invoice_mode", "currency")


def snapshot(account: Account) -> dict[str, Any]:
    return {name: getattr(account, name) for name in AUDITED}


def not_found(account_id: int) -> NotFound:
    return NotFound(
        detail=f"There is no account {account_id}.",
        fix="check the id; you can only reach accounts in your own scope",
    )


async def get(ctx: Ctx, account_id: int) -> Account:
    account = await repository.get(ctx.session, await scope_of(ctx), account_id)
    if account is None:
        raise not_found(account_id)
    return account


async def _referenced_parent(ctx: Ctx, parent_id: int) -> Account:
    """A parent named in a request body: unknown and out-of-scope look the same."""
    parent = await repository.get(ctx.session, await scope_of(ctx), parent_id)
    if parent is None:
        raise _unknown_parent(parent_id)
    return parent


def _unknown_parent(parent_id: int) -> BoughsError:
    return InvalidInput.on_field(
        "parent_id",
        f"there is no account {parent_id}",
        "give the id of an existing account you can manage, or null for top level",
    )


async def _lock_trees(ctx: Ctx, *accounts: Account | None) -> None:
    """Serialise structural changes per tree: lock the roots involved, then re-read.

    A move rewrites a range of paths; a concurrent insert under that range must wait
    for it and see the new path, so both take the root's row lock first.
    """
    present = [a for a in accounts if a is not None]
    if repository.is_sqlite(ctx.session):
        return  # a SQLite writer holds the database's write lock from BEGIN IMMEDIATE
    roots = {a.root_id for a in present}
    await repository.lock(ctx.session, ctx.provider_id, list(roots))
    await repository.reload(ctx.session, present)
    for account in present:
        if account.root_id not in roots:
            raise Conflict(
                detail="The tree changed while this request ran.",
                fix="retry the request",
            )


def _check_depth(provider: Provider, deepest: int) -> None:
    cap = provider.max_account_depth
    if cap is not None and deepest > cap:
        raise InvalidInput.on_field(
            "parent_id",
            f"would put an account at depth {deepest}, deeper than this provider's cap of {cap}",
            "choose a parent higher in the tree, or raise the provider's max_account_depth",
        )


async def _check_external_id_free(ctx: Ctx, external_id: str | None, own_id: int | None) -> None:
    if external_id is None:
        return
    existing = await repository.get_by_external_id(ctx.session, ctx.provider_id, external_id)
    if existing is not None and existing.id != own_id:
        raise Conflict.on_field(
            "external_id",
            f"'{external_id}' is already used by another account",
            "external ids are unique within the provider; choose another or leave it empty",
        )


def _stored(fields: dict[str, Any]) -> dict[str, Any]:
    """Request fields as columns: enums by value, the tax percent in parts per million."""
    out = {k: (v.value if hasattr(v, "value") else v) for k, v in fields.items() if k != "tax_rate"}
    if "tax_rate" in fields:
        rate = fields["tax_rate"]
        out["tax_rate_ppm"] = None if rate is None else terms.ppm_of(rate)
    return out


def _currency_of(chain: Sequence[Account], provider_currency: str) -> str:
    return str(inheritance.resolve(chain, "currency", provider_currency).value)


def _currency_refused(fields: Sequence[str], message: str, fix: str) -> InvalidInput:
    problems = [FieldProblem(f, message, fix) for f in (fields or CURRENCY_RULE_FIELDS[1:])]
    return InvalidInput(detail="; ".join(f"{p.field}: {message}" for p in problems), fix=fix, errors=problems)


async def _check_billing_currency(
    ctx: Ctx,
    account: Account | None,
    *,
    invoice_mode: str,
    currency: str | None,
    parent_chain: Sequence[Account],
    provider_currency: str,
    fields: Sequence[str],
    was: str | None = None,
) -> None:
    """A with_parent account bills in its invoice owner's currency (issue 6).

    Checked as an equivalent local rule: every with_parent account that sets a currency
    sets its parent's effective one (then, by induction, every account on an invoice has
    the owner's currency, whichever way invoice modes change). So a change needs checking
    only on the account itself (``invoice_mode``/``currency`` as they would be, under
    ``parent_chain``, root first) and, when the account's effective currency moves from
    ``was``, on the descendants that set their own currency and inherited ``was`` from it.
    ``account`` is None while it is being created (it has no descendants yet).
    """
    parent_currency = _currency_of(parent_chain, provider_currency) if parent_chain else None
    if (
        parent_chain
        and invoice_mode == InvoiceMode.with_parent.value
        and currency is not None
        and currency != parent_currency
    ):
        owner = terms.invoice_owner_of(parent_chain)
        raise _currency_refused(
            fields,
            f"a with_parent account is billed on the invoice of account {owner}, in {parent_currency}; "
            f"it cannot bill in {currency}",
            f"use currency {parent_currency} or null (inherit), or invoice_mode separate to receive "
            f"its own invoices in {currency}",
        )
    if account is None or was is None:
        return
    now = currency if currency is not None else parent_currency or provider_currency
    if now == was:
        return
    rows = await billing_repository.explicit_currencies_below(ctx.session, account)
    # Below the account, those that set a currency; the rest inherit along the path.
    explicit = {row.id: row.currency for row in rows}
    for row in rows:
        between = ids_of(row.path)[len(ids_of(account.path)) : -1]
        if any(i in explicit for i in between):
            continue  # its parent's currency comes from a descendant that keeps its own
        if row.invoice_mode == InvoiceMode.with_parent.value and row.currency != now:
            raise _currency_refused(
                fields,
                f"account {row.id} below is billed with its parent in {row.currency}, "
                f"but its invoice would be in {now}",
                f"first give account {row.id} currency {now} (or null), or make it invoice_mode separate",
            )


async def create(ctx: Ctx, data: AccountCreate) -> Account:
    provider = await providers.get(ctx.session, ctx.provider_id)
    parent: Account | None = None
    scope = await scope_of(ctx)
    if data.parent_id is not None:
        parent = await _referenced_parent(ctx, data.parent_id)
        await require(ctx, parent.path, Permission.manage_accounts, "create child accounts")
        if not scope.whole_provider and not parent.features.get("subaccounts"):
            raise Forbidden(
                detail=f"Account {parent.id} may not have subaccounts.",
                fix="ask the provider to switch on the subaccounts feature for this account",
            )
        await _lock_trees(ctx, parent)
        _check_depth(provider, parent.depth + 1)
    elif not scope.allows("", Permission.manage_provider):
        raise InvalidInput.on_field(
            "parent_id",
            "only provider staff can create top-level accounts",
            "give the id of an account you manage as parent_id",
        )
    if data.features and not scope.allows("", Permission.manage_provider):
        raise InvalidInput.on_field("features", "only provider staff can set features", "leave it out")
    await _check_external_id_free(ctx, data.external_id, None)
    if parent is not None and data.invoice_mode == InvoiceMode.with_parent and data.currency is not None:
        await _check_billing_currency(
            ctx, None, invoice_mode=data.invoice_mode.value, currency=data.currency,
            parent_chain=await repository.chain(ctx.session, parent),
            provider_currency=provider.default_currency,
            fields=[f for f in CURRENCY_RULE_FIELDS if f in data.model_fields_set],
        )  # fmt: skip

    now = ctx.now()
    fields = data.model_dump(exclude={"parent_id", "administrators", "preaccept_agreements"})
    account = Account(
        provider_id=ctx.provider_id,
        parent_id=parent.id if parent else None,
        root_id=0,
        # A placeholder outside every subtree range until the id is known.
        path=f"~{now.timestamp()}-{id(data)}",
        depth=parent.depth + 1 if parent else 0,
        status=AccountStatus.active.value,
        created_at=now,
        updated_at=now,
        **_stored(fields),
    )
    if data.preaccept_agreements:
        _accept(account, ctx, msa=True, aup=True)
    ctx.session.add(account)
    await ctx.session.flush()
    account.path = child_path(parent.path if parent else None, account.id)
    account.root_id = parent.root_id if parent else account.id
    await repository.open_link(ctx.session, ctx.provider_id, account.id, account.parent_id, now)
    await ctx.session.flush()
    await audit.record(
        ctx, entity=ENTITY, entity_id=account.id, action="created",
        account_id=account.id, after=snapshot(account),
    )  # fmt: skip
    return account


async def update(ctx: Ctx, account_id: int, data: AccountUpdate) -> Account:
    account = await get(ctx, account_id)
    await require(ctx, account.path, Permission.manage_accounts, "change this account")
    changes = data.model_dump(exclude_unset=True)
    if "features" in changes and not (await scope_of(ctx)).allows("", Permission.manage_provider):
        raise InvalidInput.on_field("features", "only provider staff can change features", "leave it out")
    if "external_id" in changes:
        await _check_external_id_free(ctx, changes["external_id"], account.id)
    columns = _stored(changes)
    if any(f in changes for f in CURRENCY_RULE_FIELDS):
        provider = await providers.get(ctx.session, ctx.provider_id)
        chain = await repository.chain(ctx.session, account)
        await _check_billing_currency(
            ctx, account,
            invoice_mode=columns.get("invoice_mode", account.invoice_mode),
            currency=columns.get("currency", account.currency),
            parent_chain=chain[:-1],
            provider_currency=provider.default_currency,
            fields=[f for f in CURRENCY_RULE_FIELDS if f in changes],
            was=_currency_of(chain, provider.default_currency),
        )  # fmt: skip
    before = snapshot(account)
    for name, value in columns.items():
        setattr(account, name, value)
    account.updated_at = ctx.now()
    await ctx.session.flush()
    if "expiry_date" in changes or "timezone" in changes:
        await _restore_unexpired(ctx, account)
    old, new = audit.changed(before, snapshot(account))
    if new:
        await audit.record(
            ctx, entity=ENTITY, entity_id=account.id, action="updated",
            account_id=account.id, before=old, after=new,
        )  # fmt: skip
    return account


# --- reading the tree ------------------------------------------------------------------


async def list_accounts(ctx: Ctx, f: AccountFilter, cursor: str | None, limit: int) -> PageOf[Account]:
    check_limit(limit)
    rows = await repository.list_by_id(ctx.session, await scope_of(ctx), f, id_cursor(cursor), limit + 1)
    return page_of(rows, limit)


async def children(ctx: Ctx, account_id: int, cursor: str | None, limit: int) -> PageOf[Account]:
    await get(ctx, account_id)
    return await list_accounts(ctx, AccountFilter(parent_id=account_id), cursor, limit)


async def descendants(ctx: Ctx, account_id: int, cursor: str | None, limit: int) -> PageOf[Account]:
    check_limit(limit)
    account = await get(ctx, account_id)
    after = decode_cursor(cursor)
    if after is not None and not (isinstance(after, str) and after.startswith(account.path)):
        raise not_this_list()
    # Strictly below the account: start after its own path.
    rows = await repository.list_by_path(
        ctx.session,
        await scope_of(ctx),
        AccountFilter(within_path=account.path),
        after or account.path,
        limit + 1,
    )
    return page_of(rows, limit, lambda a: a.path)


async def _chain(ctx: Ctx, account_id: int) -> repository.Chain:
    scope = await scope_of(ctx)
    found = await repository.chain_of(ctx.session, scope, account_id)
    if found is None:
        raise not_found(account_id)
    return found


async def ancestors(ctx: Ctx, account_id: int) -> list[Account]:
    """Root first. Ancestors outside the actor's scope are not shown."""
    scope = await scope_of(ctx)
    found = await repository.ancestry_of(ctx.session, scope, account_id)
    if found is None:
        raise not_found(account_id)
    return [a for a in found[:-1] if scope.covers_path(a.path)]


async def subtree_summary(ctx: Ctx, account_id: int) -> SubtreeSummary:
    summary = await repository.subtree_summary_of(ctx.session, await scope_of(ctx), account_id)
    if summary is None:
        raise not_found(account_id)
    return summary


async def links(ctx: Ctx, account_id: int) -> list[AccountLink]:
    account = await get(ctx, account_id)
    return await repository.links(ctx.session, ctx.provider_id, account.id)


# --- inheritance ---------------------------------------------------------------------


async def effective(ctx: Ctx, account_id: int) -> dict[str, Any]:
    from boughs.catalog import service as catalog

    found = await _chain(ctx, account_id)
    offers = await catalog.offers_of(ctx, found.accounts)
    methods = await billing_repository.methods_for_accounts(
        ctx.session, ctx.provider_id, [a.id for a in found.accounts]
    )
    return effective_of(
        found.accounts, found.provider_timezone, found.provider_currency, ctx.now(), offers,
        provider=found.provider, methods=methods,
    )  # fmt: skip


def effective_of(
    chain: Sequence[Account],
    provider_timezone: str,
    provider_currency: str,
    now: datetime,
    offers: Sequence[dict[str, Any]] = (),
    *,
    provider: terms.ProviderTerms,
    methods: Mapping[int, Sequence[PaymentMethod]],
) -> dict[str, Any]:
    """``methods``: the payment methods of every account of the chain."""

    def resolved(attribute: str, default: Any = None) -> dict[str, Any]:
        return inheritance.resolve(chain, attribute, default).as_dict()

    return {
        "account_id": chain[-1].id,
        "status": inheritance.effective_status(chain, now, provider_timezone),
        "expiry_date": resolved("expiry_date"),
        "timezone": resolved("timezone", provider_timezone),
        "currency": resolved("currency", provider_currency),
        "agreements": agreements_of(chain[-1]),
        "billing_details": {
            "address": resolved("billing_address"),
            "tax_id": resolved("billing_tax_id"),
            "email": resolved("billing_email"),
        },
        # The method this account pays with: its default, else an ancestor's shared one.
        "payment_method": terms.payer_of(chain, methods).as_dict(),
        "tax_rate": terms.tax_rate_of(chain, provider).as_dict(),
        "net_terms": terms.net_terms_of(chain, provider).as_dict(),
        # Whose invoice carries this account's charges.
        "invoice_owner": terms.invoice_owner(chain).as_dict(),
        # Plans the account may take: public, or offered to it or an ancestor.
        "offers": list(offers),
    }


# --- agreements (seed 002) --------------------------------------------------------------

MSA_VERSION = "2026-01"
AUP_VERSION = "2026-01"


def _accept(account: Account, ctx: Ctx, *, msa: bool, aup: bool) -> None:
    now, who = ctx.now(), ctx.actor.user_id
    if msa:
        account.msa_accepted_at, account.msa_accepted_by, account.msa_version = now, who, MSA_VERSION
    if aup:
        account.aup_accepted_at, account.aup_accepted_by, account.aup_version = now, who, AUP_VERSION


def agreements_of(account: Account) -> dict[str, Any]:
    return {
        "msa_accepted_at": account.msa_accepted_at,
        "msa_accepted_by": account.msa_accepted_by,
        "msa_version": account.msa_version,
        "aup_accepted_at": account.aup_accepted_at,
        "aup_accepted_by": account.aup_accepted_by,
        "aup_version": account.aup_version,
        "complete": account.msa_accepted_at is not None and account.aup_accepted_at is not None,
    }


async def accept_agreements(ctx: Ctx, account_id: int, *, msa: bool, aup: bool) -> dict[str, Any]:
    account = await get(ctx, account_id)
    await require(ctx, account.path, Permission.manage_accounts, "accept agreements for this account")
    if not (msa or aup):
        raise InvalidInput.on_field("msa", "nothing to accept", "send msa: true and/or aup: true")
    before = agreements_of(account)
    _accept(account, ctx, msa=msa, aup=aup)
    account.updated_at = ctx.now()
    await ctx.session.flush()
    old, new = audit.changed(before, agreements_of(account))
    await audit.record(
        ctx, entity=ENTITY, entity_id=account.id, action="agreements_accepted",
        account_id=account.id, before=old, after=new,
    )  # fmt: skip
    return agreements_of(account)


def require_agreements(account: Account) -> None:
    """Nothing is provisioned on an account until its MSA and AUP are accepted (seed 002)."""
    if account.msa_accepted_at is None or account.aup_accepted_at is None:
        raise Conflict(
            detail=f"Account {account.id} has not accepted the MSA and AUP.",
            fix=f"an administrator accepts them: POST /api/v1/accounts/{account.id}/agreements",
        )


# --- moving and deleting -------------------------------------------------------------


async def move(ctx: Ctx, account_id: int, parent_id: int | None) -> Account:
    scope = await scope_of(ctx)
    wanted = [account_id] if parent_id is None else [account_id, parent_id]
    both = {a.id: a for a in await repository.get_many(ctx.session, scope, wanted)}
    account = both.get(account_id)
    if account is None:
        raise not_found(account_id)
    await require(ctx, account.path, Permission.manage_accounts, "move this account")
    parent = None
    if parent_id is not None:
        parent = both.get(parent_id)
        if parent is None:
            raise _unknown_parent(parent_id)
    if parent is not None:
        await require(ctx, parent.path, Permission.manage_accounts, "move accounts under this parent")
    elif not scope.allows("", Permission.manage_provider):
        raise InvalidInput.on_field(
            "parent_id",
            "only provider staff can move an account to the top level",
            "give the id of an account you manage as the new parent",
        )
    await _lock_trees(ctx, account, parent)
    if parent is not None and parent.path.startswith(account.path):
        what = "the account itself" if parent.id == account.id else "one of its descendants"
        raise InvalidInput.on_field(
            "parent_id",
            f"account {parent.id} is {what}; an account cannot move under its own subtree",
            "choose a parent outside this account's subtree, or null for top level",
        )
    if account.parent_id == (parent.id if parent else None):
        return account

    provider = await providers.get(ctx.session, ctx.provider_id)
    new_depth = parent.depth + 1 if parent else 0
    if provider.max_account_depth is not None:
        deepest = await repository.max_depth_below(ctx.session, account)
        _check_depth(provider, deepest - account.depth + new_depth)
    # An account that keeps its own currency keeps it, and so does everything below it.
    if account.currency is None or account.invoice_mode == InvoiceMode.with_parent.value:
        found = await repository.chains(ctx.session, [account, parent] if parent else [account])
        await _check_billing_currency(
            ctx, account, invoice_mode=account.invoice_mode, currency=account.currency,
            parent_chain=found[1] if parent else [],
            provider_currency=provider.default_currency, fields=["parent_id"],
            was=_currency_of(found[0], provider.default_currency) if account.currency is None else None,
        )  # fmt: skip

    now = ctx.now()
    before = {"parent_id": account.parent_id, "path": account.path}
    new_path = child_path(parent.path if parent else None, account.id)
    new_root = parent.root_id if parent else account.id
    moved = await repository.rebase_subtree(ctx.session, account, new_path, new_root, now)
    await repository.close_current_link(ctx.session, ctx.provider_id, account.id, now)
    await repository.open_link(ctx.session, ctx.provider_id, account.id, parent_id, now)
    # The statement above already wrote these; tell the session without writing again.
    repository.mark_rebased(account, new_path, new_depth, new_root, now)
    account.parent_id = parent_id
    await ctx.session.flush()
    await audit.record(
        ctx, entity=ENTITY, entity_id=account.id,
        action="moved" if parent_id is not None else "detached",
        account_id=account.id, before=before,
        after={"parent_id": parent_id, "path": account.path, "accounts_moved": moved},
    )  # fmt: skip
    # Under other ancestors, the subtree may be blocked or unblocked; and as it now inherits
    # another expiry and timezone, what the sweep expired may be live again (then its
    # statuses change, and what blocks it is read again).
    blocked = await lifecycle.blocked_around(ctx, account.path)
    if any(status == AccountStatus.expired.value for _, _, status in blocked):
        await _restore_unexpired(ctx, account)
        await lifecycle.reconcile_subtree(ctx, account.path)
    else:
        await lifecycle.reconcile_subtree(ctx, account.path, blocked)
    return account


async def deletion_report(ctx: Ctx, account_id: int) -> dict[str, Any]:
    """What deleting would remove and keep, and why it would be refused, if it would."""
    account = await get(ctx, account_id)
    refused: list[str] = []
    if await repository.has_children(ctx.session, account):
        refused.append("it has child accounts: move or delete them first")
    unpaid = await ledger.unpaid_balance_of(ctx.session, ctx.provider_id, account.id)
    if unpaid > 0:
        refused.append(
            f"it owes {unpaid} (minor units) on issued invoices: "
            "record the payment, credit or write them off first"
        )
    history = await repository.links(ctx.session, ctx.provider_id, account.id)
    # Its audit trail stays, and so does the event that records the deletion.
    audit_events = await repository.audit_event_count(ctx.session, account) + 1
    # Its services go with it (ON DELETE CASCADE), their history and discounts too.
    services = await services_repository.count_on_account(ctx.session, ctx.provider_id, account.id)
    # Its raw usage and its own rollups go; what it added to its ancestors' totals stays.
    usage_events = await usage_repository.count_events_of_account(ctx.session, ctx.provider_id, account.id)
    return {
        "account_id": account.id,
        "removed": {
            "accounts": 1,
            "parent_links": len(history),
            "services": services,
            "usage_events": usage_events,
        },
        "kept": {
            "audit_events": audit_events,
            "usage_in_ancestors_totals": True,
            # Legal records: kept, their bill-to snapshot anonymised.
            "issued_invoices": await invoices_repository.issued_invoice_count(ctx.session, account.id),
            "payments": await invoices_repository.payment_count(ctx.session, account.id),
        },
        "refused_because": refused,
    }


async def delete(ctx: Ctx, account_id: int) -> dict[str, Any]:
    account = await get(ctx, account_id)
    # The role first: someone who may not delete is not told how a delete would succeed.
    await require(ctx, account.path, Permission.manage_accounts, "delete this account")
    report = await deletion_report(ctx, account_id)
    if report["refused_because"]:
        raise Conflict(
            detail=f"Account {account_id} cannot be deleted: {'; '.join(report['refused_because'])}.",
            fix="; ".join(reason.split(": ", 1)[1] for reason in report["refused_because"])
            + ", then delete it",
            extra={"report": report},
        )
    await repository.lock(ctx.session, ctx.provider_id, [account.root_id])
    # Its usage events go with it: what the fold has still to add must reach its
    # ancestors' subtree rollups first, as all its earlier usage did.
    from boughs.usage import fold
    from boughs.usage import repository as usage_repository

    await fold.catch_up(ctx)
    await usage_repository.forget_account(ctx.session, ctx.provider_id, account.id)
    await audit.record(
        ctx, entity=ENTITY, entity_id=account.id, action="deleted",
        account_id=account.id, before=snapshot(account),
    )  # fmt: skip
    await invoices_repository.forget_owner(ctx.session, account.id)
    await repository.delete_account(ctx.session, account)
    ctx.session.expunge(account)
    return report


# --- lifecycle -----------------------------------------------------------------------


def _check_one_renewal(data: RenewRequest) -> None:
    """A renewal names a date or a period: exactly one, and the error names both fields."""
    if data.expiry_date is not None and data.period is not None:
        fix = "give either expiry_date or period, not both"
        problems = [
            FieldProblem("expiry_date", "cannot be given together with period", fix),
            FieldProblem("period", "cannot be given together with expiry_date", fix),
        ]
    elif data.expiry_date is None and data.period is None:
        fix = "give expiry_date (YYYY-MM-DD) or period (e.g. 'month', with an optional count)"
        problems = [
            FieldProblem("expiry_date", "is required when period is not given", fix),
            FieldProblem("period", "is required when expiry_date is not given", fix),
        ]
    else:
        return
    raise InvalidInput(
        detail="; ".join(f"{p.field}: {p.message}" for p in problems), fix=fix, errors=problems
    )


async def renew(ctx: Ctx, account_id: int, data: RenewRequest) -> Account:
    _check_one_renewal(data)
    account = await get(ctx, account_id)
    await require(ctx, account.path, Permission.manage_accounts, "renew this account")
    provider = await providers.get(ctx.session, ctx.provider_id)
    chain = await repository.chain(ctx.session, account)
    timezone = inheritance.resolve(chain, "timezone", provider.default_timezone).value
    today = local_date(ctx.now(), timezone)
    if data.expiry_date is not None:
        new_expiry = data.expiry_date
    else:
        assert data.period is not None
        current = inheritance.resolve(chain, "expiry_date").value
        # Renewing early extends from the current expiry; late, from today.
        base = current if current is not None and current >= today else today
        try:
            new_expiry = add_period(base, data.period, data.count)
        except (ValueError, OverflowError):
            raise InvalidInput.on_field(
                "period",
                f"{data.count} {data.period.value}(s) after {base.isoformat()} is past 9999-12-31",
                "renew by a shorter period, or give expiry_date",
            ) from None
    if new_expiry < today:
        raise InvalidInput.on_field(
            "expiry_date",
            f"{new_expiry.isoformat()} is in the past (today is {today.isoformat()} in {timezone})",
            "give today or a later date",
        )
    before = snapshot(account)
    account.expiry_date = new_expiry
    account.updated_at = ctx.now()
    await ctx.session.flush()
    await _restore_unexpired(ctx, account)
    old, new = audit.changed(before, snapshot(account))
    await audit.record(
        ctx, entity=ENTITY, entity_id=account.id, action="renewed",
        account_id=account.id, before=old, after=new,
    )  # fmt: skip
    return account


_ALLOWED_FROM = {
    "suspended": {AccountStatus.active.value, AccountStatus.expired.value},
    "unsuspended": {AccountStatus.suspended.value},
    "cancelled": {
        AccountStatus.active.value,
        AccountStatus.suspended.value,
        AccountStatus.expired.value,
    },
}


async def _change_status(ctx: Ctx, account_id: int, action: str, reason: str) -> Account:
    account = await get(ctx, account_id)
    await require(ctx, account.path, Permission.manage_accounts, "change this account's status")
    if account.status not in _ALLOWED_FROM[action]:
        verb = {"suspended": "suspend", "unsuspended": "unsuspend", "cancelled": "cancel"}[action]
        raise Conflict(
            detail=f"Account {account.id} is {account.status}; it cannot be {action}.",
            fix=f"only accounts that are {' or '.join(sorted(_ALLOWED_FROM[action]))} can be {action}"
            if action != "unsuspended"
            else f"{verb} only applies to suspended accounts",
        )
    before = account.status
    if action == "suspended":
        account.status = AccountStatus.suspended.value
    elif action == "cancelled":
        account.status = AccountStatus.cancelled.value
    else:
        provider = await providers.get(ctx.session, ctx.provider_id)
        chain = await repository.chain(ctx.session, account)
        expired = inheritance.is_expired(chain, ctx.now(), provider.default_timezone)
        account.status = (AccountStatus.expired if expired else AccountStatus.active).value
    account.updated_at = ctx.now()
    await ctx.session.flush()
    # Suspending or cancelling blocks the whole subtree; the services follow.
    await lifecycle.reconcile_subtree(ctx, account.path)
    await audit.record(
        ctx, entity=ENTITY, entity_id=account.id, action=action, account_id=account.id,
        before={"status": before}, after={"status": account.status, "reason": reason},
    )  # fmt: skip
    return account


async def suspend(ctx: Ctx, account_id: int, reason: str = "") -> Account:
    return await _change_status(ctx, account_id, "suspended", reason)


async def unsuspend(ctx: Ctx, account_id: int, reason: str = "") -> Account:
    return await _change_status(ctx, account_id, "unsuspended", reason)


async def cancel(ctx: Ctx, account_id: int, reason: str = "") -> Account:
    return await _change_status(ctx, account_id, "cancelled", reason)


# --- expiry --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Node:
    id: int
    path: str
    status: str
    expiry_date: date | None
    timezone: str | None


def _expiry_states(
    rows: Iterable[Any], outer_chain: Sequence[Any], provider_timezone: str, now: datetime
) -> dict[int, tuple[bool, int | None]]:
    """For each row of a subtree: (effective expiry has passed, account the expiry comes from).

    ``outer_chain`` is the subtree root's ancestors, whose expiry and timezone the
    subtree may inherit. Rows are in path order, so parents come before children.
    """
    nodes = {n.id: n for n in (_Node(*r) for r in rows)}
    outer = [_Node(a.id, a.path, a.status, a.expiry_date, a.timezone) for a in outer_chain]
    states: dict[int, tuple[bool, int | None]] = {}
    for node in nodes.values():
        chain = list(outer) + [nodes[i] for i in ids_of(node.path) if i in nodes]
        expiry = inheritance.resolve(chain, "expiry_date")
        timezone = inheritance.resolve(chain, "timezone", provider_timezone).value
        states[node.id] = (
            inheritance.has_expired(expiry.value, timezone, now),
            expiry.source_account_id,
        )
    return states


async def _restore_unexpired(ctx: Ctx, account: Account) -> None:
    """After an expiry moves later, accounts the sweep expired come back to active."""
    provider = await providers.get(ctx.session, ctx.provider_id)
    rows = await repository.expiry_relevant_rows(ctx.session, ctx.provider_id, account.path)
    outer = (await repository.chain(ctx.session, account))[:-1]
    states = _expiry_states(rows, outer, provider.default_timezone, ctx.now())
    restored = [r[0] for r in rows if r[2] == AccountStatus.expired.value and not states[r[0]][0]]
    if not restored:
        return
    await _set_statuses(ctx, restored, AccountStatus.expired, AccountStatus.active, "unexpired")


async def _set_statuses(
    ctx: Ctx, ids: list[int], before: AccountStatus, after: AccountStatus, action: str
) -> None:
    """Many accounts change status at once, each with its own audit event."""
    await repository.set_status(ctx.session, ctx.provider_id, ids, after.value, ctx.now())
    # Expiry blocks only the account itself (descendants that inherit it expire on their own).
    await lifecycle.reconcile_accounts(ctx, ids)
    await audit.record_many(
        ctx,
        [
            audit.event(
                ctx,
                entity=ENTITY,
                entity_id=i,
                action=action,
                account_id=i,
                before={"status": before.value},
                after={"status": after.value},
            )
            for i in ids
        ],
    )


async def sweep_expired(ctx: Ctx) -> list[int]:
    """Mark active accounts whose effective expiry has passed as expired; returns their ids.

    Only accounts with an explicit expiry on or before today (UTC) can be the source of
    a passed expiry, so the sweep starts from those and walks their subtrees.
    """
    provider = await providers.get(ctx.session, ctx.provider_id)
    now = ctx.now()
    # Local dates run at most a day ahead of UTC, so nothing later can have passed yet.
    sources = await repository.expiry_sources(ctx.session, ctx.provider_id, now.date())
    expired: list[int] = []
    seen: set[int] = set()
    for source in sources:
        rows = await repository.expiry_relevant_rows(ctx.session, ctx.provider_id, source.path)
        outer = (await repository.chain(ctx.session, source))[:-1]
        states = _expiry_states(rows, outer, provider.default_timezone, now)
        for row in rows:
            account_id, status = row[0], row[2]
            passed, source_id = states[account_id]
            if (
                status == AccountStatus.active.value
                and passed
                and source_id == source.id
                and account_id not in seen
            ):
                seen.add(account_id)
                expired.append(account_id)
    if expired:
        await _set_statuses(ctx, expired, AccountStatus.active, AccountStatus.expired, "expired")
    return expired


async def status_counts(ctx: Ctx) -> dict[str, int]:
    """How many accounts the actor can reach have each status (the dashboard's card)."""
    return await repository.count_by_status(ctx.session, await scope_of(ctx))
