"""The audit API as a regulator uses it: fetch a signed checkpoint, prove entries and growth
against it, read the raw entries; and the books as of T rebuilt from the log."""

import base64
import json
import struct
from datetime import timedelta

import pytest

from app.client import PitwardenClient
from audit import asof, merkle
from audit.note import Signer, open_checkpoint, open_note
from core import clients
from core.uow import UnitOfWorkFactory
from tests.audit_support import ORIGIN, SIGNER, catch_up, play_some_rounds
from tests.conftest import CTX, Api

pytestmark = pytest.mark.commits


def b64(text: str) -> bytes:
    return base64.b64decode(text)


@pytest.fixture
async def regulator(committed_api: Api, committed_uows: UnitOfWorkFactory) -> PitwardenClient:
    async with committed_uows() as uow:
        client = await clients.register(
            uow,
            client_id=f"regulator-{committed_api.provider_code}",
            role="regulator",
            display_name="MGA",
            provider_code=None,
            sealer=committed_api.app.state.client_secrets,
            ctx=CTX,
        )
        await uow.commit()
    return PitwardenClient("http://test", client.client_id, client.secret, http=committed_api.http)


async def test_a_regulator_proves_entries_and_growth_against_signed_checkpoints(
    committed_api: Api, committed_uows: UnitOfWorkFactory, regulator: PitwardenClient
) -> None:
    await play_some_rounds(committed_api, committed_uows, rounds=2)
    await catch_up(committed_uows)
    first = await regulator.get("/v1/audit/checkpoint")
    assert first.status_code == 200
    assert first.headers["content-type"].startswith("text/plain")
    old, _ = open_checkpoint(first.text, [SIGNER.verifier()])
    await play_some_rounds(committed_api, committed_uows, rounds=2)
    await catch_up(committed_uows)
    new, _ = open_checkpoint(
        (await regulator.get("/v1/audit/checkpoint")).text, [SIGNER.verifier()]
    )
    assert new.size > old.size

    growth = await regulator.get(f"/v1/audit/proof/consistency?from={old.size}&to={new.size}")
    assert growth.status_code == 200
    merkle.verify_consistency(
        old.size, new.size, [b64(h) for h in growth.json()["proof"]], old.root, new.root
    )

    start = new.size - 5
    page = await regulator.get(f"/v1/audit/entries?start={start}&end={new.size}")
    entries = [b64(item["entry"]) for item in page.json()["entries"]]
    assert [item["index"] for item in page.json()["entries"]] == list(range(start, new.size))
    for index, entry in enumerate(entries, start=start):
        proof = await regulator.get(f"/v1/audit/proof/inclusion?index={index}&size={new.size}")
        body = proof.json()
        assert b64(body["leaf_hash"]) == merkle.leaf_hash(entry)
        merkle.verify_inclusion(
            index, new.size, merkle.leaf_hash(entry), [b64(h) for h in body["proof"]], new.root
        )
    events = {json.loads(entry)["event"] for entry in entries}
    assert events & {"bet.placed", "bet.settled", "ledger.posted"}


async def test_entries_come_as_json_or_as_a_binary_stream(
    committed_api: Api, committed_uows: UnitOfWorkFactory, regulator: PitwardenClient
) -> None:
    await play_some_rounds(committed_api, committed_uows, rounds=1)
    await catch_up(committed_uows)
    as_json = await regulator.get("/v1/audit/entries?start=0&end=20")
    raw = await regulator.get(
        "/v1/audit/entries?start=0&end=20", headers={"Accept": "application/octet-stream"}
    )
    assert raw.headers["content-type"] == "application/octet-stream"
    stream, streamed = raw.content, []
    while stream:
        (length,) = struct.unpack(">I", stream[:4])
        streamed.append(stream[4 : 4 + length])
        stream = stream[4 + length :]
    assert streamed == [b64(item["entry"]) for item in as_json.json()["entries"]]
    assert len(streamed) == 20
    # The stored bytes are canonical JSON: money as strings, never a float.
    assert all(b'"amount":' not in entry or b'"amount":"' in entry for entry in streamed)


