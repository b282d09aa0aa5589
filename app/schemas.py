"""API schemas, apart from the ORM models. Money is a JSON string with a pattern, never a number."""

import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, Self

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, JsonValue, StrictBool, StringConstraints

from core.clock import utc_now
from core.money import AMOUNT_PATTERN, CURRENCY_PATTERN, format_minor
from core.players import Wallet

Amount = Annotated[
    str,
    StringConstraints(pattern=AMOUNT_PATTERN),
    Field(description='Decimal string in major units, e.g. "12.50"', examples=["10.00"]),
]
SignedAmount = Annotated[str, Field(pattern=r"^-?[0-9]+(\.[0-9]+)?$", examples=["-3.50"])]
Currency = Annotated[str, StringConstraints(pattern=CURRENCY_PATTERN), Field(examples=["EUR"])]
Ref = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{1,64}$"), Field(examples=["round-7781"])
]
# Free text: no control characters (PostgreSQL text cannot even hold NUL).
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]*$"
Label = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=TEXT_PATTERN)]
Tag = Annotated[str, StringConstraints(max_length=64, pattern=TEXT_PATTERN)]


class Strict(BaseModel):
    """Unknown fields are refused; amounts are strings, so a JSON number never passes."""

    model_config = ConfigDict(extra="forbid")


class Telemetry(Strict):
    session_id: Tag | None = None
    geo: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] | None = Field(
        None, description="ISO 3166-1 alpha-2 country the player plays from"
    )
    device: Tag | None = None


EXAMPLE_PLAYER_ID = "00000000-0000-4000-8000-000000000001"  # the demo's first player
_EXAMPLE_IDS = {
    "request_uuid": "6f1c2b6e-52a4-4f0e-9d0c-3a5f1f6d2a10",
    "player_id": EXAMPLE_PLAYER_ID,
}
_EXAMPLE_BET = _EXAMPLE_IDS | {
    "transaction_uuid": "0b8f3f3c-7a5e-4c9b-8f7e-2d1c0a9b8e71",
    "round_id": "round-7781",
    "bet_id": "bet-7781-1",
}

# A player named in a path: the parameter of every per-player operation.
PlayerId = Annotated[uuid.UUID, Path(description="The player's id", examples=[EXAMPLE_PLAYER_ID])]


def _ahead(days: int) -> str:
    """An example instant `days` after the process started, at midnight UTC: an example end
    of an exclusion stays one the API accepts on whatever day /docs is read (a time-out lasts
    24 hours to 6 weeks, a self-exclusion at least 6 months)."""
    return (utc_now() + timedelta(days=days)).strftime("%Y-%m-%dT00:00:00Z")


_TIME_OUT_END, _SELF_EXCLUSION_END = _ahead(21), _ahead(365)


def _example(**fields: JsonValue) -> ConfigDict:
    example: dict[str, JsonValue] = dict(fields)
    return ConfigDict(extra="forbid", json_schema_extra={"examples": [example]})


class BalanceRequest(Strict):
    request_uuid: uuid.UUID
    player_id: uuid.UUID

    model_config = _example(**_EXAMPLE_IDS)


class BetRequest(Telemetry):
    request_uuid: uuid.UUID
    transaction_uuid: uuid.UUID
    player_id: uuid.UUID
    round_id: Ref
    bet_id: Ref
    game_id: Ref
    amount: Amount
    currency: Currency

    model_config = _example(
        **_EXAMPLE_BET,
        game_id="starburst",
        amount="10.00",
        currency="EUR",
        session_id="s-42",
        geo="MT",
    )


class WinRequest(Telemetry):
    request_uuid: uuid.UUID
    transaction_uuid: uuid.UUID
    player_id: uuid.UUID
    round_id: Ref
    bet_id: Ref
    amount: Amount = Field(description='The payout; "0.00" settles the bet as lost')
    currency: Currency
    round_closed: StrictBool = Field(
        default=False, description="Close the round: no further bets join it"
    )

    model_config = _example(
        **_EXAMPLE_BET | {"transaction_uuid": "9d2c7a51-3e0b-4f8e-a1c6-5b7d9e2f4a30"},
        amount="25.00",
        currency="EUR",
        round_closed=True,
    )


