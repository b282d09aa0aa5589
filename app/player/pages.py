"""The player's page (`/player`, issue 15): why they were refused and whether they may appeal,
their limits and breaks, their appeals; server-rendered, mobile-first, no JavaScript needed.

The casino's front end sends the player to `/player/start?token=<player token>` (a token it
minted with `POST /v1/admin/players/{id}/session`, decision 0014). That page does nothing but
offer a button: pressing it posts the token to `/player/session`, which exchanges it, once,
for a session (so a link previewer fetching the address spends nothing, and the cookie is set
by a request from this site itself, as SameSite=Strict needs). Every other page reads the
session; every form carries its CSRF token.
"""

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, FastAPI, File, Form, Request, UploadFile
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from app.api.rg import change_limit, standing_of
from app.auth import Uow, trace_id
from app.player import sessions, web
from app.player_auth import InvalidToken, tokens
from compliance import appeals, jurisdictions, overrides, rg
from compliance.helplines import contacts_for
from compliance.jurisdictions import Jurisdictions
from compliance.vault import service as vault
from core import players
from core.errors import Conflict, DomainError, InvalidRequest, NotFound
from core.journal import EventContext

router = APIRouter(prefix="/player", include_in_schema=False)

ACTIONS = {
    "bet.place": "A bet",
    "deposit": "A deposit",
    "withdrawal": "A withdrawal",
    "bet.settle": "Paying out a bet",
    "bet.rollback": "Cancelling a bet",
    "adjustment.credit": "A credit to your account",
    "adjustment.debit": "A debit from your account",
    "withdrawal.release": "Returning a withdrawal's money to your balance",
    "withdrawal.pay_out": "Paying out a withdrawal",
}
STATES = {
    "filed": "Received: waiting to be acknowledged",
    "acknowledged": "Being reviewed",
    "info_requested": "Waiting for information from you (the clock is stopped)",
    "answered": "Being reviewed, with your information",
    "decided": "Decided",
    "withdrawn": "Withdrawn",
}
OUTCOMES = {"upheld": "The refusal stands", "overturned": "The refusal was overturned"}
NOTICES = {
    "appeal.filed": "We received your appeal",
    "appeal.acknowledged": "We acknowledged your appeal and are reviewing it",
    "appeal.info_requested": "We need more information from you about your appeal",
    "appeal.answered": "We received your information",
    "appeal.decided": "Your appeal was decided",
}
TIME_OUT_DAYS = (1, 2, 3, 7, 14, 28, 42)


def _settings(request: Request) -> Jurisdictions:
    path = request.app.state.settings.jurisdictions_file or jurisdictions.JURISDICTIONS
    return jurisdictions.load(path)


def _decision(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value.strip())
    except ValueError:
        raise NotFound("unknown_decision", "you have no decision with this id") from None


def _appeal(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value.strip())
    except ValueError:
        raise NotFound("unknown_appeal", "you have no appeal with this id") from None


# -- the way in: a player token, exchanged once ----------------------------------------------


@router.get("/start")
async def start(request: Request, token: str = "") -> Response:
    """Nothing happens here: the page offers to open the player's page with this token."""
    if not token:
        return web.problem(
            request,
            InvalidToken("missing_auth_header", "open this page from the casino's site"),
        )
    return web.page(request, "start.html", token=None, player_token=token[:4096])


@router.post("/session")
async def exchange(
    request: Request, uow: Uow, token: Annotated[str, Form(max_length=4096)] = ""
) -> Response:
    """The token, checked (signature, audience, expiry) and exchanged for a session — once: its
    id is kept with the session, and the same token is refused ever after (401
    `token_already_used`), as an expired (`token_expired`) or forged (`invalid_token`) one."""
    try:
        if not token:
            raise InvalidToken("missing_auth_header", "open this page from the casino's site")
        verified = tokens(request.app.state.settings).verify(token, now=uow.now)
        await players.wallet(uow, verified.player_id)  # an unknown player is a 404
        if await sessions.token_used(uow, verified.token_id):
            raise InvalidToken(
                "token_already_used",
                "this link was used already: open this page again from the casino's site",
            )
        cookie, _ = await sessions.start(
            uow,
            player_id=verified.player_id,
            token_id=verified.token_id,
            address=web.address(request),
            user_agent=request.headers.get("user-agent", ""),
            ctx=EventContext(
                actor=f"player:{verified.player_id}",
                trace_id=trace_id(request),
                session_id=verified.token_id,
            ),
        )
        await uow.commit()
    except DomainError as error:
        return web.problem(request, error)
    return web.redirect(request, "/player", cookie)


