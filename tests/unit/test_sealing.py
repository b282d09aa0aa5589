"""The client secrets' local sealing key: round trips, binding to the owner, refusals, the file."""

import base64
import json
import stat
import threading
from pathlib import Path

import pytest

from core.keyfile import KeyFileError
from core.sealing import LocalSealingKey, SealingError

SECRET = b"r4nd0m-hmac-secret-of-aurora-games-0123456789"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "secrets" / "client-secrets-key"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_key_file_is_created_on_first_use_owner_only(path: Path) -> None:
    sealer = LocalSealingKey(path)
    assert not path.exists()
    sealed = sealer.seal(SECRET, context="api_client:aurora-games")
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    assert SECRET not in sealed
    assert base64.b64encode(SECRET) not in sealed
    # another process (a new instance) reads the same key back
    assert LocalSealingKey(path).unseal(sealed, context="api_client:aurora-games") == SECRET


def test_each_seal_is_fresh(path: Path) -> None:
    sealer = LocalSealingKey(path)
    first, second = (sealer.seal(SECRET, context="api_client:a") for _ in range(2))
    assert first != second  # random nonces: equal secrets do not show as equal rows


def test_a_sealed_secret_opens_only_for_its_own_client(path: Path) -> None:
    sealer = LocalSealingKey(path)
    sealed = sealer.seal(SECRET, context="api_client:aurora-games")
    with pytest.raises(SealingError, match="does not open"):
        sealer.unseal(sealed, context="api_client:borealis-live")


@pytest.mark.parametrize("index", [0, 1, 4, 5, 17, -1])
def test_every_tampered_byte_is_refused(path: Path, index: int) -> None:
    sealer = LocalSealingKey(path)
    sealed = bytearray(sealer.seal(SECRET, context="api_client:a"))
    sealed[index] ^= 0x01
    with pytest.raises(SealingError):
        sealer.unseal(bytes(sealed), context="api_client:a")


def test_a_truncated_value_is_refused(path: Path) -> None:
    sealer = LocalSealingKey(path)
    with pytest.raises(SealingError, match="too short"):
        sealer.unseal(sealer.seal(b"", context="c")[:20], context="c")


def test_another_key_file_cannot_open_it(tmp_path: Path) -> None:
    sealed = LocalSealingKey(tmp_path / "one" / "key").seal(SECRET, context="c")
    with pytest.raises(SealingError, match="does not open"):
        LocalSealingKey(tmp_path / "two" / "key").unseal(sealed, context="c")


def test_a_group_readable_file_is_refused(path: Path) -> None:
    sealer = LocalSealingKey(path)
    sealed = sealer.seal(SECRET, context="c")
    path.chmod(0o640)
    with pytest.raises(KeyFileError, match="group or others"):
        sealer.unseal(sealed, context="c")  # checked on every call, not only when first read
    with pytest.raises(KeyFileError, match="group or others"):
        LocalSealingKey(path).seal(SECRET, context="c")


def test_a_symlink_is_refused(path: Path, tmp_path: Path) -> None:
    real = tmp_path / "elsewhere"
    LocalSealingKey(real).seal(SECRET, context="c")
    path.parent.mkdir(mode=0o700)
    path.symlink_to(real)
    with pytest.raises(KeyFileError, match="not a regular file"):
        LocalSealingKey(path).seal(SECRET, context="c")


def test_a_corrupt_file_is_refused(path: Path) -> None:
    LocalSealingKey(path).seal(SECRET, context="c")
    document = json.loads(path.read_text())
    document["keys"][0]["key"] = base64.b64encode(b"short").decode()
    path.write_text(json.dumps(document))
    with pytest.raises(KeyFileError, match="corrupt"):
        LocalSealingKey(path).seal(SECRET, context="c")


def test_processes_starting_at_once_share_one_key(path: Path) -> None:
    sealed: list[bytes] = []
    errors: list[BaseException] = []

    def first_use(n: int) -> None:
        try:
            sealed.append(LocalSealingKey(path).seal(b"%d" % n, context="c"))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=first_use, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    reader = LocalSealingKey(path)
    assert sorted(reader.unseal(s, context="c") for s in sealed) == [b"%d" % n for n in range(8)]
    assert len(json.loads(path.read_text())["keys"]) == 1