class RollbackRequest(Telemetry):
    request_uuid: uuid.UUID
    transaction_uuid: uuid.UUID
    player_id: uuid.UUID
    round_id: Ref
    bet_id: Ref = Field(description="The bet whose stake is returned")

    model_config = _example(
        **_EXAMPLE_BET | {"transaction_uuid": "4e8a1f0c-6b2d-4c7e-9a3f-1d5b8c0e2f64"}
    )


class WalletView(BaseModel):
    player_id: uuid.UUID
    currency: str
    balance: str = Field(description="cash + bonus", examples=["370.00"])
    cash: str
    bonus: str

    @classmethod
    def of(cls, wallet: Wallet, **extra: Any) -> Self:  # noqa: ANN401
        return cls(
            player_id=wallet.player_id,
            currency=wallet.currency,
            balance=wallet.total.decimal_string,
            cash=format_minor(wallet.cash_balance, wallet.currency),
            bonus=format_minor(wallet.bonus_balance, wallet.currency),
            **extra,
        )


class BalanceResponse(WalletView):
    request_uuid: uuid.UUID


class WalletResponse(BalanceResponse):
    transaction_uuid: uuid.UUID
    round_id: str
    bet_id: str
    bet_status: Literal["OPEN", "WIN", "LOSE", "PUSH", "VOID"]
    ledger_transaction_id: int | None
    tombstone: bool = Field(
        default=False,
        description="A rollback for an unknown bet: nothing moved, that bet id is refused",
    )


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict[str, object]


class ErrorResponse(BaseModel):
    error: ErrorDetail


class NewPlayer(Strict):
    model_config = _example(currency="EUR", jurisdiction="MT")
    currency: Currency
    jurisdiction: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] = Field(examples=["MT"])


class PlayerCreated(BaseModel):
    player_id: uuid.UUID
    currency: str
    jurisdiction: str


class Adjustment(Strict):
    model_config = _example(
        player_id=_EXAMPLE_IDS["player_id"],
        amount="20.00",
        currency="EUR",
        direction="credit",
        source="bonus",
        reason="welcome bonus",
    )
    player_id: uuid.UUID
    amount: Amount
    currency: Currency
    direction: Literal["credit", "debit"]
    source: Literal["cash", "bonus"] = "cash"
    reason: Label


class AdjustmentDone(WalletView):
    ledger_transaction_id: int


class Reversal(Strict):
    model_config = _example(reason="credited to the wrong player")
    reason: Label


class NewFxRate(Strict):
    model_config = _example(
        base="USD",
        quote="EUR",
        rate="0.9231",
        source="ECB reference rate",
        as_of="2026-11-24T12:00:00Z",
    )
    base: Currency
    quote: Currency
    rate: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,12}(\.[0-9]{1,12})?$")] = Field(
        description="Units of quote per unit of base", examples=["1.0842"]
    )
    source: Label = Field(examples=["ECB reference rate"])
    as_of: Annotated[
        str, Field(description="RFC 3339 with offset", examples=["2026-11-24T12:00:00Z"])
    ]


class FxRateOut(BaseModel):
    base: str
    quote: str
    rate: str
    source: str
    as_of: str


class AccountBalance(BaseModel):
    account: str
    currency: str
    balance: str
    at: str | None = Field(None, description="The instant, when the balance is historical")


# -- audit log ----------------------------------------------------------------------------------

Base64Hash = Annotated[str, Field(description="SHA-256 hash, standard base64")]


class AuditCheckpoint(BaseModel):
    id: int = Field(description="Publication order")
    tree_size: int
    root_hash: Base64Hash
    published_at: datetime
    note: str = Field(description="The C2SP signed note (tlog-checkpoint body), verbatim")