@router.post("/sign-out")
async def sign_out(
    request: Request, uow: Uow, csrf: Annotated[str | None, Form(max_length=200)] = None
) -> Response:
    me = None
    try:
        me = await web.current(request, uow)
        await web.checked_csrf(request, me, csrf)
        await sessions.end(uow, me.session, reason="signed_out", ctx=me.ctx)
        await uow.commit()
    except DomainError as error:
        return web.problem(request, error, me)
    response = web.page(request, "signed_out.html")
    web.clear_cookie(response, request)
    return response


# -- the page --------------------------------------------------------------------------------


@router.get("")
async def home(request: Request, uow: Uow, done: str = "") -> Response:
    me = None
    try:
        me = await web.current(request, uow)
        settings = _settings(request)
        refusals = await appeals.refusals(uow, player_id=me.player_id, settings=settings)
        mine = await appeals.of_player(uow, player_id=me.player_id)
        standing = await standing_of(uow, me.player_id)
        country = await appeals.jurisdiction_of(uow, me.player_id)
        told = await appeals.notices(uow, player_id=me.player_id)
        await uow.commit()
    except DomainError as error:
        return web.problem(request, error, me)
    return web.page(
        request,
        "home.html",
        csrf=me.csrf,
        now=uow.now,
        refusals=refusals,
        appeals=mine,
        standing=standing,
        help=contacts_for(country),
        actions=ACTIONS,
        states=STATES,
        outcomes=OUTCOMES,
        notices=told,
        notice_words=NOTICES,
        kinds=rg.KINDS,
        periods=rg.PERIODS,
        time_out_days=TIME_OUT_DAYS,
        done=done[:40],
    )


@router.get("/refusals/{decision_id}/appeal")
async def appeal_form(decision_id: str, request: Request, uow: Uow) -> Response:
    """The form, for a refusal the player may appeal now (otherwise the page says why not)."""
    me = None
    try:
        me = await web.current(request, uow)
        settings = _settings(request)
        found = _decision(decision_id)
        filing = await appeals.check_filing(
            uow, player_id=me.player_id, decision_id=found, settings=settings
        )
        refusal = await appeals.refusal_of(
            uow, player_id=me.player_id, decision_id=found, settings=settings
        )
        await uow.commit()
    except DomainError as error:
        return web.problem(request, error, me)
    return web.page(
        request,
        "appeal_form.html",
        csrf=me.csrf,
        refusal=refusal,
        until=filing.appeal_until,
        actions=ACTIONS,
        max_chars=appeals.MAX_EXPLANATION_CHARS,
        max_kib=appeals.MAX_DOCUMENT_BYTES // 1024,
    )


