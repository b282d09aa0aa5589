"""The gate, rule by rule, at its boundaries, through the API a game provider and an officer use.

Each test builds one player's situation, then shows the stake (or settle) that is still allowed
and the one that is refused, with what the refusal tells the caller: reason code, human reason,
decision id, the rules and policy version, and for responsible-gambling reasons the help
contacts of the player's country. Refused stakes move nothing; their decisions are stored.
"""

import shutil
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from compliance import jurisdictions, kyt
from compliance.ages import whole_years
from compliance.gate import Gate
from core.uow import UnitOfWorkFactory
from policies import decisions, registry, ruleset
from policies.models import PolicyDecision
from tests import factories
from tests.conftest import CTX, RULESET, Api, Clock, NoAgesOnFile

BASE = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


async def bet(api: Api, player: uuid.UUID, amount: str, **extra: Any) -> httpx.Response:
    return await api.provider.post("/v1/wallet/bet", factories.bet_body(player, amount, **extra))


async def limit(api: Api, player: uuid.UUID, kind: str, period: str, amount: str | None) -> None:
    response = await api.operator.post(
        f"/v1/admin/players/{player}/limits",
        {"kind": kind, "period": period, "amount": amount},
    )
    assert response.status_code == 200, response.text


async def exclusion(api: Api, player: uuid.UUID, kind: str, until: datetime | None) -> None:
    response = await api.operator.post(
        f"/v1/admin/players/{player}/exclusions",
        {
            "kind": kind,
            "until": until.isoformat() if until else None,
            "reason": "asked by the player",
        },
    )
    assert response.status_code == 200, response.text


async def officer(api: Api, player: uuid.UUID, what: str, body: dict[str, Any]) -> None:
    response = await api.operator.post(
        f"/v1/admin/players/{player}/{what}", body | {"reason": "checked"}
    )
    assert response.status_code == 200, response.text


async def fund(api: Api, player: uuid.UUID, amount: str, currency: str = "EUR") -> None:
    """Credit cash by an officer's adjustment, through the gate like any movement."""
    funded = await api.operator.post(
        "/v1/admin/adjustments",
        {
            "player_id": str(player),
            "amount": amount,
            "currency": currency,
            "source": "cash",
            "direction": "credit",
            "reason": "test funds",
        },
    )
    assert funded.status_code == 200, funded.text


def refusal(response: httpx.Response, code: str) -> dict[str, Any]:
    """The refusal's details, after checking it is the policy refusal `code`."""
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    details: dict[str, Any] = error["details"]
    assert details["policy_version"] == RULESET
    uuid.UUID(details["decision_id"])
    return details


async def stored(uows: UnitOfWorkFactory, decision_id: str) -> sa.Row[Any]:
    async with uows() as uow:
        return (
            await uow.session.execute(
                sa.select(
                    PolicyDecision.effect,
                    PolicyDecision.reason_code,
                    PolicyDecision.reason,
                    PolicyDecision.version,
                    PolicyDecision.facts,
                ).where(PolicyDecision.id == uuid.UUID(decision_id))
            )
        ).one()


async def test_a_stake_up_to_the_wager_limit_passes_one_cent_more_is_refused(
    api: Api, uows: UnitOfWorkFactory, clock: Clock
) -> None:
    clock.now = BASE
    player = await factories.committed_player(uows, cash="500.00")
    await limit(api, player, "wager", "24h", "50.00")
    assert (await bet(api, player, "30.00")).status_code == 200
    over = refusal(await bet(api, player, "20.01"), "wager_limit_24h")
    assert over["category"] == "responsible_gambling"
    assert over["rule_ids"] == ["deny-bet-place-wager-limit-24h"]
    assert over["action"] == "bet.place"
    assert [h["name"] for h in over["help"]] == ["Responsible Gaming Foundation"]  # MT
    assert await factories.balance(api, player) == "470.00"  # the refused stake moved nothing
    record = await stored(uows, over["decision_id"])
    assert (record.effect, record.reason_code, record.version) == (
        "deny",
        "wager_limit_24h",
        RULESET,
    )
    assert record.reason == "This bet would exceed your 24-hour wager limit."
    assert record.facts["wager_24h_minor"] == 3000
    assert record.facts["wager_limit_24h_minor"] == 5000
    assert record.facts["stake_minor"] == 2001
    assert (await bet(api, player, "20.00")).status_code == 200  # lands exactly on the limit
    assert await factories.balance(api, player) == "450.00"