class InclusionProof(BaseModel):
    index: int
    size: int
    leaf_hash: Base64Hash
    proof: list[Base64Hash] = Field(description="RFC 9162 audit path, leaf to root")


class ConsistencyProof(BaseModel):
    from_size: int = Field(alias="from")
    to_size: int = Field(alias="to")
    proof: list[Base64Hash]


class AuditEntry(BaseModel):
    index: int
    entry: str = Field(description="The exact entry bytes (RFC 8785 JSON), standard base64")


class AuditEntries(BaseModel):
    entries: list[AuditEntry]


# -- PII vault -----------------------------------------------------------------------------------

EMAIL_PATTERN = r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$"
IBAN_PATTERN = r"^[A-Za-z]{2}[0-9]{2}[A-Za-z0-9 ]{8,40}$"
Text300 = Annotated[str, StringConstraints(min_length=1, max_length=300, pattern=TEXT_PATTERN)]


class PersonalDataIn(Strict):
    """Stored only in the vault, sealed per field; every field optional."""

    legal_name: Label | None = Field(default=None, examples=["Maria Borg"])
    date_of_birth: (
        Annotated[str, StringConstraints(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")] | None
    ) = Field(default=None, examples=["1990-04-17"])
    address: Text300 | None = Field(default=None, examples=["12 Triq il-Kbira, Mosta"])
    country: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] | None = Field(
        default=None, examples=["MT"]
    )
    email: Annotated[str, StringConstraints(max_length=254, pattern=EMAIL_PATTERN)] | None = Field(
        default=None, examples=["maria@example.com"]
    )
    phone: Annotated[str, StringConstraints(pattern=r"^\+?[0-9][0-9 ()-]{5,24}$")] | None = Field(
        default=None, examples=["+356 2123 4567"]
    )
    national_id: Tag | None = Field(default=None, examples=["0123456M"])
    iban: Annotated[str, StringConstraints(pattern=IBAN_PATTERN)] | None = Field(
        default=None, examples=["MT84MALT011000012345MTLCAST001S"]
    )


class NewRegisteredPlayer(Strict):
    model_config = _example(
        currency="EUR",
        jurisdiction="MT",
        personal={
            "legal_name": "Maria Borg",
            "date_of_birth": "1990-04-17",
            "country": "MT",
            "email": "maria@example.com",
            "iban": "MT84MALT011000012345MTLCAST001S",
        },
    )
    currency: Currency
    jurisdiction: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] = Field(examples=["MT"])
    personal: PersonalDataIn


class PossibleDuplicate(BaseModel):
    kind: str
    player_id: uuid.UUID


class PlayerRegistered(BaseModel):
    player_id: uuid.UUID
    currency: str
    jurisdiction: str
    tokens: dict[str, str] = Field(description="Field tokens: the only way the rest refers to PII")
    possible_duplicates: list[PossibleDuplicate]


class ExportRequest(Strict):
    """An empty object: the client is the actor, under the vault's machine role (decision
    0021); a body naming a person or a role is refused."""

    model_config = _example()


class RevealRequest(Strict):
    """The client reveals under the vault's machine role `service` (decision 0021); an
    officer's reveal goes through the console."""

    model_config = _example(field="iban", purpose="payout")
    field: Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,40}$")] = Field(examples=["iban"])
    purpose: Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,40}$")] = Field(
        examples=["aml_case"]
    )
    document_token: Tag | None = None


class Revealed(BaseModel):
    field: str
    value: str = Field(description="In clear; a document's bytes in standard base64")
    decision: str


class ErasureRequest(Strict):
    model_config = _example(reason="the player's erasure request of 2026-11-20")
    reason: Label


class Erased(BaseModel):
    player_id: uuid.UUID
    erased_at: datetime


class NewDocument(Strict):
    model_config = _example(
        kind="passport_front", content_type="image/png", content_base64="iVBORw0KGgo="
    )
    kind: Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,40}$")] = Field(
        examples=["passport_front"]
    )
    content_type: Annotated[str, StringConstraints(pattern=r"^[a-z]+/[a-z0-9.+-]{1,60}$")]
    content_base64: Annotated[str, StringConstraints(max_length=48_000)]


