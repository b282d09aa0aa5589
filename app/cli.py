"""The `pitwarden` command line."""

import asyncio
import contextlib
import json
import re
import shlex
import signal
import sys
import threading
import uuid
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from app import auditing, demo, signing
from app.console.cli import officers_cli
from app.gating import PAYMENTS_OFF
from app.payments_cli import payments_cli
from app.psp_sim_cli import psp_sim_cli
from app.runtime import (
    client_secrets,
    run_with_uow,
    run_with_vault,
    seal_clear_client_secrets,
    vault_keys,
    with_both,
    with_uow_factory,
)
from audit import asof, export, journal_check, keys, log, note, verify
from compliance.vault import rotation
from compliance.vault import service as vault_service
from core import clients, fx, ledger, players
from core.database import create_app_engine, prepare, unavailable
from core.errors import DomainError
from core.journal import EventContext, rfc3339
from core.money import format_minor
from core.payments import routing
from core.settings import Settings
from core.uow import UnitOfWorkFactory
from policies import decisions, registry, ruleset

cli = typer.Typer(
    help="Pitwarden: compliance and audit heart of an online casino.", no_args_is_help=True
)
ledger_cli = typer.Typer(help="Ledger balances, now or at any past instant.", no_args_is_help=True)
fx_cli = typer.Typer(help="Exchange rates used to convert stakes.", no_args_is_help=True)
players_cli = typer.Typer(help="Players as the money core knows them.", no_args_is_help=True)
clients_cli = typer.Typer(
    help="API clients: game providers and operator tools.", no_args_is_help=True
)
client_cli = typer.Typer(help="Act as an API client: sign a request.", no_args_is_help=True)
cli.add_typer(ledger_cli, name="ledger")
cli.add_typer(fx_cli, name="fx")
cli.add_typer(players_cli, name="players")
cli.add_typer(clients_cli, name="clients")
cli.add_typer(client_cli, name="client")
audit_cli = typer.Typer(
    help="The verifiable audit log: integrate, checkpoint, export, verify, books as of T.",
    no_args_is_help=True,
)
cli.add_typer(audit_cli, name="audit")
vault_cli = typer.Typer(
    help="The PII vault: data subject export, key rotation.", no_args_is_help=True
)
cli.add_typer(vault_cli, name="vault")
policy_cli = typer.Typer(
    help="Versioned rulesets: activate, replay a decision, what-if.", no_args_is_help=True
)
cli.add_typer(policy_cli, name="policy")
cli.add_typer(payments_cli, name="payments")
cli.add_typer(officers_cli, name="officers")
cli.add_typer(psp_sim_cli, name="psp-sim")

CLI_CONTEXT = EventContext(actor="cli", trace_id="cli")
SIMULATOR_PORT = 8100  # where the example payments config expects its providers


def _settings() -> Settings:
    return Settings.from_env()


def _fail(error: DomainError) -> None:
    typer.echo(
        json.dumps(
            {"error": {"code": error.code, "message": error.message, "details": error.details}}
        ),
        err=True,
    )
    raise typer.Exit(2)


@cli.command()
def serve(
    demo_data: Annotated[
        bool, typer.Option("--demo/--no-demo", help="Seed the demo first")
    ] = False,
    psp_sim: Annotated[
        bool,
        typer.Option(
            "--psp-sim/--no-psp-sim",
            help="Also serve the PSP simulator the example payments config points at"
            " (127.0.0.1:8100); on by default with --demo and no PITWARDEN_PAYMENTS_CONFIG",
        ),
    ] = False,
) -> None:
    """Start the database if needed, migrate, and serve the API (Ctrl-C stops both)."""
    import uvicorn  # noqa: PLC0415 - only the server needs it

    from app.main import create_app  # noqa: PLC0415

    # SIGTERM (also the one uvicorn re-raises after its graceful shutdown) exits through
    # SystemExit, so that the atexit hook stops the embedded PostgreSQL too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    settings, psp_sim = _payments_of(_settings(), demo=demo_data, psp_sim=psp_sim)
    urls, _server = prepare(settings)
    if demo_data:
        asyncio.run(
            with_both(urls, demo.seeder(settings, vault_keys(settings), client_secrets(settings)))
        )
    app = create_app(
        settings=settings,
        engine=create_app_engine(
            urls.app, pool_size=settings.db_pool_size, wait_s=settings.db_wait_s
        ),
        vault_engine=create_app_engine(urls.vault, pool_size=4, wait_s=settings.db_wait_s),
    )
    if psp_sim:
        _simulate_providers(settings)
    typer.echo(f"Pitwarden on http://{settings.host}:{settings.port} (OpenAPI UI at /docs)")
    # uvloop and httptools (both dependencies) cut the server's CPU per request by about a
    # quarter on this machine (docs/benchmarks.md).
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        loop="uvloop",
        http="httptools",
    )


