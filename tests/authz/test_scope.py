"""The scope's answers that need no database."""

from __future__ import annotations

from boughs.authz.permissions import Permission
from boughs.authz.scope import Grant, Scope


def test_allowed_everywhere_only_where_every_account_allows_it() -> None:
    owner = Scope(provider_id=1, whole_provider=True, staff_role="owner")
    support = Scope(provider_id=1, whole_provider=True, staff_role="support")
    member = Scope(provider_id=1, grants=(Grant(account_id=7, path="/7/", role="admin"),))
    assert owner.allows_everywhere(Permission.manage_services)
    assert not support.allows_everywhere(Permission.manage_services)
    assert support.allows_everywhere(Permission.read)
    # A member's rights hold below its grant only, so never everywhere, even where they hold.
    assert member.allows("/7/9/", Permission.manage_services)
    assert not member.allows_everywhere(Permission.manage_services)
    # Wherever it is allowed everywhere, it is allowed at each account.
    for scope in (owner, support, member):
        for permission in Permission:
            if scope.allows_everywhere(permission):
                assert scope.allows("/1/2/", permission) and scope.allows("/7/", permission)
