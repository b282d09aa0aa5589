"""Database errors at the edge: a lost race for a unique business id is a 409 to retry; a CHECK
or trigger refusing a write is a bug, logged with its stack and answered as a plain 500."""

import logging
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import Request
from fastapi.responses import JSONResponse
from psycopg.errors import CheckViolation, UniqueViolation
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException

from app import errors
from compliance.gate import Gate
from core import sql
from core.guard import Movement
from core.journal import EventContext
from core.uow import UnitOfWork, UnitOfWorkFactory
from tests import factories
from tests.conftest import Api

INTERNAL = {
    "error": {"code": "internal_error", "message": "an internal error occurred", "details": {}}
}
CONFLICT = {
    "error": {
        "code": "concurrent_conflict",
        "message": "a concurrent request changed the same records; retry",
        "details": {},
    }
}

REQUEST = Request({"type": "http", "method": "POST", "path": "/", "headers": []})


class TwinCommittedFirst:
    """The real gate, after which the twin request (same transaction_uuid) records its bet:
    what a concurrent duplicate that committed between our lookup and our insert leaves."""

    def __init__(self, gate: Gate, provider_code: str, bet: dict[str, Any]) -> None:
        self.gate, self.provider_code, self.bet = gate, provider_code, bet

    async def __call__(self, uow: UnitOfWork, movement: Movement, ctx: EventContext) -> uuid.UUID:
        decision_id = await self.gate(uow, movement, ctx)
        await sql.run(
            uow,
            "INSERT INTO wallet_transactions (provider_code, transaction_uuid, kind, content_hash,"
            " player_id, created_at) VALUES (%(provider)s, %(uuid)s, 'bet', '\\x00', %(p)s, now())",
            {
                "provider": self.provider_code,
                "uuid": self.bet["transaction_uuid"],
                "p": movement.player_id,
            },
        )
        return decision_id


class ForgetsToRecord:
    """A guard with a bug: it allows without storing the decision it names."""

    async def __call__(self, uow: UnitOfWork, movement: Movement, ctx: EventContext) -> uuid.UUID:
        del uow, movement, ctx
        return uuid.uuid4()


async def test_a_lost_race_for_a_business_id_is_a_conflict_to_retry(
    api: Api, uows: UnitOfWorkFactory
) -> None:
    player_id = await factories.committed_player(uows, cash="20.00")
    bet = factories.bet_body(player_id, "10.00")
    real_gate = api.app.state.gate
    api.app.state.gate = TwinCommittedFirst(real_gate, api.provider_code, bet)
    lost = await api.provider.post("/v1/wallet/bet", bet, idempotency_key="raced")
    assert (lost.status_code, lost.json()) == (409, CONFLICT)
    api.app.state.gate = real_gate
    assert await factories.balance(api, player_id) == "20.00"
    retried = await api.provider.post("/v1/wallet/bet", bet, idempotency_key="raced")
    assert retried.status_code == 200, retried.text  # the key was not spent on the conflict
    assert await factories.balance(api, player_id) == "10.00"


async def test_a_trigger_refusing_a_write_is_a_logged_internal_error(
    api: Api, uows: UnitOfWorkFactory, caplog: pytest.LogCaptureFixture
) -> None:
    player_id = await factories.committed_player(uows, cash="20.00")
    api.app.state.gate = ForgetsToRecord()
    with caplog.at_level(logging.ERROR, logger="app.errors"):
        response = await api.provider.post("/v1/wallet/bet", factories.bet_body(player_id))
    assert (response.status_code, response.json()) == (500, INTERNAL)
    [logged] = [r for r in caplog.records if r.name == "app.errors"]
    assert logged.levelno == logging.ERROR
    assert logged.exc_info is not None
    assert isinstance(logged.exc_info[1], CheckViolation)
    assert "needs a decision that allowed it" in str(logged.exc_info[1])
    assert "needs a decision" not in response.text  # never the database's words to the caller
    assert await factories.balance(api, player_id) == "20.00"


async def test_the_same_errors_wrapped_by_sqlalchemy_map_the_same_way(
    uows: UnitOfWorkFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """The ORM path wraps the driver's error; its `.orig` decides."""
    caught: list[IntegrityError] = []
    record = (
        "INSERT INTO idempotency_records (client_id, key, request_hash, created_at)"
        " VALUES ('mapping-test', 'k', '\\x00', now())"
    )
    statements = (
        (  # a CHECK: base <> quote
            "INSERT INTO fx_rates (base, quote, rate, source, as_of, recorded_by, recorded_at)"
            " VALUES ('EUR', 'EUR', 1, 'test', now(), 'test', now())"
        ),
        record,  # a second time: the unique (client, key)
    )
    async with uows() as uow:
        await uow.session.execute(sa.text(record))
        for statement in statements:
            with pytest.raises(IntegrityError) as raised:
                async with uow.session.begin_nested():
                    await uow.session.execute(sa.text(statement))
            caught.append(raised.value)
    check, unique = caught
    assert isinstance(check.orig, CheckViolation)
    assert isinstance(unique.orig, UniqueViolation)

    with caplog.at_level(logging.ERROR, logger="app.errors"):
        bug = await errors._database(REQUEST, check)
        race = await errors._database(REQUEST, unique)
    assert (bug.status_code, bytes(bug.body)) == (500, JSONResponse(INTERNAL).body)
    assert (race.status_code, bytes(race.body)) == (409, JSONResponse(CONFLICT).body)
    assert [r.exc_info[1] for r in caplog.records if r.exc_info] == [check]


async def test_an_http_refusal_without_a_documented_code_is_a_logged_internal_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every code the API answers is in README's table: a status the HTTP layer's table lacks
    is a bug (logged, 500), never an undocumented code."""
    teapot = HTTPException(418, "I'm a teapot")
    with caplog.at_level(logging.ERROR, logger="app.errors"):
        answer = await errors._http(REQUEST, teapot)
    assert (answer.status_code, bytes(answer.body)) == (500, JSONResponse(INTERNAL).body)
    assert [r.exc_info[1] for r in caplog.records if r.exc_info] == [teapot]
