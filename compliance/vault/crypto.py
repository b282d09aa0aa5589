"""Envelope encryption of PII fields with AES-256-GCM.

Every player has a random data key; each of their fields is sealed under it. The sealed form
is one format-version byte, a 12-byte random nonce, then ciphertext and tag. The associated data
names the context (a label, the player's UUID bytes, the field name), each part length-prefixed
so that no two distinct contexts produce the same bytes: a ciphertext copied to another player
or another field does not decrypt. Random 96-bit nonces are safe here because one data key seals
only a handful of fields over its life, far below the GCM birthday bound.
"""

import os
import struct
import uuid

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FIELDS: tuple[str, ...] = (
    "legal_name",
    "date_of_birth",
    "address",
    "country",
    "email",
    "phone",
    "national_id",
    "iban",
    "document_image",
)

KEY_BYTES = 32
FORMAT_VERSION = 1
NONCE_BYTES = 12
TAG_BYTES = 16
FIELD_LABEL = b"pitwarden/vault/field/v1"


class VaultCryptoError(Exception):
    """Any failure of the vault's cryptography."""


class DecryptionFailed(VaultCryptoError):
    """Wrong key, wrong context (player or field) or tampered bytes: GCM cannot tell which."""


def new_data_key() -> bytes:
    return os.urandom(KEY_BYTES)


def context(*parts: bytes) -> bytes:
    """Associated data: each part prefixed by its 4-byte length, so no two contexts collide."""
    return b"".join(struct.pack(">I", len(part)) + part for part in parts)


def seal(key: bytes, associated_data: bytes, plaintext: bytes) -> bytes:
    """Version byte || random nonce || ciphertext+tag."""
    _check_key(key)
    nonce = os.urandom(NONCE_BYTES)
    body = AESGCM(key).encrypt(nonce, plaintext, associated_data)
    return bytes([FORMAT_VERSION]) + nonce + body


def unseal(key: bytes, associated_data: bytes, sealed: bytes) -> bytes:
    _check_key(key)
    # Too short or an unknown version is reported like a bad tag: callers must treat every
    # undecryptable value alike, and a distinct error would only help someone probing.
    if len(sealed) < 1 + NONCE_BYTES + TAG_BYTES or sealed[0] != FORMAT_VERSION:
        raise DecryptionFailed("the sealed value is malformed or of an unknown format version")
    nonce, body = sealed[1 : 1 + NONCE_BYTES], sealed[1 + NONCE_BYTES :]
    try:
        return AESGCM(key).decrypt(nonce, body, associated_data)
    except InvalidTag:
        raise DecryptionFailed("wrong key, wrong context or tampered ciphertext") from None


def encrypt_field(data_key: bytes, player_id: uuid.UUID, field: str, plaintext: bytes) -> bytes:
    return seal(data_key, _field_context(player_id, field), plaintext)


def decrypt_field(data_key: bytes, player_id: uuid.UUID, field: str, sealed: bytes) -> bytes:
    return unseal(data_key, _field_context(player_id, field), sealed)


def _field_context(player_id: uuid.UUID, field: str) -> bytes:
    # Documents are stored as "document_image:<token>", so any ASCII name is accepted; NUL and
    # non-ASCII are refused so that one field name has exactly one byte encoding.
    if not field or not field.isascii() or "\x00" in field:
        raise ValueError(f"invalid field name {field!r}: must be non-empty ASCII without NUL")
    return context(FIELD_LABEL, player_id.bytes, field.encode("ascii"))


def _check_key(key: bytes) -> None:
    if len(key) != KEY_BYTES:
        raise VaultCryptoError(f"a vault key is {KEY_BYTES} bytes, got {len(key)}")
