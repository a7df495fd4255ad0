from __future__ import annotations

from datetime import datetime

from pydantic import EmailStr

from boughs.kit.schema import Input, Output
from boughs.memberships.models import AccountRole


class MembershipCreate(Input):
    email: EmailStr
    role: AccountRole


class MembershipOut(Output):
    id: int
    account_id: int
    user_id: int
    email: str
    name: str
    role: AccountRole
    created_at: datetime


class InvitationOut(Output):
    id: int
    account_id: int
    email: str
    role: str
    expires_at: datetime
    link: str


class MembershipAdded(Output):
    membership: MembershipOut | None = None
    invitation: InvitationOut | None = None


class SwitcherAccount(Output):
    id: int
    name: str
    external_id: str | None
    status: str
    depth: int
    path_names: list[str]
    roles: list[str]
