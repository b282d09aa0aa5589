"""The gate's age fact from the vault: remembered for a time to live, forgotten on erasure, and
unknown (never a failure) when what is on file is not a real date."""

import logging
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from compliance.ages import VaultAges
from compliance.vault import crypto, service
from compliance.vault.keys import LocalKeyFile, WrappedKey
from core import sql
from core.uow import UnitOfWorkFactory
from tests.conftest import CTX, Api, Clock

pytestmark = pytest.mark.commits

ON = date(2026, 11, 26)
TTL_S = 60.0


class Monotonic:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def store(vault_uows: UnitOfWorkFactory, keys: LocalKeyFile, **personal: str) -> uuid.UUID:
    player_id = uuid.uuid4()
    async with vault_uows() as uow:
        await service.store(
            uow,
            player_id=player_id,
            data=service.PersonalData(legal_name=f"Maria Borg {player_id.hex[:8]}", **personal),
            keys=keys,
            ctx=CTX,
        )
        await uow.commit()
    return player_id


async def erase(vault_uows: UnitOfWorkFactory, player_id: uuid.UUID) -> None:
    async with vault_uows() as uow:
        await service.erase(
            uow, player_id=player_id, actor="dpo", reason="test", held_until=None, ctx=CTX
        )
        await uow.commit()


async def test_a_date_of_birth_is_remembered_until_its_time_to_live_runs_out(
    vault_uows: UnitOfWorkFactory, vault_keys: LocalKeyFile
) -> None:
    clock = Monotonic()
    ages = VaultAges(vault_uows, vault_keys, ttl_s=TTL_S, clock=clock)
    player = await store(vault_uows, vault_keys, date_of_birth="1990-04-17")
    assert await ages.age_years(player, ON) == 36
    await erase(vault_uows, player)  # through another process: this one is not told

    clock.now += TTL_S - 1
    assert await ages.age_years(player, ON) == 36  # remembered: the vault is not read
    clock.now += 1
    assert await ages.age_years(player, ON) is None  # read again: erased


async def test_none_on_file_is_read_again_after_its_time_to_live(
    vault_uows: UnitOfWorkFactory, vault_keys: LocalKeyFile
) -> None:
    clock = Monotonic()
    ages = VaultAges(vault_uows, vault_keys, ttl_s=TTL_S, clock=clock)
    player = uuid.uuid4()
    assert await ages.age_years(player, ON) is None
    async with vault_uows() as uow:  # the personal data arrives after a first decision
        await service.store(
            uow,
            player_id=player,
            data=service.PersonalData(date_of_birth="2008-11-27"),
            keys=vault_keys,
            ctx=CTX,
        )
        await uow.commit()

    clock.now += TTL_S - 1
    assert await ages.age_years(player, ON) is None
    clock.now += 1
    assert await ages.age_years(player, ON) == 17  # 18 tomorrow


async def test_forget_drops_what_is_remembered(
    vault_uows: UnitOfWorkFactory, vault_keys: LocalKeyFile
) -> None:
    ages = VaultAges(vault_uows, vault_keys, clock=Monotonic())
    kept, forgotten = [
        await store(vault_uows, vault_keys, date_of_birth="1990-04-17") for _ in range(2)
    ]
    assert [await ages.age_years(p, ON) for p in (kept, forgotten)] == [36, 36]
    for player in (kept, forgotten):
        await erase(vault_uows, player)
    ages.forget(forgotten)
    assert await ages.age_years(forgotten, ON) is None
    assert await ages.age_years(kept, ON) == 36  # only the forgotten one was read again


async def test_an_erasure_through_the_api_is_forgotten_by_the_gate_at_once(
    api: Api, clock: Clock
) -> None:
    clock.now = datetime.now(UTC) - timedelta(days=6 * 366)  # past the retention hold
    registered = await api.operator.post(
        "/v1/players",
        {
            "currency": "EUR",
            "jurisdiction": "MT",
            "personal": {"legal_name": "Maria Borg", "date_of_birth": "1990-04-17"},
        },
    )
    assert registered.status_code == 200, registered.text
    clock.now = None
    player = uuid.UUID(registered.json()["player_id"])
    ages = api.app.state.gate.ages
    assert await ages.age_years(player, ON) == 36

    erased = await api.operator.post(
        f"/v1/vault/players/{player}/erasure", {"reason": "player request"}
    )
    assert erased.status_code == 200, erased.text
    assert await ages.age_years(player, ON) is None


async def test_a_stored_date_that_is_not_a_day_is_an_unknown_age_and_a_warning(
    vault_uows: UnitOfWorkFactory, vault_keys: LocalKeyFile, caplog: pytest.LogCaptureFixture
) -> None:
    """Stored before registration checked dates: sealed here as service.store seals a field."""
    malformed = ["17/04/1990", "1990-02-30", "19900417", "1990-W16-2"]
    players = [await store(vault_uows, vault_keys) for _ in malformed]
    async with vault_uows() as uow:
        for player, value in zip(players, malformed, strict=True):
            row = await sql.one(
                uow,
                "SELECT kek_version, sealed FROM vault.data_keys WHERE player_id = %(p)s",
                {"p": player},
            )
            assert row is not None
            data_key = vault_keys.unwrap(
                player, WrappedKey(row["kek_version"], bytes(row["sealed"]))
            )
            await sql.run(
                uow,
                "INSERT INTO vault.fields (player_id, field, token, sealed, created_at)"
                " VALUES (%(p)s, 'date_of_birth', %(t)s, %(sealed)s, now())",
                {
                    "p": player,
                    "t": f"pii_{uuid.uuid4().hex}",
                    "sealed": crypto.encrypt_field(
                        data_key, player, "date_of_birth", value.encode()
                    ),
                },
            )
        await uow.commit()

    ages = VaultAges(vault_uows, vault_keys)
    with caplog.at_level(logging.WARNING, logger="compliance.vault.service"):
        assert [await ages.age_years(p, ON) for p in players] == [None] * len(players)
    warnings = [r.getMessage() for r in caplog.records if r.name == "compliance.vault.service"]
    assert len(warnings) == len(players)
    for player, warning in zip(players, warnings, strict=True):
        assert str(player) in warning
    assert not [value for value in malformed if value in caplog.text]