def _payments_of(settings: Settings, *, demo: bool, psp_sim: bool) -> tuple[Settings, bool]:
    """The payments `serve` runs with. Without PITWARDEN_PAYMENTS_CONFIG they are off, except
    for the demo, which takes the example file and simulates its providers; never the example's
    public secrets on a server that is not a demo."""
    if settings.payments_config is not None:
        return settings, psp_sim
    if demo:
        typer.echo("Payments: the example config (public secrets, demo only), simulated providers")
        return replace(settings, payments_config=routing.EXAMPLE_CONFIG), True
    if psp_sim:
        raise typer.BadParameter("--psp-sim simulates the providers of PITWARDEN_PAYMENTS_CONFIG")
    typer.echo(f"{PAYMENTS_OFF}; payment calls and webhooks answer 503 payments_disabled")
    return settings, False


def _simulate_providers(settings: Settings) -> None:
    """The PSP simulator beside the server, in a thread of its own (it ends with the process):
    the demo's deposits and withdrawals then get their webhooks like with real providers."""
    import uvicorn  # noqa: PLC0415 - only the server needs it

    from app.psp_sim import create_app as create_simulator  # noqa: PLC0415

    assert settings.payments_config is not None  # noqa: S101 - see _payments_of
    config = routing.load_config(settings.payments_config)
    simulator = create_simulator(
        config, callback_base=f"http://{settings.host}:{settings.port}", log=typer.echo
    )
    server = uvicorn.Server(
        uvicorn.Config(simulator, host="127.0.0.1", port=SIMULATOR_PORT, log_level="warning")
    )
    threading.Thread(target=server.run, name="psp-sim", daemon=True).start()
    typer.echo(
        f"PSP simulator ({', '.join(config.providers)}) on http://127.0.0.1:{SIMULATOR_PORT}"
        " (control API at /_control)"
    )


@cli.command()
def migrate() -> None:
    """Apply database migrations (as the owner) and set up the application role; seal the API
    clients' secrets left in clear by an older version."""
    settings = _settings()
    urls, _ = prepare(settings)
    sealed = asyncio.run(
        with_uow_factory(
            urls.app,
            lambda uows: seal_clear_client_secrets(uows, client_secrets(settings), "cli"),
        )
    )
    typer.echo(f"migrated {urls.owner.render_as_string(hide_password=True)}")
    if sealed:
        typer.echo(f"sealed the clear secrets of {sealed} API client(s)")


@cli.command("demo")
def demo_command() -> None:
    """Seed the demo (idempotent) and print its credentials."""
    settings = _settings()
    run_with_vault(settings, demo.seeder(settings, vault_keys(settings), client_secrets(settings)))


@ledger_cli.command("balance")
def ledger_balance(
    account: Annotated[str, typer.Argument(help="Account code, e.g. player:<uuid>:cash")],
    at: Annotated[str | None, typer.Option(help="RFC 3339 instant: balance as it stood")] = None,
) -> None:
    """Current balance of ACCOUNT, or its balance at --at recomputed from postings."""
    instant = datetime.fromisoformat(at) if at else None

    async def work(uows: UnitOfWorkFactory) -> None:
        async with uows() as uow:
            ref = await ledger.account_by_code(uow, account)
            minor = (
                await ledger.balance_at(uow, ref.id, instant)
                if instant
                else await ledger.balance(uow, ref.id)
            )
            when = f" at {rfc3339(instant)}" if instant else ""
            typer.echo(f"{account}{when}: {format_minor(minor, ref.currency)} {ref.currency}")

    try:
        run_with_uow(_settings(), work)
    except DomainError as error:
        _fail(error)