async def test_the_period_rolls_over_exactly_24_hours_after_the_stake(
    api: Api, uows: UnitOfWorkFactory, clock: Clock
) -> None:
    clock.now = BASE
    player = await factories.committed_player(uows, cash="500.00")
    await limit(api, player, "wager", "24h", "50.00")
    assert (await bet(api, player, "50.00")).status_code == 200
    clock.now = BASE + timedelta(hours=24) - timedelta(microseconds=1)
    refusal(await bet(api, player, "0.01"), "wager_limit_24h")
    clock.now = BASE + timedelta(hours=24)
    assert (await bet(api, player, "50.00")).status_code == 200


async def test_a_raised_limit_applies_only_after_the_cooling_off(
    api: Api, uows: UnitOfWorkFactory, clock: Clock
) -> None:
    clock.now = BASE
    player = await factories.committed_player(uows, cash="500.00")
    await limit(api, player, "wager", "7d", "50.00")
    await limit(api, player, "wager", "7d", "100.00")  # an increase: in 24 hours
    assert (await bet(api, player, "50.00")).status_code == 200
    clock.now = BASE + timedelta(hours=24) - timedelta(seconds=1)
    refusal(await bet(api, player, "0.01"), "wager_limit_7d")
    clock.now = BASE + timedelta(hours=24)
    assert (await bet(api, player, "50.00")).status_code == 200
    refusal(await bet(api, player, "0.01"), "wager_limit_7d")


async def test_the_lowest_applicable_limit_decides(
    api: Api, uows: UnitOfWorkFactory, clock: Clock
) -> None:
    clock.now = BASE
    player = await factories.committed_player(uows, cash="500.00")
    await limit(api, player, "wager", "30d", "40.00")
    await limit(api, player, "wager", "24h", "100.00")
    assert (await bet(api, player, "40.00")).status_code == 200
    refusal(await bet(api, player, "0.01"), "wager_limit_30d")


async def test_open_stakes_count_as_lost_and_winnings_give_the_loss_limit_back(
    api: Api, uows: UnitOfWorkFactory, clock: Clock
) -> None:
    clock.now = BASE
    player = await factories.committed_player(uows, cash="500.00")
    await limit(api, player, "loss", "24h", "20.00")
    first = factories.bet_body(player, "20.00")
    assert (await api.provider.post("/v1/wallet/bet", first)).status_code == 200
    refusal(await bet(api, player, "0.01"), "loss_limit_24h")
    settled = await api.provider.post("/v1/wallet/win", factories.win_body(first, "20.00"))
    assert settled.status_code == 200  # a push: nothing lost
    assert (await bet(api, player, "20.00")).status_code == 200


async def test_a_self_exclusion_stops_stakes_but_not_what_is_owed(
    api: Api, uows: UnitOfWorkFactory, clock: Clock
) -> None:
    clock.now = BASE
    player = await factories.committed_player(uows, cash="100.00")
    won = factories.bet_body(player, "10.00")
    voided = factories.bet_body(player, "10.00")
    for open_bet in (won, voided):
        assert (await api.provider.post("/v1/wallet/bet", open_bet)).status_code == 200
    await exclusion(api, player, "self_exclusion", None)
    excluded = refusal(await bet(api, player, "1.00"), "self_excluded")
    assert excluded["help"]
    paid = await api.provider.post("/v1/wallet/win", factories.win_body(won, "25.00"))
    assert paid.status_code == 200
    refunded = await api.provider.post("/v1/wallet/rollback", factories.rollback_body(voided))
    assert refunded.status_code == 200, refunded.text
    assert await factories.balance(api, player) == "115.00"


async def test_a_time_out_ends_when_it_says(
    api: Api, uows: UnitOfWorkFactory, clock: Clock
) -> None:
    clock.now = BASE
    player = await factories.committed_player(uows, cash="100.00")
    await exclusion(api, player, "time_out", BASE + timedelta(hours=48))
    clock.now = BASE + timedelta(hours=48) - timedelta(seconds=1)
    refusal(await bet(api, player, "1.00"), "timed_out")
    clock.now = BASE + timedelta(hours=48)
    assert (await bet(api, player, "1.00")).status_code == 200


