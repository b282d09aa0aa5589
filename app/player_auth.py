"""Player tokens: short-lived JWTs with which a logged-in player's browser or app calls /v1/me.

An operator client (a signed request) mints a token for a player; the casino's front end hands
it to the player. The token is a JWT signed with Ed25519 under one key that only Pitwarden
holds, and says whose it is (`sub`, the player id), for whom (`aud`) and until when (`exp`,
15 minutes later). Verification accepts that one algorithm only, so a token with `alg: none`,
or an HS256 token keyed with the public key, is refused before any signature is computed.
The algorithm is named `Ed25519` (RFC 9864), not the polymorphic `EdDSA`: decision 0014.
"""

import contextlib
import fcntl
import json
import os
import secrets
import stat
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from joserfc import jwt
from joserfc.errors import ExpiredTokenError, JoseError
from joserfc.jwk import OKPKey

from app.auth import Uow, trace_id
from app.errors import Unauthorized
from core.journal import EventContext
from core.settings import Settings

ALGORITHM = "Ed25519"
ISSUER = "pitwarden"
AUDIENCE = "pitwarden-player"
LIFETIME = timedelta(minutes=15)
LEEWAY_S = 30  # clock skew between the front end's servers and ours
REALM = 'Bearer realm="pitwarden"'
_REQUIRED: jwt.ClaimsOption = {"essential": True}


class KeyFileError(RuntimeError):
    """The key file is not a private regular file, or does not hold an Ed25519 private key."""