@fx_cli.command("set")
def fx_set(
    base: str,
    quote: str,
    rate: str,
    source: Annotated[str, typer.Option(help="Where the rate comes from")] = "manual",
    as_of: Annotated[str | None, typer.Option(help="RFC 3339; default now")] = None,
) -> None:
    """Record a BASE/QUOTE rate (units of QUOTE per BASE)."""

    async def work(uows: UnitOfWorkFactory) -> None:
        async with uows() as uow:
            when = datetime.fromisoformat(as_of) if as_of else uow.now
            recorded = await fx.record_rate(
                uow,
                base=base,
                quote=quote,
                rate=fx.parse_rate(rate),
                source=source,
                as_of=when,
                ctx=CLI_CONTEXT,
            )
            await uow.commit()
            typer.echo(
                f"{recorded.base}/{recorded.quote} = {recorded.rate} ({recorded.source}, "
                f"as of {rfc3339(recorded.as_of)})"
            )

    try:
        run_with_uow(_settings(), work)
    except DomainError as error:
        _fail(error)


@players_cli.command("create")
def players_create(
    currency: Annotated[str, typer.Option()] = "EUR",
    jurisdiction: Annotated[str, typer.Option()] = "MT",
) -> None:
    """Create a player with an empty wallet; prints the player id."""

    async def work(uows: UnitOfWorkFactory) -> None:
        async with uows() as uow:
            player_id = await players.register(
                uow, currency=currency, jurisdiction=jurisdiction, ctx=CLI_CONTEXT
            )
            await uow.commit()
            typer.echo(str(player_id))

    try:
        run_with_uow(_settings(), work)
    except DomainError as error:
        _fail(error)


@clients_cli.command("register")
def clients_register(
    client_id: str,
    role: Annotated[str, typer.Option(help="game_provider or operator")] = "game_provider",
    provider_code: Annotated[str | None, typer.Option(help="For game providers")] = None,
    name: Annotated[str | None, typer.Option(help="Display name")] = None,
) -> None:
    """Register an API client and print its secret (shown once)."""
    if role not in ("game_provider", "operator"):
        raise typer.BadParameter("role is game_provider or operator")
    settings = _settings()

    async def work(uows: UnitOfWorkFactory) -> None:
        async with uows() as uow:
            client = await clients.register(
                uow,
                client_id=client_id,
                role=role,  # type: ignore[arg-type]
                display_name=name or client_id,
                provider_code=provider_code if role == "game_provider" else None,
                sealer=client_secrets(settings),
                ctx=CLI_CONTEXT,
            )
            await uow.commit()
            typer.echo(f"client_id={client.client_id}\nsecret={client.secret}")

    run_with_uow(settings, work)


_DURATION = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def _duration(text: str) -> timedelta:
    if text == "0":
        return timedelta(0)
    match = _DURATION.fullmatch(text)
    if not match:
        raise typer.BadParameter("a duration is a number and a unit, e.g. 90s, 30m, 24h, 7d")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


@clients_cli.command("rotate-secret")
def clients_rotate_secret(
    client_id: str,
    overlap: Annotated[
        str,
        typer.Option(
            help="How long the current secret keeps verifying beside the new one"
            " (e.g. 30m, 24h, 7d; 0 ends it now)"
        ),
    ] = "24h",
) -> None:
    """Give CLIENT_ID a new secret and print it (shown once); journaled."""
    length = _duration(overlap)
    settings = _settings()

    async def work(uows: UnitOfWorkFactory) -> None:
        async with uows() as uow:
            issued = await clients.rotate_secret(
                uow,
                client_id=client_id,
                overlap=length,
                sealer=client_secrets(settings),
                ctx=CLI_CONTEXT,
            )
            await uow.commit()
        typer.echo(f"client_id={issued.client_id}\nsecret={issued.secret}")
        if issued.previous_valid_until is None:
            typer.echo("the previous secret is refused from now on")
        else:
            typer.echo(f"the previous secret verifies until {rfc3339(issued.previous_valid_until)}")

    try:
        run_with_uow(settings, work)
    except DomainError as error:
        _fail(error)


