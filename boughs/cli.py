"""The `boughs` command: serve, upgrade the schema, set up, and operate."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.tree import Tree

from boughs.config import Settings, get_settings
from boughs.db import Database
from boughs.kit.clock import SystemClock
from boughs.kit.collector import settle_after_start
from boughs.kit.errors import BoughsError, SchemaOutOfDate

app = typer.Typer(help="Boughs: subscriber management and billing for account hierarchies.")
db_app = typer.Typer(help="Database schema.")
token_app = typer.Typer(help="API tokens.")
accounts_app = typer.Typer(help="Accounts.")
usage_app = typer.Typer(help="Usage metering.")
app.add_typer(db_app, name="db")
app.add_typer(token_app, name="token")
app.add_typer(accounts_app, name="accounts")
app.add_typer(usage_app, name="usage")

console = Console()
err = Console(stderr=True)
T = TypeVar("T")


def run(work: Callable[[Database], Awaitable[T]], settings: Settings | None = None) -> T:
    """Run async work against the configured database, turning known errors into exit 1."""
    settings = settings or get_settings()

    async def main() -> T:
        db = Database(settings.database_url)
        try:
            return await work(db)
        finally:
            await db.dispose()

    try:
        return asyncio.run(main())
    except BoughsError as exc:
        err.print(f"[red]error:[/red] {exc.detail}")
        if exc.fix:
            err.print(f"fix: {exc.fix}")
        raise typer.Exit(1) from exc


def require_current_schema(settings: Settings) -> None:
    from boughs.schema import ensure_current

    try:
        ensure_current(settings.database_url)
    except SchemaOutOfDate as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[
        bool | None,
        typer.Option(
            "--workers/--no-workers",
            help="Run job workers in this process (default: yes unless BOUGHS_BROKER_URL is set).",
        ),
    ] = None,
    processes: Annotated[
        int,
        typer.Option(min=1, max=64, help="Server processes sharing the port: one per core uses them all."),
    ] = 1,
) -> None:
    """Serve the API and console."""
    import uvicorn

    from boughs.app import create_app
    from boughs.middleware import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level)
    require_current_schema(settings)
    console.print(
        f"Boughs is serving on http://{host}:{port}  (API docs: /api/docs)"
        + (f", {processes} processes" if processes > 1 else "")
    )
    if processes == 1:
        application = create_app(settings, check_schema=False, run_jobs=workers)
        settle_after_start()
        uvicorn.run(application, host=host, port=port, log_config=None, proxy_headers=True)
        return
    # Each process builds its own app (and, embedded, its own workers) from the environment.
    if workers is not None:
        os.environ["BOUGHS_EMBEDDED_WORKER"] = "1" if workers else "0"
    uvicorn.run(
        "boughs.app:app_from_environment", factory=True, workers=processes,
        host=host, port=port, log_config=None, proxy_headers=True,
    )  # fmt: skip


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the database schema up to date (creates the SQLite file if needed)."""
    from boughs.schema import current_revision, head_revision, upgrade

    settings = get_settings()
    before = current_revision(settings.database_url)
    upgrade(settings.database_url)
    head = head_revision(settings.database_url)
    if before == head:
        console.print(f"The schema is up to date (revision {head}).")
    else:
        console.print(f"Upgraded the schema from {before or 'empty'} to {head}.")


@app.command()
def init(
    admin_email: Annotated[str, typer.Option(help="Email of the provider's owner.")],
    admin_password: Annotated[str, typer.Option(help="Password of the provider's owner.")],
    provider_name: Annotated[str, typer.Option(help="Name of the provider.")] = "My provider",
    timezone: Annotated[str, typer.Option(help="The provider's default timezone.")] = "UTC",
    currency: Annotated[str, typer.Option(help="The provider's default currency.")] = "USD",
) -> None:
    """Create the provider and its owner, if they do not exist yet."""
    from boughs.auth import repository as users
    from boughs.auth import service as auth
    from boughs.auth.actor import StaffRole

    settings = get_settings()
    require_current_schema(settings)

    async def work(db: Database) -> str:
        now = SystemClock().now()
        async with db.transaction() as session:
            provider = await auth.ensure_provider(
                session, provider_name, now, timezone=timezone, currency=currency
            )
            if await users.user_by_email(session, admin_email) is not None:
                return f"{admin_email} already exists; nothing changed."
            await auth.create_user(
                session, provider.id, admin_email, admin_password, now,
                name="Owner", staff_role=StaffRole.owner,
            )  # fmt: skip
            return f"Created provider '{provider.name}' and its owner {admin_email}."

    console.print(run(work, settings))


