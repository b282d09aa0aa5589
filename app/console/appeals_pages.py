"""The appeals in the console (issue 15, slice 2; decision 0023): the queue by deadline with the
SLA clock of each appeal's jurisdiction (breaches flagged), an appeal's page — the refusal's
record, its replay and a what-if under the ruleset active for the player now, the player's
history, the player's words revealed under the console's and the vault's rules —, and the
officer's steps: acknowledge, ask the player for more information, uphold or overturn.

Every page and step is a console decision (console-2026-12-v2: `console.appeals.view`,
`console.appeal.reveal` and `console.appeal.decide` with step-up, `console.appeal.handle`);
overturning a refusal of the AML or KYC categories is a four-eyes request
(`console.request.appeal_overturn`) that a senior officer approves on the four-eyes page. What
an officer writes to the player, and their reason, may hold personal data: it is sealed in the
vault (its own commit first, as the player's filing does) and only its token is kept.
"""

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from app.console import access, approvals, decision_search, problems, ruleset_view, web
from app.console.protections import Csrf, carry_out, problem
from compliance import appeals, jurisdictions, overrides
from compliance.jurisdictions import Jurisdictions
from compliance.vault import service as vault
from core.errors import Conflict, DomainError, InvalidRequest, NotFound
from policies import registry

router = APIRouter(prefix="/console", include_in_schema=False)
Text = Annotated[str, Form(max_length=appeals.MAX_EXPLANATION_CHARS + 100)]
VAULT_ROLE = "compliance_officer"  # the vault's job function an officer reads appeals as
PURPOSE = "appeal_review"
STATES = {
    "filed": "filed, to acknowledge",
    "acknowledged": "acknowledged",
    "info_requested": "waiting for the player (clock stopped)",
    "answered": "answered by the player",
    "decided": "decided",
    "withdrawn": "withdrawn",
}


def _settings(request: Request) -> Jurisdictions:
    return jurisdictions.load(
        request.app.state.settings.jurisdictions_file or jurisdictions.JURISDICTIONS
    )


@router.get("/appeals")
async def queue(current: web.Signed, request: Request) -> Response:
    refused = await access.allowed(current, request, "console.appeals.view")
    if refused:
        return refused
    waiting = await appeals.queue(current.uow)
    await current.uow.commit()
    return web.page(
        request,
        "appeals.html",
        officer=current.officer,
        csrf=current.csrf,
        queue=waiting,
        states=STATES,
        now=current.uow.now,
    )


async def _case(
    current: web.Current, request: Request, appeal_id: str, action: str
) -> appeals.Case | Response:
    """The appeal once the console ruleset allows `action` on it, else the page to show."""
    found = web.parse_uuid(appeal_id)
    case = None
    if found is not None:
        try:
            case = await appeals.case(current.uow, appeal_id=found, settings=_settings(request))
        except NotFound:
            case = None
    refused = await access.allowed(
        current, request, action, player_id=case.player_id if case else None,
        subject=f"appeal:{found}" if found else "appeal:malformed",
        back=f"/console/appeals/{found}" if found else None,
    )  # fmt: skip
    if refused:
        return refused
    if case is None:
        await current.uow.commit()
        return problems.page(
            current, request, 404, "Not found", f"No appeal {appeal_id[:80]!r} on record."
        )
    return case


@router.get("/appeals/{appeal_id}")
async def appeal(appeal_id: str, current: web.Signed, request: Request) -> Response:
    case = await _case(current, request, appeal_id, "console.appeals.view")
    if isinstance(case, Response):
        return case
    return await _appeal_page(current, request, case)


