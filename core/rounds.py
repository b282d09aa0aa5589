"""Game rounds and bets, as a seamless-wallet provider drives them.

Every operation first locks the player's wallet, so a player's bets, wins and rollbacks are
serial and every check below is free of races. Once its own checks pass, an operation that moves
money asks its guard (core.guard) right before posting: the policy decision is taken under the
same lock, so two stakes cannot both slip under a limit. A provider's `transaction_uuid` names one
business action: the same uuid with the same content answers the first outcome again, with
different content it is refused.

Statuses: bet OPEN -> WIN | LOSE | PUSH | VOID; round OPEN -> CLOSED.
"""

import dataclasses
import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from core import fx, journal, ledger, players, sql
from core.errors import Conflict, InvalidRequest, NotFound
from core.guard import Guard, Movement
from core.journal import EventContext
from core.money import Money, convert, format_minor, split_proportionally
from core.uow import UnitOfWork
from core.wallets import insufficient_funds

BetStatus = Literal["OPEN", "WIN", "LOSE", "PUSH", "VOID"]


@dataclass(frozen=True, slots=True)
class PlaceBet:
    provider_code: str
    transaction_uuid: str
    player_id: uuid.UUID
    round_ref: str
    bet_ref: str
    game_id: str
    amount: Money


@dataclass(frozen=True, slots=True)
class SettleBet:
    provider_code: str
    transaction_uuid: str
    player_id: uuid.UUID
    round_ref: str
    bet_ref: str
    amount: Money  # the payout; zero for a lost bet
    close_round: bool = False


@dataclass(frozen=True, slots=True)
class RollbackBet:
    provider_code: str
    transaction_uuid: str
    player_id: uuid.UUID
    round_ref: str
    bet_ref: str


Command = PlaceBet | SettleBet | RollbackBet
KIND = {PlaceBet: "bet", SettleBet: "win", RollbackBet: "rollback"}


@dataclass(frozen=True, slots=True)
class Outcome:
    transaction_uuid: str
    round_ref: str
    bet_ref: str
    bet_status: BetStatus
    ledger_transaction_id: int | None
    wallet: players.Wallet
    # The rollback named a bet we never saw: nothing moved, the bet id is now refused.
    tombstone: bool = False


def content_hash(cmd: Command) -> bytes:
    fields = {k: str(v) for k, v in dataclasses.asdict(cmd).items() if k != "amount"}
    if isinstance(cmd, PlaceBet | SettleBet):
        fields["amount"] = f"{cmd.amount.minor} {cmd.amount.currency}"
    fields["kind"] = KIND[type(cmd)]
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).digest()


