"""The seam through which every money movement asks permission.

The money core cannot import the policy engine (it sits below it), so each operation that moves
a player's money takes a `Guard` and calls it once its own checks have passed, after the
player's wallet is locked and right before the ledger posting. The guard gathers the facts,
asks the rules, stores the decision in the same transaction and returns its id, which the
operation writes into its journal event; or it raises `Refused`, and nothing moves. There is no
default guard: a caller that moves money must hand one over (the application's is
`compliance.gate.Gate`).
"""

import uuid
from dataclasses import dataclass
from typing import Literal, Protocol

from core.journal import EventContext
from core.money import Money
from core.uow import UnitOfWork

Action = Literal[
    "bet.place",
    "bet.settle",
    "bet.rollback",
    "adjustment.credit",
    "adjustment.debit",
    "deposit",
    "withdrawal",
    "withdrawal.release",
    "withdrawal.pay_out",
]


@dataclass(frozen=True, slots=True)
class Movement:
    action: Action
    player_id: uuid.UUID
    amount: Money  # in the wallet's currency
    destination: str | None = None  # a withdrawal's crypto address, screened against KYT


class Guard(Protocol):
    async def __call__(self, uow: UnitOfWork, movement: Movement, ctx: EventContext) -> uuid.UUID:
        """Allow, returning the id of the stored decision, or raise `core.errors.Refused`."""
        ...
