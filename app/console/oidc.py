"""Single sign-on for the officers' console: OpenID Connect, authorization code flow with PKCE.

`OidcClient.begin` makes the authorization request (authlib: `state`, `nonce`, an S256 code
challenge); the caller keeps what it returns server-side, in the pre-sign-in session, and sends
the officer's browser to its URL. `OidcClient.finish` takes the provider's answer (the callback's
query parameters) with that record: it checks `state` and the `iss` of the answer, exchanges
the code with the client secret and the code verifier (authlib), then checks the ID token with
joserfc (`validate_id_token`): a signature by a key of the provider's JWKS, under an allowlist
of asymmetric algorithms, `iss`, `aud` and `azp`, `exp`, `iat` and `nbf` against the product
clock, and the `nonce` sent. Every refusal is an `OidcError` with a machine-readable code.

A pure client: no database, no web framework. The discovery document is fetched once and kept;
the JWKS too, fetched again once when an ID token names a key it does not hold (the provider
rotated its keys). Decision 0019.
"""

import asyncio
import hmac
import math
import secrets
import warnings
from base64 import urlsafe_b64decode
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from ipaddress import ip_address
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError
from joserfc import jws, jwt
from joserfc.errors import BadSignatureError, JoseError, SecurityWarning
from joserfc.jwk import Key, KeySet, import_key

from core.clock import Clock, utc_now

# Asymmetric signatures only: never `none`, never HS* (keyed with the client secret, an HS256
# token could be made by anyone who knows that secret, and keyed with a public key by anyone).
ALGORITHMS: frozenset[str] = frozenset(
    {
        *("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"),
        *("ES256", "ES384", "ES512"),
        "Ed25519",
        "EdDSA",  # the same Ed25519 signatures under the name RFC 9864 deprecates
    }
)
_KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
LEEWAY = timedelta(seconds=60)  # clock skew between the provider and us
SIGN_IN_TIMEOUT = timedelta(minutes=10)  # from begin to finish
HTTP_TIMEOUT = httpx.Timeout(10.0)
_MIN_RSA_BYTES = 256  # 2048-bit keys at least

RefusalCode = Literal[
    "oidc_state_mismatch",  # the answer is not for the sign-in this browser started
    "oidc_sign_in_expired",  # begun longer ago than the sign-in timeout
    "oidc_access_denied",  # the officer cancelled, or the provider would not sign them in
    "oidc_provider_error",  # the provider answered with another error, or without a code
    "oidc_provider_unavailable",  # unreachable, failing, or answering nonsense
    "oidc_code_refused",  # the token endpoint refused the code (used, expired, wrong verifier)
    "oidc_bad_token",  # no ID token, or not a signed JWT, or a required claim missing
    "oidc_alg_refused",  # signed with an algorithm outside the allowlist (none, HS256, ...)
    "oidc_unknown_key",  # signed by a key the provider does not publish
    "oidc_bad_signature",  # the signature does not verify
    "oidc_wrong_issuer",  # another issuer (discovery, answer or ID token)
    "oidc_wrong_audience",  # not for this client
    "oidc_expired",  # past its `exp`
    "oidc_not_yet_valid",  # `iat` or `nbf` in the future
    "oidc_nonce_mismatch",  # not the ID token of this sign-in
    "oidc_userinfo_mismatch",  # the userinfo endpoint speaks of someone else
]


class OidcError(Exception):
    """A sign-in refused: `code` says which check failed, `message` says it in words."""

    def __init__(self, code: RefusalCode, message: str) -> None:
        super().__init__(message)
        self.code: RefusalCode = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass(frozen=True, slots=True)
