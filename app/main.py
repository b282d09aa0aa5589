"""FastAPI application factory: wiring of settings, database engine and routers."""

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import auditing, contract, errors
from app.api import admin, audit, health, kyc, me, payments, rg, vault, wallet
from app.console import wiring as console
from app.gating import build_cashier, build_gate
from app.outage import DatabaseWatch
from app.player import pages as player
from app.runtime import client_secrets, seal_clear_client_secrets, vault_keys
from audit import keys
from compliance import jurisdictions, overrides
from compliance.cashier import Cashier
from compliance.vault.keys import KeyProvider
from core import clients, sql
from core.database import code_revision, unavailable
from core.journal import EventContext
from core.sealing import Sealer
from core.settings import Settings
from core.uow import Clock, UnitOfWorkFactory, utc_now

log = logging.getLogger(__name__)


class BodyLimit:
    """Refuse bodies above `max_bytes` with 413 before anything reads them whole.

    A declared Content-Length is refused at once. A body without one (chunked) is counted as it
    is read: the refusal is an HTTPException, because FastAPI re-raises that one from its body
    parsing (any other exception there becomes a 400 "error parsing the body").
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(413, self._too_large)
            return message

        await self.app(scope, limited, send)

    @property
    def _too_large(self) -> str:
        return f"the body must be at most {self.max_bytes} bytes"

    async def _refuse(self, send: Send) -> None:
        response = JSONResponse(
            errors.error_body("body_too_large", self._too_large), status_code=413
        )
        await response({"type": "http"}, _nothing, send)


async def _nothing() -> Message:
    return {"type": "http.disconnect"}


def housekeeping_failed(watch: DatabaseWatch | None, what: str, error: Exception) -> None:
    """A background loop's failure: an outage is told once (by the watch), anything else is
    logged with its stack; the loop goes on either way, and ends only when cancelled."""
    if auditing.stopping():
        raise error
    reason = unavailable(error)
    if reason is not None and watch is not None:
        watch.went_away(reason)
    elif reason is None:
        log.error("%s failed", what, exc_info=error)


async def forget_old_nonces(
    uows: UnitOfWorkFactory, settings: Settings, watch: DatabaseWatch | None = None
) -> None:
    """Every minute, drop nonces that are too old to be replayed inside the signature window."""
    while True:
        await asyncio.sleep(60)
        try:
            async with uows() as uow:
                await clients.forget_nonces_before(
                    uow, clients.window_start(uow.now, settings.signature_tolerance_s)
                )
                await uow.commit()
        except Exception as error:  # housekeeping must never take the server down  # noqa: BLE001
            housekeeping_failed(watch, "forgetting old nonces", error)


EXPIRY_EVERY_S = 60.0
EXPIRY_CONTEXT = EventContext(actor="server", trace_id="deposit-expiry")


async def expire_abandoned_deposits(
    cashier: Cashier,
    *,
    older_than: timedelta,
    every_s: float = EXPIRY_EVERY_S,
    watch: DatabaseWatch | None = None,
) -> None:
    """Every minute, end deposits the player left on the provider's payment page: they stop
    counting towards the deposit limits (the lifecycle's "expired", caused by our timer)."""
    while True:
        await asyncio.sleep(every_s)
        try:
            expired = await cashier.expire(older_than=older_than, ctx=EXPIRY_CONTEXT)
            if expired:
                log.info("expired %d abandoned deposit(s)", expired)
        except Exception as error:  # housekeeping must never take the server down  # noqa: BLE001
            housekeeping_failed(watch, "expiring abandoned deposits", error)


OVERRIDES_CONTEXT = EventContext(actor="server", trace_id="override-expiry")


async def expire_overrides(
    uows: UnitOfWorkFactory, *, every_s: float = EXPIRY_EVERY_S, watch: DatabaseWatch | None = None
) -> None:
    """Every minute, end the overrides of overturned appeals whose period is over
    (`override.expired`): the gate stopped honouring them at their end already; this records
    it (decision 0023)."""
    while True:
        await asyncio.sleep(every_s)
        try:
            async with uows() as uow:
                ended = await overrides.expire_due(uow, ctx=OVERRIDES_CONTEXT)
                await uow.commit()
            if ended:
                log.info("ended %d override(s) whose period is over", ended)
        except Exception as error:  # housekeeping must never take the server down  # noqa: BLE001
            housekeeping_failed(watch, "ending overrides", error)


async def record_gate_settings(uows: UnitOfWorkFactory, settings: Settings) -> None:
    """At start: journal the jurisdiction settings file if it changed since the last start."""
    path = settings.jurisdictions_file or jurisdictions.JURISDICTIONS
    async with uows() as uow:
        if await jurisdictions.record_loaded(
            uow,
            jurisdictions.load(path),
            source=str(path),
            ctx=EventContext(actor="system:start", trace_id=uuid.uuid4().hex),
        ):
            await uow.commit()


def create_app(
    *,
    settings: Settings,
    engine: AsyncEngine | None = None,
    uow_factory: UnitOfWorkFactory | None = None,
    vault_engine: AsyncEngine | None = None,
    vault_uow_factory: UnitOfWorkFactory | None = None,
    vault_key_provider: KeyProvider | None = None,
    client_secrets_sealer: Sealer | None = None,
    clock: Clock = utc_now,
) -> FastAPI:
    """Build the app on engines (owned and disposed by the app) or ready UoW factories: one for
    the application role, one for the vault role. API clients' secrets are sealed by
    `client_secrets_sealer`, by default under the key file of the settings."""
    if uow_factory is None:
        assert engine is not None  # noqa: S101 - one of the two is required
        uow_factory = UnitOfWorkFactory(async_sessionmaker(engine, expire_on_commit=False), clock)
    if vault_uow_factory is None:
        assert vault_engine is not None  # noqa: S101 - one of the two is required
        vault_uow_factory = UnitOfWorkFactory(
            async_sessionmaker(vault_engine, expire_on_commit=False), clock
        )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await record_gate_settings(uow_factory, settings)
        await seal_clear_client_secrets(uow_factory, app.state.client_secrets, "system:start")
        tasks = [
            asyncio.create_task(forget_old_nonces(uow_factory, settings, watch)),
            asyncio.create_task(expire_overrides(uow_factory, watch=watch)),
        ]
        if app.state.cashier is not None and settings.deposit_expiry_minutes > 0:
            tasks.append(
                asyncio.create_task(
                    expire_abandoned_deposits(
                        app.state.cashier,
                        older_than=timedelta(minutes=settings.deposit_expiry_minutes),
                        watch=watch,
                    )
                )
            )
        if settings.audit_in_server:
            tasks.append(
                asyncio.create_task(
                    auditing.keep_log_current(
                        uow_factory,
                        origin=settings.audit_origin,
                        signers=keys.signers(settings),
                        interval_s=settings.audit_interval_s,
                        watch=watch,
                    )
                )
            )
        yield
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # stopped before the engines go
        await watch.stop()
        await providers.aclose()
        for owned in (engine, vault_engine):
            if owned is not None:
                await owned.dispose()

    app = FastAPI(
        title="Pitwarden",
        version="0.1.0",
        description="Compliance and audit heart of an online casino. API clients sign every "
        "request (the four headers of the security schemes ClientId, RequestTimestamp, "
        "RequestNonce and Signature, whose description says how); players send their token "
        "(PlayerToken); every mutating call takes an Idempotency-Key. Every error is "
        '{"error": {"code", "message", "details"}}, its codes listed with each operation.',
        lifespan=lifespan,
    )
    app.state.settings, app.state.uow_factory = settings, uow_factory
    app.state.vault_uow_factory = vault_uow_factory
    app.state.vault_keys = vault_key_provider or vault_keys(settings)
    app.state.client_secrets = client_secrets_sealer or client_secrets(settings)
    app.state.gate = build_gate(settings, vault_uow_factory, app.state.vault_keys)
    providers = httpx.AsyncClient(follow_redirects=False)
    app.state.cashier = build_cashier(settings, uow_factory, app.state.gate, providers)
    app.state.code_revision = code_revision()

    async def probe() -> None:
        async with asyncio.timeout(settings.db_wait_s), uow_factory() as uow:
            await sql.scalar(uow, "SELECT 1", {})

    watch = app.state.database_watch = DatabaseWatch(probe)
    errors.install(app)
    app.include_router(health.router)
    console.install(app)
    app.include_router(wallet.router)
    app.include_router(payments.webhooks)
    app.include_router(admin.router)
    app.include_router(audit.router)
    app.include_router(vault.router)
    app.include_router(rg.router)
    app.include_router(kyc.router)
    app.include_router(me.router)
    player.install(app)  # the player's page, beside their API
    app.include_router(payments.router)

    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    contract.install(app)
    return app
