"""C2SP signed notes with Ed25519 keys, and C2SP tlog checkpoints carried in them.

A note is text followed by a blank line and one signature line per key:
"— <key name> <base64(4-byte key id || signature)>". Verifiers skip signature lines of keys
they do not know, so a log can rotate keys by signing with the old and the new one for a while.
The checkpoint text is the log's origin, tree size and root hash, then extension lines; ours
adds "time <RFC 3339 UTC>" so a reader knows when the log committed to that tree.
"""

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Self

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from audit.merkle import HASH_SIZE

ED25519 = 0x01
KEY_SIZE = 32
SIGNATURE_SIZE = 64
MAX_SIGNATURES = 100
_DASH = "\N{EM DASH} "
_PRIVATE = "PRIVATE+KEY+"
_SIZE = re.compile(r"0|[1-9][0-9]{0,19}")
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")
_TIME_PREFIX = "time "
_MANDATORY_LINES = 3  # origin, tree size, root hash
_KEY_ID_SIZE = 4
# Control characters other than newline are forbidden; lone surrogates are not UTF-8.
_UNWRITABLE = re.compile(r"[\x00-\x1f\ud800-\udfff]")


class NoteError(ValueError):
    """A note, key or checkpoint is malformed, or its signatures do not verify."""


@dataclass(frozen=True)
class Verifier:
    name: str
    public_key: bytes = field(repr=False)
    key_id: int = field(init=False)

    def __post_init__(self) -> None:
        _check_name(self.name)
        if len(self.public_key) != KEY_SIZE:
            raise NoteError(f"an Ed25519 public key is {KEY_SIZE} bytes")
        object.__setattr__(self, "key_id", _key_id(self.name, self.public_key))

    @classmethod
    def from_string(cls, text: str) -> Self:
        """Parse "<name>+<8 hex key id>+<base64(0x01 || public key)>"."""
        name, hex_id, key = _split_key(text)
        verifier = cls(name, _typed_key(key))
        _check_key_id(hex_id, verifier.key_id)
        return verifier

    def to_string(self) -> str:
        return f"{self.name}+{self.key_id:08x}+{_b64(bytes([ED25519]) + self.public_key)}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        if len(signature) != SIGNATURE_SIZE:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class Signer:
    name: str
    seed: bytes = field(repr=False)
    key_id: int = field(init=False)

    def __post_init__(self) -> None:
        _check_name(self.name)
        if len(self.seed) != KEY_SIZE:
            raise NoteError(f"an Ed25519 private key seed is {KEY_SIZE} bytes")
        object.__setattr__(self, "key_id", self.verifier().key_id)

    @classmethod
    def generate(cls, name: str) -> Self:
        return cls(name, Ed25519PrivateKey.generate().private_bytes_raw())

    @classmethod
    def from_string(cls, text: str) -> Self:
        """Parse "PRIVATE+KEY+<name>+<8 hex key id>+<base64(0x01 || seed)>"."""
        if not text.startswith(_PRIVATE):
            raise NoteError("a signer key starts with PRIVATE+KEY+")
        name, hex_id, key = _split_key(text.removeprefix(_PRIVATE))
        signer = cls(name, _typed_key(key))
        _check_key_id(hex_id, signer.key_id)
        return signer

    def to_string(self) -> str:
        typed = _b64(bytes([ED25519]) + self.seed)
        return f"{_PRIVATE}{self.name}+{self.key_id:08x}+{typed}"

    def verifier(self) -> Verifier:
        private = Ed25519PrivateKey.from_private_bytes(self.seed)
        return Verifier(self.name, private.public_key().public_bytes_raw())

    def sign(self, message: bytes) -> bytes:
        return Ed25519PrivateKey.from_private_bytes(self.seed).sign(message)


def _key_id(name: str, public_key: bytes) -> int:
    """SHA-256(name || 0x0A || 0x01 || public key), first 4 bytes as a big-endian uint32."""
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([ED25519]) + public_key).digest()
    return int.from_bytes(digest[:_KEY_ID_SIZE], "big")


def sign_note(text: str, signers: Sequence[Signer]) -> str:
    _check_text(text)
    if not signers:
        raise NoteError("a note needs at least one signer")
    message = text.encode()
    lines = [
        f"{_DASH}{s.name} {_b64(s.key_id.to_bytes(_KEY_ID_SIZE, 'big') + s.sign(message))}\n"
        for s in signers
    ]
    return text + "\n" + "".join(lines)