@router.post("/appeals")
async def file_appeal(
    *,
    request: Request,
    uow: Uow,
    csrf: Annotated[str | None, Form()] = None,
    decision_id: Annotated[str, Form()] = "",
    explanation: Annotated[str, Form()] = "",
    document: Annotated[UploadFile | None, File()] = None,
) -> Response:
    """File the appeal: the explanation and the document sealed in the vault first (its own
    commit), then the appeal under the decision's lock (decision 0022); a refusal of any kind
    changes nothing."""
    me = None
    try:
        me = await web.current(request, uow)
        await web.checked_csrf(request, me, csrf)
        found = _decision(decision_id)
        text = appeals.checked_explanation(explanation)
        papers: list[tuple[str, bytes]] = []
        if document is not None and document.filename:
            content = await document.read(appeals.MAX_DOCUMENT_BYTES + 1)
            papers.append((appeals.checked_document(document.content_type, content), content))
        settings = _settings(request)
        filing = await appeals.check_filing(
            uow, player_id=me.player_id, decision_id=found, settings=settings
        )
        keys = request.app.state.vault_keys
        async with request.app.state.vault_uow_factory() as sealing:
            explanation_token = await vault.store_document(
                sealing,
                player_id=me.player_id,
                kind=appeals.EXPLANATION_KIND,
                content_type=appeals.TEXT,
                content=text.encode(),
                keys=keys,
                ctx=me.ctx,
                create_key=True,
            )
            document_tokens = [
                await vault.store_document(
                    sealing,
                    player_id=me.player_id,
                    kind=appeals.DOCUMENT_KIND,
                    content_type=content_type,
                    content=content,
                    keys=keys,
                    ctx=me.ctx,
                    create_key=True,
                )
                for content_type, content in papers
            ]
            await sealing.commit()
        filed = await appeals.file(
            uow,
            filing=filing,
            explanation_token=explanation_token,
            document_tokens=document_tokens,
            settings=settings,
            notifier=request.app.state.notifier,
            ctx=me.ctx,
        )
        await uow.commit()
    except DomainError as error:
        return web.problem(request, error, me)
    return web.redirect(request, f"/player/appeals/{filed.appeal_id}")


@router.get("/appeals/{appeal_id}")
async def appeal(appeal_id: str, request: Request, uow: Uow) -> Response:
    """An appeal: its state, deadlines, steps, what the player wrote and the messages, read
    back from the vault for the player (each reading journaled, as any reveal)."""
    me = None
    try:
        me = await web.current(request, uow)
        found = await appeals.status(
            uow,
            player_id=me.player_id,
            appeal_id=_appeal(appeal_id),
        )
        refusal = await appeals.refusal_of(
            uow, player_id=me.player_id, decision_id=found.decision_id, settings=_settings(request)
        )
        granted = await overrides.of_appeal(uow, found.appeal_id)
        await uow.commit()
        tokens = [found.explanation_token, *(m.body_token for m in found.messages)]
        if found.outcome_reason:
            tokens.append(found.outcome_reason)
        texts = await _read_back(request, me, tokens)
    except DomainError as error:
        return web.problem(request, error, me)
    return web.page(
        request,
        "appeal.html",
        csrf=me.csrf,
        now=uow.now,
        appeal=found,
        refusal=refusal,
        texts=texts,
        granted=granted,
        actions=ACTIONS,
        states=STATES,
        outcomes=OUTCOMES,
        max_chars=appeals.MAX_EXPLANATION_CHARS,
        max_kib=appeals.MAX_DOCUMENT_BYTES // 1024,
    )


@router.post("/appeals/{appeal_id}/answer")
async def answer(
    *,
    appeal_id: str,
    request: Request,
    uow: Uow,
    csrf: Annotated[str | None, Form()] = None,
    message: Annotated[str, Form()] = "",
    document: Annotated[UploadFile | None, File()] = None,
) -> Response:
    """The player's answer to the officer's question: checked as an explanation is, sealed in
    the vault first (its own commit), then the appeal moves on and its clock runs again."""
    me = None
    try:
        me = await web.current(request, uow)
        await web.checked_csrf(request, me, csrf)
        found = await appeals.status(uow, player_id=me.player_id, appeal_id=_appeal(appeal_id))
        text = appeals.checked_explanation(message)
        papers: list[tuple[str, bytes]] = []
        if document is not None and document.filename:
            content = await document.read(appeals.MAX_DOCUMENT_BYTES + 1)
            papers.append((appeals.checked_document(document.content_type, content), content))
        if not found.open:
            raise Conflict("appeal_closed", appeals.CLOSED_MESSAGE)
        if found.state != "info_requested":
            raise Conflict("illegal_appeal_step", "nobody asked you for information on this appeal")
        keys = request.app.state.vault_keys
        async with request.app.state.vault_uow_factory() as sealing:
            message_token = await vault.store_document(
                sealing, player_id=me.player_id, kind=appeals.MESSAGE_KIND,
                content_type=appeals.TEXT, content=text.encode(), keys=keys, ctx=me.ctx,
                create_key=True,
            )  # fmt: skip
            document_tokens = [
                await vault.store_document(
                    sealing,
                    player_id=me.player_id,
                    kind=appeals.DOCUMENT_KIND,
                    content_type=content_type,
                    content=content,
                    keys=keys,
                    ctx=me.ctx,
                    create_key=True,
                )
                for content_type, content in papers
            ]
            await sealing.commit()
        await appeals.answer(
            uow, player_id=me.player_id, appeal_id=found.appeal_id, message_token=message_token,
            document_tokens=document_tokens, notifier=request.app.state.notifier, ctx=me.ctx,
        )  # fmt: skip
        await uow.commit()
    except DomainError as error:
        return web.problem(request, error, me)
    return web.redirect(request, f"/player/appeals/{found.appeal_id}")