class DocumentStored(BaseModel):
    token: str


# -- kill-switches -------------------------------------------------------------------------------


class KillSwitchChange(Strict):
    model_config = _example(zone="withdrawal", off=True, reason="payment provider incident")
    zone: Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,40}$")] = Field(
        examples=["withdrawal"]
    )
    off: StrictBool = Field(description="true stops the zone, false starts it again")
    reason: Label


class KillSwitchState(BaseModel):
    zone: str
    off: bool
    reason: str
    set_by: str
    set_at: datetime


class KillSwitches(BaseModel):
    zones: list[str]
    switches: list[KillSwitchState]


# -- responsible gambling ------------------------------------------------------------------------


class LimitRequest(Strict):
    model_config = _example(kind="deposit", period="7d", amount="200.00")
    kind: Literal["deposit", "loss", "wager"]
    period: Literal["24h", "7d", "30d"]
    amount: Amount | None = Field(
        description="In the wallet's currency; null removes the limit (after cooling-off)"
    )


class LimitChanged(BaseModel):
    kind: str
    period: str
    amount: str | None
    effective_at: datetime
    immediate: bool
    message: str


class ExclusionRequest(Strict):
    model_config = _example(kind="time_out", until=_TIME_OUT_END, reason="asked by phone")
    kind: Literal["time_out", "self_exclusion"]
    until: str | None = Field(
        description="RFC 3339 end; null only for an indefinite self-exclusion",
        examples=[_SELF_EXCLUSION_END],
    )
    reason: Label


class ExclusionStarted(BaseModel):
    kind: str
    starts_at: datetime
    ends_at: datetime | None


class LimitState(BaseModel):
    kind: str
    period: str
    in_force: str | None
    used: str
    pending: str | None = None
    pending_from: datetime | None = None


class ResponsibleGambling(BaseModel):
    player_id: uuid.UUID
    currency: str
    limits: list[LimitState]
    exclusions: list[ExclusionStarted]


# -- the player's own API (player tokens) ---------------------------------------------------------


class PlayerToken(BaseModel):
    token: str = Field(description="A JWT for `Authorization: Bearer`: only for this player")
    expires_at: datetime


class PlayerLimitRequest(Strict):
    model_config = _example(kind="loss", period="24h", amount="50.00")
    kind: Literal["deposit", "loss", "wager"]
    period: Literal["24h", "7d", "30d"]
    amount: Amount | None = Field(
        description="In the wallet's currency; null removes the limit (after cooling-off)"
    )


class PlayerExclusionRequest(Strict):
    model_config = _example(kind="time_out", until=_TIME_OUT_END, reason="a break")
    kind: Literal["time_out", "self_exclusion"]
    until: str | None = Field(
        description="RFC 3339 end; null only for an indefinite self-exclusion",
        examples=[_SELF_EXCLUSION_END],
    )
    reason: Label | None = Field(default=None, description="In the player's own words")


class HelpContact(BaseModel):
    name: str
    url: str
    phone: str | None
    languages: list[str]


class PlayerDecision(BaseModel):
    decision_id: uuid.UUID
    action: str = Field(examples=["bet.place"])
    reason_code: str = Field(examples=["wager_limit_24h"])
    reason: str = Field(description="Why, in English, as the ruleset words it")
    category: str = Field(examples=["responsible_gambling"])
    policy_version: str
    decided_at: datetime
    help: list[HelpContact] = Field(
        description="For responsible-gambling refusals: where to find help in the player's "
        "country; empty otherwise"
    )


class PlayerDecisions(BaseModel):
    decisions: list[PlayerDecision] = Field(description="Refusals only, newest first")


# --- KYC, AML holds and linked accounts (operator) ---