@token_app.command("create")
def token_create(
    email: Annotated[str, typer.Option(help="The user the token acts as.")],
    name: Annotated[str, typer.Option(help="What the token is for.")],
    expires_in_days: Annotated[
        int | None, typer.Option(help="Days until the token expires; default never.")
    ] = None,
) -> None:
    """Print a new API token for a user. It is shown once; only its hash is kept."""
    from boughs.auth import repository as users
    from boughs.auth import service as auth
    from boughs.kit.errors import NotFound

    settings = get_settings()
    require_current_schema(settings)

    async def work(db: Database) -> str:
        now = SystemClock().now()
        async with db.transaction() as session:
            user = await users.user_by_email(session, email)
            if user is None:
                raise NotFound(
                    detail=f"There is no user {email}.",
                    fix="check the email, or create the owner with `boughs init`",
                )
            expires = now + timedelta(days=expires_in_days) if expires_in_days else None
            issued = await auth.issue_token(session, user, name, now, expires)
            return issued.token

    token = run(work, settings)
    err.print("New API token (shown once; send it as 'Authorization: Bearer <token>'):")
    print(token)


@accounts_app.command("tree")
def accounts_tree(
    account_id: Annotated[int, typer.Argument(help="The account at the top of the tree.")],
    max_depth: Annotated[int, typer.Option(help="Levels to show below the account.")] = 3,
    max_children: Annotated[int, typer.Option(help="Children to show per account.")] = 50,
) -> None:
    """Print an account and its subtree."""
    from boughs.accounts import repository
    from boughs.accounts.models import Account
    from boughs.authz.scope import Scope
    from boughs.kit.errors import NotFound

    settings = get_settings()
    require_current_schema(settings)

    async def work(db: Database) -> Tree:
        async with db.transaction(write=False) as session:
            root = await session.get(Account, account_id)
            if root is None:
                raise NotFound(detail=f"There is no account {account_id}.", fix="check the id")
            scope = Scope(provider_id=root.provider_id, whole_provider=True)
            summary = await repository.subtree_summary(session, root)
            tree = Tree(_label(root) + f"  [dim]({summary.accounts} accounts in subtree)[/dim]")

            async def add(node: Tree, account: Account, level: int) -> None:
                if level >= max_depth:
                    return
                kids = await repository.list_by_path(
                    session, scope,
                    repository.AccountFilter(parent_id=account.id), None, max_children + 1,
                )  # fmt: skip
                for kid in kids[:max_children]:
                    await add(node.add(_label(kid)), kid, level + 1)
                if len(kids) > max_children:
                    node.add("[dim]…more[/dim]")

            await add(tree, root, 0)
            return tree

    console.print(run(work, settings))


@accounts_app.command("import")
def accounts_import(
    file: Annotated[
        Path,
        typer.Argument(
            help="CSV with a header row: name (required), external_id, parent_external_id, description, "
            "contact_email, technical_contact_email, expiry_date, invoice_mode, timezone, currency, "
            "billing_address, billing_tax_id, billing_email.",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ],
    provider_id: Annotated[
        int | None, typer.Option(help="Provider to import into; default the install's first provider.")
    ] = None,
) -> None:
    """Create a customer base from CSV, all or nothing: every row is checked before any is written."""
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from boughs.accounts.importer import ImportReport, import_accounts, read_csv

    settings = get_settings()
    require_current_schema(settings)

    async def work(db: Database) -> ImportReport:
        target = await _provider_id(db, provider_id)
        with (
            read_csv(file) as rows,
            Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                console=err, transient=True,
            ) as progress,
        ):  # fmt: skip
            task = progress.add_task(f"Checking {file.name}", total=None)

            def on_progress(done: int, total: int) -> None:
                progress.update(task, description="Writing accounts", completed=done, total=total)

            return await import_accounts(
                db, target, rows, source_name=rows.name, clock=SystemClock(), on_progress=on_progress
            )

    report = run(work, settings)
    if report.ok:
        console.print(
            f"Imported {report.created:,} accounts from {escape(file.name)} in {report.seconds:.1f} s "
            f"({report.rate:,.0f} accounts/s).",
            soft_wrap=True,
        )
        return
    for rejected in report.rejected:
        who = f" ({rejected.external_id})" if rejected.external_id else ""
        console.print(f"line {rejected.line}{escape(who)}: {escape(rejected.reason)}", soft_wrap=True)
    err.print(
        f"[red]error:[/red] nothing was imported: {len(report.rejected):,} of {report.rows:,} rows "
        "were rejected.\nfix: correct the rows above and import the whole file again.",
        soft_wrap=True,
    )
    raise typer.Exit(1)


