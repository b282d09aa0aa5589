"""Factories that flush through the services, never commit on their own."""

import uuid
from typing import Any

from core import players, wallets
from core.money import parse_amount
from core.uow import UnitOfWork, UnitOfWorkFactory
from tests.conftest import CTX, GATE, Api


async def player(
    uow: UnitOfWork,
    *,
    cash: str = "0",
    bonus: str = "0",
    currency: str = "EUR",
    jurisdiction: str = "MT",
) -> uuid.UUID:
    player_id = await players.register(uow, currency=currency, jurisdiction=jurisdiction, ctx=CTX)
    for source, amount in (("cash", cash), ("bonus", bonus)):
        if parse_amount(amount, currency, allow_zero=True).minor:
            await wallets.adjust(
                uow,
                player_id=player_id,
                amount=parse_amount(amount, currency),
                source=source,  # type: ignore[arg-type]
                direction="credit",
                operator="factory",
                reason="test funds",
                ctx=CTX,
                guard=GATE,
            )
    return player_id


def bet_body(
    player_id: uuid.UUID, amount: str = "10.00", currency: str = "EUR", **overrides: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "request_uuid": str(uuid.uuid4()),
        "transaction_uuid": str(uuid.uuid4()),
        "player_id": str(player_id),
        "round_id": f"r-{uuid.uuid4().hex[:12]}",
        "bet_id": f"b-{uuid.uuid4().hex[:12]}",
        "game_id": "starburst",
        "amount": amount,
        "currency": currency,
    }
    return body | overrides


def win_body(bet: dict[str, Any], amount: str, **overrides: Any) -> dict[str, Any]:
    body = {
        "request_uuid": str(uuid.uuid4()),
        "transaction_uuid": str(uuid.uuid4()),
        "player_id": bet["player_id"],
        "round_id": bet["round_id"],
        "bet_id": bet["bet_id"],
        "amount": amount,
        "currency": bet["currency"],
    }
    return body | overrides


def rollback_body(bet: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    body = {
        "request_uuid": str(uuid.uuid4()),
        "transaction_uuid": str(uuid.uuid4()),
        "player_id": bet["player_id"],
        "round_id": bet["round_id"],
        "bet_id": bet["bet_id"],
    }
    return body | overrides


async def committed_player(
    uows: UnitOfWorkFactory,
    *,
    cash: str = "0",
    bonus: str = "0",
    currency: str = "EUR",
    jurisdiction: str = "MT",
) -> uuid.UUID:
    """A player funded in a unit of work of its own (committed, or savepoint-released)."""
    async with uows() as uow:
        player_id = await player(
            uow, cash=cash, bonus=bonus, currency=currency, jurisdiction=jurisdiction
        )
        await uow.commit()
    return player_id


async def wallet(api: Api, player_id: uuid.UUID) -> dict[str, Any]:
    """The wallet as the provider sees it through POST /v1/wallet/balance."""
    response = await api.provider.post(
        "/v1/wallet/balance", {"request_uuid": str(uuid.uuid4()), "player_id": str(player_id)}
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


async def balance(api: Api, player_id: uuid.UUID) -> str:
    return str((await wallet(api, player_id))["balance"])


POLICY_PERIODS = ("24h", "7d", "30d")


def policy_facts(**changes: object) -> dict[str, object]:
    """The facts of an adult, verified player in good standing, with no limits, staking and
    depositing 100 minor units: what each policy test then changes one thing of."""
    facts: dict[str, object] = {
        "age_years": 30,
        "jurisdiction_blocked": False,
        "self_excluded": False,
        "timed_out": False,
        "kyc_verified": True,
        "due_diligence_reached": False,
        "aml_hold": False,
        "zone_off": False,
        "stake_minor": 100,
        "deposit_minor": 100,
    }
    for kind in ("wager", "loss", "deposit"):
        for period in POLICY_PERIODS:
            facts[f"{kind}_{period}_minor"] = 0
            facts[f"{kind}_limit_{period}_minor"] = -1
    return facts | changes
