from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import EmailStr, Field, StringConstraints

from boughs.auth.actor import StaffRole
from boughs.kit.schema import Input, Output

# Passwords are never stripped: spaces are part of them. Strength is checked by the service.
Password = Annotated[str, StringConstraints(strip_whitespace=False)]


class TokenRequest(Input):
    email: str = Field(min_length=1, max_length=320)
    password: Password = Field(min_length=1, max_length=1000)
    name: str = Field(min_length=1, max_length=200)
    expires_at: datetime | None = None


class NewTokenOut(Output):
    token: str
    id: int
    name: str
    expires_at: datetime | None


class TokenOut(Output):
    id: int
    name: str
    hint: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None


class MeOut(Output):
    id: int
    email: str
    name: str
    staff_role: StaffRole | None
    provider_id: int


class PasswordChange(Input):
    current_password: Password = Field(min_length=1, max_length=1000)
    new_password: Password = Field(min_length=1, max_length=1000)


class UserCreate(Input):
    email: EmailStr
    name: str = Field(default="", max_length=200)
    password: Password | None = Field(default=None, max_length=1000)
    staff_role: StaffRole | None = None


class UserOut(Output):
    id: int
    email: str
    name: str
    staff_role: StaffRole | None
    is_active: bool
    created_at: datetime


class LoginRequest(Input):
    email: str = Field(min_length=1, max_length=320)
    password: Password = Field(min_length=1, max_length=1000)


class LoginOut(Output):
    csrf_token: str
    expires_at: datetime


class InvitationAccept(Input):
    name: str = Field(default="", max_length=200)
    password: Password = Field(min_length=1, max_length=1000)


class AcceptedOut(Output):
    user_id: int
    email: str
    account_id: int
    role: str
    created_user: bool