async def place_bet(uow: UnitOfWork, cmd: PlaceBet, ctx: EventContext, *, guard: Guard) -> Outcome:
    wallet = await players.wallet(uow, cmd.player_id, lock=True)
    found = await _lookup(uow, cmd)
    if seen := _seen_before(found, cmd, wallet):
        return seen
    if found["tombstoned"]:
        raise Conflict(
            "bet_rolled_back", "this bet was rolled back before it arrived", bet_id=cmd.bet_ref
        )
    if found["bet_id"] is not None:
        raise Conflict("bet_id_reused", "this bet id was already used", bet_id=cmd.bet_ref)
    round_id, opened = await _round_for_bet(uow, cmd, found)
    stake, conversion = await fx.to_wallet_currency(uow, cmd.amount, wallet.currency)
    if wallet.total.minor < stake.minor:
        raise insufficient_funds(wallet, stake)
    decision_id = await guard(uow, Movement("bet.place", cmd.player_id, stake), ctx)
    cash = min(wallet.cash_balance, stake.minor)
    bonus = stake.minor - cash
    revenue = await _revenue_account(uow, cmd.provider_code, wallet.currency)
    txn_id = await ledger.post(
        uow,
        kind="stake",
        legs=[
            ledger.Leg(wallet.cash, -cash),
            ledger.Leg(wallet.bonus, -bonus),
            ledger.Leg(revenue, stake.minor),
        ],
        ctx=ctx,
        player_id=cmd.player_id,
        reference=f"{cmd.provider_code}:{cmd.bet_ref}",
        fx=conversion,
        decision_id=decision_id,
    )
    bet_id = await sql.scalar(
        uow,
        "INSERT INTO bets (provider_code, bet_ref, round_id, player_id, currency, stake,"
        " stake_cash, stake_bonus, status, stake_transaction_id, placed_at) VALUES"
        " (%(provider)s, %(bet)s, %(round)s, %(player)s, %(currency)s, %(stake)s, %(cash)s,"
        " %(bonus)s, 'OPEN', %(txn)s, %(now)s) RETURNING id",
        {
            "provider": cmd.provider_code,
            "bet": cmd.bet_ref,
            "round": round_id,
            "player": cmd.player_id,
            "currency": wallet.currency,
            "stake": stake.minor,
            "cash": cash,
            "bonus": bonus,
            "txn": txn_id,
            "now": uow.now,
        },
    )
    await _remember(uow, cmd, bet_id=bet_id, ledger_transaction_id=txn_id)
    events: list[journal.Event] = []
    if opened:
        events.append(("round.opened", cmd.player_id, None, _round_data(cmd, cmd.game_id)))
    events.append(
        (
            "bet.placed",
            cmd.player_id,
            stake,
            {
                **_round_data(cmd),
                "game_id": cmd.game_id,
                "stake_cash": format_minor(cash, wallet.currency),
                "stake_bonus": format_minor(bonus, wallet.currency),
                "ledger_transaction_id": txn_id,
                "decision_id": str(decision_id),
                **_fx_data(conversion),
            },
        )
    )
    await journal.record_many(uow, events, ctx=ctx)
    after = dataclasses.replace(
        wallet, cash_balance=wallet.cash_balance - cash, bonus_balance=wallet.bonus_balance - bonus
    )
    return Outcome(cmd.transaction_uuid, cmd.round_ref, cmd.bet_ref, "OPEN", txn_id, after)


async def settle_bet(
    uow: UnitOfWork, cmd: SettleBet, ctx: EventContext, *, guard: Guard
) -> Outcome:
    wallet = await players.wallet(uow, cmd.player_id, lock=True)
    found = await _lookup(uow, cmd)
    if seen := _seen_before(found, cmd, wallet):
        return seen
    if found["bet_id"] is None:
        raise NotFound("unknown_bet", "no such bet: a win needs its bet", bet_id=cmd.bet_ref)
    _check_bet_belongs(found, cmd)
    if found["bet_status"] != "OPEN":
        raise Conflict(
            "bet_already_settled",
            f"the bet is already {found['bet_status']}",
            bet_status=found["bet_status"],
        )
    payout = _payout_in_wallet_currency(found, cmd.amount, wallet.currency)
    stake = found["stake"]
    status: BetStatus = "LOSE" if payout == 0 else "PUSH" if payout == stake else "WIN"
    settle = Movement("bet.settle", cmd.player_id, Money(payout, wallet.currency))
    decision_id = await guard(uow, settle, ctx)
    txn_id = None
    to_cash, to_bonus = split_proportionally(payout, (found["stake_cash"], found["stake_bonus"]))
    if payout:
        revenue = await _revenue_account(uow, cmd.provider_code, wallet.currency)
        txn_id = await ledger.post(
            uow,
            kind="payout",
            legs=[
                ledger.Leg(revenue, -payout),
                ledger.Leg(wallet.cash, to_cash),
                ledger.Leg(wallet.bonus, to_bonus),
            ],
            ctx=ctx,
            player_id=cmd.player_id,
            reference=f"{cmd.provider_code}:{cmd.bet_ref}",
            decision_id=decision_id,
        )
    await _finish_bet(uow, found["bet_id"], status=status, payout=payout, txn_id=txn_id)
    await _remember(uow, cmd, bet_id=found["bet_id"], ledger_transaction_id=txn_id)
    events: list[journal.Event] = [
        (
            "bet.settled",
            cmd.player_id,
            Money(payout, wallet.currency),
            {
                **_round_data(cmd),
                "status": status,
                "to_cash": format_minor(to_cash, wallet.currency),
                "to_bonus": format_minor(to_bonus, wallet.currency),
                "ledger_transaction_id": txn_id,
                "decision_id": str(decision_id),
            },
        )
    ]
    if cmd.close_round and await _close_round(uow, found["bet_round_id"]):
        events.append(("round.closed", cmd.player_id, None, _round_data(cmd)))
    await journal.record_many(uow, events, ctx=ctx)
    after = dataclasses.replace(
        wallet,
        cash_balance=wallet.cash_balance + to_cash,
        bonus_balance=wallet.bonus_balance + to_bonus,
    )
    return Outcome(cmd.transaction_uuid, cmd.round_ref, cmd.bet_ref, status, txn_id, after)