async def _appeal_page(
    current: web.Current,
    request: Request,
    case: appeals.Case,
    *,
    texts: dict[str, str] | None = None,
) -> Response:
    uow = current.uow
    stored = await decision_search.record(uow, case.refusal.decision_id)
    assert stored is not None  # noqa: S101 - an appeal's decision exists (a foreign key)
    replayed = await decision_search.replay(uow, stored)
    active = await registry.active(uow, case.jurisdiction)
    on_disk = ruleset_view.version_on_disk(active.version)
    tried = (
        decision_search.what_if(stored, on_disk)
        if on_disk is not None and on_disk.loaded is not None
        else None
    )
    granted = await overrides.of_appeal(uow, case.status.appeal_id)
    asked = await approvals.waiting_for(
        uow, kind="appeal_overturn", subject=str(case.status.appeal_id)
    )
    await uow.commit()
    return web.page(
        request,
        "appeal.html",
        officer=current.officer,
        csrf=current.csrf,
        case=case,
        a=case.status,
        d=stored,
        replayed=replayed,
        tried=tried,
        granted=granted,
        asked=asked,
        texts=texts,
        states=STATES,
        remedies=appeals.REMEDIES,
        four_eyes=appeals.needs_four_eyes("overturned", case.refusal),
        adr=_settings(request).of(case.jurisdiction).adr_body,
        now=uow.now,
        max_days=overrides.MAX_DAYS,
    )


@router.post("/appeals/{appeal_id}/reveal")
async def reveal(
    appeal_id: str, current: web.Signed, request: Request, csrf: Csrf = None
) -> Response:
    """The player's explanation, the messages and the officer's reason in clear, on this page
    only: the console ruleset (role, step-up), then the vault's rule `appeal_review`; each text
    opened is journaled by the vault, none is kept."""
    web.checked_csrf(current, csrf)
    case = await _case(current, request, appeal_id, "console.appeal.reveal")
    if isinstance(case, Response):
        return case
    await current.uow.commit()  # the console's decision stands whatever the vault says
    status = case.status
    tokens = [status.explanation_token, *(m.body_token for m in status.messages)]
    if status.outcome_reason:
        tokens.append(status.outcome_reason)
    texts: dict[str, str] = {}
    async with request.app.state.vault_uow_factory() as reading:
        for token in dict.fromkeys(tokens):
            decision, value = await vault.reveal(
                reading, player_id=case.player_id, field="document_image",
                actor=current.officer.actor, actor_role=VAULT_ROLE, purpose=PURPOSE,
                keys=request.app.state.vault_keys, ctx=current.ctx, document_token=token,
            )  # fmt: skip
            if not decision.allowed:
                await reading.commit()
                return problems.page(current, request, 403, "Not revealed", decision.reason)
            if value is not None:
                texts[token] = value.decode(errors="replace")
        await reading.commit()
    return await _appeal_page(current, request, case, texts=texts)


@router.post("/appeals/{appeal_id}/acknowledge")
async def acknowledge(
    appeal_id: str, current: web.Signed, request: Request, csrf: Csrf = None
) -> Response:
    web.checked_csrf(current, csrf)
    case = await _case(current, request, appeal_id, "console.appeal.handle")
    if isinstance(case, Response):
        return case
    done = appeals.acknowledge(
        current.uow, appeal_id=case.status.appeal_id, notifier=request.app.state.notifier,
        ctx=current.ctx,
    )  # fmt: skip
    return await carry_out(current, request, done, then=f"/console/appeals/{case.status.appeal_id}")


async def _seal(request: Request, current: web.Current, case: appeals.Case, text: str) -> str:
    """The officer's words sealed in the vault under the player's data key (own commit)."""
    async with request.app.state.vault_uow_factory() as sealing:
        token = await vault.store_document(
            sealing, player_id=case.player_id, kind=appeals.MESSAGE_KIND,
            content_type=appeals.TEXT, content=text.encode(), keys=request.app.state.vault_keys,
            ctx=current.ctx, create_key=True,
        )  # fmt: skip
        await sealing.commit()
    return str(token)


def _words(text: str, what: str) -> str:
    """The officer's text, checked as the player's is (required, at most 4,000 characters,
    plain text); a missing one is 422 `reason_required`."""
    if not text.strip():
        raise InvalidRequest("reason_required", f"write {what}")
    return appeals.checked_explanation(text)


