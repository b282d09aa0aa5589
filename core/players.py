"""Players as the money core sees them: an id, a wallet currency and a jurisdiction. No PII."""

import uuid
from dataclasses import dataclass

from core import journal, ledger, sql
from core.errors import InvalidRequest, NotFound
from core.journal import EventContext
from core.models import Player
from core.money import Money, check_currency
from core.uow import UnitOfWork


@dataclass(frozen=True, slots=True)
class Wallet:
    player_id: uuid.UUID
    currency: str
    cash: ledger.AccountRef
    bonus: ledger.AccountRef
    cash_balance: int
    bonus_balance: int
    # What withdrawals in progress hold: still the player's, no longer playable or withdrawable.
    held: ledger.AccountRef | None = None
    held_balance: int = 0

    @property
    def total(self) -> Money:
        return Money(self.cash_balance + self.bonus_balance, self.currency)

    def check_currency(self, amount: Money) -> None:
        """Money moves into and out of a wallet in its own currency only."""
        if amount.currency != self.currency:
            raise InvalidRequest(
                "currency_mismatch",
                f"the wallet holds {self.currency}",
                currency=amount.currency,
                wallet_currency=self.currency,
            )


async def register(
    uow: UnitOfWork,
    *,
    currency: str,
    jurisdiction: str,
    ctx: EventContext,
    player_id: uuid.UUID | None = None,
) -> uuid.UUID:
    check_currency(currency)
    if len(jurisdiction) != 2 or not jurisdiction.isalpha() or not jurisdiction.isupper():  # noqa: PLR2004
        raise InvalidRequest(
            "invalid_jurisdiction",
            "jurisdiction is an ISO 3166-1 alpha-2 code",
            jurisdiction=jurisdiction,
        )
    player_id = player_id or uuid.uuid4()
    uow.session.add(
        Player(id=player_id, currency=currency, jurisdiction=jurisdiction, created_at=uow.now)
    )
    await uow.session.flush()
    await ledger.open_player_accounts(uow, player_id=player_id, currency=currency)
    await journal.record(
        uow,
        "player.registered",
        ctx=ctx,
        player_id=player_id,
        data={"currency": currency, "jurisdiction": jurisdiction},
    )
    return player_id


async def lock_player(uow: UnitOfWork, player_id: uuid.UUID) -> None:
    """Queue behind every other unit of work on this player until commit: money movements and
    changes to what the gate reads (limits, exclusions) take it, so they happen one after the
    other, and each one's `now` is read after the wait, so their times follow the same order."""
    await sql.run(uow, "SELECT 1 FROM players WHERE id = %(id)s FOR UPDATE", {"id": player_id})
    uow.retime()


async def wallet(uow: UnitOfWork, player_id: uuid.UUID, *, lock: bool = False) -> Wallet:
    """The player's wallet with current balances.

    With `lock`, the player's row is locked first (until commit), so the balances read after it
    cannot change underneath: every money movement of a player takes this lock.
    """
    if lock:  # a separate statement: a join would read balances from before the lock wait
        await lock_player(uow, player_id)
    rows = await sql.all_rows(
        uow,
        "SELECT a.id, a.code, a.kind, a.currency, b.balance"
        " FROM accounts a JOIN balances b ON b.account_id = a.id"
        " WHERE a.player_id = %(id)s",
        {"id": player_id},
    )
    if not rows:
        raise NotFound("unknown_player", "no such player", player_id=str(player_id))
    by_kind = {row["kind"]: row for row in rows}
    cash, bonus = by_kind["player_cash"], by_kind["player_bonus"]
    currency = cash["currency"]
    held = by_kind.get("player_held")
    return Wallet(
        player_id=player_id,
        currency=currency,
        cash=ledger.AccountRef(cash["id"], cash["code"], currency, 1),
        bonus=ledger.AccountRef(bonus["id"], bonus["code"], currency, 1),
        cash_balance=cash["balance"],
        bonus_balance=bonus["balance"],
        held=ledger.AccountRef(held["id"], held["code"], currency, 1) if held else None,
        held_balance=held["balance"] if held else 0,
    )
