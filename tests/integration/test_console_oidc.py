"""Console single sign-on against a real OpenID provider (tests/oidc, oidc-provider under Node):
an officer signs in as the account they logged in with, and every answer that must not sign
anyone in is refused with its code: a replayed code, another sign-in's answer, a code without
its verifier, ID tokens forged on the way back (alg none, HS256 under the client secret, another
key, another audience, issuer or nonce, expired)."""

import base64
import dataclasses
import hashlib
import json
import secrets
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from app.console.oidc import OidcClient, OidcError, Started
from tests.conftest import Clock
from tests.oidc_support import (
    Provider,
    Recorder,
    forging,
    oidc_provider_fixture,  # noqa: F401 - provides the fixture oidc_provider
    running_provider,
    sign_in_at_provider,
)
from tests.serving import free_socket

Forge = Callable[[str], str]


async def signed_in_at_provider(
    client: OidcClient, provider: Provider, login: str = "ada"
) -> tuple[Started, dict[str, str]]:
    """A sign-in begun by the console and completed by the officer at the provider."""
    started = await client.begin()
    return started, await sign_in_at_provider(provider, started.url, login=login)


async def refusal(client: OidcClient, params: dict[str, str], started: Started) -> OidcError:
    with pytest.raises(OidcError) as refused:
        await client.finish(params=params, started=started)
    return refused.value


@pytest.mark.parametrize("login", ["ada", "grace", "alan"])
async def test_an_officer_signs_in_as_the_account_they_logged_in_with(
    oidc_provider: Provider, login: str
) -> None:
    client = OidcClient(oidc_provider.config())
    started, params = await signed_in_at_provider(client, oidc_provider, login)

    identity = await client.finish(params=params, started=started)

    account = oidc_provider.account(login)
    assert (identity.issuer, identity.subject) == (oidc_provider.issuer, login)
    assert (identity.email, identity.name) == (account.email, account.name)
    assert identity.email_verified is account.email_verified