async def register(api: Api, born: date, **personal: str) -> uuid.UUID:
    response = await api.operator.post(
        "/v1/players",
        {
            "currency": "EUR",
            "jurisdiction": "MT",
            "personal": {"date_of_birth": born.isoformat(), **personal},
        },
    )
    assert response.status_code == 200, response.text
    player = uuid.UUID(response.json()["player_id"])
    await fund(api, player, "100.00")  # adjustments are not age-restricted
    return player


async def test_a_player_is_of_age_from_the_18th_birthday(api: Api, clock: Clock) -> None:
    clock.now = BASE
    today = BASE.date()
    turns_18_tomorrow = await register(api, today.replace(year=today.year - 18) + timedelta(1))
    turned_18_today = await register(api, today.replace(year=today.year - 18))
    minor = refusal(await bet(api, turns_18_tomorrow, "1.00"), "underage")
    assert minor["category"] == "kyc"
    assert "help" not in minor
    assert (await bet(api, turned_18_today, "1.00")).status_code == 200


def test_whole_years_count_completed_birthdays() -> None:
    assert whole_years(date(2000, 2, 29), date(2018, 2, 28)) == 17
    assert whole_years(date(2000, 2, 29), date(2018, 3, 1)) == 18
    assert whole_years(date(2000, 11, 26), date(2026, 11, 25)) == 25
    assert whole_years(date(2000, 11, 26), date(2026, 11, 26)) == 26


async def test_an_unknown_age_is_recorded_as_such_and_left_to_due_diligence(
    api: Api, uows: UnitOfWorkFactory
) -> None:
    player = await factories.committed_player(uows, cash="10.00")  # no personal data at all
    placed = await bet(api, player, "1.00")
    assert placed.status_code == 200
    async with uows() as uow:
        facts = await uow.session.scalar(
            sa.select(PolicyDecision.facts)
            .where(PolicyDecision.player_id == player, PolicyDecision.action == "bet.place")
            .limit(1)
        )
    assert facts is not None
    assert facts["age_years"] == -1


async def test_blocked_jurisdictions_are_refused_by_residence_and_by_location(
    api: Api, uows: UnitOfWorkFactory
) -> None:
    resident = await factories.committed_player(uows, cash="10.00", jurisdiction="US")
    refusal(await bet(api, resident, "1.00"), "jurisdiction_blocked")
    traveller = await factories.committed_player(uows, cash="10.00")
    refusal(await bet(api, traveller, "1.00", geo="FR"), "jurisdiction_blocked")
    assert (await bet(api, traveller, "1.00", geo="MT")).status_code == 200


async def test_due_diligence_stops_money_at_the_threshold_until_kyc_is_verified(
    api: Api, uows: UnitOfWorkFactory
) -> None:
    player = await factories.committed_player(uows, cash="5000.00")
    assert (await bet(api, player, "1999.99")).status_code == 200
    assert (await bet(api, player, "0.01")).status_code == 200  # reaches 2,000.00
    stopped = refusal(await bet(api, player, "0.01"), "due_diligence_required")
    assert stopped["category"] == "kyc"
    record = await stored(uows, stopped["decision_id"])
    assert record.facts["due_diligence_total_eur_minor"] == 200000
    assert record.facts["due_diligence_threshold_eur_minor"] == 200000
    await officer(api, player, "kyc", {"level": "basic"})
    refusal(await bet(api, player, "0.01"), "due_diligence_required")
    await officer(api, player, "kyc", {"level": "verified"})
    assert (await bet(api, player, "0.01")).status_code == 200


async def test_one_stake_cannot_jump_over_the_threshold(api: Api, uows: UnitOfWorkFactory) -> None:
    player = await factories.committed_player(uows, cash="5000.00")
    refusal(await bet(api, player, "2000.01"), "due_diligence_required")
    assert (await bet(api, player, "2000.00")).status_code == 200  # lands exactly on it