async def rollback_bet(
    uow: UnitOfWork, cmd: RollbackBet, ctx: EventContext, *, guard: Guard
) -> Outcome:
    wallet = await players.wallet(uow, cmd.player_id, lock=True)
    found = await _lookup(uow, cmd)
    if seen := _seen_before(found, cmd, wallet):
        return seen
    if found["bet_id"] is None:
        await sql.run(
            uow,
            "INSERT INTO bet_tombstones (provider_code, bet_ref, transaction_uuid, created_at)"
            " VALUES (%(provider)s, %(bet)s, %(uuid)s, %(now)s) ON CONFLICT DO NOTHING",
            {
                "provider": cmd.provider_code,
                "bet": cmd.bet_ref,
                "uuid": cmd.transaction_uuid,
                "now": uow.now,
            },
        )
        await _remember(uow, cmd, bet_id=None, ledger_transaction_id=None)
        await journal.record(
            uow, "bet.tombstoned", ctx=ctx, player_id=cmd.player_id, data=_round_data(cmd)
        )
        return Outcome(
            cmd.transaction_uuid, cmd.round_ref, cmd.bet_ref, "VOID", None, wallet, tombstone=True
        )
    _check_bet_belongs(found, cmd)
    if found["bet_status"] == "VOID":
        raise Conflict("bet_already_rolled_back", "the bet was already rolled back")
    if found["bet_status"] != "OPEN":
        raise Conflict(
            "rollback_after_settle",
            f"the bet was settled as {found['bet_status']}: it cannot be rolled back",
            bet_status=found["bet_status"],
        )
    stake, cash, bonus = found["stake"], found["stake_cash"], found["stake_bonus"]
    refund = Movement("bet.rollback", cmd.player_id, Money(stake, wallet.currency))
    decision_id = await guard(uow, refund, ctx)
    revenue = await _revenue_account(uow, cmd.provider_code, wallet.currency)
    txn_id = await ledger.post(
        uow,
        kind="rollback",
        legs=[
            ledger.Leg(revenue, -stake),
            ledger.Leg(wallet.cash, cash),
            ledger.Leg(wallet.bonus, bonus),
        ],
        ctx=ctx,
        player_id=cmd.player_id,
        reference=f"{cmd.provider_code}:{cmd.bet_ref}",
        reverses_id=found["stake_transaction_id"],
        decision_id=decision_id,
    )
    await _finish_bet(uow, found["bet_id"], status="VOID", payout=None, txn_id=txn_id)
    await _remember(uow, cmd, bet_id=found["bet_id"], ledger_transaction_id=txn_id)
    await journal.record(
        uow,
        "bet.voided",
        ctx=ctx,
        player_id=cmd.player_id,
        amount=Money(stake, wallet.currency),
        data={
            **_round_data(cmd),
            "to_cash": format_minor(cash, wallet.currency),
            "to_bonus": format_minor(bonus, wallet.currency),
            "ledger_transaction_id": txn_id,
            "decision_id": str(decision_id),
        },
    )
    after = dataclasses.replace(
        wallet, cash_balance=wallet.cash_balance + cash, bonus_balance=wallet.bonus_balance + bonus
    )
    return Outcome(cmd.transaction_uuid, cmd.round_ref, cmd.bet_ref, "VOID", txn_id, after)


