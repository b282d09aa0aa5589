"""Probes for orchestrators: `/healthz` says the process runs (liveness: restart it if not);
`/readyz` says it can serve (readiness: send it traffic only then).

Ready means: the database answers within `PITWARDEN_DB_WAIT_S`, it is at the migration this
code expects, and the audit log takes committed journal events within
`PITWARDEN_READY_MAX_AUDIT_LAG_S`. A database outage makes an instance unready, never unhealthy:
restarting it would not bring the database back.
"""

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.contract import refusals
from app.errors import DATABASE_RETRY_AFTER_S, error_body
from audit import log
from core import sql
from core.database import unavailable
from core.uow import UnitOfWorkFactory

router = APIRouter(tags=["ops"])
logger = logging.getLogger(__name__)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process runs and answers. It reads nothing, so it stays 200 while the
    database is away (see /readyz)."""
    return {"status": "ok"}


@router.get("/readyz", responses=refusals({503: ("not_ready",)}))
async def readyz(request: Request) -> JSONResponse:
    """Readiness: 200 with each check's finding, or 503 `not_ready` with Retry-After and the
    reason (database unreachable, migrations behind the code, audit log lagging)."""
    state = request.app.state
    checks, problem = await check(
        state.uow_factory,
        revision=state.code_revision,
        wait_s=state.settings.db_wait_s,
        max_lag_s=state.settings.ready_max_audit_lag_s,
    )
    if problem is None:
        return JSONResponse({"status": "ready", "checks": checks})
    return JSONResponse(
        error_body("not_ready", problem, {"checks": checks}),
        status_code=503,
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)},
    )


async def check(
    uows: UnitOfWorkFactory, *, revision: str, wait_s: float, max_lag_s: float
) -> tuple[dict[str, Any], str | None]:
    """Each check's finding, and the first problem in words (None: ready)."""
    try:
        async with asyncio.timeout(wait_s), uows() as uow:
            at = await sql.scalar(uow, "SELECT version_num FROM alembic_version", {})
            oldest = await log.oldest_pending(uow)
            now = uow.now
    except Exception as error:
        reason = unavailable(error)
        if reason is None:
            raise
        logger.warning("readiness: the database is unavailable (%s)", reason)
        return {"database": "unavailable"}, "the database is unavailable"
    lag_s = 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())
    checks = {
        "database": "ok",
        "migration": at,
        "expected_migration": revision,
        "audit_lag_s": lag_s,
    }
    if at != revision:
        return checks, f"the database is at migration {at}, this code needs {revision}"
    if lag_s > max_lag_s:
        return checks, (
            f"the audit log lags {lag_s:.0f} s behind the journal (at most {max_lag_s:g} s):"
            " is its integrator running?"
        )
    return checks, None
