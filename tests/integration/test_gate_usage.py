"""The gate's usage windows come from counters the database keeps per player and hour
(migration 0007); they must equal the sums over the bets themselves, at every instant,
including a window edge falling inside an hour, exactly on a stake, or on an hour boundary."""

import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from compliance import facts, jurisdictions, kyt, rg
from core.guard import Movement
from core.money import Money
from core.uow import UnitOfWorkFactory
from tests import factories
from tests.conftest import Api, Clock, NoAgesOnFile

START = datetime(2026, 10, 1, 0, 0, tzinfo=UTC)


async def usage_by_gate(uows: UnitOfWorkFactory, player: uuid.UUID) -> dict[str, int]:
    movement = Movement("bet.place", player, Money(1, "EUR"))
    async with uows() as uow:
        sheet = await facts.complete(
            uow,
            movement,
            await facts.read(uow, movement),
            needed=frozenset(),
            geo=None,
            ages=NoAgesOnFile(),
            jurisdictions=jurisdictions.load(),
            kyt=kyt.load(),
        )
    return {
        f"{kind}_{period}": int(sheet[f"{kind}_{period}_minor"])
        for kind in ("wager", "loss")
        for period in rg.PERIODS
    }


async def usage_from_bets(uows: UnitOfWorkFactory, player: uuid.UUID) -> dict[str, int]:
    async with uows() as uow:
        used = await rg.usage(uow, player)  # sums the bets themselves
    return {
        f"{kind}_{period}": used[kind, period]
        for kind in ("wager", "loss")
        for period in rg.PERIODS
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_hourly_counters_give_the_same_windows_as_the_bets(
    api: Api, uows: UnitOfWorkFactory, clock: Clock, seed: int
) -> None:
    chance = random.Random(seed)  # noqa: S311 - reproducible test data
    player = await factories.committed_player(uows, cash="100000.00")
    verified = await api.operator.post(  # past the due-diligence threshold: no stops
        f"/v1/admin/players/{player}/kyc",
        {"level": "verified", "reason": "documents checked"},
    )
    assert verified.status_code == 200, verified.text
    clock.now = START
    placed: list[tuple[dict[str, object], datetime]] = []  # bets still open
    times: list[datetime] = []  # of every stake
    for _ in range(45):
        clock.now += timedelta(
            seconds=chance.choice([1, 59, 3599, 3600, 3601, 7 * 3600, 86_399, 86_400, 3 * 86_400])
        )
        body = factories.bet_body(player, f"{chance.randrange(1, 500)}.{chance.randrange(100):02}")
        assert (await api.provider.post("/v1/wallet/bet", body)).status_code == 200
        placed.append((body, clock.now))
        times.append(clock.now)
        if chance.random() < 0.5:
            open_bet = placed.pop(chance.randrange(len(placed)))[0]
            if chance.random() < 0.3:
                done = await api.provider.post(
                    "/v1/wallet/rollback", factories.rollback_body(open_bet)
                )
            else:
                payout = chance.choice(["0", "1.00", "25.50", "900.00"])
                done = await api.provider.post(
                    "/v1/wallet/win", factories.win_body(open_bet, payout)
                )
            assert done.status_code == 200, done.text
    end = clock.now  # the gate counts every committed stake: probe from the last one on
    # every window edge that matters: on a stake, a microsecond either side, on an hour
    probes = [end, end + timedelta(days=40)]
    for at in times:
        for period in rg.PERIODS.values():
            edge = at + period
            probes += [edge - timedelta(microseconds=1), edge, edge + timedelta(microseconds=1)]
            # a window whose first full hour starts exactly on this stake (when on the hour)
            probes.append(edge - timedelta(minutes=30))
    hour = end.replace(minute=0, second=0, microsecond=0)
    probes += [hour + timedelta(hours=h) for h in (1, 24, 24 * 7, 24 * 30)]
    probes = [probe for probe in probes if probe >= end]
    assert len(probes) > 20
    for probe in sorted(probes):
        clock.now = probe
        assert await usage_by_gate(uows, player) == await usage_from_bets(uows, player), probe


async def test_turnover_is_every_stake_not_voided(api: Api, uows: UnitOfWorkFactory) -> None:
    player = await factories.committed_player(uows, cash="1000.00")
    kept = factories.bet_body(player, "12.34")
    voided = factories.bet_body(player, "40.00")
    settled = factories.bet_body(player, "7.66")
    for body in (kept, voided, settled):
        assert (await api.provider.post("/v1/wallet/bet", body)).status_code == 200
    await api.provider.post("/v1/wallet/rollback", factories.rollback_body(voided))
    await api.provider.post("/v1/wallet/win", factories.win_body(settled, "100.00"))
    async with uows() as uow:
        staked = await uow.session.scalar(
            sa.text("SELECT staked FROM player_turnover WHERE player_id = :p"), {"p": player}
        )
    assert staked == 2000  # 12.34 + 7.66: a win does not reduce what was staked


async def test_a_bet_cannot_be_rewritten_under_its_counters(
    api: Api, uows: UnitOfWorkFactory
) -> None:
    player = await factories.committed_player(uows, cash="100.00")
    body = factories.bet_body(player, "10.00")
    assert (await api.provider.post("/v1/wallet/bet", body)).status_code == 200
    for change in (
        "stake = stake + 1, stake_cash = stake_cash + 1",
        "placed_at = placed_at - interval '2 days'",
    ):
        with pytest.raises(sa.exc.DBAPIError, match="never change"):
            async with uows() as uow:
                await uow.session.execute(
                    sa.text(f"UPDATE bets SET {change} WHERE bet_ref = :b"),  # noqa: S608
                    {"b": body["bet_id"]},
                )
    await api.provider.post("/v1/wallet/win", factories.win_body(body, "5.00"))
    with pytest.raises(sa.exc.DBAPIError, match="settles once"):
        async with uows() as uow:
            await uow.session.execute(
                sa.text("UPDATE bets SET status = 'VOID' WHERE bet_ref = :b"),
                {"b": body["bet_id"]},
            )
