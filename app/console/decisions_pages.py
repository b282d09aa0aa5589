"""The decisions pages: search stored decisions, read one's record, replay it under its own
ruleset or try it under another version beside what was stored. Reading is the console action
`console.decisions.view`, replaying and trying `console.decision.replay`, each decided by the
console ruleset (app/console/access.py) before anything is shown."""

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from app.console import access, decision_search, nav, problems, ruleset_view, web
from app.console.decision_search import BadSearch, Form, Record
from policies.ruleset import RulesetError

router = APIRouter(prefix="/console", include_in_schema=False)
SUBJECT_MAX = 300  # what a search asked for, as journaled with the console action


@router.get("/decisions")
async def search(  # noqa: PLR0917 - one argument per field of the search form
    current: web.Signed,
    request: Request,
    player: str = "",
    rule: str = "",
    reason: str = "",
    version: str = "",
    action: str = "",
    outcome: str = "",
    since: Annotated[str, Query(alias="from")] = "",
    until: Annotated[str, Query(alias="to")] = "",
    before: str = "",
) -> Response:
    form = Form(player, rule, reason, version, action, outcome, since, until, before)
    asked = urlencode(form.query(before=""))[:SUBJECT_MAX]
    refused = await access.allowed(
        current, request, "console.decisions.view", subject=f"decisions?{asked}"
    )
    if refused:
        return refused
    known = ruleset_view.vocabulary()
    try:
        wanted = decision_search.parse(form, now=current.uow.now, known=known)
    except BadSearch as error:
        await current.uow.commit()
        return _search_page(current, request, form, known, error=str(error))
    found = await decision_search.search(current.uow, wanted, known)
    await current.uow.commit()
    return _search_page(current, request, form, known, wanted=wanted, found=found)


def _search_page(
    current: web.Current,
    request: Request,
    form: Form,
    known: ruleset_view.Vocabulary,
    *,
    error: str | None = None,
    wanted: decision_search.Search | None = None,
    found: decision_search.Found | None = None,
) -> Response:
    older = (
        "/console/decisions?" + urlencode(form.query(before=found.next_cursor))
        if found and found.next_cursor
        else None
    )
    return web.page(
        request,
        "decisions.html",
        status_code=422 if error else 200,
        officer=current.officer,
        csrf=current.csrf,
        form=form,
        known=known,
        outcomes=decision_search.OUTCOMES,
        error=error,
        wanted=wanted,
        found=found,
        older=older,
        first_page="/console/decisions?" + urlencode(form.query(before=""))
        if form.before
        else None,
    )


async def _stored(
    current: web.Current, request: Request, decision_id: str, action: str
) -> Record | Response:
    """The decision's record once the console ruleset allows `action`, else the page to show."""
    found = web.parse_uuid(decision_id)
    stored = await decision_search.record(current.uow, found) if found else None
    refused = await access.allowed(
        current,
        request,
        action,
        player_id=stored.player_id if stored else None,
        subject=f"decision:{found}" if found else "decision:malformed",
    )
    if refused:
        return refused
    if stored is None:
        await current.uow.commit()
        return problems.page(
            current, request, 404, "Not found", f"No decision {decision_id[:80]!r} on record."
        )
    return stored


@router.get("/decisions/{decision_id}")
async def decision(decision_id: str, current: web.Signed, request: Request) -> Response:
    stored = await _stored(current, request, decision_id, "console.decisions.view")
    if isinstance(stored, Response):
        return stored
    await current.uow.commit()
    try:
        decided_by = ruleset_view.loaded(stored.version, stored.content_hash)
        unreadable = None
    except RulesetError as error:
        decided_by, unreadable = None, str(error)
    kind = (
        decided_by.jurisdiction == "console" if decided_by else stored.action.startswith("console.")
    )
    others = [
        found.version
        for found in ruleset_view.on_disk()
        if found.loaded is not None
        and found.version != stored.version
        and (found.kind == "console") == kind
    ]
    return web.page(
        request,
        "decision.html",
        officer=current.officer,
        csrf=current.csrf,
        d=stored,
        ruleset=decided_by,
        unreadable=unreadable,
        others=others,
        may_replay=nav.may(current.officer.role, "console.decision.replay"),
    )


@router.get("/decisions/{decision_id}/replay")
async def replay(decision_id: str, current: web.Signed, request: Request) -> Response:
    stored = await _stored(current, request, decision_id, "console.decision.replay")
    if isinstance(stored, Response):
        return stored
    try:
        tried = await decision_search.replay(current.uow, stored)
    except RulesetError as error:
        await current.uow.commit()
        return problems.page(current, request, 409, "Cannot replay", str(error))
    await current.uow.commit()
    return _compare(current, request, stored, tried, replayed=True)


@router.get("/decisions/{decision_id}/what-if")
async def what_if(
    decision_id: str, current: web.Signed, request: Request, version: str = ""
) -> Response:
    stored = await _stored(current, request, decision_id, "console.decision.replay")
    if isinstance(stored, Response):
        return stored
    await current.uow.commit()
    other = ruleset_view.version_on_disk(version.strip())
    if other is None:
        return problems.unknown_version(current, request, version.strip())
    if other.loaded is None:
        return problems.page(current, request, 409, "Cannot try this version", other.error or "")
    return _compare(current, request, stored, decision_search.what_if(stored, other))


def _compare(
    current: web.Current,
    request: Request,
    stored: Record,
    tried: decision_search.Tried,
    *,
    replayed: bool = False,
) -> Response:
    return web.page(
        request,
        "decision_compare.html",
        officer=current.officer,
        csrf=current.csrf,
        d=stored,
        tried=tried,
        replayed=replayed,
        same=tried.same_as(stored, rules=replayed),
    )
