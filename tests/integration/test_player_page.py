"""The player's page (issue 15, slice 1): a player token opens it once; it shows each refusal in
plain words with whether and until when it may be appealed (or why not), the player's limits
and breaks with the forms to change them, and their appeals; an appeal is filed with an
explanation sealed in the vault. Every refusal of bad input says its code and changes nothing.
"""

import dataclasses
import json
import re
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from compliance import appeals, jurisdictions
from compliance.vault import service as vault
from core.settings import Settings
from core.uow import UnitOfWorkFactory
from tests import factories
from tests.conftest import CTX, RULESET, Api, Clock, make_api
from tests.player_support import PNG, Player, code_of


@pytest.fixture
async def player_api(api: Api, clock: Clock) -> Api:
    clock.freeze()  # what the test commits is dated now, never later
    return api


async def refused_by_limit(api: Api, uows: UnitOfWorkFactory) -> tuple[uuid.UUID, str]:
    """A player whose stake went over the 24-hour wager limit they set: (player, decision)."""
    player = await factories.committed_player(uows, cash="100.00")
    limited = await api.operator.post(
        f"/v1/admin/players/{player}/limits", {"kind": "wager", "period": "24h", "amount": "1.00"}
    )
    assert limited.status_code == 200, limited.text
    return player, await refused_stake(api, player, "wager_limit_24h")


async def refused_stake(api: Api, player: uuid.UUID, reason: str) -> str:
    bet = await api.provider.post("/v1/wallet/bet", factories.bet_body(player, "5.00"))
    assert bet.status_code == 403, bet.text
    assert bet.json()["error"]["code"] == reason
    return str(bet.json()["error"]["details"]["decision_id"])


async def counts(
    uows: UnitOfWorkFactory, vault_uows: UnitOfWorkFactory, player: uuid.UUID
) -> dict[str, int]:
    """What a filing writes, so that a refusal can be shown to have written none of it."""
    async with uows() as uow:
        found = {
            table: int(
                await uow.session.scalar(
                    sa.text(f"SELECT count(*) FROM {table} WHERE player_id = :p"),  # noqa: S608
                    {"p": player},
                )
                or 0
            )
            for table in ("appeals", "notification_outbox")
        }
        found["appeal.filed"] = int(
            await uow.session.scalar(
                sa.text(
                    "SELECT count(*) FROM journal_events WHERE event = 'appeal.filed'"
                    " AND player_id = :p"
                ),
                {"p": player},
            )
            or 0
        )
    async with vault_uows() as uow:
        found["vault.documents"] = int(
            await uow.session.scalar(
                sa.text("SELECT count(*) FROM vault.documents WHERE player_id = :p"),
                {"p": player},
            )
            or 0
        )
    return found


async def events(uows: UnitOfWorkFactory, event: str, player: uuid.UUID) -> list[dict[str, Any]]:
    async with uows() as uow:
        rows = await uow.session.execute(
            sa.text(
                "SELECT envelope FROM journal_events WHERE event = :e AND player_id = :p"
                " ORDER BY id"
            ),
            {"e": event, "p": player},
        )
        return [row[0] for row in rows]


# -- the way in --------------------------------------------------------------------------------


async def test_a_player_token_opens_one_session_and_is_refused_ever_after(
    player_api: Api, uows: UnitOfWorkFactory
) -> None:
    player = await factories.committed_player(uows, cash="10.00")
    browser = Player(player_api, player)
    token = await browser.mint()
    opened = await browser.open(token)
    assert opened.status_code == 303
    assert opened.headers["location"] == "/player"
    cookie = opened.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert "path=/player" in cookie
    assert "secure" not in cookie  # plain HTTP on loopback, as `make run`
    page = await browser.page()
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert "Nothing was refused." in page.text

    again = await Player(player_api, player).open(token)  # the same link, another browser
    assert again.status_code == 401
    assert code_of(again) == "token_already_used"
    assert "set-cookie" not in again.headers
    started = await events(uows, "player.session_started", player)
    assert len(started) == 1
    assert started[0]["actor"] == f"player:{player}"

    elsewhere = Player(player_api, player, host="https://casino.example")
    secure = (await elsewhere.open()).headers["set-cookie"].lower()
    assert "secure" in secure