# Everything a wallet action must check, in one round trip: an earlier action with this
# transaction_uuid, a tombstone for the bet id, the bet (with its round and stake transaction),
# and the round named by the request.
_LOOKUP = """
SELECT seen.content_hash AS seen_hash, seen.ledger_transaction_id AS seen_txn,
       seen.bet_id AS seen_bet_id, seen_bet.status AS seen_bet_status,
       tomb.bet_ref IS NOT NULL AS tombstoned,
       bet.id AS bet_id, bet.player_id AS bet_player_id, bet.status AS bet_status, bet.stake,
       bet.stake_cash, bet.stake_bonus, bet.round_id AS bet_round_id, bet.stake_transaction_id,
       bet_round.round_ref AS bet_round_ref, stake_txn.fx_rate, stake_txn.original_currency,
       rnd.id AS round_id, rnd.player_id AS round_player_id, rnd.game_id AS round_game_id,
       rnd.status AS round_status
FROM (VALUES (1)) AS one (x)
LEFT JOIN wallet_transactions seen
       ON seen.provider_code = %(provider)s AND seen.transaction_uuid = %(uuid)s
LEFT JOIN bets seen_bet ON seen_bet.id = seen.bet_id
LEFT JOIN bet_tombstones tomb ON tomb.provider_code = %(provider)s AND tomb.bet_ref = %(bet)s
LEFT JOIN bets bet ON bet.provider_code = %(provider)s AND bet.bet_ref = %(bet)s
LEFT JOIN rounds bet_round ON bet_round.id = bet.round_id
LEFT JOIN ledger_transactions stake_txn ON stake_txn.id = bet.stake_transaction_id
LEFT JOIN rounds rnd ON rnd.provider_code = %(provider)s AND rnd.round_ref = %(round)s
"""


async def _lookup(uow: UnitOfWork, cmd: Command) -> dict[str, Any]:
    found = await sql.one(
        uow,
        _LOOKUP,
        {
            "provider": cmd.provider_code,
            "uuid": cmd.transaction_uuid,
            "bet": cmd.bet_ref,
            "round": cmd.round_ref,
        },
    )
    assert found is not None  # noqa: S101 - the query always yields one row
    return found


def _seen_before(found: dict[str, Any], cmd: Command, wallet: players.Wallet) -> Outcome | None:
    """The earlier outcome of this transaction_uuid, or None if it is new."""
    if found["seen_hash"] is None:
        return None
    if bytes(found["seen_hash"]) != content_hash(cmd):
        raise Conflict(
            "transaction_uuid_reused",
            "this transaction_uuid was used for a different action",
            transaction_uuid=cmd.transaction_uuid,
        )
    tombstone = found["seen_bet_id"] is None
    status: BetStatus = "VOID" if tombstone else found["seen_bet_status"]
    return Outcome(
        cmd.transaction_uuid,
        cmd.round_ref,
        cmd.bet_ref,
        status,
        found["seen_txn"],
        wallet,
        tombstone=tombstone,
    )


async def _remember(
    uow: UnitOfWork, cmd: Command, *, bet_id: int | None, ledger_transaction_id: int | None
) -> None:
    await sql.run(
        uow,
        "INSERT INTO wallet_transactions (provider_code, transaction_uuid, kind, content_hash,"
        " player_id, bet_id, ledger_transaction_id, created_at) VALUES (%(provider)s, %(uuid)s,"
        " %(kind)s, %(hash)s, %(player)s, %(bet)s, %(txn)s, %(now)s)",
        {
            "provider": cmd.provider_code,
            "uuid": cmd.transaction_uuid,
            "kind": KIND[type(cmd)],
            "hash": content_hash(cmd),
            "player": cmd.player_id,
            "bet": bet_id,
            "txn": ledger_transaction_id,
            "now": uow.now,
        },
    )


