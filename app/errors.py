"""Every error leaves the API as {"error": {"code", "message", "details"}}: never a stack trace."""

import logging
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException

from core.database import unavailable
from core.errors import (
    Conflict,
    DomainError,
    Gone,
    InvalidRequest,
    NotFound,
    Refused,
    Unavailable,
)

log = logging.getLogger(__name__)


class Unauthorized(DomainError):
    """Missing or bad credentials (401). A bearer-token refusal sets `challenge`, sent as the
    WWW-Authenticate header (RFC 6750); signed requests have no such scheme to name."""

    challenge: str | None = None


class Forbidden(DomainError):
    """Authenticated, but this client may not call this endpoint (403)."""


class BadRequest(DomainError):
    """The request itself is malformed: headers, JSON syntax (400)."""


STATUS = {
    BadRequest: 400,
    Unauthorized: 401,
    Forbidden: 403,
    Refused: 403,
    Gone: 410,
    NotFound: 404,
    Conflict: 409,
    InvalidRequest: 422,
    Unavailable: 503,
}


def status_of(error: DomainError | type[DomainError]) -> int:
    """The status of an error, or of every error of a class (the error table's test asks)."""
    kind = error if isinstance(error, type) else type(error)
    return next((code for cls, code in STATUS.items() if issubclass(kind, cls)), 400)


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


# A kill-switch is lifted by a person, not by a timer: 30 s is a polite polling interval.
RETRY_AFTER_S = 30


def domain_error_response(error: DomainError) -> JSONResponse:
    headers = {}
    if isinstance(error, Unauthorized) and error.challenge:
        headers["WWW-Authenticate"] = error.challenge
    if error.transient:  # it may lift: the same request may be sent again
        headers["Retry-After"] = str(RETRY_AFTER_S)
    return JSONResponse(
        error_body(error.code, error.message, error.details),
        status_code=status_of(error),
        headers=headers or None,
    )


async def _domain(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)  # noqa: S101 - registered for DomainError only
    return domain_error_response(exc)


async def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # noqa: S101
    problems = [
        {"field": ".".join(str(p) for p in e["loc"][1:]), "type": e["type"], "message": e["msg"]}
        for e in exc.errors()
    ]
    if any(p["type"] == "json_invalid" for p in problems):
        return JSONResponse(
            error_body("malformed_json", "the body is not valid JSON"), status_code=400
        )
    return JSONResponse(
        error_body(
            "invalid_request", "the request does not match the schema", {"problems": problems}
        ),
        status_code=422,
    )


# The refusals of the HTTP layer: routing (404, 405), FastAPI's body parsing (400: it raises one
# for anything `json.loads` fails with other than a syntax error) and app.main.BodyLimit (413).
HTTP_CODES = {
    400: "malformed_json",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
}


def _unreadable(exc: HTTPException) -> str:
    """Why FastAPI could not parse the body, in words (it says only that it could not)."""
    if isinstance(exc.__cause__, UnicodeDecodeError):
        return "the body is not UTF-8 JSON"
    if isinstance(exc.__cause__, RecursionError):
        return "the body's JSON is nested too deeply"
    return "the body is not valid JSON"


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)  # noqa: S101
    code = HTTP_CODES.get(exc.status_code)
    if code is None:  # a refusal nobody documented: a bug, answered and logged as one
        return await _unexpected(request, exc)
    message = _unreadable(exc) if exc.status_code == 400 else str(exc.detail)  # noqa: PLR2004
    return JSONResponse(error_body(code, message), status_code=exc.status_code, headers=exc.headers)


# What two requests racing for the same rows produce; the loser may simply retry.
_RACES = (
    psycopg.errors.UniqueViolation,
    psycopg.errors.DeadlockDetected,
    psycopg.errors.SerializationFailure,
)


def _cause(exc: Exception) -> BaseException:
    """The driver's error: SQLAlchemy wraps it (`.orig`), the hot path's plain SQL does not."""
    return exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc


# A database restart takes a second or two: a caller that waits this long usually succeeds.
DATABASE_RETRY_AFTER_S = 2


def database_unavailable(request: Request, reason: str) -> JSONResponse:
    """503 for an outage (app/outage.py): the transaction went with the connection, so the
    same request under the same Idempotency-Key acts once when it is sent again."""
    watch = getattr(request.app.state, "database_watch", None)
    if watch is not None:
        watch.went_away(reason)
    return JSONResponse(
        error_body(  # the reason (a socket path, a host) is the log's, not the caller's
            "database_unavailable",
            "the database cannot be reached right now; nothing was done: send the same request"
            " again",
        ),
        status_code=503,
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)},
    )


async def _database(request: Request, exc: Exception) -> JSONResponse:
    if reason := unavailable(exc):
        return database_unavailable(request, reason)
    if not isinstance(_cause(exc), _RACES):
        # A CHECK, a trigger or a foreign key refused a write the code let through: a bug.
        return await _unexpected(request, exc)
    log.info("concurrent conflict: %s", exc)
    return JSONResponse(
        error_body("concurrent_conflict", "a concurrent request changed the same records; retry"),
        status_code=409,
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    if reason := unavailable(exc):  # e.g. no pooled connection free in time
        return database_unavailable(request, reason)
    log.error("unhandled error", exc_info=exc)
    return JSONResponse(error_body("internal_error", "an internal error occurred"), status_code=500)


def install(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _domain)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(DBAPIError, _database)
    # The hot path speaks psycopg directly (core/sql.py): its errors arrive unwrapped.
    app.add_exception_handler(psycopg.Error, _database)
    # No pooled connection free within PITWARDEN_DB_WAIT_S (not a DBAPIError). Handled here, not
    # by the catch-all below, whose errors Starlette re-raises to the server to log as crashes.
    app.add_exception_handler(sa_exc.TimeoutError, _database)
    app.add_exception_handler(Exception, _unexpected)