async def test_an_expired_or_forged_token_opens_nothing(
    player_api: Api, uows: UnitOfWorkFactory, clock: Clock
) -> None:
    player = await factories.committed_player(uows)
    browser = Player(player_api, player)
    token = await browser.mint()
    clock.advance(minutes=16)  # the token lives 15 minutes (and 30 s of leeway)
    expired = await browser.open(token)
    assert (expired.status_code, code_of(expired)) == (401, "token_expired")
    forged = await browser.open(token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"))
    assert (forged.status_code, code_of(forged)) == (401, "invalid_token")
    no_token = await browser.http.get("/player/start")
    assert (no_token.status_code, code_of(no_token)) == (401, "missing_auth_header")
    assert await events(uows, "player.session_started", player) == []
    unsigned = await browser.page()
    assert (unsigned.status_code, code_of(unsigned)) == (401, "session_required")


async def test_a_session_ends_after_15_idle_minutes_and_on_signing_out(
    player_api: Api, uows: UnitOfWorkFactory, clock: Clock
) -> None:
    player = await factories.committed_player(uows)
    idle = Player(player_api, player)
    await idle.open()
    clock.advance(minutes=14)
    assert (await idle.page()).status_code == 200  # seen: the idle clock starts again
    clock.advance(minutes=15)
    ended = await idle.page()
    assert (ended.status_code, code_of(ended)) == (401, "session_required")
    assert "idle timeout" in ended.text
    leaving = Player(player_api, player)
    await leaving.open()
    signed_out = await leaving.http.post("/player/sign-out", data={"csrf": await leaving.csrf()})
    assert signed_out.status_code == 200
    assert "You are signed out" in signed_out.text
    assert (await leaving.page()).status_code == 401
    reasons = [e["data"]["reason"] for e in await events(uows, "player.session_ended", player)]
    assert sorted(reasons) == ["idle_timeout", "signed_out"]


# -- what the page shows -------------------------------------------------------------------------


async def test_every_refusal_in_plain_words_with_whether_and_until_when_it_may_be_appealed(
    player_api: Api, uows: UnitOfWorkFactory, clock: Clock
) -> None:
    player, limited = await refused_by_limit(player_api, uows)
    break_taken = await player_api.operator.post(
        f"/v1/admin/players/{player}/exclusions",
        {"kind": "time_out", "until": (clock() + timedelta(days=2)).isoformat(), "reason": "x"},
    )
    assert break_taken.status_code == 200, break_taken.text
    timed_out = await refused_stake(player_api, player, "timed_out")
    browser = Player(player_api, player)
    await browser.open()
    page = (await browser.page()).text
    over_limit = page[page.index(f"decision <code>{limited}</code>") - 900 :]
    assert "A bet was refused on" in over_limit
    assert "This bet would exceed your 24-hour wager limit." in over_limit
    assert "deny-bet-place-wager-limit-24h" in over_limit
    assert f"<code>{RULESET}</code>" in over_limit
    until = (clock() + timedelta(days=30)).strftime("%d %b %Y, %H:%M")
    assert f"You may appeal until {until} UTC." in page
    assert f'href="/player/refusals/{limited}/appeal"' in page
    assert "Gamblers Anonymous" in page or "<li><a href=" in page  # help for Malta's players
    assert "Your account is on a time-out" in page
    assert "cannot be appealed.</strong> You chose this break yourself." in page
    assert f'href="/player/refusals/{timed_out}/appeal"' not in page
    assert "Time-out from" in page  # the break itself, with the limits

    refused = await browser.page(f"/player/refusals/{timed_out}/appeal")
    assert (refused.status_code, code_of(refused)) == (409, "not_appealable")
    assert "You chose this break yourself" in refused.text


async def test_limits_and_a_time_out_are_set_from_the_page(
    player_api: Api, uows: UnitOfWorkFactory
) -> None:
    player = await factories.committed_player(uows, cash="10.00")
    browser = Player(player_api, player)
    await browser.open()
    form = {"csrf": await browser.csrf(), "kind": "loss", "period": "7d", "amount": "25.00"}
    saved = await browser.http.post("/player/limits", data=form)
    assert saved.status_code == 303
    assert "Your limit is saved" in (await browser.page(saved.headers["location"])).text
    assert re.search(r"loss per 7d</td><td class=\"num\">25.00</td>", (await browser.page()).text)
    bad = await browser.http.post("/player/limits", data=form | {"amount": "lots"})
    assert (bad.status_code, code_of(bad)) == (422, "invalid_amount")
    took = await browser.http.post("/player/time-out", data={"csrf": form["csrf"], "days": "7"})
    assert took.status_code == 303
    assert "Time-out from" in (await browser.page()).text
    assert len(await events(uows, "rg.exclusion_started", player)) == 1
    limits = await events(uows, "rg.limit_requested", player)
    assert [e["actor"] for e in limits] == [f"player:{player}"]


# -- an appeal ---------------------------------------------------------------------------------


async def test_a_player_appeals_with_an_explanation_and_a_document(
    player_api: Api,
    uows: UnitOfWorkFactory,
    vault_uows: UnitOfWorkFactory,
    clock: Clock,
) -> None:
    player, decision = await refused_by_limit(player_api, uows)
    browser = Player(player_api, player)
    await browser.open()
    form = await browser.page(f"/player/refusals/{decision}/appeal")
    assert form.status_code == 200
    assert '<label for="explanation">' in form.text
    assert 'enctype="multipart/form-data"' in form.text
    words = "I raised my limit on purpose yesterday.\nPlease let the new limit apply now."
    filed = await browser.appeal(decision, words, files={"document": ("id.png", PNG, "image/png")})
    assert filed.status_code == 303, filed.text
    location = filed.headers["location"]
    appeal_id = uuid.UUID(location.rsplit("/", 1)[1])
    shown = await browser.page(location)
    assert shown.status_code == 200
    assert "Received: waiting to be acknowledged" in shown.text
    assert words.replace("\n", "\n") in shown.text  # read back from the vault, for the player
    assert "1 document attached" in shown.text
    now = clock()
    for deadline in (now + timedelta(days=5), now + timedelta(days=56)):
        assert deadline.strftime("%d %b %Y, %H:%M") in shown.text
    home = (await browser.page()).text
    assert f'href="/player/appeals/{appeal_id}">see your appeal' in home

    async with uows() as uow:
        status = await appeals.status(uow, player_id=player, appeal_id=appeal_id)
    assert (status.state, status.filed_at) == ("filed", now)
    assert status.ack_due_at == now + timedelta(days=5)
    assert status.resolution_due(now) == now + timedelta(weeks=8)
    assert status.explanation_token.startswith("pii_")
    assert len(status.document_tokens) == 1
    assert [s.to_state for s in status.steps] == ["filed"]
    filed_events = await events(uows, "appeal.filed", player)
    assert len(filed_events) == 1
    assert filed_events[0]["data"]["explanation"] == status.explanation_token
    assert filed_events[0]["actor"] == f"player:{player}"
    assert "limit on purpose" not in json.dumps(filed_events)
    async with uows() as uow:
        told = (
            await uow.session.execute(
                sa.text("SELECT kind, appeal_id FROM notification_outbox WHERE player_id = :p"),
                {"p": player},
            )
        ).all()
    assert [tuple(row) for row in told] == [("appeal.filed", appeal_id)]
    async with vault_uows() as uow:
        kinds = sorted(
            (
                await uow.session.execute(
                    sa.text("SELECT kind FROM vault.documents WHERE player_id = :p"),
                    {"p": player},
                )
            ).scalars()
        )
    assert kinds == ["appeal_document", "appeal_explanation"]
    read_back = await events(uows, "vault.field_revealed", player)  # the page read it back
    assert [(e["actor"], e["data"]["purpose"], e["data"]["document"]) for e in read_back] == [
        (f"player:{player}", "own_appeal", status.explanation_token)
    ]


async def test_an_officers_message_is_shown_to_the_player(
    player_api: Api,
    uows: UnitOfWorkFactory,
    vault_uows: UnitOfWorkFactory,
) -> None:
    player, decision = await refused_by_limit(player_api, uows)
    browser = Player(player_api, player)
    await browser.open()
    location = (await browser.appeal(decision)).headers["location"]
    appeal_id = uuid.UUID(location.rsplit("/", 1)[1])
    async with vault_uows() as sealing:  # what slice 2's console will do
        body = await vault.store_document(
            sealing,
            player_id=player,
            kind=appeals.MESSAGE_KIND,
            content_type=appeals.TEXT,
            content=b"Please send a photo of your ID card.",
            keys=player_api.app.state.vault_keys,
            ctx=CTX,
        )
        await sealing.commit()
    async with uows() as uow:
        await appeals.add_message(
            uow, appeal_id=appeal_id, author="officer", body_token=body, document_tokens=[], ctx=CTX
        )
        await uow.commit()
    shown = await browser.page(location)
    assert "From the compliance team" in shown.text
    assert "Please send a photo of your ID card." in shown.text


async def test_the_deadlines_follow_the_players_jurisdiction(
    uows: UnitOfWorkFactory,
    settings: Settings,
    vault_uows: UnitOfWorkFactory,
    vault_keys: Any,
    clock: Clock,
    tmp_path: Path,
) -> None:
    clock.freeze()
    path = tmp_path / "jurisdictions.json"
    shipped = json.loads(jurisdictions.JURISDICTIONS.read_text())
    path.write_text(json.dumps(shipped | {"SE": {"appeal_ack_days": 2, "appeal_window_days": 14}}))
    api = await make_api(
        uows, dataclasses.replace(settings, jurisdictions_file=path), vault_uows, vault_keys
    )
    player = await factories.committed_player(uows, cash="50.00", jurisdiction="SE")
    limited = await api.operator.post(
        f"/v1/admin/players/{player}/limits", {"kind": "wager", "period": "24h", "amount": "1.00"}
    )
    assert limited.status_code == 200
    decision = await refused_stake(api, player, "wager_limit_24h")
    browser = Player(api, player)
    await browser.open()
    until = (clock() + timedelta(days=14)).strftime("%d %b %Y, %H:%M")
    assert f"You may appeal until {until} UTC." in (await browser.page()).text
    appeal_id = uuid.UUID((await browser.appeal(decision)).headers["location"].rsplit("/", 1)[1])
    async with uows() as uow:
        status = await appeals.status(uow, player_id=player, appeal_id=appeal_id)
    assert status.ack_due_at == clock() + timedelta(days=2)
    assert status.resolution_due_at == clock() + timedelta(days=56)
    await api.http.aclose()


# -- bad input: a clear code, nothing changed ----------------------------------------------------


async def _another_players_refusal(api: Api, uows: UnitOfWorkFactory, _: uuid.UUID) -> str:
    return (await refused_by_limit(api, uows))[1]


async def _an_allowed_decision(api: Api, uows: UnitOfWorkFactory, player: uuid.UUID) -> str:
    del api
    async with uows() as uow:
        found = await uow.session.scalar(
            sa.text(
                "SELECT id FROM policy_decisions WHERE player_id = :p AND effect = 'allow' LIMIT 1"
            ),
            {"p": player},
        )
    return str(found)  # the factory's credit of the player's funds


async def _a_refusal_of_a_break_they_chose(
    api: Api, uows: UnitOfWorkFactory, player: uuid.UUID
) -> str:
    del uows
    excluded = await api.operator.post(
        f"/v1/admin/players/{player}/exclusions",
        {"kind": "self_exclusion", "until": None, "reason": "asked"},
    )
    assert excluded.status_code == 200
    return await refused_stake(api, player, "self_excluded")


async def _no_such_decision(api: Api, uows: UnitOfWorkFactory, player: uuid.UUID) -> str:
    del api, uows, player
    return str(uuid.uuid4())


async def _not_an_id(api: Api, uows: UnitOfWorkFactory, player: uuid.UUID) -> str:
    del api, uows, player
    return "'; DROP TABLE appeals; --"


DECISIONS = {
    "another player's refusal": (_another_players_refusal, 404, "unknown_decision"),
    "a decision that allowed": (_an_allowed_decision, 409, "not_a_refusal"),
    "a break the player chose": (_a_refusal_of_a_break_they_chose, 409, "not_appealable"),
    "no such decision": (_no_such_decision, 404, "unknown_decision"),
    "not an id": (_not_an_id, 404, "unknown_decision"),
}


@pytest.mark.parametrize(("make", "status", "code"), DECISIONS.values(), ids=DECISIONS.keys())
async def test_only_the_players_own_appealable_refusal_may_be_appealed(
    player_api: Api,
    uows: UnitOfWorkFactory,
    vault_uows: UnitOfWorkFactory,
    make: Any,
    status: int,
    code: str,
) -> None:
    player = await factories.committed_player(uows, cash="20.00")
    decision = await make(player_api, uows, player)
    browser = Player(player_api, player)
    await browser.open()
    before = await counts(uows, vault_uows, player)
    refused = await browser.appeal(decision)
    assert (refused.status_code, code_of(refused)) == (status, code)
    assert "Nothing was changed." in refused.text
    assert await counts(uows, vault_uows, player) == before
    assert (await browser.page()).status_code == 200  # still signed in


async def test_an_appeal_after_its_window_or_while_one_is_open_is_refused(
    player_api: Api, uows: UnitOfWorkFactory, vault_uows: UnitOfWorkFactory, clock: Clock
) -> None:
    player, decision = await refused_by_limit(player_api, uows)
    browser = Player(player_api, player)
    await browser.open()
    assert (await browser.appeal(decision)).status_code == 303
    before = await counts(uows, vault_uows, player)
    twice = await browser.appeal(decision, "And again, in case the first one got lost.")
    assert (twice.status_code, code_of(twice)) == (409, "appeal_already_open")
    assert "See your appeal of this refusal" in twice.text
    assert await counts(uows, vault_uows, player) == before

    _, late = await refused_by_limit(player_api, uows)
    player_late = uuid.UUID(
        str(await _scalar(uows, "SELECT player_id FROM policy_decisions WHERE id = :d", d=late))
    )
    clock.advance(days=30)  # the window is 30 days: closed at its last second
    tardy = Player(player_api, player_late)
    await tardy.open()
    before = await counts(uows, vault_uows, player_late)
    closed = await tardy.appeal(late)
    assert (closed.status_code, code_of(closed)) == (409, "appeal_window_closed")
    assert "The time to appeal ended on" in closed.text
    assert await counts(uows, vault_uows, player_late) == before
    assert "The time to appeal ended on" in (await tardy.page()).text


async def _scalar(uows: UnitOfWorkFactory, query: str, **params: object) -> object:
    async with uows() as uow:
        return await uow.session.scalar(sa.text(query), params)


EXPLANATIONS = {
    "empty": ("   \n ", 422, "explanation_required"),
    "too long": ("x" * (appeals.MAX_EXPLANATION_CHARS + 1), 422, "explanation_too_long"),
    "binary": (b"\x00\x01\xff\xfePK\x03\x04binary", 422, "explanation_not_text"),
    "a control character": ("I agree\x1b[2J", 422, "explanation_not_text"),
}


@pytest.mark.parametrize(
    ("explanation", "status", "code"), EXPLANATIONS.values(), ids=EXPLANATIONS.keys()
)
async def test_an_explanation_that_is_no_text_or_too_long_is_refused(
    player_api: Api,
    uows: UnitOfWorkFactory,
    vault_uows: UnitOfWorkFactory,
    explanation: str | bytes,
    status: int,
    code: str,
) -> None:
    player, decision = await refused_by_limit(player_api, uows)
    browser = Player(player_api, player)
    await browser.open()
    before = await counts(uows, vault_uows, player)
    refused = await browser.appeal(decision, explanation)
    assert (refused.status_code, code_of(refused)) == (status, code)
    assert await counts(uows, vault_uows, player) == before


DOCUMENTS = {
    "not a picture or a PDF": ("notes.txt", b"just some words", "image/png"),
    "too large": ("big.png", PNG + bytes(appeals.MAX_DOCUMENT_BYTES), "image/png"),
}


@pytest.mark.parametrize("document", DOCUMENTS.values(), ids=DOCUMENTS.keys())
async def test_a_document_that_is_no_pdf_png_or_jpeg_or_too_large_is_refused(
    player_api: Api,
    uows: UnitOfWorkFactory,
    vault_uows: UnitOfWorkFactory,
    document: tuple[str, bytes, str],
) -> None:
    player, decision = await refused_by_limit(player_api, uows)
    browser = Player(player_api, player)
    await browser.open()
    before = await counts(uows, vault_uows, player)
    refused = await browser.appeal(decision, files={"document": document})
    assert (refused.status_code, code_of(refused)) == (422, "invalid_document")
    assert await counts(uows, vault_uows, player) == before


@pytest.mark.parametrize("csrf", [None, "forged"], ids=["missing", "forged"])
async def test_a_form_without_the_sessions_csrf_token_does_nothing(
    player_api: Api, uows: UnitOfWorkFactory, vault_uows: UnitOfWorkFactory, csrf: str | None
) -> None:
    player, decision = await refused_by_limit(player_api, uows)
    browser = Player(player_api, player)
    await browser.open()
    before = await counts(uows, vault_uows, player)
    refused = await browser.appeal(decision, csrf=csrf)
    assert (refused.status_code, code_of(refused)) == (403, "csrf_refused")
    limit = {"kind": "wager", "period": "24h", "amount": "0.50"}
    refused_limit = await browser.http.post("/player/limits", data=limit | {"csrf": csrf or ""})
    assert (refused_limit.status_code, code_of(refused_limit)) == (403, "csrf_refused")
    assert await counts(uows, vault_uows, player) == before
    assert len(await events(uows, "rg.limit_requested", player)) == 1  # the operator's, only
    assert len(await events(uows, "security.csrf_refused", player)) == 2


async def test_another_players_appeal_is_not_found(
    player_api: Api, uows: UnitOfWorkFactory
) -> None:
    player, decision = await refused_by_limit(player_api, uows)
    owner = Player(player_api, player)
    await owner.open()
    location = (await owner.appeal(decision)).headers["location"]
    stranger = Player(player_api, await factories.committed_player(uows))
    await stranger.open()
    for path in (location, "/player/appeals/not-an-id"):
        hidden = await stranger.page(path)
        assert (hidden.status_code, code_of(hidden)) == (404, "unknown_appeal")
        assert "limit" not in hidden.text.split("data-error-code")[1]


# -- PostgreSQL says the same, whatever the code does --------------------------------------------


@pytest.fixture
async def filed(player_api: Api, uows: UnitOfWorkFactory) -> dict[str, Any]:
    player, decision = await refused_by_limit(player_api, uows)
    browser = Player(player_api, player)
    await browser.open()
    location = (await browser.appeal(decision)).headers["location"]
    return {"player": player, "decision": uuid.UUID(decision), "appeal": location.rsplit("/")[-1]}


_NEW_APPEAL = (
    "INSERT INTO appeals (id, player_id, decision_id, jurisdiction, state, explanation_token,"
    " document_tokens, filed_at, ack_due_at, resolution_due_at, updated_at)"
    " VALUES (:new, :{player}, :decision, 'MT', 'filed', 'pii_x', '{{}}', now(),"
    " now() + interval '5 days', now() + interval '56 days', now())"
)
REFUSED_BY_POSTGRESQL = {
    "two open appeals": (_NEW_APPEAL.format(player="player"), "uq_appeals_open_decision"),
    "another player's decision": (_NEW_APPEAL.format(player="other"), "not a refusal of player"),
    "a move without its transition": (
        (
            "UPDATE appeals SET state = 'decided', outcome = 'upheld', decided_at = now(),"
            " outcome_reason = 'r', acknowledged_at = now() WHERE id = :appeal"
        ),
        "only with its transition recorded",
    ),
    "a deadline brought forward": (
        "UPDATE appeals SET resolution_due_at = filed_at + interval '6 days' WHERE id = :appeal",
        "only moves later",
    ),
    "what it is changed": (
        "UPDATE appeals SET explanation_token = 'pii_other' WHERE id = :appeal",
        "permission denied",
    ),
    "deleted": ("DELETE FROM appeals WHERE id = :appeal", "permission denied"),
    "history rewritten": (
        "UPDATE appeal_transitions SET to_state = 'decided' WHERE appeal_id = :appeal",
        "permission denied",
    ),
}


@pytest.mark.parametrize(
    ("statement", "refusal"), REFUSED_BY_POSTGRESQL.values(), ids=REFUSED_BY_POSTGRESQL.keys()
)
async def test_postgresql_refuses_what_the_code_never_does(
    filed: dict[str, Any], uows: UnitOfWorkFactory, statement: str, refusal: str
) -> None:
    params = {
        "other": await factories.committed_player(uows),
        "new": uuid.uuid4(),
        "player": filed["player"],
        "decision": filed["decision"],
        "appeal": uuid.UUID(filed["appeal"]),
    }
    used = {k: v for k, v in params.items() if f":{k}" in statement}
    async with uows() as uow:
        with pytest.raises(sa.exc.DBAPIError, match=refusal):
            await uow.session.execute(sa.text(statement), used)
