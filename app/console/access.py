"""Who may do what in the console: the active console ruleset decides, as the gate's decides
for money. Every console action — a page that shows a player, a reveal, a change — is a
decision record (facts: the officer's role and how long ago they gave a second factor) and a
`console.action` event naming the officer, their role, the session and the decision."""

import uuid
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import Response

from app.console import web
from app.console.accounts import Officer
from app.console.sessions import Session
from core import journal
from core.journal import EventContext
from core.uow import UnitOfWork
from policies import decisions, registry


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    decision_id: uuid.UUID
    reason_code: str
    reason: str
    version: str


def context(officer: Officer, session: Session, trace_id: str) -> EventContext:
    return EventContext(actor=officer.actor, trace_id=trace_id, session_id=session.ref)


async def decide(
    uow: UnitOfWork,
    *,
    officer: Officer,
    session: Session,
    action: str,
    trace_id: str,
    player_id: uuid.UUID | None = None,
    subject: str | None = None,
) -> Verdict:
    """Decide `action` for the officer under the active console ruleset, store it and journal
    it; the caller commits whether it is allowed or not (a refusal is a fact to keep)."""
    ctx = context(officer, session, trace_id)
    recorded = await decisions.decide(
        uow,
        action=action,
        jurisdiction=registry.CONSOLE,
        facts={"role": officer.role, "second_factor_age_s": session.second_factor_age_s(uow.now)},
        player_id=player_id,
        ctx=ctx,
    )
    decision = recorded.decision
    await journal.record(
        uow,
        "console.action",
        ctx=ctx,
        player_id=player_id,
        data={
            "action": action,
            "officer_id": str(officer.id),
            "role": officer.role,
            "session": session.ref,
            "decision_id": str(recorded.id),
            "effect": decision.effect,
            "reason_code": decision.reason_code,
            "subject": subject,
        },
    )
    return Verdict(
        decision.effect == "allow",
        recorded.id,
        decision.reason_code,
        decision.reason,
        decision.version,
    )


async def allowed(
    current: web.Current,
    request: Request,
    action: str,
    *,
    back: str | None = None,
    **about: object,
) -> Response | None:
    """None when allowed; else the page that says why (a step-up leads to the step-up form,
    which then returns to `back`, by default this page)."""
    verdict = await decide(
        current.uow,
        officer=current.officer,
        session=current.session,
        action=action,
        trace_id=current.trace_id,
        **about,  # type: ignore[arg-type]
    )
    if verdict.allowed:
        return None
    await current.uow.commit()  # the refusal is a decision record too
    if verdict.reason_code == "step_up_required":
        return web.redirect(request, f"/console/step-up?next={back or request.url.path}")
    return web.page(
        request,
        "refused.html",
        status_code=403,
        officer=current.officer,
        csrf=current.csrf,
        verdict=verdict,
        action=action,
    )