@client_cli.command("sign")
def client_sign(
    method: str,
    path: str,
    client_id: Annotated[str, typer.Option(envvar="PITWARDEN_CLIENT_ID")],
    secret: Annotated[str, typer.Option(envvar="PITWARDEN_CLIENT_SECRET")],
    body: Annotated[str, typer.Option(help="JSON body, or @file")] = "",
    url: Annotated[str, typer.Option(help="Print a curl command for this base URL")] = "",
) -> None:
    """Sign a request; prints its headers, or with --url a complete curl command."""
    raw = Path(body[1:]).read_bytes() if body.startswith("@") else body.encode()
    headers = signing.signed_headers(
        client_id=client_id, secret=secret, method=method, path=path, body=raw
    )
    if method.upper() != "GET":
        headers["Idempotency-Key"] = str(uuid.uuid4())
        headers["Content-Type"] = "application/json"
    if not url:
        for name, value in headers.items():
            typer.echo(f"{name}: {value}")
        return
    parts = ["curl", "-sS", "-X", method.upper(), url.rstrip("/") + path]
    for name, value in headers.items():
        parts += ["-H", f"{name}: {value}"]
    if raw:
        parts += ["--data-binary", raw.decode()]
    typer.echo(shlex.join(parts))


@audit_cli.command("integrate")
def audit_integrate(
    checkpoint: Annotated[
        bool, typer.Option("--checkpoint/--no-checkpoint", help="Sign a checkpoint after")
    ] = True,
) -> None:
    """Integrate every committed journal event now, then sign a checkpoint if the tree grew."""
    settings = _settings()

    async def work(uows: UnitOfWorkFactory) -> None:
        done = await auditing.catch_up(
            uows,
            origin=settings.audit_origin,
            signers=keys.signers(settings),
            checkpoint=checkpoint,
        )
        typer.echo(f"integrated {done.integrated} entries")
        if done.published:
            _echo_checkpoint(done.published)

    run_with_uow(settings, work)


@audit_cli.command("follow")
def audit_follow() -> None:
    """Keep the log current until stopped (Ctrl-C): what `serve` does in the background, as a
    process of its own for deployments that set PITWARDEN_AUDIT_IN_SERVER=0."""
    settings = _settings()
    typer.echo(f"following the journal into {settings.audit_origin} (Ctrl-C stops)")

    async def work(uows: UnitOfWorkFactory) -> None:
        await auditing.keep_log_current(
            uows,
            origin=settings.audit_origin,
            signers=keys.signers(settings),
            interval_s=settings.audit_interval_s,
        )

    with contextlib.suppress(KeyboardInterrupt):
        run_with_uow(settings, work)


@audit_cli.command("checkpoint")
def audit_checkpoint() -> None:
    """Sign a checkpoint of the current tree now, even if it has not grown (after a key change)."""
    settings = _settings()

    async def work(uows: UnitOfWorkFactory) -> None:
        done = await auditing.catch_up(
            uows, origin=settings.audit_origin, signers=keys.signers(settings), force=True
        )
        assert done.published is not None  # noqa: S101 - forced
        _echo_checkpoint(done.published)

    run_with_uow(settings, work)


def _echo_checkpoint(published: log.Published) -> None:
    typer.echo(f"checkpoint {published.id}: tree size {published.checkpoint.size}")
    typer.echo(published.note, nl=False)


@audit_cli.command("export")
def audit_export(
    directory: Annotated[Path, typer.Argument(help="Directory to write (created if missing)")],
    size: Annotated[
        int | None, typer.Option(help="Tree size to export (default: the latest checkpoint's)")
    ] = None,
) -> None:
    """Export entries, checkpoints up to --size, consistency proofs and public keys."""
    settings = _settings()

    async def work(uows: UnitOfWorkFactory) -> export.Exported:
        async with uows() as uow:
            await uow.session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            return await export.export(
                uow,
                directory,
                origin=settings.audit_origin,
                verifiers=keys.verifiers(settings),
                size=size,
                progress=_progress("exporting"),
            )

    try:
        done = run_with_uow(settings, work)
    except DomainError as error:
        _fail(error)
    typer.echo(
        f"exported {done.entries} entries and {done.checkpoints} checkpoints"
        f" (tree size {done.size}) to {directory}"
    )


def _progress(what: str) -> verify.Progress:
    def show(done: int, total: int) -> None:
        typer.echo(f"\r{what}: {done}/{total}", nl=done >= total, err=True)

    return show


@audit_cli.command("verify")
def audit_verify(
    directory: Annotated[Path, typer.Argument(help="An export directory")],
    key: Annotated[list[Path], typer.Option(help="Verifier key file (one key a line)")],
    checkpoint: Annotated[
        list[Path] | None, typer.Option(help="A checkpoint note kept from earlier")
    ] = None,
) -> None:
    """Verify an export offline: leaves, roots, signatures, consistency. Exit 1 on any failure."""
    argv = [str(directory)]
    for path in key:
        argv += ["--key", str(path)]
    for path in checkpoint or []:
        argv += ["--checkpoint", str(path)]
    raise typer.Exit(verify.main(argv))