async def _read_back(request: Request, me: web.Current, tokens_: list[str]) -> dict[str, str]:
    """The player's own appeal texts, opened by the vault under its rule `player` /
    `own_appeal` and journaled there."""
    texts = {}
    async with request.app.state.vault_uow_factory() as reading:
        for token in tokens_:
            decision, value = await vault.reveal(
                reading,
                player_id=me.player_id,
                field="document_image",
                actor=me.session.actor,
                actor_role="player",
                purpose="own_appeal",
                keys=request.app.state.vault_keys,
                ctx=me.ctx,
                document_token=token,
            )
            if decision.allowed and value is not None:
                texts[token] = value.decode(errors="replace")
        await reading.commit()
    return texts


# -- limits and breaks, through the same functions as the API --------------------------------


@router.post("/limits")
async def set_limit(
    *,
    request: Request,
    uow: Uow,
    csrf: Annotated[str | None, Form()] = None,
    kind: Annotated[str, Form()] = "",
    period: Annotated[str, Form()] = "",
    amount: Annotated[str, Form()] = "",
) -> Response:
    """Set or lower a limit (in force at once); a higher one waits 24 hours, as in the API."""
    me = None
    try:
        me = await web.current(request, uow)
        await web.checked_csrf(request, me, csrf)
        if kind not in rg.KINDS or period not in rg.PERIODS:
            raise InvalidRequest("invalid_limit", "choose a kind of limit and its period")
        await change_limit(
            uow,
            player_id=me.player_id,
            kind=kind,
            period=period,
            amount=amount.strip(),
            actor=me.session.actor,
            ctx=me.ctx,
        )
        await uow.commit()
    except DomainError as error:
        return web.problem(request, error, me)
    return web.redirect(request, "/player?done=limit#limits")


@router.post("/time-out")
async def take_time_out(
    request: Request,
    uow: Uow,
    csrf: Annotated[str | None, Form()] = None,
    days: Annotated[str, Form()] = "",
) -> Response:
    """A time-out of one day to six weeks, in force at once (betting and deposits paused)."""
    me = None
    try:
        me = await web.current(request, uow)
        await web.checked_csrf(request, me, csrf)
        if not days.isdigit() or int(days) not in TIME_OUT_DAYS:
            raise InvalidRequest("invalid_exclusion", "a time-out lasts from 1 day to 6 weeks")
        await rg.exclude(
            uow,
            player_id=me.player_id,
            kind="time_out",
            until=uow.now + timedelta(days=int(days)),
            actor=me.session.actor,
            reason="asked by the player on their page",
            ctx=me.ctx,
        )
        await uow.commit()
    except DomainError as error:
        return web.problem(request, error, me)
    return web.redirect(request, "/player?done=time_out#limits")


def install(app: FastAPI) -> None:
    app.state.notifier = appeals.Outbox()
    app.include_router(router)
    app.mount("/player/static", StaticFiles(directory=web.HERE / "static"), name="player-static")
