"""The PII vault as operators, players' data and regulators meet it: registration, masked and
revealed fields, refusals, duplicates, documents, export, erasure, key rotation, isolation."""

import base64
import html
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from compliance.vault import rotation, service
from compliance.vault.keys import LocalKeyFile, UnknownKekVersion, WrappedKey
from core import clients
from core.uow import UnitOfWorkFactory
from tests import console_support
from tests.audit_support import catch_up
from tests.conftest import CTX, Api, Clock
from tests.console_support import Browser
from tests.player_support import Player

pytestmark = pytest.mark.commits


def person(tag: str | None = None) -> dict[str, str]:
    tag = tag or uuid.uuid4().hex[:10]
    return {
        "legal_name": f"Maria Borg {tag}",
        "date_of_birth": "1990-04-17",
        "address": f"{tag} Triq il-Kbira, Mosta",
        "country": "MT",
        "email": f"maria.{tag}@example.com",
        "phone": f"+356 {int(tag, 16) % 10**8:08d}",
        "national_id": f"{tag.upper()}M",
        "iban": "MT84MALT011000012345MTLCAST001S",
    }


async def register(api: Api, personal: dict[str, str]) -> dict[str, Any]:
    response = await api.operator.post(
        "/v1/players", {"currency": "EUR", "jurisdiction": "MT", "personal": personal}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def reveal(api: Api, player_id: str, field: str, purpose: str = "payout", **extra: str):
    """A reveal over the machine API: the client under the vault's machine role (decision 0021)."""
    return await api.operator.post(
        f"/v1/vault/players/{player_id}/reveal", {"field": field, "purpose": purpose, **extra}
    )


OFFICER = "officer:00000000-0000-4000-8000-0000000000d0"


async def officer_reveal(
    api: Api,
    player_id: str,
    field: str,
    role: str = "data_protection_officer",
    purpose: str = "dsar",
    document_token: str | None = None,
) -> bytes | None:
    """A reveal by a signed-in officer, as the console makes it (app/console/personal.py):
    the vault's service with the officer's own role, which no API client has."""
    async with api.app.state.vault_uow_factory() as uow:
        _, value = await service.reveal(
            uow,
            player_id=uuid.UUID(player_id),
            field=field,
            actor=OFFICER,
            actor_role=role,
            purpose=purpose,
            keys=api.app.state.vault_keys,
            ctx=CTX,
            document_token=document_token,
        )
        await uow.commit()
    return value


async def dsar_export(api: Api, player_id: str) -> dict[str, Any]:
    """The data protection officer's export, as `pitwarden vault export` makes it."""
    async with api.app.state.vault_uow_factory() as uow:
        keys = api.app.state.vault_keys
        exported = await service.export(
            uow, player_id=uuid.UUID(player_id), actor=OFFICER, keys=keys, ctx=CTX
        )
        await uow.commit()
    return exported


async def test_every_field_round_trips_and_the_default_view_is_masked(api: Api) -> None:
    personal = person()
    registered = await register(api, personal)
    assert set(registered["tokens"]) == set(personal)
    player = registered["player_id"]
    for field, value in personal.items():
        shown = await officer_reveal(api, player, field)
        assert shown is not None
        assert shown.decode() == value
    for field in ("legal_name", "iban", "country"):  # what a payout needs, to a machine
        machine = await reveal(api, player, field, "payout")
        assert machine.status_code == 200, machine.text
        assert machine.json()["value"] == personal[field]
    view = (await api.operator.get(f"/v1/vault/players/{player}")).json()["fields"]
    assert view["iban"]["masked"] == "•••• 001S"
    assert view["email"]["masked"] == "m•••@example.com"
    assert view["country"]["masked"] == "MT"
    assert {field: entry["token"] for field, entry in view.items()} == registered["tokens"]
    for field, entry in view.items():
        if field != "country":
            assert personal[field] not in entry["masked"]


async def test_a_machine_reveals_only_for_a_payout_and_every_decision_is_journaled(
    api: Api, committed_uows: UnitOfWorkFactory
) -> None:
    registered = await register(api, person())
    player = registered["player_id"]
    named = await api.operator.post(
        f"/v1/vault/players/{player}/reveal",
        {"field": "iban", "purpose": "aml_case", "actor": "officer-7", "actor_role": "dpo"},
    )
    assert (named.status_code, named.json()["error"]["code"]) == (422, "invalid_request")
    assert {p["field"] for p in named.json()["error"]["details"]["problems"]} == {
        "actor",
        "actor_role",
    }
    refused = await reveal(api, player, "iban", "aml_case")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "reveal_refused"
    assert (await reveal(api, player, "email", "payout")).status_code == 403
    allowed = await reveal(api, player, "iban", "payout")
    assert allowed.status_code == 200
    async with committed_uows() as uow:
        events = (
            await uow.session.execute(
                sa.text(
                    "SELECT event, envelope->'data' FROM journal_events WHERE player_id = :p"
                    " AND event LIKE 'vault.%' ORDER BY id"
                ),
                {"p": registered["player_id"]},
            )
        ).all()
    decisions = [
        (e, d["decision"], d["field"], d["purpose"], d["actor"], d["actor_role"])
        for e, d in events
        if "decision" in d
    ]
    client = f"client:{api.operator.client_id}"  # a machine, acting for no person
    assert decisions == [
        ("vault.reveal_refused", "deny", "iban", "aml_case", client, "service"),
        ("vault.reveal_refused", "deny", "email", "payout", client, "service"),
        ("vault.field_revealed", "allow", "iban", "payout", client, "service"),
    ]
    assert all("MT84" not in str(data) for _, data in events)


async def test_duplicate_accounts_are_found_through_blind_indexes(api: Api) -> None:
    first = person()
    first_id = (await register(api, first))["player_id"]
    again = person() | {
        "email": first["email"].upper(),
        "iban": "MT84 MALT 0110 0001 2345 MTLC AST0 01S",
    }
    second = await register(api, again)
    kinds = {(d["kind"], d["player_id"]) for d in second["possible_duplicates"]}
    assert ("email", first_id) in kinds
    assert ("iban", first_id) in kinds
    assert ("phone", first_id) not in kinds  # a different phone matches nothing
    unrelated = await register(api, person() | {"iban": "GB82WEST12345698765432"})
    assert first_id not in {d["player_id"] for d in unrelated["possible_duplicates"]}


async def test_bad_personal_data_is_refused_and_nothing_is_stored(api: Api) -> None:
    bad = person() | {"iban": "MT00MALT011000012345MTLCAST001S"}  # wrong check digits
    response = await api.operator.post(
        "/v1/players", {"currency": "EUR", "jurisdiction": "MT", "personal": bad}
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_personal_data"
    floats = await api.operator.post(
        "/v1/players",
        {"currency": "EUR", "jurisdiction": "MT", "personal": {"legal_name": 12.5}},
    )
    assert floats.status_code == 422


async def test_a_sealed_field_moved_to_another_row_does_not_decrypt(
    api: Api, owner_engine: AsyncEngine
) -> None:
    a = (await register(api, person()))["player_id"]
    b = (await register(api, person()))["player_id"]
    async with owner_engine.begin() as conn:
        await conn.execute(
            sa.text(
                "UPDATE vault.fields SET sealed = (SELECT sealed FROM vault.fields"
                " WHERE player_id = :a AND field = 'legal_name')"
                " WHERE player_id = :b AND field = 'legal_name'"
            ),
            {"a": a, "b": b},
        )
        await conn.execute(
            sa.text(
                "UPDATE vault.fields SET sealed = (SELECT sealed FROM vault.fields"
                " WHERE player_id = :a AND field = 'legal_name')"
                " WHERE player_id = :a AND field = 'country'"
            ),
            {"a": a},
        )
    for player, field in ((b, "legal_name"), (a, "country")):
        moved = await reveal(api, player, field)
        assert moved.status_code == 409, moved.text
        assert moved.json()["error"]["code"] == "vault_integrity_failure"
    untouched = await reveal(api, a, "legal_name")
    assert untouched.status_code == 200


async def test_documents_are_sealed_and_revealed_by_token(api: Api) -> None:
    player = (await register(api, person()))["player_id"]
    scan = bytes(range(256)) * 20
    stored = await api.operator.post(
        f"/v1/vault/players/{player}/documents",
        {
            "kind": "passport_front",
            "content_type": "image/png",
            "content_base64": base64.b64encode(scan).decode(),
        },
    )
    token = stored.json()["token"]
    shown = await officer_reveal(
        api, player, "document_image", "compliance_officer", "kyc_review", document_token=token
    )
    assert shown == scan
    machine = await reveal(api, player, "document_image", "kyc_review", document_token=token)
    assert (machine.status_code, machine.json()["error"]["code"]) == (403, "reveal_refused")


async def test_a_data_subject_export_holds_everything_and_needs_the_dpo(api: Api) -> None:
    personal = person()
    player = (await register(api, personal))["player_id"]
    named = await api.operator.post(
        f"/v1/vault/players/{player}/export",
        {"actor": "dpo-1", "actor_role": "data_protection_officer"},
    )
    assert (named.status_code, named.json()["error"]["code"]) == (422, "invalid_request")
    machine = await api.operator.post(f"/v1/vault/players/{player}/export", {})
    assert (machine.status_code, machine.json()["error"]["code"]) == (403, "export_refused")
    body = await dsar_export(api, player)
    assert {f: v["value"] for f, v in body["fields"].items()} == personal
    assert body["lookups_indexed"] == ["email", "iban", "name_dob", "national_id", "phone"]


async def test_erasure_waits_for_the_retention_hold_then_shreds(
    api: Api, clock: Clock, committed_uows: UnitOfWorkFactory
) -> None:
    personal = person()
    recent = (await register(api, personal))["player_id"]
    held = await api.operator.post(
        f"/v1/vault/players/{recent}/erasure", {"reason": "player request"}
    )
    assert held.status_code == 409
    assert held.json()["error"]["code"] == "retention_hold"
    until = datetime.fromisoformat(held.json()["error"]["details"]["held_until"])
    assert until.year == datetime.now(UTC).year + 5

    clock.now = datetime.now(UTC) - timedelta(days=6 * 366)  # a player gone for six years
    old = (await register(api, person() | {"email": personal["email"]}))["player_id"]
    clock.now = None
    erased = await api.operator.post(
        f"/v1/vault/players/{old}/erasure", {"reason": "player request"}
    )
    assert erased.status_code == 200, erased.text
    after = await reveal(api, old, "iban")
    assert after.status_code == 410
    assert after.json()["error"]["code"] == "erased"
    assert set(await dsar_export(api, old)) == {"player_id", "erased_at"}
    # the blind indexes went with the key: the recent player no longer matches the erased one
    third = await register(api, person() | {"email": personal["email"]})
    sharing_email = {d["player_id"] for d in third["possible_duplicates"] if d["kind"] == "email"}
    assert sharing_email == {recent}
    # the ledger and the journal still stand, with tokens and ids only
    async with committed_uows() as uow:
        kept = await uow.session.scalar(
            sa.text("SELECT count(*) FROM journal_events WHERE player_id = :p"), {"p": old}
        )
    assert kept >= 3  # registered, stored, erased


async def test_the_application_role_cannot_reach_the_vault(app_engine: AsyncEngine) -> None:
    async with app_engine.connect() as conn:
        for table in ("fields", "data_keys", "blind_indexes", "documents", "erasures"):
            with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                await conn.execute(sa.text(f"SELECT * FROM vault.{table}"))  # noqa: S608
            await conn.rollback()


async def test_the_vault_role_reads_nothing_of_the_money_core(vault_engine: AsyncEngine) -> None:
    async with vault_engine.connect() as conn:
        for table in ("players", "postings", "journal_events", "api_clients"):
            with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                await conn.execute(sa.text(f"SELECT * FROM {table}"))  # noqa: S608
            await conn.rollback()


async def test_kek_rotation_interrupted_then_resumed(
    api: Api, vault_uows: UnitOfWorkFactory, vault_keys: LocalKeyFile
) -> None:
    players = [(await register(api, person()))["player_id"] for _ in range(5)]
    async with vault_uows() as uow:
        old_version, old_sealed = (
            await uow.session.execute(
                sa.text("SELECT kek_version, sealed FROM vault.data_keys WHERE player_id = :p"),
                {"p": players[0]},
            )
        ).one()

    def crash_after_first_batch(done: int, total: int) -> None:
        raise KeyboardInterrupt  # the operator's Ctrl-C, or a crash, mid-rotation

    with pytest.raises(KeyboardInterrupt):
        await rotation.rotate_kek(
            vault_uows, vault_keys, ctx=CTX, batch=2, progress=crash_after_first_batch
        )
    target = vault_keys.current_version()
    assert target > old_version
    async with vault_uows() as uow:
        lagging = await uow.session.scalar(
            sa.text("SELECT count(*) FROM vault.data_keys WHERE kek_version < :v"), {"v": target}
        )
    assert lagging > 0  # half done
    seen: list[tuple[int, int]] = []
    resumed = await rotation.rotate_kek(
        vault_uows, vault_keys, ctx=CTX, batch=2, progress=lambda d, t: seen.append((d, t))
    )
    assert resumed.version == target  # resumed, not a second rotation
    assert seen[-1][0] == seen[-1][1] == lagging
    assert old_version in resumed.retired
    with pytest.raises(UnknownKekVersion):
        vault_keys.unwrap(uuid.UUID(players[0]), WrappedKey(old_version, bytes(old_sealed)))
    for player in players:  # the fields were never touched and still open
        shown = await reveal(api, player, "legal_name")
        assert shown.status_code == 200


async def console_steps(
    api: Api,
    uows: UnitOfWorkFactory,
    clock: Clock,
    player: Player,
    appealed: httpx.Response,
    said: tuple[str, str, str],
) -> None:
    """An officer reveals the appeal in the console, asks the player, who answers; the officer
    upholds it. Each page shows the words; nothing else keeps them."""
    question, answer, reason = said
    appeal_id = appealed.headers["location"].rsplit("/", 1)[1]
    page = f"/console/appeals/{appeal_id}"
    officer = Browser(api.app, clock)
    await officer.sign_in(await console_support.officer(uows, "officer"))
    try:
        assert (await officer.submit(f"{page}/reveal", {}, of=page)).status_code == 200
        asked = await officer.submit(f"{page}/information", {"message": question}, of=page)
        assert asked.status_code == 303, asked.text
        mine = await player.page(f"/player/appeals/{appeal_id}")
        assert question in html.unescape(mine.text)
        answered = await player.http.post(
            f"/player/appeals/{appeal_id}/answer",
            data={"csrf": console_support.csrf_of(mine), "message": answer},
            files={"document": ("", b"", "")},
        )
        assert answered.status_code == 303, answered.text
        upheld = await officer.submit(
            f"{page}/decide", {"outcome": "upheld", "reason": reason}, of=page
        )
        assert upheld.status_code == 303, upheld.text
        revealed = await officer.submit(f"{page}/reveal", {}, of=page)
        assert answer in html.unescape(revealed.text)
        assert reason in html.unescape(revealed.text)
    finally:
        await officer.aclose()


async def test_no_personal_value_or_client_secret_leaks(
    committed_api: Api,
    committed_uows: UnitOfWorkFactory,
    owner_engine: AsyncEngine,
    caplog: pytest.LogCaptureFixture,
    clock: Clock,
) -> None:
    """Register, play, appeal a refusal (an officer reads it, asks, the player answers, the
    officer upholds), reveal, export, rotate the operator's secret and sign
    with both; then look for every personal value in every table outside the vault, and for the
    appeal's explanation and every client secret in every table of every schema, in the journal,
    in the audit log and in the logs."""
    caplog.set_level(logging.DEBUG)
    api = committed_api  # committed: the owner's scan below sees what the app wrote
    personal = person()
    player = (await register(api, personal))["player_id"]
    await api.operator.post(
        "/v1/admin/adjustments",
        {
            "player_id": player,
            "amount": "20.00",
            "currency": "EUR",
            "source": "cash",
            "direction": "credit",
            "reason": "welcome",
        },
    )
    bet = {
        "request_uuid": str(uuid.uuid4()),
        "transaction_uuid": str(uuid.uuid4()),
        "player_id": player,
        "round_id": f"r-{uuid.uuid4().hex[:8]}",
        "bet_id": f"b-{uuid.uuid4().hex[:8]}",
        "game_id": "starburst",
        "amount": "5.00",
        "currency": "EUR",
    }
    assert (await api.provider.post("/v1/wallet/bet", bet)).status_code == 200
    old_secret = api.operator.secret
    async with committed_uows() as uow:
        rotated = await clients.rotate_secret(
            uow,
            client_id=api.operator.client_id,
            overlap=timedelta(hours=1),
            sealer=api.app.state.client_secrets,
            ctx=CTX,
        )
        await uow.commit()
    for field in ("legal_name", "iban", "country"):  # with the old secret, still in its overlap
        assert (await reveal(api, player, field)).is_success
    api.operator.secret = rotated.secret
    assert (await reveal(api, player, "iban")).is_success
    # the player appeals a refusal, in words that name them; the page reads the words back
    limited = await api.operator.post(
        f"/v1/admin/players/{player}/limits", {"kind": "wager", "period": "24h", "amount": "1.00"}
    )
    assert limited.status_code == 200, limited.text
    refused = await api.provider.post(
        "/v1/wallet/bet", bet | {"request_uuid": str(uuid.uuid4()), "bet_id": "b-over-limit",
                                 "transaction_uuid": str(uuid.uuid4()), "amount": "1.00"}
    )  # fmt: skip
    assert refused.status_code == 403, refused.text
    explanation = (
        f"I am {personal['legal_name']}, born {personal['date_of_birth']}. My sister used the card"
        f" ending {uuid.uuid4().hex[:12]} by mistake; please look again."
    )
    browser = Player(api, uuid.UUID(player))
    await browser.open()
    appealed = await browser.appeal(refused.json()["error"]["details"]["decision_id"], explanation)
    assert appealed.status_code == 303, appealed.text
    assert explanation in (await browser.page(appealed.headers["location"])).text
    # an officer reads it in the console (step-up, the vault's appeal_review), asks, the player
    # answers, the officer upholds: every word of theirs names the player too
    question, answer, reason = (
        f"{personal['legal_name']}, which card ending {uuid.uuid4().hex[:10]} is your sister's?",
        f"The one ending {uuid.uuid4().hex[:10]}, registered to {personal['email']}.",
        f"{personal['legal_name']}: the card ending {uuid.uuid4().hex[:10]} is in your name.",
    )
    await console_steps(api, committed_uows, clock, browser, appealed, (question, answer, reason))
    for field in personal:  # an officer reveals the rest, and exports
        assert await officer_reveal(api, player, field) is not None
    await dsar_export(api, player)
    await catch_up(committed_uows)  # the journal's events enter the audit log too
    needles = {v.lower() for v in personal.values() if len(v) > 3} | {
        personal["iban"].replace(" ", "").lower()
    }
    words = {explanation.lower(), explanation.split(". ")[1].lower()} | {
        said.lower() for said in (question, answer, reason)
    }
    client_secrets = {api.provider.secret, old_secret, rotated.secret}
    secret_needles = {s.lower() for s in client_secrets} | {
        s.encode().hex()
        for s in client_secrets  # as bytea, it would read as hex
    }
    async with owner_engine.connect() as conn:
        tables = (
            await conn.execute(
                sa.text(
                    "SELECT table_schema, table_name FROM information_schema.tables"
                    " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
                    " AND table_type = 'BASE TABLE'"
                )
            )
        ).all()
        found = []
        for schema, table in tables:
            text = await conn.scalar(
                sa.text(f'SELECT lower(string_agg(t::text, \' \')) FROM "{schema}"."{table}" t')  # noqa: S608
            )
            # the explanation is looked for everywhere: the vault holds it sealed only
            looked_for = secret_needles | words | (needles if schema == "public" else set())
            found += [(table, n) for n in looked_for if text and n in text]
    assert found == []
    assert {"journal_events", "audit_entries", "api_clients"} <= {t for _, t in tables}
    logs = caplog.text.lower()
    assert [n for n in needles | secret_needles | words if n in logs] == []
    assert len(needles) >= 7  # the scan looked for something