class OidcConfig:
    """The provider (its issuer URL, exactly as it names itself) and our client there."""

    issuer: str
    client_id: str
    client_secret: str = field(repr=False)
    redirect_uri: str
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    algorithms: frozenset[str] = ALGORITHMS
    leeway: timedelta = LEEWAY
    sign_in_timeout: timedelta = SIGN_IN_TIMEOUT

    def __post_init__(self) -> None:
        _check_url(self.issuer, "issuer")
        if urlsplit(self.issuer).query or urlsplit(self.issuer).fragment:
            raise ValueError("the OpenID issuer URL has no query or fragment")
        _check_url(self.redirect_uri, "redirect URI")
        if not self.client_id or not self.client_secret:
            raise ValueError("the OpenID client id and secret are required")
        if "openid" not in self.scopes:
            raise ValueError("the scopes must include openid")
        _check_algorithms(self.algorithms)


def _check_url(url: str, what: str) -> None:
    if not _acceptable_url(url):
        raise ValueError(f"the OpenID {what} must be an https URL (http only on loopback): {url!r}")


def _acceptable_url(url: str) -> bool:
    """https, or http on a loopback address (a provider on this machine: the tests)."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return bool(parts.hostname)
    return parts.scheme == "http" and _is_loopback(parts.hostname)


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return host is not None and ip_address(host).is_loopback
    except ValueError:
        return False


def _check_algorithms(algorithms: Collection[str]) -> None:
    if not algorithms or not set(algorithms) <= ALGORITHMS:
        refused = sorted(set(algorithms) - ALGORITHMS)
        raise ValueError(f"ID token algorithms must be among {sorted(ALGORITHMS)}, not {refused}")


@dataclass(frozen=True, slots=True)
class Started:
    """A sign-in begun: send the browser to `url`; keep the rest server-side until `finish`."""

    url: str
    state: str
    nonce: str
    code_verifier: str = field(repr=False)
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Identity:
    """Who signed in. Key accounts on (issuer, subject): an email address can change hands."""

    issuer: str
    subject: str
    email: str | None
    email_verified: bool
    name: str | None
    claims: Mapping[str, Any]  # the userinfo claims, overlaid by the ID token's


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    """What we use of the provider's discovery document."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None
    answers_with_issuer: bool  # RFC 9207: the authorization response carries `iss`


TransportFactory = Callable[[], httpx.AsyncBaseTransport]


