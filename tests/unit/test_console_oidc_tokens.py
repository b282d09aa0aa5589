"""ID token validation on its own (app.console.oidc.validate_id_token): what the sign-in accepts
and refuses beyond what the real provider can be made to send (tests/integration/
test_console_oidc.py): clock leeway, several audiences, keys without kid, the other asymmetric
algorithms, and a JWKS holding keys that must never verify an ID token."""

import base64
import hashlib
import hmac
import json
import warnings
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, Key, KeySet, OctKey, OKPKey, RSAKey

from app.console.oidc import (
    LEEWAY,
    OidcConfig,
    OidcError,
    load_jwks,
    validate_id_token,
)

ISSUER = "https://id.casino.example"
CLIENT = "pitwarden-console"
NONCE = "n-0S6_WzA2Mj"
RSA = RSAKey.generate_key(2048, {"kid": "rsa-1", "use": "sig"})
NOW = datetime.now(UTC).replace(microsecond=0)


def public_jwks(*keys: Key) -> KeySet:
    return load_jwks({"keys": [key.as_dict(private=False) for key in keys]})


def id_token(key: Key = RSA, alg: str = "RS256", kid: str | None = "rsa-1", **claims: Any) -> str:
    issued = int(NOW.timestamp())
    body = {
        "iss": ISSUER,
        "aud": CLIENT,
        "sub": "ada",
        "nonce": NONCE,
        "iat": issued,
        "exp": issued + 300,
    } | claims
    header = {"alg": alg} | ({"kid": kid} if kid else {})
    with warnings.catch_warnings():  # the test signs with EdDSA too, a name joserfc deprecates
        warnings.simplefilter("ignore", SecurityWarning)
        return jwt.encode(header, {k: v for k, v in body.items() if v is not None}, key, [alg])


def validate(token: str, jwks: KeySet | None = None, **options: Any) -> dict[str, Any]:
    return validate_id_token(
        token,
        jwks=jwks or public_jwks(RSA),
        issuer=ISSUER,
        client_id=CLIENT,
        nonce=NONCE,
        now=options.pop("now", NOW),
        **options,
    )


def refused(token: str, jwks: KeySet | None = None, **options: Any) -> str:
    with pytest.raises(OidcError) as refusal:
        validate(token, jwks, **options)
    return refusal.value.code


def test_a_good_id_token_gives_its_claims() -> None:
    assert validate(id_token(email="ada@casino.example"))["email"] == "ada@casino.example"


@pytest.mark.parametrize(
    ("key", "alg"),
    [
        (ECKey.generate_key("P-256", {"kid": "ec"}), "ES256"),
        (ECKey.generate_key("P-384", {"kid": "ec"}), "ES384"),
        (RSAKey.generate_key(2048, {"kid": "rsa-pss"}), "PS256"),
        (OKPKey.generate_key("Ed25519", {"kid": "ed"}), "Ed25519"),
        (OKPKey.generate_key("Ed25519", {"kid": "ed"}), "EdDSA"),  # no warning escapes
    ],
)
def test_the_other_asymmetric_algorithms_are_accepted(key: Key, alg: str) -> None:
    token = id_token(key, alg, kid=key.kid)

    assert validate(token, public_jwks(RSA, key))["sub"] == "ada"


def _hs256(secret: bytes, header: dict[str, Any]) -> str:
    claims = {"iss": ISSUER, "aud": CLIENT, "sub": "ada", "nonce": NONCE}
    now = int(NOW.timestamp())
    signing_input = ".".join(
        base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()
        for part in (header, claims | {"iat": now, "exp": now + 300})
    )
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def test_an_hs256_token_keyed_with_the_providers_public_key_is_refused() -> None:
    """The classic algorithm confusion: the verifier's own public key as an HMAC secret."""
    public_pem = RSA.as_pem(private=False)

    assert refused(_hs256(public_pem, {"alg": "HS256", "kid": "rsa-1"})) == "oidc_alg_refused"


def test_a_jwks_with_a_symmetric_key_still_refuses_hs256() -> None:
    secret = OctKey.generate_key(256, {"kid": "oct"})
    jwks = load_jwks({"keys": [RSA.as_dict(private=False), secret.as_dict(private=True)]})

    assert [key.key_type for key in jwks] == ["RSA"]
    token = jwt.encode({"alg": "HS256", "kid": "oct"}, {"sub": "ada"}, secret, ["HS256"])
    assert refused(token, jwks) == "oidc_alg_refused"


@pytest.mark.parametrize(
    "unfit",
    [
        {"use": "enc"},  # an encryption key
        {"alg": "PS256"},  # meant for another algorithm
    ],
)
def test_a_key_unfit_for_the_signature_does_not_verify_it(unfit: dict[str, str]) -> None:
    other = ECKey.generate_key("P-256", {"kid": "ec"})
    jwks = load_jwks({"keys": [RSA.as_dict(private=False) | unfit, other.as_dict(private=False)]})

    assert refused(id_token(), jwks) == "oidc_unknown_key"


