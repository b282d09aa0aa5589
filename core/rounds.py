"""Game rounds and bets, as a seamless-wallet provider drives them.

Every operation first locks the player's wallet, so a player's bets, wins and rollbacks are
serial and every check below is free of races. A provider's `transaction_uuid` names one
business action: the same uuid with the same content answers the first outcome again, with
different content it is refused.

Statuses: bet OPEN -> WIN | LOSE | PUSH | VOID; round OPEN -> CLOSED.
"""

import dataclasses
import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from core import fx, journal, ledger, players
from core.errors import Conflict, InvalidRequest, NotFound
from core.journal import EventContext
from core.models import Bet, BetTombstone, LedgerTransaction, Round, WalletTransaction
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


async def place_bet(uow: UnitOfWork, cmd: PlaceBet, ctx: EventContext) -> Outcome:
    wallet = await players.wallet(uow, cmd.player_id, lock=True)
    if seen := await _seen_before(uow, cmd, wallet):
        return seen
    if await uow.session.get(BetTombstone, (cmd.provider_code, cmd.bet_ref)):
        raise Conflict(
            "bet_rolled_back", "this bet was rolled back before it arrived", bet_id=cmd.bet_ref
        )
    if await _bet(uow, cmd.provider_code, cmd.bet_ref):
        raise Conflict("bet_id_reused", "this bet id was already used", bet_id=cmd.bet_ref)
    round_id, opened = await _round_for_bet(uow, cmd)
    stake, conversion = await fx.to_wallet_currency(uow, cmd.amount, wallet.currency)
    if wallet.total.minor < stake.minor:
        raise insufficient_funds(wallet, stake)
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
        player_id=cmd.player_id,
        reference=f"{cmd.provider_code}:{cmd.bet_ref}",
        fx=conversion,
    )
    bet_id = await uow.session.scalar(
        sa.insert(Bet)
        .values(
            provider_code=cmd.provider_code,
            bet_ref=cmd.bet_ref,
            round_id=round_id,
            player_id=cmd.player_id,
            currency=wallet.currency,
            stake=stake.minor,
            stake_cash=cash,
            stake_bonus=bonus,
            status="OPEN",
            stake_transaction_id=txn_id,
            placed_at=uow.now,
        )
        .returning(Bet.id)
    )
    await _remember(uow, cmd, bet_id=bet_id, ledger_transaction_id=txn_id)
    events: list[tuple[str, uuid.UUID | None, Money | None, dict[str, object]]] = []
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
                **_fx_data(conversion),
            },
        )
    )
    await journal.record_many(uow, events, ctx=ctx)
    after = dataclasses.replace(
        wallet, cash_balance=wallet.cash_balance - cash, bonus_balance=wallet.bonus_balance - bonus
    )
    return Outcome(cmd.transaction_uuid, cmd.round_ref, cmd.bet_ref, "OPEN", txn_id, after)


async def settle_bet(uow: UnitOfWork, cmd: SettleBet, ctx: EventContext) -> Outcome:
    wallet = await players.wallet(uow, cmd.player_id, lock=True)
    if seen := await _seen_before(uow, cmd, wallet):
        return seen
    bet = await _bet(uow, cmd.provider_code, cmd.bet_ref)
    if bet is None:
        raise NotFound("unknown_bet", "no such bet: a win needs its bet", bet_id=cmd.bet_ref)
    await _check_bet_belongs(uow, bet, cmd)
    if bet.status != "OPEN":
        raise Conflict(
            "bet_already_settled", f"the bet is already {bet.status}", bet_status=bet.status
        )
    payout = await _payout_in_wallet_currency(uow, bet, cmd.amount)
    status: BetStatus = "LOSE" if payout == 0 else "PUSH" if payout == bet.stake else "WIN"
    txn_id = None
    to_cash, to_bonus = split_proportionally(payout, (bet.stake_cash, bet.stake_bonus))
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
            player_id=cmd.player_id,
            reference=f"{cmd.provider_code}:{cmd.bet_ref}",
        )
    await _finish_bet(uow, bet.id, status=status, payout=payout, txn_id=txn_id)
    await _remember(uow, cmd, bet_id=bet.id, ledger_transaction_id=txn_id)
    events: list[tuple[str, uuid.UUID | None, Money | None, dict[str, object]]] = [
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
            },
        )
    ]
    if cmd.close_round and await _close_round(uow, bet.round_id):
        events.append(("round.closed", cmd.player_id, None, _round_data(cmd)))
    await journal.record_many(uow, events, ctx=ctx)
    after = dataclasses.replace(
        wallet,
        cash_balance=wallet.cash_balance + to_cash,
        bonus_balance=wallet.bonus_balance + to_bonus,
    )
    return Outcome(cmd.transaction_uuid, cmd.round_ref, cmd.bet_ref, status, txn_id, after)


