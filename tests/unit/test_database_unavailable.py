"""Which database errors are an outage (503, retry) and which are a bug or a race (not)."""

import psycopg
import pytest
from psycopg import errors
from sqlalchemy import exc as sa_exc

from core.database import unavailable


@pytest.mark.parametrize(
    "error",
    [
        errors.AdminShutdown("terminating connection due to administrator command"),
        errors.CrashShutdown("terminating connection because of crash of another server process"),
        errors.CannotConnectNow("the database system is starting up"),
        errors.CannotConnectNow("the database system is in recovery mode"),
        errors.ReadOnlySqlTransaction("cannot execute INSERT in a read-only transaction"),
        errors.TooManyConnections("sorry, too many clients already"),
        errors.ConnectionFailure("connection failure"),
        psycopg.OperationalError("connection failed: No such file or directory"),
        psycopg.InterfaceError("the connection is closed"),
        sa_exc.TimeoutError("QueuePool limit of size 1 overflow 1 reached"),
        ConnectionResetError("reset by peer"),
        TimeoutError(),
    ],
)
def test_an_outage_is_named(error: BaseException) -> None:
    assert unavailable(error)


@pytest.mark.parametrize(
    "error",
    [
        errors.UniqueViolation("duplicate key"),
        errors.CheckViolation("balance below zero"),
        errors.RaiseException("ledger transaction does not balance"),
        errors.QueryCanceled("canceling statement due to statement timeout"),
        errors.DeadlockDetected("deadlock detected"),
        ValueError("not a database error"),
    ],
)
def test_anything_else_is_not_an_outage(error: BaseException) -> None:
    assert unavailable(error) is None


def test_sqlalchemy_wrappers_are_seen_through() -> None:
    lost = sa_exc.OperationalError("SELECT 1", {}, errors.AdminShutdown("terminating"))
    assert unavailable(lost) == "terminating"
    refused = sa_exc.IntegrityError("INSERT", {}, errors.UniqueViolation("duplicate key"))
    assert unavailable(refused) is None
    invalidated = sa_exc.DBAPIError("SELECT 1", {}, ValueError("x"), connection_invalidated=True)
    assert unavailable(invalidated) == "the connection to the database was lost"
