"""The console's frame: signing in and out, the session guard, CSRF, the switcher."""

from __future__ import annotations

import httpx

from boughs.accounts import service as accounts
from boughs.accounts.schemas import AccountCreate
from boughs.auth.actor import StaffRole
from tests.console.conftest import ConsoleClient, MakeConsoleUser, SignIn, csrf_of


async def test_pages_send_a_stranger_to_the_login_form_and_back(app) -> None:  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as anon:
        answer = await anon.get("/switcher?q=x")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/login?next=%2Fswitcher%3Fq%3Dx"
        htmx = await anon.get("/", headers={"HX-Request": "true"})
        assert htmx.headers["HX-Redirect"].startswith("/login?next=")
        form = await anon.get("/login?next=/accounts")
        assert form.status_code == 200 and 'name="password"' in form.text


async def test_login_form_signs_in_and_logout_signs_out(app, make_console_user: MakeConsoleUser) -> None:  # type: ignore[no-untyped-def]
    user = await make_console_user("ops@isp.test", staff_role=StaffRole.support)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as browser:
        wrong = await browser.post("/login", data={"email": user.email, "password": "nope", "next": "/"})
        assert wrong.status_code == 401 and "sessions" not in wrong.text
        assert "boughs_session" not in browser.cookies
        # An address outside the site is never a place to land after signing in.
        done = await browser.post(
            "/login", data={"email": user.email, "password": user.password, "next": "//evil.test/"}
        )
        assert done.status_code == 303 and done.headers["location"] == "/"
        home = await browser.get("/")
        assert home.status_code == 200 and user.email in home.text
        token = csrf_of(home.text)
        refused = await browser.post("/logout", data={})
        assert refused.status_code == 403
        out = await browser.post("/logout", data={"csrf_token": token})
        assert out.status_code == 303 and out.headers["location"] == "/login"
        browser.cookies.clear()
        again = await browser.get("/")
        assert again.status_code == 303


async def test_a_login_with_missing_fields_says_which(app) -> None:  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as browser:
        answer = await browser.post("/login", data={"email": "", "password": "x"})
        assert answer.status_code == 422 and "Enter your email address." in answer.text


async def test_switcher_finds_accounts_by_name_and_external_id(
    owner_console: ConsoleClient, ctx_factory
) -> None:  # type: ignore[no-untyped-def]
    async with ctx_factory() as ctx:
        top = await accounts.create(ctx, AccountCreate(name="Harbour Lofts", external_id="lofts-1"))
        await accounts.create(ctx, AccountCreate(name="Unit 4B", parent_id=top.id))
    by_name = await owner_console.get("/switcher", params={"q": "unit"})
    assert "Unit 4B" in by_name.text and "Harbour Lofts \u203a Unit 4B" in by_name.text
    by_external = await owner_console.get("/switcher", params={"q": "lofts-1"})
    assert f'href="/accounts/{top.id}"' in by_external.text
    nothing = await owner_console.get("/switcher", params={"q": "zzz"})
    assert "No account matches" in nothing.text


async def test_a_member_sees_only_their_own_tree_in_the_switcher(
    sign_in: SignIn, make_console_user: MakeConsoleUser, ctx_factory
) -> None:  # type: ignore[no-untyped-def]
    from boughs.memberships import service as memberships
    from boughs.memberships.models import AccountRole

    async with ctx_factory() as ctx:
        mine = await accounts.create(ctx, AccountCreate(name="Mine Ltd"))
        await accounts.create(ctx, AccountCreate(name="Other Ltd"))
    user = await make_console_user("admin@mine.test")
    async with ctx_factory() as ctx:
        await memberships.add(ctx, mine.id, user.email, AccountRole.admin)
    console = await sign_in(user.id)
    found = await console.get("/switcher", params={"q": "ltd"})
    assert "Mine Ltd" in found.text and "Other Ltd" not in found.text
    home = await console.get("/")
    assert 'data-testid="focus-account">Mine Ltd<' in home.text