async def _provider_id(db: Database, explicit: int | None) -> int:
    """The provider a command acts on: the one given, else the install's first."""
    from boughs.kit.errors import NotFound
    from boughs.providers import repository as providers

    if explicit is not None:
        return explicit
    async with db.transaction(write=False) as session:
        first = await providers.first(session)
    if first is None:
        raise NotFound(
            detail="There is no provider to import into yet.",
            fix="create it with `boughs init` (or `boughs demo`) first",
        )
    return first.id


@usage_app.command(
    "import",
    help="Take usage events from a mediation file, 1,000 rows per transaction. Rows the file gets wrong, "
    "or that ingestion rejects, are reported with their line and reason while every valid row is kept. "
    "Importing a file again is safe: rows already taken count as duplicates, so after an interruption "
    "just run it again.",
    short_help="Take usage events from a mediation CSV, with a rejected-rows report.",
    epilog="Exit status: 0 when every row was taken (accepted, or a duplicate of an event already taken); "
    "1 when any row was rejected or conflicts with an event taken before under its id (see the report), "
    "or when the file cannot be imported at all.",
)
def usage_import(
    file: Annotated[
        Path,
        typer.Argument(
            help="CSV with a header row: id, meter, quantity, timestamp (required), one or more subject "
            "columns (account_id, external_account_id, service_id, login, iccid; one filled per row) "
            "and optionally properties (a JSON object).",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ],
    provider_id: Annotated[
        int | None, typer.Option(help="Provider the usage belongs to; default the install's first provider.")
    ] = None,
    rejects: Annotated[
        Path | None,
        typer.Option(
            help="Where to write the rows not taken (line, id, reason); default FILE.rejects.csv beside "
            "the input.",
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Take usage events from a mediation file (the help text is the command's ``help``)."""
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from boughs.usage.importer import UsageImportReport, import_usage

    settings = get_settings()
    require_current_schema(settings)

    async def work(db: Database) -> UsageImportReport:
        target = await _provider_id(db, provider_id)
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("rows"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=True,
        ) as progress:  # fmt: skip
            task = progress.add_task(f"Importing {escape(file.name)}", total=None)

            def on_progress(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            return await import_usage(
                db, target, file, clock=SystemClock(), rejects_path=rejects, on_progress=on_progress
            )

    report = run(work, settings)
    console.print(
        f"Imported {escape(file.name)}: {_many(report.rows, 'row')} in {report.seconds:.1f} s "
        f"({report.rate:,.0f} rows/s): {report.accepted:,} accepted"
        + (f" ({report.late:,} late: their period was already invoiced)" if report.late else "")
        + f", {_many(report.duplicates, 'duplicate')}, {_many(report.conflicts, 'conflict')}, "
        f"{report.rejected:,} rejected.",
        soft_wrap=True,
    )
    if report.ok:
        return
    for line, event_id, reason in report.first_problems:
        who = f" ({event_id})" if event_id else ""
        console.print(f"line {line}{escape(who)}: {escape(reason)}", soft_wrap=True)
    shown = len(report.first_problems)
    more = report.rejected + report.conflicts - shown
    err.print(
        f"[red]error:[/red] {_many(report.rejected + report.conflicts, 'row')} not taken"
        + (f" ({more:,} more than shown above)" if more > 0 else "")
        + f"; every one is in {escape(str(report.rejects_path))}.\n"
        "fix: correct those rows and import the file again; rows already taken count as duplicates.",
        soft_wrap=True,
    )
    raise typer.Exit(1)


@app.command()
def demo(
    if_empty: Annotated[
        bool,
        typer.Option(
            "--if-empty",
            help="Leave a database that already serves a provider of its own untouched "
            "(what `make run` uses).",
        ),
    ] = False,
) -> None:
    """Load the demo data (idempotent: running it again changes nothing) and print the demo login."""
    from rich.markup import escape

    from boughs.demo import DemoReport, is_foreign_install, load_demo

    settings = get_settings()
    require_current_schema(settings)

    async def work(db: Database) -> DemoReport | None:
        if if_empty and await is_foreign_install(db):
            return None
        return await load_demo(db, SystemClock())

    report = run(work, settings)
    if report is None:
        console.print("This database already has a provider of its own; the demo data was not loaded.")
        return
    if report.provider_created:
        console.print("Created the demo provider.")
    if report.admin_created:
        console.print(f"Created the demo admin {report.admin_email}.")
    catalog = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in report.catalog_created.items() if n)
    usage = report.meters_created or report.usage_events_created
    billed = report.payment_methods_created or report.invoices_created
    if report.accounts_created or catalog or usage or billed:
        console.print(f"Loaded {report.accounts_created} of the {report.accounts_total} demo accounts.")
        if catalog:
            console.print(f"Loaded the demo catalog and services: {catalog}.")
        if usage:
            console.print(
                f"Loaded the demo usage: {_many(report.meters_created, 'meter')}, "
                f"{_many(report.usage_events_created, 'usage event')} over three weeks."
            )
        if billed:
            console.print(
                f"Loaded the demo billing: {_many(report.payment_methods_created, 'payment method')}, "
                f"{_many(report.invoices_created, 'invoice')} (last month finalized, this month in draft)."
            )
    else:
        console.print(f"The {report.accounts_total} demo accounts are already loaded; nothing changed.")
    if report.usage_example:
        console.print(f"Demo usage, for example: GET {report.usage_example}", soft_wrap=True)
    if report.usage_events_refused:
        err.print(
            f"[yellow]note:[/yellow] {_many(len(report.usage_events_refused), 'demo usage event')} "
            f"were not taken, e.g. {escape(report.usage_events_refused[0])}",
            soft_wrap=True,
        )
    console.print(f"Demo admin login: {report.admin_email} / {report.admin_password}", soft_wrap=True)
    if not report.admin_password_works:
        err.print("[yellow]note:[/yellow] that password was changed since the demo was loaded.")


def _many(count: int, noun: str) -> str:
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def _label(account: Any) -> str:
    external = f" [dim]{account.external_id}[/dim]" if account.external_id else ""
    status = "" if account.status == "active" else f" [yellow]{account.status}[/yellow]"
    return f"[bold]{account.name}[/bold] #{account.id}{external}{status}"


@app.command(
    "bill-run",
    help="Bill every invoice owner whose billing period ends on PERIOD_END: one draft invoice per owner "
    "(or previews with --dry-run), made in chunks of root accounts. This process bills the chunks itself; "
    "workers on BOUGHS_BROKER_URL take chunks too. Running it again for the same period bills nobody twice.",
    short_help="Bill a period, with a progress bar.",
)
def bill_run(
    period_end: Annotated[str, typer.Argument(help="The last day of the billing period, YYYY-MM-DD.")],
    dry_run: Annotated[bool, typer.Option(help="Preview the invoices without writing drafts.")] = False,
    finalize: Annotated[bool, typer.Option(help="Finalize the invoices as they are made.")] = False,
    provider_id: Annotated[
        int | None, typer.Option(help="Provider to bill; default the install's first.")
    ] = None,
) -> None:
    """Bill a period (the help text is the command's ``help``)."""
    from datetime import date

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from boughs.auth.actor import Actor
    from boughs.billing import repository as billing_repository
    from boughs.billing import service as billing
    from boughs.billing.schemas import BillRunCreate
    from boughs.context import Ctx
    from boughs.jobs import repository as jobs_repository
    from boughs.jobs.runtime import JobRuntime
    from boughs.kit.secrets import box_for

    try:
        day = date.fromisoformat(period_end)
    except ValueError:
        err.print(f"[red]error:[/red] {period_end!r} is not a date.\nfix: give the period end as YYYY-MM-DD.")
        raise typer.Exit(2) from None
    settings = get_settings()
    require_current_schema(settings)
    clock = SystemClock()

    async def work(db: Database) -> Any:
        target = await _provider_id(db, provider_id)
        async with db.transaction() as session:
            ctx = Ctx(session=session, clock=clock, actor=Actor.system(target, "cli"),
                      secrets=box_for(settings.secret_key))  # fmt: skip
            started = await billing.start_bill_run(ctx, BillRunCreate(period_end=day, dry_run=dry_run,
                                                                      finalize=finalize))  # fmt: skip
            run_id, job_id = started.id, started.job_id
        runtime = JobRuntime(settings, clock=clock)
        assert job_id is not None
        await runtime.execute(db, job_id)

        async def state() -> Any:
            async with db.transaction(write=False) as session:
                return await billing_repository.get_bill_run(session, target, run_id)

        with Progress(
            TextColumn("Billing {task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("roots"),
            TimeElapsedColumn(), console=err, transient=True,
        ) as progress:  # fmt: skip
            current = await state()
            task = progress.add_task(str(day), total=current.roots_total or None)

            async def follow() -> None:
                while True:
                    found = await state()
                    progress.update(task, completed=found.roots_done, total=found.roots_total or None)
                    await asyncio.sleep(0.5)

            watcher = asyncio.create_task(follow())
            try:
                async with db.transaction(write=False) as session:
                    chunks = await billing_repository.chunks_of(session, run_id)
                for chunk in chunks:
                    if chunk.job_id is not None:
                        await runtime.execute(db, chunk.job_id)
                # Chunks another worker took: wait for them, unless they failed for good.
                while True:
                    current = await state()
                    async with db.transaction(write=False) as session:
                        live = await jobs_repository.count_live(
                            session, [c.job_id for c in chunks if c.job_id]
                        )
                    if current.status != "running" or not live:
                        break
                    await asyncio.sleep(0.5)
            finally:
                watcher.cancel()
        return current

    result = run(work, settings)
    totals = ", ".join(
        f"{amount:,} {currency} (minor units)" for currency, amount in result.total_amount.items()
    )
    made = _many(result.invoices_created, "preview" if result.dry_run else "invoice")
    console.print(
        f"Bill run {result.id} for the period ending {day}: {result.status}; {made} made, "
        f"{result.invoices_skipped:,} owners already billed, over {_many(result.roots_done, 'root account')}"
        + (f"; total {totals}" if totals else "")
        + ".",
        soft_wrap=True,
    )
    if result.error:
        err.print(f"[yellow]warning:[/yellow] {result.error}", soft_wrap=True)
    if result.status != "succeeded":
        raise typer.Exit(1)


@app.command()
def worker(
    threads: Annotated[int, typer.Option(help="Jobs run at once in this process.")] = 4,
) -> None:
    """Run job workers against BOUGHS_BROKER_URL (Redis or RabbitMQ); start as many as you like."""
    from boughs.jobs.runtime import JobRuntime
    from boughs.middleware import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level)
    if not settings.broker_url:
        err.print(
            "[red]error:[/red] BOUGHS_BROKER_URL is not set.\n"
            "fix: set it to redis://… or amqp://… to run separate workers; without a broker, "
            "`boughs serve` runs the jobs itself."
        )
        raise typer.Exit(2)
    require_current_schema(settings)
    runtime = JobRuntime(settings)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    runtime.start_worker(threads)
    settle_after_start()
    console.print(f"Worker {runtime.worker_name} is running jobs from queue '{runtime.queue_name}'.")
    sys.stdout.flush()

    async def ticks() -> None:
        db = Database(settings.database_url)
        try:
            while not stop.is_set():
                try:
                    await runtime.tick(db)
                except Exception as exc:  # the next tick tries again
                    err.print(f"scheduler tick failed: {exc}")
                await asyncio.to_thread(stop.wait, settings.scheduler_interval_seconds)
        finally:
            await db.dispose()

    try:
        asyncio.run(ticks())
    finally:
        runtime.stop_worker()
        console.print("Worker stopped.")


if __name__ == "__main__":
    app()
