"""The seamless wallet as a game provider sees it."""

from core.uow import UnitOfWorkFactory
from tests import factories
from tests.conftest import Api


async def test_bet_then_win_pays_back_in_proportion(api: Api, uows: UnitOfWorkFactory) -> None:
    async with uows() as uow:
        player_id = await factories.player(uow, cash="6.00", bonus="4.00")
        await uow.commit()
    bet = factories.bet_body(player_id, "10.00")
    placed = await api.provider.post("/v1/wallet/bet", bet)
    assert placed.status_code == 200, placed.text
    assert placed.json()["balance"] == "0.00"
    assert placed.json()["bet_status"] == "OPEN"

    won = await api.provider.post("/v1/wallet/win", factories.win_body(bet, "25.00"))
    assert won.status_code == 200, won.text
    assert won.json()["bet_status"] == "WIN"
    assert (won.json()["cash"], won.json()["bonus"]) == ("15.00", "10.00")
