"""Schemathesis over the published contract: nothing valid or invalid ever gets a 500.

Every operation is fuzzed with bodies, paths, queries and headers that the OpenAPI document
allows (positive) and that it forbids (negative), each request correctly signed, half of them
aimed at a real funded player so that the money path runs, not only the 404.

The document declares the four signing headers (security schemes) and the Idempotency-Key:
schemathesis fills them with values of its own, which are replaced by a real signature and a
fresh key, except a malformed key of a negative case, which is sent as generated.
"""

import asyncio
import json
import re
import uuid
from typing import Any
from urllib.parse import unquote, urlencode

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core import NotSet

from app.signing import signed_headers
from core.uow import UnitOfWorkFactory
from tests import factories
from tests.conftest import Api
from tests.payments_support import use_fake_providers

EXAMPLES = 30
WELL_FORMED_KEY = re.compile(r"[!-~]{1,128}")


def idempotency_key(case: Any, mode: GenerationMode) -> str:
    """A fresh key (a generated one would repeat across cases, and a replay would answer
    instead of the money path), unless a negative case made it malformed on purpose."""
    given = (case.headers or {}).get("Idempotency-Key")
    malformed = isinstance(given, str) and not WELL_FORMED_KEY.fullmatch(given)
    sendable = isinstance(given, str) and given.isascii() and given.isprintable()
    if mode is GenerationMode.NEGATIVE and malformed and sendable:
        return str(given)
    return str(uuid.uuid4())


def signed_request(
    api: Api, case: Any, player_id: str | None, mode: GenerationMode, token: str
) -> tuple[str, str, bytes, dict[str, str]]:
    """The case as a client of the operation sends it: signed by a game provider (wallet) or an
    operator, or with the player's token (/v1/me)."""
    body = case.body
    if player_id and isinstance(body, dict) and "player_id" in body:
        body = body | {"player_id": player_id}
    if case.method.upper() == "GET" or isinstance(body, NotSet):  # no body at all
        raw = b""
    elif isinstance(body, bytes):  # negative cases may send bytes that are not JSON at all
        raw = body
    else:
        raw = json.dumps(body).encode()
    path = case.formatted_path
    query = {k: v for k, v in (case.query or {}).items() if v is not None}
    query_string = f"?{urlencode(query, doseq=True)}" if query else ""
    headers = {"Content-Type": "application/json", "Idempotency-Key": idempotency_key(case, mode)}
    if path.startswith("/v1/me"):
        headers["Authorization"] = f"Bearer {token}"
    else:
        client = api.provider if path.startswith("/v1/wallet") else api.operator
        headers |= signed_headers(
            client_id=client.client_id,
            secret=client.secret,
            method=case.method.upper(),
            path=unquote(path) + query_string,  # the server checks the decoded path
            body=raw,
        )
    return case.method.upper(), path + query_string, raw, headers


async def test_no_request_gets_a_server_error(api: Api, uows: UnitOfWorkFactory) -> None:
    loop = asyncio.get_running_loop()
    use_fake_providers(api)  # payments reach providers in process, never the network
    player_id = str(await factories.committed_player(uows, cash="50.00", bonus="5.00"))
    token = (await api.operator.post(f"/v1/admin/players/{player_id}/session", {})).json()["token"]
    document = api.app.openapi()
    schema = schemathesis.openapi.from_dict(document)
    # The probes take no input; /readyz may rightly answer 503 while no integrator runs here.
    operations = [
        operation
        for operation in (result.ok() for result in schema.get_all_operations())
        if operation.path not in {"/healthz", "/readyz"}
    ]
    assert len(operations) >= 9

    async def send(method: str, target: str, raw: bytes, headers: dict[str, str]) -> httpx.Response:
        return await api.http.request(method, target, content=raw, headers=headers)

    failures: list[str] = []
    fuzzed = dict.fromkeys(GenerationMode, 0)
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode), aimed=st.booleans())
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,  # the same cases on every run: CI must not fail by chance
                suppress_health_check=list(HealthCheck),
            )
            def fuzz(case: Any, aimed: bool) -> None:
                aim = player_id if aimed else None
                request = signed_request(api, case, aim, mode, token)  # noqa: B023 - run in this turn
                response = asyncio.run_coroutine_threadsafe(send(*request), loop).result(60)
                if response.status_code >= 500:
                    failures.append(
                        f"{request[0]} {request[1]} {request[2][:200]!r} -> "
                        f"{response.status_code} {response.text[:200]}"
                    )
                elif response.status_code >= 400:
                    assert set(response.json()) == {"error"}, response.text
                    assert {"code", "message", "details"} <= set(response.json()["error"])

            try:
                await asyncio.to_thread(fuzz)
                fuzzed[mode] += 1
            except Unsatisfiable:  # nothing in it can be made invalid (/healthz, a checkpoint)
                assert mode is GenerationMode.NEGATIVE
                assert not operation.body
                assert not operation.path_parameters
                assert not operation.query
                assert not operation.headers
    without_inputs = [
        op for op in operations if not (op.body or op.path_parameters or op.query or op.headers)
    ]
    assert fuzzed[GenerationMode.POSITIVE] == len(operations)
    assert fuzzed[GenerationMode.NEGATIVE] == len(operations) - len(without_inputs)
    assert failures == []