def test_rsa_keys_under_2048_bits_are_left_out_of_the_jwks() -> None:
    weak = rsa.generate_private_key(65537, 1024)  # noqa: S505 - the weak key under test
    numbers = weak.public_key().public_numbers()
    small = {"kty": "RSA", "kid": "small", "e": "AQAB", "n": _b64_int(numbers.n)}

    with pytest.raises(OidcError) as refusal:
        load_jwks({"keys": [small]})

    assert refusal.value.code == "oidc_provider_unavailable"


def _b64_int(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_a_token_without_kid_is_checked_against_each_fitting_key() -> None:
    other = RSAKey.generate_key(2048, {"kid": "rsa-0"})

    assert validate(id_token(kid=None), public_jwks(other, RSA))["sub"] == "ada"
    assert refused(id_token(kid=None), public_jwks(other)) == "oidc_bad_signature"


def test_an_encrypted_or_malformed_token_is_refused() -> None:
    assert refused("a.b.c.d.e") == "oidc_bad_token"
    assert refused("not a token") == "oidc_bad_token"


@pytest.mark.parametrize(
    ("claims", "code"),
    [
        ({"sub": None}, "oidc_bad_token"),
        ({"exp": None}, "oidc_bad_token"),
        ({"iat": None}, "oidc_bad_token"),
        ({"exp": "tomorrow"}, "oidc_bad_token"),
        ({"nonce": None}, "oidc_nonce_mismatch"),
        ({"iss": ISSUER + "/"}, "oidc_wrong_issuer"),
        ({"aud": ["someone-else"]}, "oidc_wrong_audience"),
        ({"aud": [CLIENT, "someone-else"]}, "oidc_wrong_audience"),  # several: azp required
        ({"aud": [CLIENT, "someone-else"], "azp": "someone-else"}, "oidc_wrong_audience"),
        ({"azp": "someone-else"}, "oidc_wrong_audience"),
    ],
)
def test_claims_that_do_not_fit_are_refused(claims: dict[str, Any], code: str) -> None:
    assert refused(id_token(**claims)) == code


def test_several_audiences_are_accepted_when_issued_to_this_client() -> None:
    token = id_token(aud=[CLIENT, "pitwarden-api"], azp=CLIENT)

    assert validate(token)["azp"] == CLIENT


def test_the_clock_leeway_holds_both_ways_and_no_further() -> None:
    token = id_token()  # issued NOW, expires NOW + 300 s
    expires = NOW + timedelta(seconds=300)

    assert validate(token, now=expires + LEEWAY)["sub"] == "ada"
    assert refused(token, now=expires + LEEWAY + timedelta(seconds=1)) == "oidc_expired"
    assert validate(token, now=NOW - LEEWAY)["sub"] == "ada"  # our clock a little behind
    assert refused(token, now=NOW - LEEWAY - timedelta(seconds=1)) == "oidc_not_yet_valid"
    not_before = int((NOW + timedelta(minutes=5)).timestamp())
    assert refused(id_token(nbf=not_before)) == "oidc_not_yet_valid"


def test_symmetric_algorithms_cannot_be_allowed() -> None:
    with pytest.raises(ValueError, match="HS256"):
        validate(id_token(), algorithms=["RS256", "HS256"])
    with pytest.raises(ValueError, match="none"):
        OidcConfig(
            issuer=ISSUER,
            client_id=CLIENT,
            client_secret="s3cret",
            redirect_uri="https://pitwarden.casino.example/console/oidc/callback",
            algorithms=frozenset({"RS256", "none"}),
        )


def test_an_allowlist_narrowed_by_configuration_is_kept() -> None:
    assert refused(id_token(), algorithms=["ES256"]) == "oidc_alg_refused"


@pytest.mark.parametrize(
    ("issuer", "redirect_uri"),
    [
        ("http://id.casino.example", "https://pitwarden.casino.example/cb"),  # clear text
        ("https://id.casino.example", "http://pitwarden.casino.example/cb"),
        ("https://id.casino.example?tenant=1", "https://pitwarden.casino.example/cb"),
    ],
)
def test_a_provider_or_callback_outside_https_is_refused_by_configuration(
    issuer: str, redirect_uri: str
) -> None:
    with pytest.raises(ValueError, match="OpenID"):
        OidcConfig(
            issuer=issuer, client_id=CLIENT, client_secret="s3cret", redirect_uri=redirect_uri
        )


def test_the_client_secret_stays_out_of_the_configurations_repr() -> None:
    config = OidcConfig(
        issuer=ISSUER,
        client_id=CLIENT,
        client_secret="do-not-print-me",
        redirect_uri="http://127.0.0.1:8000/console/oidc/callback",
    )

    assert "do-not-print-me" not in repr(config)