@audit_cli.command("as-of")
def audit_as_of(
    at: Annotated[str, typer.Argument(help="RFC 3339 instant, e.g. 2026-11-25T12:00:00Z")],
) -> None:
    """The last checkpoint at or before T and the balances rebuilt from its log prefix, beside
    the ledger's own balance at T. Exit 1 when they differ."""
    instant = datetime.fromisoformat(at)
    if instant.tzinfo is None:
        raise typer.BadParameter("the instant needs a UTC offset, e.g. Z")
    settings = _settings()

    async def work(uows: UnitOfWorkFactory) -> asof.AsOf:
        async with uows() as uow:
            return await asof.as_of(uow, instant, verifiers=keys.verifiers(settings))

    try:
        books = run_with_uow(settings, work)
    except DomainError as error:
        _fail(error)
    cp = books.checkpoint
    typer.echo(f"as of {rfc3339(instant)}: checkpoint {cp.id}, tree size {cp.tree_size},")
    typer.echo(f"published {rfc3339(cp.published_at)}, signature and root verified")
    typer.echo(f"{'account':<58} {'currency':<8} {'from log':>16} {'ledger':>16}")
    for account in books.accounts:
        code, currency, from_log, from_ledger = account.row()
        mark = "" if account.agrees else "  DIFFERS"
        typer.echo(f"{code:<58} {currency:<8} {from_log:>16} {from_ledger:>16}{mark}")
    if not books.agrees:
        typer.echo("the log and the ledger differ (see DIFFERS)", err=True)
        raise typer.Exit(1)
    typer.echo(f"{len(books.accounts)} accounts agree")


@audit_cli.command("check-journal")
def audit_check_journal() -> None:
    """Hold the journal against the log: rows changed or deleted after integration, and rows the
    log never took. Exit 1 when anything is off."""

    async def work(uows: UnitOfWorkFactory) -> journal_check.JournalCheck:
        async with uows() as uow:
            await uow.session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            return await journal_check.check_journal(uow, progress=_progress("checked"))

    found = run_with_uow(_settings(), work)
    typer.echo(f"{found.entries} entries held against the journal")
    if found.altered_count:
        typer.echo(f"{found.altered_count} journal rows changed after integration: {found.altered}")
    if found.missing_count:
        typer.echo(f"{found.missing_count} journal rows the log never took: {found.missing}")
    if not found.ok:
        raise typer.Exit(1)
    typer.echo("OK: the journal matches the log")


@audit_cli.command("keygen")
def audit_keygen(
    name: Annotated[str | None, typer.Option(help="Key name (default: the log's origin)")] = None,
) -> None:
    """Print a new signer key (add it to the key file to rotate) and its verifier key."""
    signer = note.Signer.generate(name or keys.key_name(_settings().audit_origin))
    typer.echo(f"signer:   {signer.to_string()}")
    typer.echo(f"verifier: {signer.verifier().to_string()}")


@audit_cli.command("public-keys")
def audit_public_keys() -> None:
    """Print the verifier keys of every configured signing key, one a line."""
    for verifier in keys.verifiers(_settings()):
        typer.echo(verifier.to_string())


@vault_cli.command("export")
def vault_export(
    player: Annotated[str, typer.Argument(help="Player id")],
    actor: Annotated[str, typer.Option(help="Who asks (journaled)")] = "cli",
) -> None:
    """Everything the vault holds about PLAYER, as JSON (a data subject access request)."""
    settings = _settings()

    async def work(_: UnitOfWorkFactory, vault: UnitOfWorkFactory) -> dict[str, object]:
        async with vault() as uow:
            exported = await vault_service.export(
                uow,
                player_id=uuid.UUID(player),
                actor=actor,
                keys=vault_keys(settings),
                ctx=CLI_CONTEXT,
            )
            await uow.commit()
            return exported

    try:
        typer.echo(json.dumps(run_with_vault(settings, work), indent=2, ensure_ascii=False))
    except DomainError as error:
        _fail(error)


