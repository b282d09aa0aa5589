"""A data subject access request answered from the console: the data protection officer
downloads everything held about a player as JSON; nobody else may; AML records are withheld."""

import json
from collections.abc import AsyncIterator

import pytest

from compliance.vault.keys import LocalKeyFile
from core import sql
from core.uow import UnitOfWorkFactory
from tests import console_support, factories
from tests.conftest import Api, Clock
from tests.console_support import Browser


@pytest.fixture
async def browser(api: Api, clock: Clock) -> AsyncIterator[Browser]:
    clock.freeze()
    browser = Browser(api.app, clock)
    yield browser
    await browser.aclose()


async def test_the_dpo_downloads_everything_held_about_a_player_but_aml_records(
    api: Api,
    browser: Browser,
    uows: UnitOfWorkFactory,
    vault_uows: UnitOfWorkFactory,
    vault_keys: LocalKeyFile,
) -> None:
    player = await console_support.player_with_personal_data(uows, vault_uows, vault_keys)
    bet = await api.provider.post("/v1/wallet/bet", factories.bet_body(player, amount="2.50"))
    assert bet.status_code == 200, bet.text
    held = await api.operator.post(
        f"/v1/admin/players/{player}/aml-hold", {"on_hold": True, "reason": "suspicious deposit"}
    )
    assert held.status_code == 200, held.text
    page = f"/console/players/{player}"
    await browser.sign_in(await console_support.officer(uows, "dpo"))
    assert "Download the subject access export" in (await browser.get(page)).text

    answer = await browser.submit(f"{page}/dsar", {}, of=page)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-disposition"] == f'attachment; filename="dsar-{player}.json"'
    assert answer.headers["cache-control"] == "no-store"
    export = json.loads(answer.content)
    assert export["format"] == "pitwarden-dsar-1"
    assert export["personal_data"]["fields"]["legal_name"]["value"] == "Ilse Vella"
    assert export["personal_data"]["fields"]["email"]["value"] == "ilse@example.org"
    assert export["account"]["balances"]["cash"] == "7.50"
    assert [(b["stake"], b["status"]) for b in export["bets"]] == [("2.50", "OPEN")]
    assert ("bet.place", "allow") in [(d["action"], d["effect"]) for d in export["decisions"]]
    assert not [d for d in export["decisions"] if d["action"].startswith("console.")]
    assert "suspicious deposit" not in answer.text  # the hold and its reason are withheld
    assert "aml_hold" not in answer.text
    assert any("tipping off" in why for why in export["withheld"])

    async with uows() as uow:
        exported = await sql.scalar(
            uow,
            "SELECT count(*) FROM journal_events"
            " WHERE player_id = %(p)s AND event = 'vault.exported'",
            {"p": player},
        )
        decided = await sql.scalar(
            uow,
            "SELECT effect FROM policy_decisions WHERE action = 'console.pii.export'"
            " AND player_id = %(p)s",
            {"p": player},
        )
    assert (exported, decided) == (1, "allow")


async def test_an_officer_may_not_export_and_a_stale_second_factor_asks_again(
    api: Api,
    browser: Browser,
    uows: UnitOfWorkFactory,
    vault_uows: UnitOfWorkFactory,
    vault_keys: LocalKeyFile,
    clock: Clock,
) -> None:
    player = await console_support.player_with_personal_data(uows, vault_uows, vault_keys)
    page = f"/console/players/{player}"
    await browser.sign_in(await console_support.officer(uows, "officer"))
    assert "subject access export" not in (await browser.get(page)).text
    refused = await browser.submit(f"{page}/dsar", {}, of=page)
    assert refused.status_code == 403
    assert "Ilse Vella" not in refused.text

    dpo = Browser(api.app, clock)
    try:
        await dpo.sign_in(await console_support.officer(uows, "dpo"))
        clock.advance(minutes=5, seconds=1)
        stale = await dpo.submit(f"{page}/dsar", {}, of=page)
        assert stale.status_code == 303
        assert stale.headers["location"] == f"/console/step-up?next={page}"
    finally:
        await dpo.aclose()
    async with uows() as uow:
        exported = await sql.scalar(
            uow,
            "SELECT count(*) FROM journal_events"
            " WHERE player_id = %(p)s AND event = 'vault.exported'",
            {"p": player},
        )
    assert exported == 0


async def test_a_player_without_personal_data_still_gets_their_play(
    api: Api, browser: Browser, uows: UnitOfWorkFactory
) -> None:
    player = await factories.committed_player(uows, cash="3.00")
    page = f"/console/players/{player}"
    await browser.sign_in(await console_support.officer(uows, "dpo"))
    answer = await browser.submit(f"{page}/dsar", {}, of=page)
    assert answer.status_code == 200, answer.text
    export = json.loads(answer.content)
    assert export["personal_data"]["fields"] == {}
    assert export["account"]["balances"]["cash"] == "3.00"