class KycLevelRequest(Strict):
    model_config = _example(level="verified", reason="passport and proof of address checked")
    level: Literal["unverified", "basic", "verified"] = Field(
        description="verified: identity and age proven; only it lets money move past the "
        "due-diligence threshold and out through withdrawals"
    )
    reason: Label = Field(examples=["passport and proof of address checked"])


class AmlHoldRequest(Strict):
    model_config = _example(on_hold=True, reason="source of funds requested")
    on_hold: bool = Field(description="true puts withdrawals on hold; false lifts the hold")
    reason: Label = Field(examples=["source of funds requested"])


class LinkRequest(Strict):
    model_config = _example(
        linked_player_id="00000000-0000-4000-8000-000000000002",
        reason="same household, confirmed by documents",
    )
    linked_player_id: uuid.UUID
    reason: Label = Field(examples=["same household, confirmed by documents"])


class LinkedPlayer(BaseModel):
    player_id: uuid.UUID
    basis: str


class Standing(BaseModel):
    player_id: uuid.UUID
    kyc_level: str
    kyc_set_at: datetime | None
    aml_hold: bool
    aml_set_at: datetime | None
    linked: list[LinkedPlayer] = Field(
        description="Players whose money counts with this one's towards due diligence"
    )


# -- payments --------------------------------------------------------------------------------

PaymentMethod = Literal["card", "bank_transfer", "crypto"]
# A crypto address or a payout account token: printable, no spaces.
Destination = Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{1,128}$")]


class DepositRequest(Telemetry):
    model_config = _example(
        player_id=_EXAMPLE_IDS["player_id"], amount="50.00", currency="EUR", method="card"
    )
    player_id: uuid.UUID
    amount: Amount
    currency: Currency
    method: PaymentMethod


class WithdrawalRequest(Telemetry):
    model_config = _example(
        player_id=_EXAMPLE_IDS["player_id"],
        amount="25.00",
        currency="EUR",
        method="crypto",
        destination="0x52908400098527886e0f7030069857d2e4169ee7",
    )
    player_id: uuid.UUID
    amount: Amount
    currency: Currency
    method: PaymentMethod
    destination: Destination | None = Field(
        None,
        description="Where the money goes (required): a crypto address, screened against the"
        " KYT deny list, or the token of the player's payout account",
    )


class ReviewRequest(Strict):
    model_config = _example(approve=True, reason="source of funds documented")
    approve: StrictBool
    reason: Label


class PaymentView(BaseModel):
    payment_id: uuid.UUID
    kind: Literal["deposit", "withdrawal"]
    player_id: uuid.UUID
    amount: str
    currency: str
    method: str
    destination: str | None
    state: str
    terminal: bool
    needs_review: bool
    provider: str | None
    provider_ref: str | None
    redirect_url: str | None
    decision_id: uuid.UUID
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, payment: Any) -> Self:  # noqa: ANN401 - core.payments.service.Payment
        return cls(
            payment_id=payment.id,
            kind=payment.kind,
            player_id=payment.player_id,
            amount=payment.amount.decimal_string,
            currency=payment.amount.currency,
            method=payment.method,
            destination=payment.destination,
            state=payment.state,
            terminal=payment.terminal,
            needs_review=payment.needs_review,
            provider=payment.provider,
            provider_ref=payment.provider_ref,
            redirect_url=payment.redirect_url,
            decision_id=payment.decision_id,
            created_at=payment.created_at,
            updated_at=payment.updated_at,
        )


class PaymentStep(BaseModel):
    from_state: str | None
    to_state: str
    cause: str
    actor: str
    webhook_id: str | None
    ledger_transaction_id: int | None
    at: datetime


class PaymentAttemptView(BaseModel):
    provider: str
    outcome: str
    status: int | None
    at: datetime


class PaymentDetail(PaymentView):
    transitions: list[PaymentStep]
    attempts: list[PaymentAttemptView]


class WebhookAnswer(BaseModel):
    outcome: Literal["moved", "ignored", "refused", "unknown_payment"]
    replayed: bool
    payment_id: uuid.UUID | None
    state: str | None
    detail: str | None