@vault_cli.command("rotate-kek")
def vault_rotate_kek(
    batch: Annotated[int, typer.Option(help="Data keys per transaction")] = 1000,
) -> None:
    """Rewrap every data key under a new KEK version (fields untouched); resumes after a crash;
    retires the versions no data key uses any more."""
    settings = _settings()

    async def work(_: UnitOfWorkFactory, vault: UnitOfWorkFactory) -> rotation.Rotation:
        return await rotation.rotate_kek(
            vault,
            vault_keys(settings),
            ctx=CLI_CONTEXT,
            batch=batch,
            progress=_progress("rewrapped"),
        )

    done = run_with_vault(settings, work)
    retired = ", ".join(map(str, done.retired)) or "none"
    typer.echo(f"KEK version {done.version}: {done.rewrapped} data keys rewrapped")
    typer.echo(f"retired versions: {retired}")


@policy_cli.command("versions")
def policy_versions() -> None:
    """The rulesets on disk, with their content hashes."""
    for version in ruleset.available():
        loaded = ruleset.load(ruleset.RULESETS / version)
        typer.echo(
            f"{version}  {loaded.jurisdiction:<3} from {rfc3339(loaded.effective_from)}"
            f"  {loaded.content_hash}"
        )


@policy_cli.command("activate")
def policy_activate(
    version: str,
    reason: Annotated[str, typer.Option(help="Why (journaled)")],
    jurisdiction: Annotated[str, typer.Option(help="XX, or * for everywhere else")] = "*",
    actor: Annotated[str, typer.Option(help="Who (journaled)")] = "cli",
) -> None:
    """Make VERSION decide for a jurisdiction from now on; journaled with its content hash."""

    async def work(uows: UnitOfWorkFactory) -> None:
        async with uows() as uow:
            done = await registry.activate(
                uow,
                version=version,
                jurisdiction=jurisdiction,
                actor=actor,
                reason=reason,
                ctx=CLI_CONTEXT,
            )
            await uow.commit()
        typer.echo(f"{done.version} active for {done.jurisdiction} ({done.content_hash})")

    try:
        run_with_uow(_settings(), work)
    except DomainError as error:
        _fail(error)


@policy_cli.command("replay")
def policy_replay(decision_id: str) -> None:
    """Re-evaluate a stored decision with its recorded facts and ruleset; exit 1 if it differs."""

    async def work(uows: UnitOfWorkFactory) -> decisions.Replayed:
        async with uows() as uow:
            return await decisions.replay(uow, uuid.UUID(decision_id))

    try:
        again = run_with_uow(_settings(), work)
    except DomainError as error:
        _fail(error)
    typer.echo(
        f"stored: {again.stored_effect} {again.stored_reason} {list(again.stored_rules)}\n"
        f"replay: {again.now.effect} {again.now.reason_code} {list(again.now.rule_ids)}"
        f" ({again.now.version})"
    )
    if not again.same:
        raise typer.Exit(1)


@policy_cli.command("what-if")
def policy_what_if(
    version: Annotated[str, typer.Option(help="The ruleset to try")],
    since: Annotated[str, typer.Option(help="RFC 3339 instant: decisions from then on")],
) -> None:
    """Past decisions that VERSION would have decided otherwise."""
    instant = datetime.fromisoformat(since)

    async def work(uows: UnitOfWorkFactory) -> decisions.WhatIf:
        async with uows() as uow:
            return await decisions.what_if(uow, version=version, since=instant)

    result = run_with_uow(_settings(), work)
    for item in result.changed:
        typer.echo(
            f"{item.id}: {item.stored_effect} {item.stored_reason}"
            f" -> {item.now.effect} {item.now.reason_code}"
        )
    for decision_id, why in result.undecidable:
        typer.echo(f"{decision_id}: cannot be decided by {version}: {why}")
    typer.echo(
        f"{len(result.changed)} of {result.tried} decisions would change under {version}"
        + (f"; {len(result.undecidable)} cannot be decided by it" if result.undecidable else "")
    )


DATABASE_UNAVAILABLE = 3  # the exit status of a command that could not reach the database


def main() -> None:
    """The console script: a database that cannot be reached is one line and exit status 3,
    not a traceback (a bug still shows its traceback)."""
    try:
        cli()
    except Exception as error:
        reason = unavailable(error)
        if reason is None:
            raise
        typer.echo(f"pitwarden: the database is unavailable: {reason}", err=True)
        raise SystemExit(DATABASE_UNAVAILABLE) from None