async def test_links_of_links_count_towards_due_diligence(
    api: Api, uows: UnitOfWorkFactory
) -> None:
    first, middle, last = [await factories.committed_player(uows, cash="3000.00") for _ in range(3)]
    for a, b in ((first, middle), (middle, last)):
        response = await api.operator.post(
            f"/v1/admin/players/{a}/links",
            {"linked_player_id": str(b), "reason": "same household"},
        )
        assert response.status_code == 200, response.text
    assert (await bet(api, first, "1200.00")).status_code == 200
    assert (await bet(api, last, "800.00")).status_code == 200
    refusal(await bet(api, last, "0.01"), "due_diligence_required")  # first is two links away


async def test_standing_set_over_the_machine_api_names_the_client_never_a_typed_name(
    api: Api, uows: UnitOfWorkFactory
) -> None:
    player, other = [await factories.committed_player(uows) for _ in range(2)]
    changes = {
        "kyc": {"level": "verified"},
        "aml-hold": {"on_hold": True},
        "links": {"linked_player_id": str(other)},
    }
    for what, body in changes.items():
        named = await api.operator.post(
            f"/v1/admin/players/{player}/{what}",
            body | {"actor": "officer-7", "reason": "checked"},
        )
        assert (named.status_code, named.json()["error"]["code"]) == (422, "invalid_request")
    before = (await api.operator.get(f"/v1/admin/players/{player}/standing")).json()
    assert (before["kyc_level"], before["aml_hold"], before["linked"]) == ("unverified", False, [])

    for what, body in changes.items():
        await officer(api, player, what, body)
    async with uows() as uow:
        recorded = (
            await uow.session.execute(
                sa.text(
                    "SELECT set_by FROM kyc_levels WHERE player_id = :p"
                    " UNION ALL SELECT set_by FROM aml_holds WHERE player_id = :p"
                    " UNION ALL SELECT coalesce(envelope->'data'->>'actor', envelope->>'actor')"
                    " FROM journal_events WHERE player_id = :p"
                    " AND event IN ('kyc.level_set', 'aml.hold_set', 'player.linked')"
                ),
                {"p": player},
            )
        ).scalars()
        assert sorted(recorded) == [f"client:{api.operator.client_id}"] * 5


async def test_only_stakes_need_an_exchange_rate_and_without_one_nothing_moves(
    api: Api, uows: UnitOfWorkFactory
) -> None:
    # funded by an adjustment through the gate, with no CHF rate recorded: it needs none
    player = await factories.committed_player(uows, cash="100.00", currency="CHF")
    refused = await bet(api, player, "1.00", currency="CHF")  # no CHF/EUR rate at all
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "no_fx_rate"
    assert await factories.balance(api, player) == "100.00"
    rate = await api.operator.post(  # only the inverse is recorded: it serves
        "/v1/admin/fx-rates",
        {
            "base": "EUR",
            "quote": "CHF",
            "rate": "0.5",
            "source": "test",
            "as_of": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
        },
    )
    assert rate.status_code == 200, rate.text
    placed = factories.bet_body(player, "999.00", currency="CHF")  # 1,998.00 EUR
    await fund(api, player, "1000.00", "CHF")
    assert (await api.provider.post("/v1/wallet/bet", placed)).status_code == 200
    refusal(await bet(api, player, "1.01", currency="CHF"), "due_diligence_required")
    paid = await api.provider.post("/v1/wallet/win", factories.win_body(placed, "10.00"))
    assert paid.status_code == 200, paid.text


async def test_linked_accounts_reach_the_threshold_together(api: Api, clock: Clock) -> None:
    clock.now = BASE
    email = f"same-{uuid.uuid4().hex[:8]}@example.com"
    adult = date(1990, 1, 1)
    first = await register(api, adult, email=email)
    second = await register(api, adult, email=email.upper())  # the same address, normalized
    standing = (await api.operator.get(f"/v1/admin/players/{second}/standing")).json()
    assert standing["linked"] == [{"player_id": str(first), "basis": "email"}]
    for player in (first, second):
        await fund(api, player, "2000.00")
    assert (await bet(api, first, "1500.00")).status_code == 200
    assert (await bet(api, second, "500.00")).status_code == 200
    refusal(await bet(api, second, "0.01"), "due_diligence_required")
    refusal(await bet(api, first, "0.01"), "due_diligence_required")