async def test_a_checkpoint_as_of_an_instant(
    committed_api: Api, committed_uows: UnitOfWorkFactory, regulator: PitwardenClient
) -> None:
    await play_some_rounds(committed_api, committed_uows, rounds=1)
    published = (await catch_up(committed_uows)).published
    assert published is not None
    signed_at = published.checkpoint.time
    assert signed_at is not None
    at = signed_at.isoformat().replace("+00:00", "Z")
    found = await regulator.get(f"/v1/audit/checkpoints?at={at}")
    assert found.status_code == 200
    assert found.json()["id"] == published.id
    assert found.json()["note"] == published.note
    assert b64(found.json()["root_hash"]) == published.checkpoint.root
    just_before = (signed_at - timedelta(microseconds=1)).isoformat().replace("+00:00", "Z")
    earlier = await regulator.get(f"/v1/audit/checkpoints?at={just_before}")
    assert earlier.status_code in {200, 404}
    if earlier.status_code == 200:
        assert earlier.json()["id"] < published.id
    before_all = await regulator.get("/v1/audit/checkpoints?at=2000-01-01T00:00:00Z")
    assert before_all.status_code == 404
    assert before_all.json()["error"]["code"] == "no_checkpoint"


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("proof/inclusion?index=5&size=5", "bad_range"),
        ("proof/inclusion?index=0&size=4611686018427387904", "beyond_tree"),
        ("proof/inclusion?index=-1&size=5", "invalid_request"),
        ("proof/inclusion?index=0&size=99999999999999999999999", "invalid_request"),
        ("proof/consistency?from=9&to=3", "bad_range"),
        ("entries?start=0&end=5000", "bad_range"),
        ("entries?start=7&end=7", "bad_range"),
        ("checkpoints?at=yesterday", "invalid_datetime"),
        ("checkpoints?at=2026-11-25T00:00:00", "invalid_datetime"),
    ],
)
async def test_bad_audit_queries_get_a_clear_4xx(
    committed_api: Api, regulator: PitwardenClient, query: str, code: str
) -> None:
    response = await regulator.get(f"/v1/audit/{query}")
    assert 400 <= response.status_code < 500
    assert response.json()["error"]["code"] == code


async def test_game_providers_cannot_read_the_audit_log(committed_api: Api) -> None:
    response = await committed_api.provider.get("/v1/audit/checkpoint")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert (await committed_api.operator.get("/v1/audit/entries?start=0&end=1")).status_code == 200


async def test_rotation_signs_with_both_keys_for_a_while(committed_uows: UnitOfWorkFactory) -> None:
    new_key = Signer.generate(ORIGIN)
    both = await catch_up(committed_uows, [SIGNER, new_key], force=True)
    assert both.published is not None
    for verifier in (SIGNER.verifier(), new_key.verifier()):
        _, verified = open_note(both.published.note, [verifier])
        assert verified == [verifier]
    _, verified = open_note(both.published.note, [SIGNER.verifier(), new_key.verifier()])
    assert len(verified) == 2


async def test_the_books_as_of_t_from_the_log_equal_the_ledger(
    committed_api: Api, committed_uows: UnitOfWorkFactory
) -> None:
    before = await play_some_rounds(committed_api, committed_uows, rounds=2)
    published = (await catch_up(committed_uows)).published
    assert published is not None
    at = published.checkpoint.time
    assert at is not None
    after = await play_some_rounds(committed_api, committed_uows, rounds=2)  # not by T
    await catch_up(committed_uows)
    async with committed_uows() as uow:
        books = await asof.as_of(uow, at, verifiers=[SIGNER.verifier()])
    assert books.checkpoint.id == published.id
    # Other tests write postings by hand, outside the journal, on shared house accounts: those
    # show as differences, which is the point. This test's own accounts must agree.
    mine = [
        a
        for a in books.accounts
        if committed_api.provider_code in a.account or str(before) in a.account
    ]
    assert {a.account.split(":")[1] for a in mine} == {"game_revenue", str(before)}
    assert all(a.agrees for a in mine), [a.row() for a in mine]
    cash = next(a for a in mine if a.account == f"player:{before}:cash")
    assert cash.from_log == 100_00 - 2 * 2_00 + 2 * 3_00
    assert not [a for a in books.accounts if str(after) in a.account]
