"""Identity endpoints: API tokens, console sessions, the current user, staff users, invitations."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from boughs.audit import service as audit
from boughs.auth import invitations, sessions, throttle
from boughs.auth import service as auth
from boughs.auth.schemas import (
    AcceptedOut,
    InvitationAccept,
    LoginOut,
    LoginRequest,
    MeOut,
    NewTokenOut,
    PasswordChange,
    TokenOut,
    TokenRequest,
    UserCreate,
    UserOut,
)
from boughs.context import Ctx
from boughs.db import Database
from boughs.deps import CtxDep, domain_router
from boughs.kit.clock import Clock
from boughs.kit.errors import Conflict
from boughs.middleware import problem_response, request_id_var


class Public:
    """What an unauthenticated endpoint needs: the database, the clock and who is calling from where."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.db: Database = request.app.state.db
        self.clock: Clock = request.app.state.clock
        self.address = request.client.host if request.client else "unknown"

    def throttled(self, error: throttle.TooManyAttempts) -> JSONResponse:
        response = problem_response(error, self.request)
        response.headers["Retry-After"] = str(error.retry_after)
        return response


PublicDep = Annotated[Public, Depends(Public)]

auth_router = domain_router("/auth", "auth")
me_router = domain_router("/me", "me")
users_router = domain_router("/users", "users")
invitations_router = domain_router("/invitations", "invitations")

THROTTLED: dict[int | str, dict[str, Any]] = {
    429: {"description": "Too many failed attempts; see Retry-After."}
}


@auth_router.post("/tokens", status_code=201, response_model=NewTokenOut, responses=THROTTLED)
async def create_token(public: PublicDep, body: TokenRequest) -> NewTokenOut | JSONResponse:
    """Exchange an email and password for a new API token; the token is shown only in this answer."""
    try:
        user = await auth.sign_in(public.db, public.clock, body.email, body.password, public.address)
    except throttle.TooManyAttempts as error:
        return public.throttled(error)
    async with public.db.transaction() as session:
        ctx = Ctx(
            session=session, clock=public.clock, actor=auth.actor_for(user), request_id=request_id_var.get()
        )
        issued = await auth.create_token_for(ctx, user, body.name, body.expires_at)
        await throttle.clear_email(session, user.email)
    return NewTokenOut(
        token=issued.token, id=issued.row.id, name=issued.row.name, expires_at=issued.row.expires_at
    )


@auth_router.post("/login", response_model=LoginOut, responses=THROTTLED)
async def login(public: PublicDep, body: LoginRequest, response: Response) -> LoginOut | JSONResponse:
    """Start a console session: sets the session cookie and returns the CSRF token to send back."""
    try:
        user = await auth.sign_in(public.db, public.clock, body.email, body.password, public.address)
    except throttle.TooManyAttempts as error:
        return public.throttled(error)
    async with public.db.transaction() as session:
        ctx = Ctx(
            session=session, clock=public.clock, actor=auth.actor_for(user), request_id=request_id_var.get()
        )
        issued = await sessions.start(session, user, ctx.now())
        await throttle.clear_email(session, user.email)
        await audit.record(
            ctx,
            entity="session",
            entity_id=issued.row.id,
            action="logged_in",
            account_id=None,
            after={"expires_at": issued.row.expires_at, "address": public.address},
        )
    sessions.set_cookie(response, public.request, issued)
    return LoginOut(csrf_token=issued.row.csrf_token, expires_at=issued.row.expires_at)


@auth_router.post("/logout", status_code=204)
async def logout(ctx: CtxDep, request: Request, response: Response) -> None:
    """End the console session the request came with."""
    if ctx.actor.session_id is None:
        raise Conflict(
            detail="This request did not come with a console session, so there is none to end.",
            fix="to stop an API token, revoke it with DELETE /api/v1/me/tokens/{id}",
        )
    await sessions.end(ctx.session, ctx.actor.session_id, ctx.now())
    await audit.record(
        ctx, entity="session", entity_id=ctx.actor.session_id, action="logged_out", account_id=None
    )
    sessions.clear_cookie(response, request)


@me_router.get("", response_model=MeOut)
async def me(ctx: CtxDep) -> MeOut:
    user = await auth.current_user(ctx)
    return MeOut(
        id=user.id, email=user.email, name=user.name, staff_role=user.staff_role, provider_id=user.provider_id
    )


@me_router.get("/tokens", response_model=list[TokenOut])
async def my_tokens(ctx: CtxDep) -> list[TokenOut]:
    """Your API tokens; never the tokens themselves, only their last characters."""
    return [TokenOut.model_validate(t) for t in await auth.my_tokens(ctx)]


@me_router.delete("/tokens/{token_id}", status_code=204)
async def revoke_token(ctx: CtxDep, token_id: int) -> None:
    await auth.revoke_my_token(ctx, token_id)


@me_router.post("/password", status_code=204)
async def change_password(ctx: CtxDep, body: PasswordChange) -> None:
    """Change your password; sessions and tokens stay as they are."""
    await auth.change_password(ctx, body.current_password, body.new_password)


@users_router.post("", status_code=201, response_model=UserOut)
async def create_user(ctx: CtxDep, body: UserCreate, response: Response) -> UserOut:
    """Create a user (provider owners and admins only); a staff role only as the rules allow."""
    user = await auth.create_user_as_staff(
        ctx, email=body.email, name=body.name, password=body.password, staff_role=body.staff_role
    )
    response.headers["Location"] = f"/api/v1/users/{user.id}"
    return UserOut.model_validate(user)


@invitations_router.post("/{token}/accept", response_model=AcceptedOut, responses=THROTTLED)
async def accept_invitation(
    public: PublicDep, token: str, body: InvitationAccept
) -> AcceptedOut | JSONResponse:
    """Accept an invitation: a new user sets a name and password; an existing user gives theirs."""
    try:
        accepted = await invitations.accept(
            public.db, public.clock, token, name=body.name, password=body.password, address=public.address
        )
    except throttle.TooManyAttempts as error:
        return public.throttled(error)
    return AcceptedOut(
        user_id=accepted.user.id,
        email=accepted.user.email,
        account_id=accepted.invitation.account_id,
        role=accepted.invitation.role,
        created_user=accepted.created_user,
    )


router = APIRouter()
for _router in (auth_router, me_router, users_router, invitations_router):
    router.include_router(_router)
