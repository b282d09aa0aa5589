"""The books as they stood at instant T, rebuilt from the signed log alone.

Take the last checkpoint published at or before T, check its signature and that the stored
entries rebuild its root, then add up the postings of every `ledger.posted` event in that prefix
dated at or before T. The result is set beside the ledger's own balance-at-T: they agree unless
a posting dated at or before T reached the log only after that checkpoint (it then shows as a
difference, and a later T or checkpoint covers it).
"""

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from audit import log, merkle
from audit.note import Verifier, open_checkpoint
from core import ledger
from core.money import format_minor, parse_amount
from core.uow import UnitOfWork


@dataclass(frozen=True, slots=True)
class AccountAsOf:
    account: str
    currency: str
    from_log: int
    from_ledger: int

    @property
    def agrees(self) -> bool:
        return self.from_log == self.from_ledger

    def row(self) -> tuple[str, str, str, str]:
        return (
            self.account,
            self.currency,
            format_minor(self.from_log, self.currency),
            format_minor(self.from_ledger, self.currency),
        )


@dataclass(frozen=True, slots=True)
class AsOf:
    at: datetime
    checkpoint: log.StoredCheckpoint
    accounts: list[AccountAsOf]

    @property
    def agrees(self) -> bool:
        return all(account.agrees for account in self.accounts)


async def as_of(uow: UnitOfWork, at: datetime, *, verifiers: Sequence[Verifier]) -> AsOf:
    checkpoint = await log.checkpoint_at(uow, at)
    signed, _ = open_checkpoint(checkpoint.note, verifiers)
    currency_of: dict[str, str] = {}
    sums: defaultdict[str, int] = defaultdict(int)
    tree = merkle.RootBuilder()
    async for _, entry in log.stream_entries(uow, end=signed.size):
        tree.add(merkle.leaf_hash(entry))
        event = json.loads(entry)
        if event["event"] != "ledger.posted" or datetime.fromisoformat(event["ts"]) > at:
            continue
        for posting in event["data"]["postings"]:
            sums[posting["account"]] += _signed_minor(posting["amount"], posting["currency"])
            currency_of[posting["account"]] = posting["currency"]
    if tree.size != signed.size or tree.root() != signed.root:
        raise log.LogCorrupted(
            f"the stored entries do not rebuild checkpoint {checkpoint.id} (size {signed.size})"
        )
    books = await ledger.balances_at(uow, at)
    accounts = [
        AccountAsOf(
            code,
            books[code].currency if code in books else currency_of[code],
            sums.get(code, 0),
            books[code].minor if code in books else 0,
        )
        for code in sorted(currency_of.keys() | books.keys())
    ]
    return AsOf(at, checkpoint, accounts)


def _signed_minor(amount: str, currency: str) -> int:
    negative = amount.startswith("-")
    minor = parse_amount(amount.removeprefix("-"), currency, allow_zero=True).minor
    return -minor if negative else minor
