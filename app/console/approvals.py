"""Four-eyes: lifting a protection is a request that another officer decides.

An officer asks (the console ruleset says who may ask for what: `console.request.<kind>`), with
a reason; the request waits 24 hours at most. Another officer with the right role decides
(`console.approve.<kind>`, never their own request: the ruleset refuses it, and so does a CHECK
in PostgreSQL); an approval carries the change out in the same transaction as the decision.
What each kind lifts, and how, is `EFFECTS` below.
"""

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg.types.json import Jsonb

from app.console.accounts import Officer
from compliance import appeals, jurisdictions, kyc
from compliance.cashier import Cashier
from compliance.jurisdictions import Jurisdictions
from core import journal, sql
from core.errors import Conflict, InvalidRequest, NotFound, Unavailable
from core.journal import EventContext
from core.uow import UnitOfWork
from policies import killswitch, registry

LIFETIME = timedelta(hours=24)
# What must follow an approval's commit (a payout is sent to its provider outside any transaction).
After = Callable[[], Awaitable[object]]


@dataclass(frozen=True)
class Request:
    id: uuid.UUID
    kind: str
    subject: str
    player_id: uuid.UUID | None
    payload: dict[str, Any]
    reason: str
    requested_by: uuid.UUID
    requested_by_name: str
    requested_at: datetime
    expires_at: datetime
    decided_by_name: str | None
    decided_at: datetime | None
    outcome: str | None
    decision_reason: str | None

    def open_at(self, now: datetime) -> bool:
        return self.decided_at is None and now < self.expires_at


_SELECT = (
    "SELECT r.id, r.kind, r.subject, r.player_id, r.payload, r.reason, r.requested_by,"
    " a.display_name AS requested_by_name, r.requested_at, r.expires_at,"
    " d.display_name AS decided_by_name, r.decided_at, r.outcome, r.decision_reason"
    " FROM approval_requests r JOIN officers a ON a.id = r.requested_by"
    " LEFT JOIN officers d ON d.id = r.decided_by"
)


async def ask(
    uow: UnitOfWork,
    *,
    kind: str,
    subject: str,
    payload: dict[str, Any],
    reason: str,
    officer: Officer,
    ctx: EventContext,
    player_id: uuid.UUID | None = None,
) -> uuid.UUID:
    if not reason.strip():
        raise InvalidRequest("reason_required", "say why the protection should be lifted")
    waiting = await sql.scalar(
        uow,
        "SELECT id FROM approval_requests WHERE kind = %(k)s AND subject = %(s)s"
        " AND decided_at IS NULL AND expires_at > %(now)s",
        {"k": kind, "s": subject, "now": uow.now},
    )
    if waiting is not None:
        raise Conflict(
            "request_open", "a request for this is already waiting", request=str(waiting)
        )
    request_id = uuid.uuid4()
    await sql.run(
        uow,
        "INSERT INTO approval_requests (id, kind, subject, player_id, payload, reason,"
        " requested_by, requested_at, expires_at) VALUES (%(id)s, %(k)s, %(s)s, %(p)s, %(pl)s,"
        " %(r)s, %(by)s, %(now)s, %(until)s)",
        {
            "id": request_id,
            "k": kind,
            "s": subject,
            "p": player_id,
            "pl": Jsonb(payload),
            "r": reason.strip(),
            "by": officer.id,
            "now": uow.now,
            "until": uow.now + LIFETIME,
        },
    )
    await journal.record(
        uow,
        "console.approval_requested",
        ctx=ctx,
        player_id=player_id,
        data={"request": str(request_id), "kind": kind, "subject": subject, "reason": reason},
    )
    return request_id


async def find(uow: UnitOfWork, request_id: uuid.UUID) -> Request:
    row = await sql.one(uow, _SELECT + " WHERE r.id = %(id)s", {"id": request_id})
    if row is None:
        raise NotFound("unknown_request", "no such request")
    return Request(**row)


async def waiting_for(uow: UnitOfWork, *, kind: str, subject: str) -> Request | None:
    """The open request of this kind about this subject, if one waits."""
    row = await sql.one(
        uow,
        _SELECT + " WHERE r.kind = %(k)s AND r.subject = %(s)s AND r.decided_at IS NULL"
        " AND r.expires_at > %(now)s ORDER BY r.requested_at DESC LIMIT 1",
        {"k": kind, "s": subject, "now": uow.now},
    )
    return None if row is None else Request(**row)


async def listed(uow: UnitOfWork, *, limit: int = 50) -> list[Request]:
    """Open requests first (soonest to expire first), then the newest decided or expired; each
    part read along its own index."""
    params = {"now": uow.now, "n": limit}
    waiting = await sql.all_rows(
        uow,
        _SELECT + " WHERE r.decided_at IS NULL AND r.expires_at > %(now)s"
        " ORDER BY r.expires_at LIMIT %(n)s",
        params,
    )
    closed = await sql.all_rows(
        uow,
        _SELECT + " WHERE NOT (r.decided_at IS NULL AND r.expires_at > %(now)s)"
        " ORDER BY r.requested_at DESC LIMIT %(n)s",
        params,
    )
    return [Request(**row) for row in waiting + closed][:limit]