async def test_the_authorization_request_carries_state_nonce_and_an_s256_challenge(
    oidc_provider: Provider,
) -> None:
    started = await OidcClient(oidc_provider.config()).begin()

    query = dict(parse_qsl(urlsplit(started.url).query))
    assert started.url.startswith(f"{oidc_provider.issuer}/auth?")
    assert (query["state"], query["nonce"]) == (started.state, started.nonce)
    assert query["code_challenge_method"] == "S256"
    digest = hashlib.sha256(started.code_verifier.encode()).digest()
    assert query["code_challenge"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert started.code_verifier not in started.url


async def test_a_replayed_authorization_code_is_refused(oidc_provider: Provider) -> None:
    client = OidcClient(oidc_provider.config())
    started, params = await signed_in_at_provider(client, oidc_provider)
    await client.finish(params=params, started=started)

    refused = await refusal(client, params, started)

    assert refused.code == "oidc_code_refused"
    assert "invalid_grant" in refused.message


@pytest.mark.parametrize("tampering", ["another sign-in's answer", "no state"])
async def test_an_answer_for_another_sign_in_is_refused_and_spends_nothing(
    oidc_provider: Provider, tampering: str
) -> None:
    client = OidcClient(oidc_provider.config())
    mine = await client.begin()  # this browser's sign-in
    theirs, params = await signed_in_at_provider(client, oidc_provider)  # someone else's
    if tampering == "no state":
        mine, params = theirs, {k: v for k, v in params.items() if k != "state"}

    refused = await refusal(client, params, mine)

    assert refused.code == "oidc_state_mismatch"
    params["state"] = theirs.state  # the code was not spent: its own sign-in still finishes
    assert (await client.finish(params=params, started=theirs)).subject == "ada"


async def test_a_code_without_its_pkce_verifier_is_refused(oidc_provider: Provider) -> None:
    client = OidcClient(oidc_provider.config())
    started, params = await signed_in_at_provider(client, oidc_provider)
    stolen = dataclasses.replace(started, code_verifier=secrets.token_urlsafe(48))

    refused = await refusal(client, params, stolen)

    assert refused.code == "oidc_code_refused"


async def test_an_officer_who_cancels_at_the_provider_is_not_signed_in(
    oidc_provider: Provider,
) -> None:
    client = OidcClient(oidc_provider.config())
    started = await client.begin()
    params = await sign_in_at_provider(oidc_provider, started.url, login="ada", cancel=True)

    refused = await refusal(client, params, started)

    assert refused.code == "oidc_access_denied"


@pytest.mark.parametrize("iss", ["http://127.0.0.1:1", None])
async def test_an_answer_that_does_not_name_the_provider_is_refused(
    oidc_provider: Provider, iss: str | None
) -> None:
    client = OidcClient(oidc_provider.config())
    started, params = await signed_in_at_provider(client, oidc_provider)
    params.pop("iss")
    if iss is not None:
        params["iss"] = iss  # a mix-up: the answer of another provider (RFC 9207)

    refused = await refusal(client, params, started)

    assert refused.code == "oidc_wrong_issuer"


async def test_a_sign_in_left_too_long_is_refused(oidc_provider: Provider) -> None:
    clock = Clock()
    client = OidcClient(oidc_provider.config(), clock=clock)
    started, params = await signed_in_at_provider(client, oidc_provider)
    clock.advance(minutes=10, seconds=1)

    refused = await refusal(client, params, started)

    assert refused.code == "oidc_sign_in_expired"


async def test_an_id_token_read_after_its_expiry_is_refused(oidc_provider: Provider) -> None:
    clock = Clock()
    config = oidc_provider.config(sign_in_timeout=timedelta(hours=1))
    client = OidcClient(config, clock=clock)
    started, params = await signed_in_at_provider(client, oidc_provider)
    clock.advance(minutes=10 + 1, seconds=1)  # the provider's ID tokens live 10 minutes

    refused = await refusal(client, params, started)

    assert refused.code == "oidc_expired"


async def test_a_provider_naming_another_issuer_is_refused(oidc_provider: Provider) -> None:
    client = OidcClient(oidc_provider.config(issuer=oidc_provider.issuer + "/"))

    with pytest.raises(OidcError) as refused:
        await client.begin()

    assert refused.value.code == "oidc_wrong_issuer"


async def test_an_unreachable_provider_is_reported_as_such(oidc_provider: Provider) -> None:
    closed = free_socket()  # bound, never listening: connections are refused
    port = closed.getsockname()[1]
    client = OidcClient(oidc_provider.config(issuer=f"http://127.0.0.1:{port}"))

    with pytest.raises(OidcError) as refused:
        await client.begin()

    closed.close()
    assert refused.value.code == "oidc_provider_unavailable"


# ID tokens forged between the provider's token endpoint and the client. Most are signed with
# the provider's own key (the test holds it), so that only the forged claim can refuse them.


def _parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of a JWS, unverified."""
    header, payload, _ = (p + "=" * (-len(p) % 4) for p in token.split("."))
    return json.loads(base64.urlsafe_b64decode(header)), json.loads(
        base64.urlsafe_b64decode(payload)
    )


def _b64(document: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=").decode()


def _resigned(key: Any, alg: str = "RS256", *, kid: str | None = "", **changes: Any) -> Forge:
    """Sign the real token's claims, with `changes`, by `key` under `alg`; the header keeps
    the provider's kid unless `kid` is given (None: the key's own)."""

    def forge(token: str) -> str:
        header, claims = _parts(token)
        header |= {"alg": alg} | ({} if kid == "" else {"kid": kid or key.kid})
        return jwt.encode(header, claims | changes, key, algorithms=[alg])

    return forge


def _unsigned(token: str) -> str:
    header, claims = _parts(token)
    return f"{_b64(header | {'alg': 'none'})}.{_b64(claims)}."


def _expired(provider: Provider) -> Forge:
    def forge(token: str) -> str:
        issued = _parts(token)[1]["iat"]
        return _resigned(provider.signing_key, iat=issued - 7200, exp=issued - 3600)(token)

    return forge


FORGERIES: dict[str, tuple[Callable[[Provider], Forge], str]] = {
    "alg none": (lambda _: _unsigned, "oidc_alg_refused"),
    "HS256 under the client secret": (
        lambda p: _resigned(OctKey.import_key(p.client_secret), "HS256"),
        "oidc_alg_refused",
    ),
    "another key under the provider's kid": (
        lambda _: _resigned(RSAKey.generate_key(2048)),
        "oidc_bad_signature",
    ),
    "another audience": (
        lambda p: _resigned(p.signing_key, aud="someone-else"),
        "oidc_wrong_audience",
    ),
    "another issuer": (
        lambda p: _resigned(p.signing_key, iss="http://127.0.0.1:1"),
        "oidc_wrong_issuer",
    ),
    "expired": (_expired, "oidc_expired"),
    "another nonce": (
        lambda p: _resigned(p.signing_key, nonce=secrets.token_urlsafe(32)),
        "oidc_nonce_mismatch",
    ),
}


@pytest.mark.parametrize("forgery", FORGERIES)
async def test_a_forged_id_token_is_refused(oidc_provider: Provider, forgery: str) -> None:
    make, code = FORGERIES[forgery]
    paths: list[str] = []
    forge = make(oidc_provider)
    client = OidcClient(oidc_provider.config(), transport=lambda: Recorder(paths, forging(forge)))
    started, params = await signed_in_at_provider(client, oidc_provider)

    refused = await refusal(client, params, started)

    assert (refused.code, paths.count("/token")) == (code, 1)


async def test_an_id_token_re_signed_unchanged_by_the_provider_key_is_accepted(
    oidc_provider: Provider,
) -> None:
    """The forgeries above fail for what they change, not for how the test signs."""
    forge = _resigned(oidc_provider.signing_key)
    client = OidcClient(oidc_provider.config(), transport=lambda: Recorder([], forging(forge)))
    started, params = await signed_in_at_provider(client, oidc_provider, "grace")

    assert (await client.finish(params=params, started=started)).subject == "grace"


@pytest.mark.parametrize(
    ("path", "rewrite", "code"),
    [
        ("/token", lambda answer: answer | {"id_token": None}, "oidc_bad_token"),
        ("/me", lambda info: info | {"sub": "grace"}, "oidc_userinfo_mismatch"),
    ],
)
async def test_a_provider_answer_that_does_not_hold_together_is_refused(
    oidc_provider: Provider, path: str, rewrite: Callable[[dict[str, Any]], Any], code: str
) -> None:
    client = OidcClient(oidc_provider.config(), transport=lambda: Recorder([], {path: rewrite}))
    started, params = await signed_in_at_provider(client, oidc_provider, "ada")

    refused = await refusal(client, params, started)

    assert refused.code == code


async def test_a_key_the_provider_never_published_is_refused_after_one_jwks_refetch(
    oidc_provider: Provider,
) -> None:
    stranger = RSAKey.generate_key(2048, {"kid": "not-the-providers"})
    paths: list[str] = []
    forge = _resigned(stranger, kid=None)
    client = OidcClient(oidc_provider.config(), transport=lambda: Recorder(paths, forging(forge)))
    started, params = await signed_in_at_provider(client, oidc_provider)

    refused = await refusal(client, params, started)

    assert refused.code == "oidc_unknown_key"
    assert paths.count("/jwks") == 2  # fetched, then fetched again once


async def test_the_provider_rotating_its_keys_costs_one_jwks_refetch(tmp_path: Path) -> None:
    paths: list[str] = []
    with running_provider(tmp_path) as provider:
        client = OidcClient(provider.config(), transport=lambda: Recorder(paths))
        started, params = await signed_in_at_provider(client, provider, "ada")
        assert (await client.finish(params=params, started=started)).subject == "ada"
    # The same provider back on its port with a new key (and its sessions forgotten).
    with running_provider(
        tmp_path, port=provider.port, client_secret=provider.client_secret
    ) as rotated:
        assert rotated.signing_key.kid != provider.signing_key.kid
        for login in ("grace", "alan"):
            started, params = await signed_in_at_provider(client, rotated, login)
            assert (await client.finish(params=params, started=started)).subject == login

    assert paths.count("/.well-known/openid-configuration") == 1
    assert paths.count("/jwks") == 2  # once at first, once after the rotation
