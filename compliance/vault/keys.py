"""Key-encryption keys (KEKs) that wrap players' data keys, behind a provider interface.

A data key is stored only wrapped: sealed under a KEK with associated data binding the player
id and the KEK version, so a wrapped key moved to another player, or relabelled with another
version, does not unwrap. Rotation adds a new current version; old wrapped keys keep unwrapping
until they are re-wrapped and the old version is retired, which destroys its material.

`LocalKeyFile` is the default provider: a JSON file readable by its owner only. Retiring removes
the key from the file, but copies may survive in backups or on flash storage, so crypto-shredding
is only as strong as the file's history; a KMS gives the real guarantee.

A KMS provider (AWS KMS, Google Cloud KMS, HashiCorp Vault transit) implements the same Protocol
without ever holding a KEK: `wrap` is a remote Encrypt of the data key and `unwrap` a remote
Decrypt, both with the player id (and the version) as encryption context, so the KMS itself
refuses to unwrap for another player and its audit log names the player. `current_version`,
`add_version`, `retire` and `versions` map to the KMS key's versions: rotate, disable or schedule
destruction, and list. `blind_index_key` comes from a secret protected by the KMS (a
KMS-encrypted blob decrypted once at start-up, or a secrets manager entry), because the HMAC is
computed locally for every lookup and a remote call per lookup would be too slow.
"""

import base64
import binascii
import contextlib
import fcntl
import json
import os
import stat
import struct
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from compliance.vault.crypto import (
    KEY_BYTES,
    DecryptionFailed,
    VaultCryptoError,
    context,
    new_data_key,
    seal,
    unseal,
)
from core.clock import Clock, utc_now

WRAP_LABEL = b"pitwarden/vault/kek/v1"
FILE_FORMAT = 1


@dataclass(frozen=True)
class WrappedKey:
    kek_version: int
    sealed: bytes


@dataclass(frozen=True)
class KekInfo:
    version: int
    created_at: datetime
    retired_at: datetime | None


class UnknownKekVersion(VaultCryptoError):
    """The version never existed or was retired (its material destroyed)."""


class KeyFileError(VaultCryptoError):
    """The key file is unsafe to use (group/other permissions, not a regular file) or corrupt."""


class KeyProvider(Protocol):
    """Seam for a cloud KMS or HashiCorp Vault transit: wrap/unwrap never expose the KEK."""

    def current_version(self) -> int: ...
    def wrap(self, player_id: uuid.UUID, data_key: bytes) -> WrappedKey: ...
    def unwrap(self, player_id: uuid.UUID, wrapped: WrappedKey) -> bytes: ...
    def blind_index_key(self) -> bytes: ...
    def add_version(self) -> int: ...
    def retire(self, version: int) -> None: ...
    def versions(self) -> list[KekInfo]: ...


@dataclass(frozen=True)
class _Kek:
    version: int
    key: bytes | None  # None once retired
    created_at: datetime
    retired_at: datetime | None


@dataclass(frozen=True)
class _State:
    keks: dict[int, _Kek]
    blind_index_key: bytes

    @property
    def current(self) -> _Kek:
        return self.keks[max(self.keks)]


