"""Schemathesis over the published contract: nothing valid or invalid ever gets a 500.

Every operation is fuzzed with bodies, paths and queries that the OpenAPI document allows
(positive) and that it forbids (negative), each request correctly signed, half of them aimed at
a real funded player so that the money path runs, not only the 404.
"""

import asyncio
import json
import uuid
from typing import Any
from urllib.parse import urlencode

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


def signed_request(
    api: Api, case: Any, player_id: str | None
) -> tuple[str, str, bytes, dict[str, str]]:
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
    target = f"{path}?{urlencode(query, doseq=True)}" if query else path
    client = (
        api.operator
        if path.startswith(("/v1/admin", "/v1/audit", "/v1/payments"))
        else api.provider
    )
    headers = signed_headers(
        client_id=client.client_id,
        secret=client.secret,
        method=case.method.upper(),
        path=target,
        body=raw,
    ) | {"Content-Type": "application/json", "Idempotency-Key": str(uuid.uuid4())}
    return case.method.upper(), target, raw, headers


async def test_no_request_gets_a_server_error(api: Api, uows: UnitOfWorkFactory) -> None:
    loop = asyncio.get_running_loop()
    use_fake_providers(api)  # payments reach providers in process, never the network
    player_id = str(await factories.committed_player(uows, cash="50.00", bonus="5.00"))
    document = api.app.openapi()
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]
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
                request = signed_request(api, case, player_id if aimed else None)
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