def _check_bet_belongs(found: dict[str, Any], cmd: SettleBet | RollbackBet) -> None:
    if found["bet_player_id"] != cmd.player_id or found["bet_round_ref"] != cmd.round_ref:
        raise Conflict(
            "bet_mismatch", "the bet belongs to another player or round", bet_id=cmd.bet_ref
        )


async def _round_for_bet(uow: UnitOfWork, cmd: PlaceBet, found: dict[str, Any]) -> tuple[int, bool]:
    """The open round this bet joins (opened now if new) and whether it was just opened."""
    if found["round_id"] is None:
        round_id: int = await sql.scalar(
            uow,
            "INSERT INTO rounds (provider_code, round_ref, player_id, game_id, status, opened_at)"
            " VALUES (%(provider)s, %(round)s, %(player)s, %(game)s, 'OPEN', %(now)s)"
            " RETURNING id",
            {
                "provider": cmd.provider_code,
                "round": cmd.round_ref,
                "player": cmd.player_id,
                "game": cmd.game_id,
                "now": uow.now,
            },
        )
        return round_id, True
    if found["round_player_id"] != cmd.player_id or found["round_game_id"] != cmd.game_id:
        raise Conflict(
            "round_mismatch", "the round belongs to another player or game", round_id=cmd.round_ref
        )
    if found["round_status"] != "OPEN":
        raise Conflict("round_closed", "the round is closed: no more bets", round_id=cmd.round_ref)
    return found["round_id"], False


async def _close_round(uow: UnitOfWork, round_id: int) -> bool:
    closed = await sql.run(
        uow,
        "UPDATE rounds SET status = 'CLOSED', closed_at = %(now)s"
        " WHERE id = %(id)s AND status = 'OPEN'",
        {"id": round_id, "now": uow.now},
    )
    return closed > 0


async def _finish_bet(
    uow: UnitOfWork, bet_id: int, *, status: BetStatus, payout: int | None, txn_id: int | None
) -> None:
    await sql.run(
        uow,
        "UPDATE bets SET status = %(status)s, payout = %(payout)s,"
        " settle_transaction_id = %(txn)s, settled_at = %(now)s WHERE id = %(id)s",
        {"id": bet_id, "status": status, "payout": payout, "txn": txn_id, "now": uow.now},
    )


def _payout_in_wallet_currency(found: dict[str, Any], amount: Money, wallet_currency: str) -> int:
    """A win is paid in the currency of its stake, converted at the stake's own fixed rate."""
    stake_currency = found["original_currency"] or wallet_currency
    if amount.currency != stake_currency:
        raise InvalidRequest(
            "currency_mismatch",
            f"the bet was placed in {stake_currency}",
            currency=amount.currency,
            bet_currency=stake_currency,
        )
    if found["fx_rate"] is None:
        return amount.minor
    return convert(amount, rate=found["fx_rate"], to_currency=wallet_currency).minor


async def _revenue_account(uow: UnitOfWork, provider_code: str, currency: str) -> ledger.AccountRef:
    return await ledger.house_account(
        uow, kind="game_revenue", currency=currency, provider_code=provider_code
    )


def _round_data(cmd: Command, game_id: str | None = None) -> dict[str, object]:
    data: dict[str, object] = {
        "provider": cmd.provider_code,
        "round_id": cmd.round_ref,
        "bet_id": cmd.bet_ref,
        "transaction_uuid": cmd.transaction_uuid,
    }
    if game_id:
        data["game_id"] = game_id
    return data


def _fx_data(conversion: ledger.FxApplied | None) -> dict[str, object]:
    if conversion is None:
        return {}
    return {
        "fx_rate": str(conversion.rate),
        "fx_source": conversion.source,
        "fx_as_of": journal.rfc3339(conversion.as_of),
        "original_amount": conversion.original.decimal_string,
        "original_currency": conversion.original.currency,
    }