def open_note(note: str, verifiers: Sequence[Verifier]) -> tuple[str, list[Verifier]]:
    """The note's text and the given verifiers that signed it.

    Lines by unknown keys are skipped; a line by a known key that does not verify, or a note
    that no known key signed, raises NoteError.
    """
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteError("the note has no signature block")
    text, signatures = note[: split + 1], note[split + 2 :]
    _check_text(text)
    message = text.encode()
    verified: list[Verifier] = []
    for name, kid, signature in _signature_lines(signatures):
        known = [v for v in verifiers if (v.name, v.key_id) == (name, kid)]
        good = [v for v in known if v.verify(message, signature)]
        if known and not good:
            raise NoteError(f"the signature by {name}+{kid:08x} does not verify")
        verified += [v for v in good if v not in verified]
    if not verified:
        raise NoteError("no trusted key signed the note")
    return text, verified


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    time: datetime | None = None
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line("origin", self.origin)
        if isinstance(self.size, bool) or not 0 <= self.size < 10**20:
            raise NoteError(f"tree size {self.size!r} is not a natural number")
        if len(self.root) != HASH_SIZE:
            raise NoteError(f"the root hash is {len(self.root)} bytes, not {HASH_SIZE}")
        if self.time is not None:
            if self.time.utcoffset() is None:
                raise NoteError("the checkpoint time must be timezone-aware")
            object.__setattr__(self, "time", self.time.astimezone(UTC))
        for line in self.extensions:
            _check_line("extension line", line)
            if line.startswith(_TIME_PREFIX):
                raise NoteError("the time extension goes in `time`, not in `extensions`")

    def to_text(self) -> str:
        lines = [self.origin, str(self.size), _b64(self.root)]
        if self.time is not None:
            stamp = self.time.replace(tzinfo=None).isoformat(timespec="microseconds")
            lines.append(f"{_TIME_PREFIX}{stamp}Z")
        return "".join(f"{line}\n" for line in [*lines, *self.extensions])

    @classmethod
    def from_text(cls, text: str) -> Self:
        _check_text(text)
        lines = text[:-1].split("\n")
        if len(lines) < _MANDATORY_LINES:
            raise NoteError("a checkpoint has an origin, a size and a root hash line")
        origin, size, root, *rest = lines
        if not _SIZE.fullmatch(size):
            raise NoteError(f"tree size {size!r} is not a decimal number without leading zeros")
        time = None
        if rest and rest[0].startswith(_TIME_PREFIX):
            time = _parse_time(rest.pop(0).removeprefix(_TIME_PREFIX))
        return cls(origin, int(size), _b64decode(root), time, tuple(rest))


def sign_checkpoint(checkpoint: Checkpoint, signers: Sequence[Signer]) -> str:
    return sign_note(checkpoint.to_text(), signers)


def open_checkpoint(note: str, verifiers: Sequence[Verifier]) -> tuple[Checkpoint, list[Verifier]]:
    text, verified = open_note(note, verifiers)
    return Checkpoint.from_text(text), verified


def _signature_lines(block: str) -> list[tuple[str, int, bytes]]:
    """(key name, key id, signature) of each line of a signature block."""
    if not block.endswith("\n"):
        raise NoteError("the signature block must end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"more than {MAX_SIGNATURES} signatures")
    parsed = []
    for line in lines:
        name, _, encoded = line.removeprefix(_DASH).partition(" ")
        if not line.startswith(_DASH) or not encoded:
            raise NoteError(f"malformed signature line {line!r}")
        _check_name(name)
        raw = _b64decode(encoded)
        if len(raw) <= _KEY_ID_SIZE:
            raise NoteError(f"the signature by {name} is too short")
        parsed.append((name, int.from_bytes(raw[:_KEY_ID_SIZE], "big"), raw[_KEY_ID_SIZE:]))
    return parsed


def _check_text(text: str) -> None:
    """Note text: non-empty lines, each ending in a newline, no control characters."""
    if not text.endswith("\n"):
        raise NoteError("the note text must end with a newline")
    for line in text[:-1].split("\n"):
        _check_line("a line of the note text", line)


def _check_line(what: str, line: str) -> None:
    if not line:
        raise NoteError(f"{what} must not be empty")
    if _UNWRITABLE.search(line):
        raise NoteError(f"{what} contains a control character or is not valid UTF-8")


def _check_name(name: str) -> None:
    if not name or "+" in name or any(c.isspace() for c in name):
        raise NoteError(f"key name {name!r} must be non-empty, without spaces or '+'")
    _check_line("key name", name)


def _split_key(text: str) -> tuple[str, str, str]:
    """Name, hex key id and base64 key; names have no '+' but base64 may."""
    name, _, rest = text.partition("+")
    hex_id, _, key = rest.partition("+")
    if not key:
        raise NoteError("malformed key string")
    return name, hex_id, key


def _typed_key(encoded: str) -> bytes:
    raw = _b64decode(encoded)
    if len(raw) != 1 + KEY_SIZE or raw[0] != ED25519:
        raise NoteError("not an Ed25519 key (type 0x01 and 32 bytes)")
    return raw[1:]


def _check_key_id(hex_id: str, expected: int) -> None:
    if not re.fullmatch(r"[0-9a-f]{8}", hex_id) or int(hex_id, 16) != expected:
        raise NoteError("the key id does not match the key's name and public key")


def _parse_time(stamp: str) -> datetime:
    if not _TIME.fullmatch(stamp):
        raise NoteError(f"checkpoint time {stamp!r} is not YYYY-MM-DDTHH:MM:SS.ffffffZ")
    try:
        return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError as error:
        raise NoteError(f"checkpoint time {stamp!r} is not a valid time") from error


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _b64decode(text: str) -> bytes:
    """Strict standard base64: padded, no stray characters, one spelling per value."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise NoteError(f"invalid base64 {text!r}") from error
    if _b64(raw) != text:
        raise NoteError(f"non-canonical base64 {text!r}")
    return raw