async def rollback_bet(uow: UnitOfWork, cmd: RollbackBet, ctx: EventContext) -> Outcome:
    wallet = await players.wallet(uow, cmd.player_id, lock=True)
    if seen := await _seen_before(uow, cmd, wallet):
        return seen
    bet = await _bet(uow, cmd.provider_code, cmd.bet_ref)
    if bet is None:
        await uow.session.execute(
            pg_insert(BetTombstone)
            .values(
                provider_code=cmd.provider_code,
                bet_ref=cmd.bet_ref,
                transaction_uuid=cmd.transaction_uuid,
                created_at=uow.now,
            )
            .on_conflict_do_nothing()
        )
        await _remember(uow, cmd, bet_id=None, ledger_transaction_id=None)
        await journal.record(
            uow, "bet.tombstoned", ctx=ctx, player_id=cmd.player_id, data=_round_data(cmd)
        )
        return Outcome(
            cmd.transaction_uuid, cmd.round_ref, cmd.bet_ref, "VOID", None, wallet, tombstone=True
        )
    await _check_bet_belongs(uow, bet, cmd)
    if bet.status == "VOID":
        raise Conflict("bet_already_rolled_back", "the bet was already rolled back")
    if bet.status != "OPEN":
        raise Conflict(
            "rollback_after_settle",
            f"the bet was settled as {bet.status}: it cannot be rolled back",
            bet_status=bet.status,
        )
    revenue = await _revenue_account(uow, cmd.provider_code, wallet.currency)
    txn_id = await ledger.post(
        uow,
        kind="rollback",
        legs=[
            ledger.Leg(revenue, -bet.stake),
            ledger.Leg(wallet.cash, bet.stake_cash),
            ledger.Leg(wallet.bonus, bet.stake_bonus),
        ],
        player_id=cmd.player_id,
        reference=f"{cmd.provider_code}:{cmd.bet_ref}",
        reverses_id=bet.stake_transaction_id,
    )
    await _finish_bet(uow, bet.id, status="VOID", payout=None, txn_id=txn_id)
    await _remember(uow, cmd, bet_id=bet.id, ledger_transaction_id=txn_id)
    await journal.record(
        uow,
        "bet.voided",
        ctx=ctx,
        player_id=cmd.player_id,
        amount=Money(bet.stake, wallet.currency),
        data={
            **_round_data(cmd),
            "to_cash": format_minor(bet.stake_cash, wallet.currency),
            "to_bonus": format_minor(bet.stake_bonus, wallet.currency),
            "ledger_transaction_id": txn_id,
        },
    )
    after = dataclasses.replace(
        wallet,
        cash_balance=wallet.cash_balance + bet.stake_cash,
        bonus_balance=wallet.bonus_balance + bet.stake_bonus,
    )
    return Outcome(cmd.transaction_uuid, cmd.round_ref, cmd.bet_ref, "VOID", txn_id, after)


async def _seen_before(uow: UnitOfWork, cmd: Command, wallet: players.Wallet) -> Outcome | None:
    """The earlier outcome of this transaction_uuid, or None if it is new."""
    seen = await uow.session.get(WalletTransaction, (cmd.provider_code, cmd.transaction_uuid))
    if seen is None:
        return None
    if seen.content_hash != content_hash(cmd):
        raise Conflict(
            "transaction_uuid_reused",
            "this transaction_uuid was used for a different action",
            transaction_uuid=cmd.transaction_uuid,
        )
    status: BetStatus = "VOID"
    if seen.bet_id is not None:
        status = await uow.session.scalar(sa.select(Bet.status).where(Bet.id == seen.bet_id))
    return Outcome(
        cmd.transaction_uuid,
        cmd.round_ref,
        cmd.bet_ref,
        status,
        seen.ledger_transaction_id,
        wallet,
        tombstone=seen.bet_id is None,
    )


