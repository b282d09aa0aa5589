"""Sealing secrets the server must read back in clear: the API clients' HMAC secrets.

A secret that verifies an HMAC cannot be hashed like a password: the server recomputes the HMAC
with it. So it is stored sealed (AES-256-GCM) under a key kept outside the database, and a dump
of the database alone yields no caller's key (decision 0017).

`Sealer` is the seam. `LocalSealingKey`, the default, keeps its keys in a file of its own
(`var/secrets/client-secrets-key`, 0600, created on first use), apart from the vault's KEKs:
the vault rotates and retires its keys on its own schedule, and a layer below `compliance`
cannot use them anyway. A KMS implements the same two methods: `seal` an Encrypt and `unseal` a
Decrypt with `context` as encryption context. Every signed request unseals its client's secret,
so a KMS implementation would rather unwrap a local data key once at start-up (as the vault
does for its blind-index key) than call out per request.

The sealed form is one format byte, the key version (4 bytes), a random 96-bit nonce, then
ciphertext and tag. The associated data binds the key version and the context (for a client
secret, its client id): a sealed secret copied to another client's row does not open.
"""

import base64
import binascii
import json
import os
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core import keyfile

KEY_BYTES = 32
NONCE_BYTES = 12
FORMAT = 1
FILE_FORMAT = 1
LABEL = b"pitwarden/sealed-secret/v1"
_HEADER = struct.Struct(">BI")  # format, key version


class SealingError(Exception):
    """A sealed value does not open: another key file, another context, or tampered bytes."""


class Sealer(Protocol):
    """Seal and unseal small secrets, each bound to a context that names whose it is."""

    def seal(self, plaintext: bytes, *, context: str) -> bytes: ...
    def unseal(self, sealed: bytes, *, context: str) -> bytes: ...


@dataclass(frozen=True)
class _Keyring:
    keys: dict[int, bytes]

    @property
    def current(self) -> int:
        return max(self.keys)


class LocalSealingKey(Sealer):
    """AES-256-GCM keys, by version, in a private JSON file (core/keyfile.py); the newest seals.

    The file is re-read when it changes, so a version added by another process is seen at once.
    There is one version today; the sealed form names its version so that a key rotation can
    add another without touching what is sealed.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._signature: tuple[int, ...] | None = None
        self._keyring: _Keyring | None = None

    def seal(self, plaintext: bytes, *, context: str) -> bytes:
        keyring = self._load()
        version = keyring.current
        nonce = os.urandom(NONCE_BYTES)
        body = AESGCM(keyring.keys[version]).encrypt(nonce, plaintext, _aad(version, context))
        return _HEADER.pack(FORMAT, version) + nonce + body

    def unseal(self, sealed: bytes, *, context: str) -> bytes:
        if len(sealed) < _HEADER.size + NONCE_BYTES + 16:
            raise SealingError("the sealed value is too short")
        form, version = _HEADER.unpack_from(sealed)
        key = self._load().keys.get(version)
        if form != FORMAT or key is None:
            raise SealingError(
                f"the sealed value names format {form}, key version {version}, which the key "
                f"file {self.path} does not hold"
            )
        nonce = sealed[_HEADER.size : _HEADER.size + NONCE_BYTES]
        try:
            return AESGCM(key).decrypt(
                nonce, sealed[_HEADER.size + NONCE_BYTES :], _aad(version, context)
            )
        except InvalidTag:
            raise SealingError(
                f"a sealed secret of {context!r} does not open under the key file {self.path}:"
                " another key, another owner's secret, or tampered bytes"
            ) from None

    def _load(self) -> _Keyring:
        signature = keyfile.signature(self.path)
        if self._keyring is None or signature is None or signature != self._signature:
            raw = keyfile.read_or_create(self.path, _new_file)  # first use creates it, once
            try:
                self._keyring = _decode(json.loads(raw))
            except (ValueError, KeyError, TypeError, binascii.Error) as exc:
                raise keyfile.KeyFileError(f"the key file {self.path} is corrupt: {exc}") from exc
            self._signature = signature or keyfile.signature(self.path)
        return self._keyring


def _aad(version: int, context: str) -> bytes:
    parts = (LABEL, struct.pack(">I", version), context.encode())
    return b"".join(struct.pack(">I", len(part)) + part for part in parts)


def _new_file() -> bytes:
    key = base64.b64encode(os.urandom(KEY_BYTES)).decode()
    created = datetime.now(UTC).isoformat()
    document = {"format": FILE_FORMAT, "keys": [{"version": 1, "key": key, "created_at": created}]}
    return json.dumps(document, indent=2).encode()


def _decode(document: dict[str, Any]) -> _Keyring:
    if document["format"] != FILE_FORMAT:
        raise ValueError(f"unknown key file format {document['format']!r}")
    keys: dict[int, bytes] = {}
    for entry in document["keys"]:
        key = base64.b64decode(entry["key"], validate=True)
        if len(key) != KEY_BYTES:
            raise ValueError(f"a key is {KEY_BYTES} bytes, got {len(key)}")
        keys[int(entry["version"])] = key
    if not keys:
        raise ValueError("no keys")
    return _Keyring(keys)