class LocalKeyFile(KeyProvider):
    """KEKs in a local JSON file, created on first use with mode 0600 in a 0700 directory.

    Writers hold an exclusive `flock` on a sibling lock file and replace the file atomically, so
    readers never see half a file and two processes cannot both add a version. Each call re-reads
    the file if its identity, size or timestamps changed, so a rotation done by another process
    is seen at once.
    """

    def __init__(self, path: Path, *, clock: Clock = utc_now) -> None:
        self._path = path
        self._clock = clock  # when a KEK was created or retired
        self._lock_path = path.with_name(path.name + ".lock")
        self._signature: tuple[int, ...] | None = None
        self._state: _State | None = None

    def current_version(self) -> int:
        return self._load().current.version

    def wrap(self, player_id: uuid.UUID, data_key: bytes) -> WrappedKey:
        if len(data_key) != KEY_BYTES:
            raise VaultCryptoError(f"a data key is {KEY_BYTES} bytes, got {len(data_key)}")
        kek = self._load().current
        if kek.key is None:  # the current version cannot be retired; a hand-edited file can
            raise KeyFileError(f"the current KEK version {kek.version} has no key material")
        return WrappedKey(
            kek.version, seal(kek.key, _wrap_context(player_id, kek.version), data_key)
        )

    def unwrap(self, player_id: uuid.UUID, wrapped: WrappedKey) -> bytes:
        kek = self._load().keks.get(wrapped.kek_version)
        if kek is None or kek.key is None:
            raise UnknownKekVersion(f"KEK version {wrapped.kek_version} is unknown or retired")
        data_key = unseal(kek.key, _wrap_context(player_id, kek.version), wrapped.sealed)
        if len(data_key) != KEY_BYTES:
            raise DecryptionFailed("the unwrapped data key has the wrong length")
        return data_key

    def blind_index_key(self) -> bytes:
        return self._load().blind_index_key

    def add_version(self) -> int:
        with self._locked():
            # Read under the lock: the version number must follow the latest one on disk.
            state = self._load(force=True, locked=True)
            version = max(state.keks) + 1
            keks = {**state.keks, version: _Kek(version, new_data_key(), self._clock(), None)}
            self._write(_State(keks, state.blind_index_key))
            return version

    def retire(self, version: int) -> None:
        with self._locked():
            state = self._load(force=True, locked=True)
            kek = state.keks.get(version)
            if kek is None:
                raise UnknownKekVersion(f"KEK version {version} does not exist")
            if version == state.current.version:
                raise ValueError(f"KEK version {version} is current; add a new version first")
            if kek.key is None:
                return  # already retired: keep the original retirement date
            keks = {**state.keks, version: _Kek(version, None, kek.created_at, self._clock())}
            self._write(_State(keks, state.blind_index_key))

    def versions(self) -> list[KekInfo]:
        keks = self._load().keks
        return [KekInfo(k.version, k.created_at, k.retired_at) for _, k in sorted(keks.items())]

    def _load(self, *, force: bool = False, locked: bool = False) -> _State:
        try:
            st = self._path.stat(follow_symlinks=False)
        except FileNotFoundError:
            if locked:  # flock is per open file: taking it again here would wait on ourselves
                return self._create()
            with self._locked():
                return self._create()
        _check_mode(self._path, st.st_mode)
        signature = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if force or self._state is None or signature != self._signature:
            self._state = self._read()
            self._signature = signature
        return self._state

    def _read(self) -> _State:
        # O_NOFOLLOW and fstat check the very file that is read, not whatever the path
        # pointed to a moment earlier.
        fd = os.open(self._path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as file:
            _check_mode(self._path, os.fstat(file.fileno()).st_mode)
            raw = file.read()
        try:
            return _decode(json.loads(raw))
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise KeyFileError(f"the key file {self._path} is corrupt: {exc}") from exc

    def _create(self) -> _State:
        """Create the file; the caller holds the lock."""
        if not os.path.lexists(self._path):
            self._write(_State({1: _Kek(1, new_data_key(), self._clock(), None)}, new_data_key()))
        # Otherwise another process created it while we waited for the lock: use theirs.
        return self._load(force=True, locked=True)

    def _write(self, state: _State) -> None:
        directory = self._path.parent
        fd, temp = tempfile.mkstemp(dir=directory, prefix=f".{self._path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as file:  # mkstemp creates the file with mode 0600
                file.write(json.dumps(_encode(state), indent=2).encode())
                file.flush()
                os.fsync(file.fileno())
            Path(temp).replace(self._path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        # Persist the rename itself, or a crash could bring back the old file after a retire.
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        directory = self._path.parent
        if not directory.exists():
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            directory.chmod(0o700)  # the umask may have narrowed mkdir's mode; never widen it
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock


def _wrap_context(player_id: uuid.UUID, kek_version: int) -> bytes:
    return context(WRAP_LABEL, player_id.bytes, struct.pack(">Q", kek_version))


def _check_mode(path: Path, mode: int) -> None:
    if not stat.S_ISREG(mode):
        raise KeyFileError(f"the key file {path} is not a regular file")
    if mode & 0o077:
        raise KeyFileError(
            f"the key file {path} has mode {stat.S_IMODE(mode):o}: group or others may access "
            f"it; refusing to use it (chmod 600 after checking it was not exposed)"
        )


def _encode(state: _State) -> dict[str, Any]:
    return {
        "format": FILE_FORMAT,
        "blind_index_key": base64.b64encode(state.blind_index_key).decode(),
        "keks": [
            {
                "version": kek.version,
                "key": None if kek.key is None else base64.b64encode(kek.key).decode(),
                "created_at": kek.created_at.isoformat(),
                "retired_at": None if kek.retired_at is None else kek.retired_at.isoformat(),
            }
            for _, kek in sorted(state.keks.items())
        ],
    }


def _decode(document: dict[str, Any]) -> _State:
    if document["format"] != FILE_FORMAT:
        raise ValueError(f"unknown key file format {document['format']!r}")
    keks: dict[int, _Kek] = {}
    for entry in document["keks"]:
        version = int(entry["version"])
        key = None if entry["key"] is None else _decode_key(entry["key"])
        retired = entry["retired_at"]
        keks[version] = _Kek(
            version,
            key,
            datetime.fromisoformat(entry["created_at"]),
            None if retired is None else datetime.fromisoformat(retired),
        )
    if not keks:
        raise ValueError("no KEK versions")
    return _State(keks, _decode_key(document["blind_index_key"]))


def _decode_key(text: str) -> bytes:
    key = base64.b64decode(text, validate=True)
    if len(key) != KEY_BYTES:
        raise ValueError(f"a key is {KEY_BYTES} bytes, got {len(key)}")
    return key
