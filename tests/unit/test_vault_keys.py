"""The local KEK file: permissions, wrapping, rotation, retirement and sharing between instances."""

import base64
import json
import stat
import threading
import uuid
from pathlib import Path

import pytest

from compliance.vault.crypto import DecryptionFailed, VaultCryptoError, new_data_key
from compliance.vault.keys import (
    KeyFileError,
    KeyProvider,
    LocalKeyFile,
    UnknownKekVersion,
    WrappedKey,
)

PLAYER = uuid.UUID("0b7e4c7a-55d1-4f0e-8d6e-3f5a9c2b1d01")
OTHER_PLAYER = uuid.UUID("0b7e4c7a-55d1-4f0e-8d6e-3f5a9c2b1d02")


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "secrets" / "vault-keys.json"


@pytest.fixture
def provider(path: Path) -> KeyProvider:
    return LocalKeyFile(path)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def kek_material(path: Path) -> dict[int, str | None]:
    document = json.loads(path.read_text())
    return {entry["version"]: entry["key"] for entry in document["keks"]}


def test_the_file_is_created_on_first_use_owner_only(provider: KeyProvider, path: Path) -> None:
    assert not path.exists()
    assert provider.current_version() == 1
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700


def test_a_group_readable_file_is_refused(provider: KeyProvider, path: Path) -> None:
    provider.current_version()
    path.chmod(0o640)
    with pytest.raises(KeyFileError, match="group or others"):
        LocalKeyFile(path).wrap(PLAYER, new_data_key())
    # An instance that already loaded the file refuses too: permissions are checked every call.
    with pytest.raises(KeyFileError, match="group or others"):
        provider.unwrap(PLAYER, WrappedKey(1, b""))


def test_a_world_readable_file_is_refused(provider: KeyProvider, path: Path) -> None:
    provider.current_version()
    path.chmod(0o604)
    with pytest.raises(KeyFileError, match="mode 604"):
        LocalKeyFile(path).blind_index_key()


def test_a_symlinked_key_file_is_refused(provider: KeyProvider, path: Path) -> None:
    provider.current_version()
    link = path.with_name("link.json")
    link.symlink_to(path)
    with pytest.raises(KeyFileError, match="not a regular file"):
        LocalKeyFile(link).current_version()


def test_a_corrupt_file_is_reported(path: Path) -> None:
    path.parent.mkdir(mode=0o700)
    path.write_text("{not json")
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match="corrupt"):
        LocalKeyFile(path).current_version()


def test_wrap_and_unwrap_round_trip(provider: KeyProvider) -> None:
    data_key = new_data_key()
    wrapped = provider.wrap(PLAYER, data_key)
    assert wrapped.kek_version == 1
    assert data_key not in wrapped.sealed
    assert provider.unwrap(PLAYER, wrapped) == data_key


def test_unwrap_for_another_player_fails(provider: KeyProvider) -> None:
    wrapped = provider.wrap(PLAYER, new_data_key())
    with pytest.raises(DecryptionFailed):
        provider.unwrap(OTHER_PLAYER, wrapped)


def test_a_wrapped_key_relabelled_with_another_version_fails(provider: KeyProvider) -> None:
    wrapped = provider.wrap(PLAYER, new_data_key())
    provider.add_version()
    with pytest.raises(DecryptionFailed):
        provider.unwrap(PLAYER, WrappedKey(2, wrapped.sealed))


def test_an_unknown_version_is_reported(provider: KeyProvider) -> None:
    wrapped = provider.wrap(PLAYER, new_data_key())
    with pytest.raises(UnknownKekVersion):
        provider.unwrap(PLAYER, WrappedKey(7, wrapped.sealed))


def test_a_new_version_wraps_new_keys_and_old_keys_still_unwrap(provider: KeyProvider) -> None:
    old_key = new_data_key()
    old = provider.wrap(PLAYER, old_key)
    assert provider.add_version() == 2
    assert provider.current_version() == 2
    new_key = new_data_key()
    new = provider.wrap(PLAYER, new_key)
    assert new.kek_version == 2
    assert provider.unwrap(PLAYER, old) == old_key
    assert provider.unwrap(PLAYER, new) == new_key


def test_retiring_destroys_the_old_key_material(provider: KeyProvider, path: Path) -> None:
    data_key = new_data_key()
    old = provider.wrap(PLAYER, data_key)
    old_material = kek_material(path)[1]
    assert old_material is not None
    provider.add_version()
    rewrapped = provider.wrap(PLAYER, provider.unwrap(PLAYER, old))

    provider.retire(1)

    with pytest.raises(UnknownKekVersion):
        provider.unwrap(PLAYER, old)
    with pytest.raises(UnknownKekVersion):
        LocalKeyFile(path).unwrap(PLAYER, old)
    assert old_material not in path.read_text()
    assert kek_material(path)[1] is None
    assert provider.unwrap(PLAYER, rewrapped) == data_key
    versions = provider.versions()
    assert [info.version for info in versions] == [1, 2]
    assert versions[0].retired_at is not None
    assert versions[0].created_at <= versions[0].retired_at
    assert versions[1].retired_at is None
    assert mode(path) == 0o600  # a rewritten file keeps owner-only permissions


def test_the_current_version_cannot_be_retired(provider: KeyProvider) -> None:
    wrapped = provider.wrap(PLAYER, new_data_key())
    with pytest.raises(ValueError, match="current"):
        provider.retire(1)
    assert provider.unwrap(PLAYER, wrapped)
    assert provider.versions()[0].retired_at is None


def test_retiring_an_unknown_version_is_reported(provider: KeyProvider) -> None:
    with pytest.raises(UnknownKekVersion):
        provider.retire(5)


def test_another_instance_sees_a_version_added_by_the_first(path: Path) -> None:
    first, second = LocalKeyFile(path), LocalKeyFile(path)
    assert second.current_version() == 1
    first.add_version()
    assert second.current_version() == 2
    wrapped = second.wrap(PLAYER, data_key := new_data_key())
    assert wrapped.kek_version == 2
    assert first.unwrap(PLAYER, wrapped) == data_key


def test_another_instance_sees_a_retirement_by_the_first(path: Path) -> None:
    first, second = LocalKeyFile(path), LocalKeyFile(path)
    wrapped = second.wrap(PLAYER, new_data_key())
    first.add_version()
    first.retire(1)
    with pytest.raises(UnknownKekVersion):
        second.unwrap(PLAYER, wrapped)


def test_concurrent_writers_never_lose_or_repeat_a_version(path: Path) -> None:
    LocalKeyFile(path).current_version()
    added: list[int] = []
    lock = threading.Lock()

    def add() -> None:
        # Each instance opens the lock file itself, as separate processes would.
        version = LocalKeyFile(path).add_version()
        with lock:
            added.append(version)

    threads = [threading.Thread(target=add) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(added) == list(range(2, 10))
    assert [info.version for info in LocalKeyFile(path).versions()] == list(range(1, 10))


def test_the_blind_index_key_is_stable_and_unlike_every_kek(path: Path) -> None:
    first = LocalKeyFile(path)
    key = first.blind_index_key()
    first.add_version()
    assert len(key) == 32
    assert LocalKeyFile(path).blind_index_key() == key
    keks = {base64.b64decode(material) for material in kek_material(path).values() if material}
    assert len(keks) == 2
    assert key not in keks


def test_a_data_key_of_the_wrong_length_is_not_wrapped(provider: KeyProvider) -> None:
    with pytest.raises(VaultCryptoError, match="32 bytes"):
        provider.wrap(PLAYER, b"too short")