class OidcClient:
    """One provider, one client: shared by all sign-ins of the process (it caches discovery
    and the JWKS). `transport` makes each HTTP client's transport (tests watch or alter it)."""

    def __init__(
        self,
        config: OidcConfig,
        *,
        clock: Clock = utc_now,
        transport: TransportFactory | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self._transport = transport
        self._metadata: ProviderMetadata | None = None
        self._jwks: KeySet | None = None
        self._lock = asyncio.Lock()

    async def begin(self) -> Started:
        metadata = await self.metadata()
        state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        code_verifier = secrets.token_urlsafe(48)  # 64 characters of RFC 7636's alphabet
        async with self._oauth() as oauth:
            url, _ = oauth.create_authorization_url(
                metadata.authorization_endpoint,
                state=state,
                code_verifier=code_verifier,
                nonce=nonce,
            )
        return Started(url, state, nonce, code_verifier, self._clock())

    async def finish(self, *, params: Mapping[str, str], started: Started) -> Identity:
        """Check the callback's query parameters against the sign-in `started`, exchange the
        code and validate the ID token. The `started` record must be used once: forget it
        before calling (a replayed code is refused by the provider anyway)."""
        _check_state(params.get("state"), started.state)
        if self._clock() > started.created_at + self.config.sign_in_timeout:
            raise OidcError("oidc_sign_in_expired", "this sign-in took too long: start again")
        metadata = await self.metadata()
        self._check_answer_issuer(params.get("iss"), metadata)
        code = _code_of(params)
        token = await self._exchange(metadata, code, started.code_verifier)
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise OidcError("oidc_bad_token", "the provider sent no ID token")
        claims = await self._validated(metadata, id_token, started.nonce)
        access_token = token.get("access_token")
        if metadata.userinfo_endpoint and isinstance(access_token, str):
            userinfo = await self._userinfo(metadata.userinfo_endpoint, access_token)
            if userinfo.get("sub") != claims["sub"]:
                raise OidcError(
                    "oidc_userinfo_mismatch",
                    "the provider's userinfo names another subject than the ID token",
                )
            claims = {**userinfo, **claims}
        return _identity(claims)

    async def metadata(self) -> ProviderMetadata:
        """The discovery document, fetched on first use and kept (only when it is usable)."""
        if self._metadata is None:
            async with self._lock:
                if self._metadata is None:
                    url = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
                    self._metadata = self._parse_metadata(await self._get_json(url, "discovery"))
        return self._metadata

    def _parse_metadata(self, document: dict[str, Any]) -> ProviderMetadata:
        if document.get("issuer") != self.config.issuer:
            raise OidcError(
                "oidc_wrong_issuer",
                f"the discovery document names the issuer {document.get('issuer')!r}, "
                f"not {self.config.issuer!r}",
            )
        userinfo = document.get("userinfo_endpoint")
        return ProviderMetadata(
            issuer=self.config.issuer,
            authorization_endpoint=_endpoint(document, "authorization_endpoint"),
            token_endpoint=_endpoint(document, "token_endpoint"),
            jwks_uri=_endpoint(document, "jwks_uri"),
            userinfo_endpoint=None
            if userinfo is None
            else _endpoint(document, "userinfo_endpoint"),
            answers_with_issuer=document.get("authorization_response_iss_parameter_supported")
            is True,
        )

    def _check_answer_issuer(self, returned: str | None, metadata: ProviderMetadata) -> None:
        """RFC 9207: an answer naming another issuer was meant for another provider (mix-up)."""
        if returned is None and not metadata.answers_with_issuer:
            return
        if returned != self.config.issuer:
            raise OidcError(
                "oidc_wrong_issuer",
                f"the sign-in answer comes from the issuer {returned!r}, "
                f"not {self.config.issuer!r}",
            )

    async def _exchange(
        self, metadata: ProviderMetadata, code: str, code_verifier: str
    ) -> dict[str, Any]:
        try:
            async with self._oauth() as oauth:
                token = await oauth.fetch_token(
                    metadata.token_endpoint,
                    grant_type="authorization_code",
                    code=code,
                    code_verifier=code_verifier,
                )
        except OAuthError as exc:
            raise OidcError(
                "oidc_code_refused",
                f"the provider refused the authorization code: {exc.error}"
                + (f" ({exc.description})" if exc.description else ""),
            ) from exc
        except (httpx.HTTPError, ValueError) as exc:  # ValueError: a body that is not JSON
            raise _unavailable("token endpoint", exc) from exc
        return dict(token)

    async def _validated(
        self, metadata: ProviderMetadata, id_token: str, nonce: str
    ) -> dict[str, Any]:
        jwks = await self._key_set(metadata)
        try:
            return self._validate(id_token, jwks, nonce)
        except OidcError as refusal:
            if refusal.code != "oidc_unknown_key":
                raise
        # A key we do not hold: the provider may have rotated its keys since we fetched them.
        return self._validate(id_token, await self._key_set(metadata, stale=jwks), nonce)

    def _validate(self, id_token: str, jwks: KeySet, nonce: str) -> dict[str, Any]:
        return validate_id_token(
            id_token,
            jwks=jwks,
            issuer=self.config.issuer,
            client_id=self.config.client_id,
            nonce=nonce,
            now=self._clock(),
            algorithms=self.config.algorithms,
            leeway=self.config.leeway,
        )

    async def _key_set(self, metadata: ProviderMetadata, *, stale: KeySet | None = None) -> KeySet:
        """The provider's keys: kept, and fetched again when `stale` is still the kept set
        (concurrent sign-ins that meet the same new key fetch it once)."""
        async with self._lock:
            if self._jwks is None or self._jwks is stale:
                self._jwks = load_jwks(await self._get_json(metadata.jwks_uri, "JWKS"))
            return self._jwks

    async def _userinfo(self, url: str, access_token: str) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {access_token}", "Accept": "application/json"}
        return await self._get_json(url, "userinfo", headers=headers)

    async def _get_json(
        self, url: str, what: str, *, headers: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        try:
            async with self._http() as http:
                response = await http.get(url, headers=headers)
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise _unavailable(what, exc) from exc
        if not isinstance(document, dict):
            raise OidcError("oidc_provider_unavailable", f"the provider's {what} is not an object")
        return document

    def _http(self) -> httpx.AsyncClient:
        transport = self._transport() if self._transport else None
        return httpx.AsyncClient(transport=transport, timeout=HTTP_TIMEOUT)

    def _oauth(self) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            client_id=self.config.client_id,
            client_secret=self.config.client_secret,
            token_endpoint_auth_method="client_secret_basic",  # noqa: S106 - a method's name
            scope=" ".join(self.config.scopes),
            redirect_uri=self.config.redirect_uri,
            code_challenge_method="S256",
            timeout=HTTP_TIMEOUT,
            transport=self._transport() if self._transport else None,
        )


def _endpoint(document: Mapping[str, Any], name: str) -> str:
    value = document.get(name)
    if not isinstance(value, str) or not _acceptable_url(value):
        raise OidcError(
            "oidc_provider_unavailable", f"the provider's discovery document has no usable {name}"
        )
    return value


def _check_state(returned: str | None, expected: str) -> None:
    if returned is None or not hmac.compare_digest(returned.encode(), expected.encode()):
        raise OidcError(
            "oidc_state_mismatch",
            "this sign-in answer is not for the sign-in this browser started: start again",
        )


def _code_of(params: Mapping[str, str]) -> str:
    error = params.get("error")
    if error == "access_denied":
        raise OidcError("oidc_access_denied", "the provider did not sign you in (access denied)")
    if error is not None:
        shown = "".join(c for c in error[:64] if c.isalnum() or c == "_")
        raise OidcError("oidc_provider_error", f"the provider answered with the error {shown!r}")
    code = params.get("code")
    if not code:
        raise OidcError("oidc_provider_error", "the provider's answer carries no code")
    return code


def _unavailable(what: str, exc: Exception) -> OidcError:
    if isinstance(exc, httpx.HTTPStatusError):
        detail = f"HTTP {exc.response.status_code}"
    elif isinstance(exc, httpx.HTTPError):
        detail = type(exc).__name__
    else:
        detail = "not JSON"
    return OidcError("oidc_provider_unavailable", f"the provider's {what} failed: {detail}")


def _identity(claims: Mapping[str, Any]) -> Identity:
    email, name = claims.get("email"), claims.get("name")
    return Identity(
        issuer=claims["iss"],
        subject=claims["sub"],
        email=email if isinstance(email, str) else None,
        email_verified=claims.get("email_verified") is True,
        name=name if isinstance(name, str) else None,
        claims=dict(claims),
    )


def load_jwks(document: Mapping[str, Any]) -> KeySet:
    """The provider's signing keys: public asymmetric keys meant for signatures. Symmetric
    (`oct`) keys, encryption keys, RSA keys under 2048 bits and keys joserfc cannot read are
    left out, so no ID token can be checked against them."""
    keys: list[Key] = []
    for data in document.get("keys", ()):
        if not isinstance(data, dict) or data.get("use", "sig") != "sig":
            continue
        if data.get("kty") not in {"RSA", "EC", "OKP"} or "d" in data:
            continue
        if data["kty"] == "RSA" and _decoded_length(data.get("n")) < _MIN_RSA_BYTES:
            continue
        try:
            keys.append(import_key(data))
        except (JoseError, ValueError, TypeError, KeyError):
            continue
    if not keys:
        raise OidcError("oidc_provider_unavailable", "the provider's JWKS holds no signing key")
    return KeySet(keys)


def _decoded_length(value: object) -> int:
    if not isinstance(value, str):
        return 0
    try:
        return len(urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    except ValueError:
        return 0


def validate_id_token(
    token: str,
    *,
    jwks: KeySet,
    issuer: str,
    client_id: str,
    nonce: str,
    now: datetime,
    algorithms: Collection[str] = ALGORITHMS,
    leeway: timedelta = LEEWAY,
) -> dict[str, Any]:
    """The claims of an ID token (OpenID Connect Core 3.1.3.7), or an `OidcError`."""
    _check_algorithms(algorithms)
    try:
        header = jws.extract_compact(token.encode()).headers()
    except (JoseError, ValueError) as exc:
        raise OidcError("oidc_bad_token", "the ID token is not a signed JWT") from exc
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms:
        raise OidcError(
            "oidc_alg_refused",
            f"the ID token is signed with {alg!r}, which is not allowed "
            f"(allowed: {', '.join(sorted(algorithms))})",
        )
    claims = _verified_claims(token, alg, _candidate_keys(jwks, header.get("kid"), alg))
    _check_claims(claims, issuer=issuer, client_id=client_id, nonce=nonce, now=now, leeway=leeway)
    return claims


def _candidate_keys(jwks: KeySet, kid: object, alg: str) -> list[Key]:
    key_type = _KEY_TYPES[alg[:2]]
    keys = [
        key
        for key in jwks
        if key.key_type == key_type
        and key.get("alg") in {None, alg}
        and (kid is None or key.kid == kid)
    ]
    if not keys:
        named = f"the key {kid!r}" if isinstance(kid, str) else f"an {alg} key"
        raise OidcError(
            "oidc_unknown_key",
            f"the ID token is signed by {named}, which the provider does not publish",
        )
    return keys


def _verified_claims(token: str, alg: str, keys: list[Key]) -> dict[str, Any]:
    """The payload, once a signature verifies with one of `keys` (several only when the token
    names no key)."""
    for key in keys:
        try:
            with warnings.catch_warnings():
                # joserfc warns that the name EdDSA is deprecated (RFC 9864): same signature
                warnings.filterwarnings("ignore", "EdDSA is deprecated", SecurityWarning)
                return dict(jwt.decode(token, key, algorithms=[alg]).claims)
        except BadSignatureError:
            continue
        except (JoseError, ValueError) as exc:
            raise OidcError("oidc_bad_token", f"the ID token cannot be read: {exc}") from exc
    raise OidcError("oidc_bad_signature", "the ID token's signature does not verify")


def _check_claims(
    claims: dict[str, Any],
    *,
    issuer: str,
    client_id: str,
    nonce: str,
    now: datetime,
    leeway: timedelta,
) -> None:
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject or len(subject) > 255:  # noqa: PLR2004 - Core 2
        raise OidcError("oidc_bad_token", "the ID token names no subject")
    if claims.get("iss") != issuer:
        raise OidcError(
            "oidc_wrong_issuer",
            f"the ID token was issued by {claims.get('iss')!r}, not {issuer!r}",
        )
    audience = claims.get("aud")
    audiences = [audience] if isinstance(audience, str) else audience
    if not isinstance(audiences, list) or client_id not in audiences:
        raise OidcError("oidc_wrong_audience", "the ID token is not meant for this console")
    azp = claims.get("azp")
    if (len(audiences) > 1 or azp is not None) and azp != client_id:
        raise OidcError(
            "oidc_wrong_audience",
            "the ID token was issued to another party (azp) among several audiences",
        )
    instant, skew = now.timestamp(), leeway.total_seconds()
    expires, issued, not_before = _time(claims, "exp"), _time(claims, "iat"), _time(claims, "nbf")
    if expires is None or issued is None:
        raise OidcError("oidc_bad_token", "the ID token has no exp or iat")
    if instant > expires + skew:
        raise OidcError("oidc_expired", "the ID token has expired: sign in again")
    if issued > instant + skew or (not_before is not None and not_before > instant + skew):
        raise OidcError("oidc_not_yet_valid", "the ID token is not valid yet (clock skew?)")
    sent = claims.get("nonce")
    if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), nonce.encode()):
        raise OidcError(
            "oidc_nonce_mismatch", "the ID token is not the one of this sign-in (nonce)"
        )


def _time(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise OidcError("oidc_bad_token", f"the ID token's {name} is not a time")
    return float(value)