async def decide(
    uow: UnitOfWork,
    *,
    request: Request,
    officer: Officer,
    approve: bool,
    reason: str,
    ctx: EventContext,
    cashier: Cashier | None = None,
    settings: Jurisdictions | None = None,
    notifier: appeals.Notifier | None = None,
) -> After | None:
    """Record the decision (once, in time, not one's own) and, when approved, lift the
    protection in the same transaction; returns what must follow the commit, if anything (an
    approved payout is sent to its provider then: never inside a transaction)."""
    if request.requested_by == officer.id:
        raise Conflict("own_request", "nobody decides their own request")
    if not request.open_at(uow.now):
        raise Conflict("request_closed", "this request was decided already or has expired")
    outcome = "approved" if approve else "rejected"
    await sql.run(
        uow,
        "UPDATE approval_requests SET decided_by = %(by)s, decided_at = %(now)s,"
        " outcome = %(o)s, decision_reason = %(r)s WHERE id = %(id)s",
        {"by": officer.id, "now": uow.now, "o": outcome, "r": reason.strip(), "id": request.id},
    )
    await journal.record(
        uow,
        "console.approval_decided",
        ctx=ctx,
        player_id=request.player_id,
        data={"request": str(request.id), "kind": request.kind, "outcome": outcome},
    )
    if not approve:
        return None
    return await EFFECTS[request.kind](
        Lifting(
            uow, request, officer, ctx, cashier,
            settings or jurisdictions.load(), notifier or appeals.Outbox(),
        )
    )  # fmt: skip


@dataclass(frozen=True)
class Lifting:
    """What an approval's effect works with."""

    uow: UnitOfWork
    request: Request
    officer: Officer
    ctx: EventContext
    cashier: Cashier | None
    settings: Jurisdictions
    notifier: appeals.Notifier

    @property
    def actor(self) -> str:
        """Both officers are named on what the approval changes."""
        return f"officer:{self.request.requested_by} approved by {self.officer.actor}"


async def _switch_on(lifting: Lifting) -> After | None:
    await killswitch.switch(
        lifting.uow,
        zone=lifting.request.subject,
        off=False,
        reason=lifting.request.reason,
        actor=lifting.actor,
        ctx=lifting.ctx,
    )
    return None


async def _clear_hold(lifting: Lifting) -> After | None:
    assert lifting.request.player_id is not None  # noqa: S101 - asked about a player
    await kyc.set_aml_hold(
        lifting.uow,
        player_id=lifting.request.player_id,
        on_hold=False,
        actor=lifting.actor,
        reason=lifting.request.reason,
        ctx=lifting.ctx,
    )
    return None


async def _pay_out(lifting: Lifting) -> After | None:
    cashier = lifting.cashier
    if cashier is None:
        raise Unavailable("payments_disabled", "payments are off on this server")
    payment_id = uuid.UUID(lifting.request.subject)
    await cashier.review(
        lifting.uow,
        payment_id,
        approve=True,
        officer=lifting.actor,
        reason=lifting.request.reason,
        ctx=lifting.ctx,
    )
    return lambda: cashier.submit(payment_id, lifting.ctx)


async def _raise_kyc(lifting: Lifting) -> After | None:
    """The level asked for, if the player's level is still the one the request was asked
    from: a level changed meanwhile (lowered on new doubts) is not overridden unseen."""
    assert lifting.request.player_id is not None  # noqa: S101 - asked about a player
    now = (await kyc.standing(lifting.uow, lifting.request.player_id)).kyc_level
    if now != lifting.request.payload["from"]:
        raise Conflict(
            "request_stale",
            f"the player's KYC level has changed to {now} since the request: ask again",
        )
    await kyc.set_level(
        lifting.uow,
        player_id=lifting.request.player_id,
        level=lifting.request.payload["level"],
        actor=lifting.actor,
        reason=lifting.request.reason,
        ctx=lifting.ctx,
    )
    return None


async def _activate(lifting: Lifting) -> After | None:
    await registry.activate(
        lifting.uow,
        version=lifting.request.payload["version"],
        jurisdiction=lifting.request.payload["jurisdiction"],
        actor=lifting.actor,
        reason=lifting.request.reason,
        ctx=lifting.ctx,
    )
    return None


async def _overturn(lifting: Lifting) -> After | None:
    """The appeal overturned as the officer asked, with its remedy, naming both officers; an
    appeal decided meanwhile (upheld by another officer) is 409 `appeal_closed`."""
    payload = lifting.request.payload
    await appeals.decide(
        lifting.uow,
        appeal_id=uuid.UUID(payload["appeal_id"]),
        outcome="overturned",
        reason_token=payload["reason_token"],
        officer_id=lifting.request.requested_by,
        approved_by=lifting.officer.id,
        remedy=appeals.Remedy(payload["remedy"], int(payload["days"])),
        settings=lifting.settings,
        notifier=lifting.notifier,
        ctx=lifting.ctx,
    )
    return None


Effect = Callable[[Lifting], Awaitable[After | None]]
EFFECTS: dict[str, Effect] = {
    "killswitch_on": _switch_on,
    "aml_hold_clear": _clear_hold,
    "payout_approve": _pay_out,
    "ruleset_activate": _activate,
    "kyc_raise": _raise_kyc,
    "appeal_overturn": _overturn,
}
# What each kind asks, in the officers' words (the approvals page).
WORDS = {
    "killswitch_on": "Switch a zone back on",
    "aml_hold_clear": "Clear an AML hold",
    "payout_approve": "Approve a withdrawal",
    "ruleset_activate": "Activate a ruleset version",
    "kyc_raise": "Raise a player's KYC level",
    "appeal_overturn": "Overturn an appeal of an AML or KYC refusal",
}