class InvalidToken(Unauthorized):
    """A missing, malformed, expired or forged player token (401 with a Bearer challenge)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
        if code == "missing_auth_header":  # RFC 6750 3.1: no error code without credentials
            self.challenge = REALM
        else:
            self.challenge = f'{REALM}, error="invalid_token", error_description="{message}"'


class SigningKey:
    """The Ed25519 private key as a JWK in a file of its own, created on first use.

    Created like the vault's key file: mode 0600 in a 0700 directory, written to a temporary
    file, synced and renamed into place under an exclusive `flock`, so two processes starting
    at once end with one key. Re-read when the file changes: deleting it rotates the key, and
    every token signed with the old one stops working (they live 15 minutes anyway).
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._signature: tuple[int, ...] | None = None
        self._key: OKPKey | None = None

    def get(self) -> OKPKey:
        try:
            st = self._path.stat(follow_symlinks=False)
        except FileNotFoundError:
            self._create()
            st = self._path.stat(follow_symlinks=False)
        _check_mode(self._path, st.st_mode)
        signature = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if self._key is None or signature != self._signature:
            self._key, self._signature = self._read(), signature
        return self._key

    def _read(self) -> OKPKey:
        fd = os.open(self._path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as file:
            _check_mode(self._path, os.fstat(file.fileno()).st_mode)
            raw = file.read()
        try:
            key = OKPKey.import_key(json.loads(raw))
        except (ValueError, TypeError, KeyError, JoseError) as exc:
            raise KeyFileError(f"the player token key file {self._path} is corrupt") from exc
        if key.curve_name != "Ed25519" or not key.is_private:
            raise KeyFileError(f"{self._path} does not hold an Ed25519 private key")
        return key

    def _create(self) -> None:
        with self._locked():
            if os.path.lexists(self._path):
                return  # another process created it while we waited for the lock
            key = OKPKey.generate_key("Ed25519", private=True, auto_kid=True)
            document = json.dumps(key.as_dict(private=True))
            fd, temp = tempfile.mkstemp(dir=self._path.parent, prefix=f".{self._path.name}.")
            try:
                with os.fdopen(fd, "wb") as file:  # mkstemp creates it with mode 0600
                    file.write(document.encode())
                    file.flush()
                    os.fsync(file.fileno())
                Path(temp).replace(self._path)
            except BaseException:
                Path(temp).unlink(missing_ok=True)
                raise
            dir_fd = os.open(self._path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(dir_fd)  # the rename itself must survive a crash
            finally:
                os.close(dir_fd)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        directory = self._path.parent
        if not directory.exists():
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            directory.chmod(0o700)  # the umask may have narrowed mkdir's mode; never widen it
        lock = self._path.with_name(self._path.name + ".lock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock


def _check_mode(path: Path, mode: int) -> None:
    if not stat.S_ISREG(mode):
        raise KeyFileError(f"the player token key file {path} is not a regular file")
    if mode & 0o077:
        raise KeyFileError(
            f"the player token key file {path} has mode {stat.S_IMODE(mode):o}: group or "
            "others may read it; refusing to use it (delete it to rotate the key)"
        )


@dataclass(frozen=True, slots=True)
class Minted:
    token: str
    token_id: str  # the jti: journaled when minted, carried as session_id by the player's events
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Verified:
    player_id: uuid.UUID
    token_id: str


class PlayerTokens:
    def __init__(self, key: SigningKey, *, issuer: str = ISSUER) -> None:
        self._key = key
        self._issuer = issuer

    def mint(self, player_id: uuid.UUID, *, now: datetime) -> Minted:
        issued = int(now.timestamp())
        expires = issued + int(LIFETIME.total_seconds())
        token_id = secrets.token_urlsafe(16)
        key = self._key.get()
        claims = {
            "iss": self._issuer,
            "aud": AUDIENCE,
            "sub": str(player_id),
            "iat": issued,
            "nbf": issued,
            "exp": expires,
            "jti": token_id,
        }
        header = {"alg": ALGORITHM} | ({"kid": key.kid} if key.kid else {})
        token = jwt.encode(header, claims, key, algorithms=[ALGORITHM])
        return Minted(token, token_id, datetime.fromtimestamp(expires, UTC))

    def verify(self, token: str, *, now: datetime) -> Verified:
        try:
            decoded = jwt.decode(token, self._key.get(), algorithms=[ALGORITHM])
            jwt.JWTClaimsRegistry(
                now=int(now.timestamp()),
                leeway=LEEWAY_S,
                iss={"essential": True, "value": self._issuer},
                aud={"essential": True, "value": AUDIENCE},
                sub=_REQUIRED,
                iat=_REQUIRED,
                nbf=_REQUIRED,
                exp=_REQUIRED,
                jti=_REQUIRED,
            ).validate(decoded.claims)
        except ExpiredTokenError as exc:
            raise InvalidToken("token_expired", "the player token has expired") from exc
        except JoseError as exc:
            raise InvalidToken("invalid_token", "the player token is not valid") from exc
        subject = decoded.claims["sub"]
        try:
            player_id = uuid.UUID(subject)
        except ValueError:
            player_id = None
        if player_id is None or str(player_id) != subject:
            raise InvalidToken("invalid_token", "the player token names no player")
        return Verified(player_id, str(decoded.claims["jti"]))


def key_file(settings: Settings) -> Path:
    return settings.player_token_key_file or settings.data_dir / "secrets" / "player-token-key"


@cache
def _tokens(path: Path) -> PlayerTokens:
    return PlayerTokens(SigningKey(path))


def tokens(settings: Settings) -> PlayerTokens:
    """The token service of this installation (one per key file, kept for the process)."""
    return _tokens(key_file(settings))


@dataclass(frozen=True, slots=True)
class PlayerSession:
    """The player a request speaks for: only ever the token's subject."""

    player_id: uuid.UUID
    token_id: str
    trace_id: str

    @property
    def actor(self) -> str:
        return f"player:{self.player_id}"

    def context(self) -> EventContext:
        return EventContext(actor=self.actor, trace_id=self.trace_id, session_id=self.token_id)


_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="PlayerToken",
    bearerFormat="JWT",
    description="A player token from POST /v1/admin/players/{player_id}/session",
)


async def authenticate_player(
    request: Request,
    uow: Uow,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> PlayerSession:
    """Check the bearer token against the unit of work's clock (so tests can move time)."""
    if credentials is None:
        if request.headers.get("Authorization"):  # present, but not "Bearer <token>"
            raise InvalidToken("invalid_token", "the Authorization header is not a Bearer token")
        raise InvalidToken("missing_auth_header", "the Authorization header is required")
    verified = tokens(request.app.state.settings).verify(credentials.credentials, now=uow.now)
    return PlayerSession(verified.player_id, verified.token_id, trace_id(request))


PlayerPrincipal = Annotated[PlayerSession, Depends(authenticate_player)]