@router.post("/appeals/{appeal_id}/information")
async def ask_for_information(
    appeal_id: str, current: web.Signed, request: Request, *, message: Text = "", csrf: Csrf = None
) -> Response:
    web.checked_csrf(current, csrf)
    case = await _case(current, request, appeal_id, "console.appeal.handle")
    if isinstance(case, Response):
        return case
    page = f"/console/appeals/{case.status.appeal_id}"
    try:
        text = _words(message, "what you need from the player")
        if case.status.state not in {"filed", "acknowledged", "answered"}:
            raise _not_now(case.status.state, "asked for more information")
    except DomainError as error:
        await current.uow.commit()
        return problem(request, current, error)
    token = await _seal(request, current, case, text)
    done = appeals.request_info(
        current.uow, appeal_id=case.status.appeal_id, message_token=token,
        notifier=request.app.state.notifier, ctx=current.ctx,
    )  # fmt: skip
    return await carry_out(current, request, done, then=page)


def _not_now(state: str, wanted: str) -> Conflict:
    if state not in appeals.OPEN:
        return Conflict("appeal_closed", appeals.CLOSED_MESSAGE)
    return Conflict("illegal_appeal_step", f"an appeal that is {STATES[state]} cannot be {wanted}")


@router.post("/appeals/{appeal_id}/decide")
async def decide(  # noqa: PLR0917 - one field each of the decision's form
    appeal_id: str,
    current: web.Signed,
    request: Request,
    outcome: Annotated[str, Form(max_length=20)] = "",
    remedy: Annotated[str, Form(max_length=40)] = "",
    days: Annotated[str, Form(max_length=10)] = "",
    reason: Text = "",
    csrf: Csrf = None,
) -> Response:
    """Uphold or overturn: the form checked first (a reason, an outcome, a remedy that fits the
    refusal, an appeal still open and not waiting for the player), then the console ruleset
    (step-up), then the reason sealed and the decision taken under the appeal's lock (so two
    officers at once make one decision: the second is 409 `appeal_closed`). An overturn of an
    AML or KYC refusal becomes a request a senior officer approves."""
    web.checked_csrf(current, csrf)
    found = web.parse_uuid(appeal_id)
    refusal = None
    if found is not None:
        try:
            refusal = (
                await appeals.case(current.uow, appeal_id=found, settings=_settings(request))
            ).refusal
        except NotFound:
            refusal = None
    four_eyes = refusal is not None and appeals.needs_four_eyes(outcome, refusal)
    action = "console.request.appeal_overturn" if four_eyes else "console.appeal.decide"
    case = await _case(current, request, appeal_id, action)
    if isinstance(case, Response):
        return case
    page = f"/console/appeals/{case.status.appeal_id}"
    try:
        if outcome not in {"upheld", "overturned"}:
            raise InvalidRequest("invalid_outcome", "an appeal is upheld or overturned")
        text = _words(reason, "the reason for your decision")
        chosen = (
            appeals.checked_remedy(remedy, days, case.refusal) if outcome == "overturned" else None
        )
        if case.status.state not in {"filed", "acknowledged", "answered"}:
            raise _not_now(case.status.state, "decided now")
    except DomainError as error:
        await current.uow.commit()  # the console's decision is kept; nothing else is done
        return problem(request, current, error)
    await current.uow.commit()  # the console's decision is kept whatever follows
    token = await _seal(request, current, case, text)
    if four_eyes:
        assert chosen is not None  # noqa: S101 - an overturn has its remedy
        asked = approvals.ask(
            current.uow, kind="appeal_overturn", subject=str(case.status.appeal_id),
            payload={
                "appeal_id": str(case.status.appeal_id), "remedy": chosen.kind,
                "days": chosen.days, "reason_token": token,
            },
            reason=f"overturn appeal {case.status.appeal_id} of a {case.refusal.category}"
            f" refusal ({case.refusal.reason_code}): {appeals.REMEDIES[chosen.kind].lower()};"
            " the officer's reason is sealed with the appeal",
            officer=current.officer, ctx=current.ctx, player_id=case.player_id,
        )  # fmt: skip
        return await carry_out(current, request, asked, then="/console/approvals")
    decided = appeals.decide(
        current.uow, appeal_id=case.status.appeal_id, outcome=outcome, reason_token=token,
        officer_id=current.officer.id, remedy=chosen, settings=_settings(request),
        notifier=request.app.state.notifier, ctx=current.ctx,
    )  # fmt: skip
    return await carry_out(current, request, decided, then=page)