async def test_other_currencies_count_at_the_rate_in_force(
    api: Api, uows: UnitOfWorkFactory, clock: Clock
) -> None:
    clock.now = BASE
    rate = await api.operator.post(
        "/v1/admin/fx-rates",
        {
            "base": "SEK",
            "quote": "EUR",
            "rate": "0.08",
            "source": "test",
            "as_of": (BASE - timedelta(minutes=1)).isoformat(),
        },
    )
    assert rate.status_code == 200, rate.text
    player = await factories.committed_player(uows, cash="30000.00", currency="SEK")
    assert (await bet(api, player, "24999.87", currency="SEK")).status_code == 200  # 1,999.99
    assert (await bet(api, player, "0.13", currency="SEK")).status_code == 200  # 2,000.00 EUR
    stopped = refusal(await bet(api, player, "1.00", currency="SEK"), "due_diligence_required")
    record = await stored(uows, stopped["decision_id"])
    assert record.facts["due_diligence_total_eur_minor"] == 200000


async def test_help_contacts_follow_the_players_country(api: Api, uows: UnitOfWorkFactory) -> None:
    for country, expected in (("GB", "National Gambling Helpline"), ("XK", "Gamblers Anonymous")):
        player = await factories.committed_player(uows, cash="10.00", jurisdiction=country)
        await exclusion(api, player, "self_exclusion", None)
        shown = refusal(await bet(api, player, "1.00"), "self_excluded")["help"]
        assert expected in shown[0]["name"]
        assert shown[0]["url"].startswith("https://")


async def test_a_denied_decision_is_stored_journaled_and_replayed_under_its_key(
    api: Api, uows: UnitOfWorkFactory
) -> None:
    player = await factories.committed_player(uows, cash="100.00")
    await exclusion(api, player, "self_exclusion", None)
    body = factories.bet_body(player, "5.00")
    first = await api.provider.post("/v1/wallet/bet", body, idempotency_key="excluded-bet")
    again = await api.provider.post("/v1/wallet/bet", body, idempotency_key="excluded-bet")
    decision_id = refusal(first, "self_excluded")["decision_id"]
    assert (again.status_code, again.json()) == (403, first.json())
    assert again.headers["Idempotent-Replayed"] == "true"
    async with uows() as uow:
        denials = (
            await uow.session.scalars(
                sa.select(PolicyDecision.id).where(
                    PolicyDecision.player_id == player, PolicyDecision.effect == "deny"
                )
            )
        ).all()
        journaled = await uow.session.scalar(
            sa.text(
                "SELECT count(*) FROM journal_events WHERE event = 'policy.decided'"
                " AND envelope->'data'->>'decision_id' = :id"
                " AND envelope->'data'->>'effect' = 'deny'"
            ),
            {"id": decision_id},
        )
        replayed = await decisions.replay(uow, uuid.UUID(decision_id))
    assert [str(d) for d in denials] == [decision_id]  # the replay decided nothing new
    assert journaled == 1
    assert replayed.same
    assert replayed.now.reason_code == "self_excluded"


async def test_a_ruleset_whose_files_changed_moves_nothing(
    api: Api, uows: UnitOfWorkFactory, tmp_path: Path
) -> None:
    player = await factories.committed_player(uows, cash="10.00", jurisdiction="GI")
    version = "2099-01-test"
    shutil.copytree(ruleset.RULESETS / RULESET, tmp_path / version)
    manifest = tmp_path / version / "manifest.json"
    manifest.write_text(manifest.read_text().replace(RULESET, version))
    async with uows() as uow:
        await registry.activate(
            uow, version=version, jurisdiction="GI", actor="t", reason="t", ctx=CTX, root=tmp_path
        )
        await uow.commit()
    api.app.state.gate = Gate(
        ages=NoAgesOnFile(), jurisdictions=jurisdictions.load(), kyt=kyt.load(), root=tmp_path
    )
    policy = tmp_path / version / "policy.csv"
    policy.write_text(policy.read_text().replace("deny-bet-place-self-excluded", "renamed"))
    response = await bet(api, player, "1.00")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "policy_unavailable"
    assert await factories.balance(api, player) == "10.00"
