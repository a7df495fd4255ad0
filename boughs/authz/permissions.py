"""What each role may do. The README's permission table is this module in prose."""

from __future__ import annotations

from enum import StrEnum

from boughs.auth.actor import StaffRole
from boughs.memberships.models import AccountRole


class Permission(StrEnum):
    read = "read"
    # Edit, suspend, renew, move, delete accounts; create child accounts.
    manage_accounts = "accounts.manage"
    manage_members = "members.manage"
    manage_billing = "billing.manage"
    manage_services = "services.manage"
    manage_inventory = "inventory.manage"
    # Provider-level switches: account features, top-level accounts, the catalog.
    manage_provider = "provider.manage"


_ACCOUNT_ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    AccountRole.admin: frozenset(
        {
            Permission.read,
            Permission.manage_accounts,
            Permission.manage_members,
            Permission.manage_billing,
            Permission.manage_services,
            Permission.manage_inventory,
        }
    ),
    AccountRole.billing: frozenset({Permission.read, Permission.manage_billing}),
    AccountRole.technical: frozenset(
        {Permission.read, Permission.manage_services, Permission.manage_inventory}
    ),
    AccountRole.viewer: frozenset({Permission.read}),
}

_STAFF_ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    StaffRole.owner: frozenset(Permission),
    StaffRole.admin: frozenset(Permission),
    StaffRole.billing: frozenset({Permission.read, Permission.manage_billing}),
    StaffRole.support: frozenset({Permission.read}),
}


def for_account_roles(roles: frozenset[str]) -> frozenset[Permission]:
    granted: set[Permission] = set()
    for role in roles:
        granted |= _ACCOUNT_ROLE_PERMISSIONS[role]
    return frozenset(granted)


def for_staff_role(role: str) -> frozenset[Permission]:
    return _STAFF_ROLE_PERMISSIONS.get(role, frozenset())
