"""Exchange rates: an append-only table; a conversion fixes the rate it used on its transaction."""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

import sqlalchemy as sa

from core import journal
from core.errors import InvalidRequest
from core.journal import EventContext
from core.ledger import FxApplied
from core.models import FxRate
from core.money import Money, check_currency, convert
from core.uow import UnitOfWork

RATE_PATTERN = r"^[0-9]{1,12}(\.[0-9]{1,12})?$"


@dataclass(frozen=True, slots=True)
class Rate:
    base: str
    quote: str
    rate: Decimal
    source: str
    as_of: datetime


def parse_rate(text: str) -> Decimal:
    try:
        rate = Decimal(text)
    except InvalidOperation:
        rate = Decimal(0)
    if not isinstance(text, str) or not rate.is_finite() or rate <= 0:
        raise InvalidRequest("invalid_rate", "rate must be a positive decimal string", rate=text)
    return rate


async def record_rate(
    uow: UnitOfWork,
    *,
    base: str,
    quote: str,
    rate: Decimal,
    source: str,
    as_of: datetime,
    ctx: EventContext,
) -> Rate:
    check_currency(base)
    check_currency(quote)
    if base == quote:
        raise InvalidRequest("same_currency", "base and quote must differ", base=base)
    if as_of.tzinfo is None:
        raise InvalidRequest("naive_datetime", "as_of needs a UTC offset")
    await uow.session.execute(
        sa.insert(FxRate).values(
            base=base,
            quote=quote,
            rate=rate,
            source=source,
            as_of=as_of,
            recorded_by=ctx.actor,
            recorded_at=uow.now,
        )
    )
    await journal.record(
        uow,
        "fx.rate_recorded",
        ctx=ctx,
        data={
            "base": base,
            "quote": quote,
            "rate": str(rate),
            "source": source,
            "as_of": journal.rfc3339(as_of),
        },
    )
    return Rate(base, quote, rate, source, as_of)


async def rate_in_force(uow: UnitOfWork, *, base: str, quote: str, at: datetime) -> Rate:
    row = (
        await uow.session.execute(
            sa.select(FxRate.rate, FxRate.source, FxRate.as_of)
            .where(FxRate.base == base, FxRate.quote == quote, FxRate.as_of <= at)
            .order_by(FxRate.as_of.desc(), FxRate.id.desc())
            .limit(1)
        )
    ).one_or_none()
    if row is None:
        raise InvalidRequest(
            "no_fx_rate", f"no {base}/{quote} rate is in force", base=base, quote=quote
        )
    return Rate(base, quote, row.rate, row.source, row.as_of)


async def to_wallet_currency(
    uow: UnitOfWork, amount: Money, wallet_currency: str
) -> tuple[Money, FxApplied | None]:
    """The amount in the wallet's currency, and the conversion used if one was needed."""
    if amount.currency == wallet_currency:
        return amount, None
    rate = await rate_in_force(uow, base=amount.currency, quote=wallet_currency, at=uow.now)
    converted = convert(amount, rate=rate.rate, to_currency=wallet_currency)
    if converted.minor <= 0:
        raise InvalidRequest(
            "amount_not_positive", "amount converts to nothing in the wallet currency"
        )
    return converted, FxApplied(rate.rate, rate.source, rate.as_of, amount)