async def _remember(
    uow: UnitOfWork, cmd: Command, *, bet_id: int | None, ledger_transaction_id: int | None
) -> None:
    await uow.session.execute(
        sa.insert(WalletTransaction).values(
            provider_code=cmd.provider_code,
            transaction_uuid=cmd.transaction_uuid,
            kind=KIND[type(cmd)],
            content_hash=content_hash(cmd),
            player_id=cmd.player_id,
            bet_id=bet_id,
            ledger_transaction_id=ledger_transaction_id,
            created_at=uow.now,
        )
    )


async def _bet(uow: UnitOfWork, provider_code: str, bet_ref: str) -> Bet | None:
    return await uow.session.scalar(
        sa.select(Bet).where(Bet.provider_code == provider_code, Bet.bet_ref == bet_ref)
    )


async def _check_bet_belongs(uow: UnitOfWork, bet: Bet, cmd: SettleBet | RollbackBet) -> None:
    round_ref = await uow.session.scalar(sa.select(Round.round_ref).where(Round.id == bet.round_id))
    if bet.player_id != cmd.player_id or round_ref != cmd.round_ref:
        raise Conflict(
            "bet_mismatch", "the bet belongs to another player or round", bet_id=cmd.bet_ref
        )


async def _round_for_bet(uow: UnitOfWork, cmd: PlaceBet) -> tuple[int, bool]:
    """The open round this bet joins (opened now if new) and whether it was just opened."""
    found = await uow.session.scalar(
        sa.select(Round).where(
            Round.provider_code == cmd.provider_code, Round.round_ref == cmd.round_ref
        )
    )
    if found is None:
        round_id = await uow.session.scalar(
            sa.insert(Round)
            .values(
                provider_code=cmd.provider_code,
                round_ref=cmd.round_ref,
                player_id=cmd.player_id,
                game_id=cmd.game_id,
                status="OPEN",
                opened_at=uow.now,
            )
            .returning(Round.id)
        )
        assert round_id is not None  # noqa: S101 - RETURNING always yields the id
        return round_id, True
    if found.player_id != cmd.player_id or found.game_id != cmd.game_id:
        raise Conflict(
            "round_mismatch", "the round belongs to another player or game", round_id=cmd.round_ref
        )
    if found.status != "OPEN":
        raise Conflict("round_closed", "the round is closed: no more bets", round_id=cmd.round_ref)
    return found.id, False


async def _close_round(uow: UnitOfWork, round_id: int) -> bool:
    result = await uow.session.execute(
        sa.update(Round)
        .where(Round.id == round_id, Round.status == "OPEN")
        .values(status="CLOSED", closed_at=uow.now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def _finish_bet(
    uow: UnitOfWork, bet_id: int, *, status: BetStatus, payout: int | None, txn_id: int | None
) -> None:
    await uow.session.execute(
        sa.update(Bet)
        .where(Bet.id == bet_id)
        .values(status=status, payout=payout, settle_transaction_id=txn_id, settled_at=uow.now)
    )


async def _payout_in_wallet_currency(uow: UnitOfWork, bet: Bet, amount: Money) -> int:
    """A win is paid in the currency of its stake, converted at the stake's own fixed rate."""
    stake_txn = await uow.session.get(LedgerTransaction, bet.stake_transaction_id)
    assert stake_txn is not None  # noqa: S101 - foreign key
    stake_currency = stake_txn.original_currency or bet.currency
    if amount.currency != stake_currency:
        raise InvalidRequest(
            "currency_mismatch",
            f"the bet was placed in {stake_currency}",
            currency=amount.currency,
            bet_currency=stake_currency,
        )
    if stake_txn.fx_rate is None:
        return amount.minor
    return convert(amount, rate=stake_txn.fx_rate, to_currency=bet.currency).minor


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
