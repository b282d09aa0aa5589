import base64
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import rfc8785

from audit import verify
from audit.merkle import MemoryTree, leaf_hash
from audit.note import Checkpoint, Signer, sign_checkpoint
from audit.verify import Report, main, verify_export

ORIGIN = "pitwarden.test/audit"
START = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
SIZES = (10, 25, 40, 50)


def _entry(i: int, kind: str = "wallet.bet") -> bytes:
    return rfc8785.dumps({"idx": i, "kind": kind, "amount": f"{i}.50", "player": f"jürgen-{i}"})


def _tree(size: int) -> MemoryTree:
    tree = MemoryTree()
    for i in range(size):
        tree.append(_entry(i))
    return tree


def _note(tree: MemoryTree, size: int, seq: int, signers: Sequence[Signer]) -> str:
    checkpoint = Checkpoint(ORIGIN, size, tree.root(size), START + timedelta(minutes=seq))
    return sign_checkpoint(checkpoint, signers)


def write_export(
    directory: Path,
    entries: Sequence[bytes],
    sizes: Sequence[int],
    signers: Sequence[Signer],
) -> MemoryTree:
    """An export directory as the log's exporter writes it."""
    tree = MemoryTree()
    for entry in entries:
        tree.append(entry)
    for folder in ("checkpoints", "proofs", "keys"):
        (directory / folder).mkdir(parents=True)
    (directory / "entries.jsonl").write_bytes(b"".join(e + b"\n" for e in entries))
    (directory / "leaf-hashes.bin").write_bytes(b"".join(leaf_hash(e) for e in entries))
    for seq, size in enumerate(sizes, start=1):
        (directory / f"checkpoints/{seq:08d}.note").write_bytes(
            _note(tree, size, seq, signers).encode()
        )
        if seq > 1:
            proof = tree.consistency_proof(sizes[seq - 2], size)
            body = {
                "from": sizes[seq - 2],
                "to": size,
                "proof": [base64.b64encode(h).decode() for h in proof],
            }
            (directory / f"proofs/{seq:08d}.json").write_text(json.dumps(body))
    for signer in signers:
        (directory / f"keys/{signer.name}.vkey").write_text(signer.verifier().to_string() + "\n")
    manifest = {
        "format": "pitwarden-audit-export/1",
        "origin": ORIGIN,
        "size": len(entries),
        "checkpoints": len(sizes),
        "exported_at": "2026-11-25T10:00:00.000000Z",
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return tree


@pytest.fixture(scope="module")
def key() -> Signer:
    return Signer.generate("pitwarden-audit")


@pytest.fixture
def export(tmp_path: Path, key: Signer) -> Path:
    write_export(tmp_path / "export", [_entry(i) for i in range(50)], SIZES, [key])
    return tmp_path / "export"


def _edit_entries(directory: Path, edit: Callable[[list[bytes]], None]) -> None:
    path = directory / "entries.jsonl"
    lines = path.read_bytes().splitlines()
    edit(lines)
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def _check(
    directory: Path,
    key: Signer,
    extra: Sequence[str] = (),
    progress: Callable[[int, int], None] | None = None,
) -> Report:
    return verify_export(directory, [key.verifier()], extra_checkpoints=extra, progress=progress)


def test_an_untouched_export_verifies(export: Path, key: Signer) -> None:
    report = _check(export, key)
    tree = _tree(50)
    assert report == Report(ok=True, entries=50, checkpoints=4, size=50, root=tree.root())
    root = base64.b64encode(tree.root()).decode()
    assert report.message == f"OK: 50 entries, 4 checkpoints, tree size 50, root {root}"


def _change_byte(lines: list[bytes]) -> None:
    lines[17] = lines[17].replace(b'"amount":"17.50"', b'"amount":"71.50"')


def _swap(lines: list[bytes]) -> None:
    lines[10], lines[20] = lines[20], lines[10]


@pytest.mark.parametrize(
    ("edit", "index"),
    [
        (_change_byte, 17),
        (lambda lines: lines.pop(17), 17),
        (_swap, 10),
        (lambda lines: lines.insert(12, _entry(12, kind="wallet.win")), 12),
    ],
    ids=["byte-changed", "deleted", "swapped", "inserted"],
)
def test_a_tampered_entry_is_named(
    export: Path, key: Signer, edit: Callable[[list[bytes]], None], index: int
) -> None:
    _edit_entries(export, edit)
    report = _check(export, key)
    assert not report.ok
    assert report.first_bad_index == index
    assert report.message.startswith(f"FAIL at index {index}: the entry differs")


def test_rewritten_leaf_hashes_do_not_hide_a_change(export: Path, key: Signer) -> None:
    _edit_entries(export, _change_byte)
    lines = (export / "entries.jsonl").read_bytes().splitlines()
    (export / "leaf-hashes.bin").write_bytes(b"".join(leaf_hash(line) for line in lines))
    report = _check(export, key)
    assert report.first_bad_index == 10
    assert report.reason == (
        "the first 25 entries do not hash to the root signed in checkpoints/00000002.note; "
        "the difference is in entries 10 to 24"
    )


def test_a_checkpoint_signed_by_an_untrusted_key_fails(export: Path, key: Signer) -> None:
    tree = _tree(50)
    impostor = Signer.generate(key.name)
    (export / "checkpoints/00000003.note").write_text(_note(tree, 40, 3, [impostor]))
    report = _check(export, key)
    assert (report.ok, report.first_bad_index) == (False, None)
    assert report.message == "FAIL: checkpoints/00000003.note: no trusted key signed the note"


def test_dropped_newest_entries_are_missing(export: Path, key: Signer) -> None:
    def drop_newest(lines: list[bytes]) -> None:
        del lines[45:]

    _edit_entries(export, drop_newest)
    report = _check(export, key)
    assert report.first_bad_index == 45
    assert report.reason == (
        "entries missing: checkpoints/00000004.note commits to 50 entries, the export has 45"
    )


def test_a_non_canonical_entry_is_named(tmp_path: Path, key: Signer) -> None:
    entries = [_entry(i) for i in range(50)]
    entries[33] = b'{"idx": 33}'
    write_export(tmp_path, entries, SIZES, [key])
    report = _check(tmp_path, key)
    assert report.first_bad_index == 33
    assert report.reason == "the entry is not RFC 8785 canonical JSON"


def test_a_kept_checkpoint_catches_dropped_history(tmp_path: Path, key: Signer) -> None:
    entries = [_entry(i) for i in range(50)]
    original = write_export(tmp_path / "before", entries, SIZES, [key])
    kept = _note(original, 50, 4, [key])
    write_export(tmp_path / "after", entries[:30], (10, 25, 30), [key])
    assert _check(tmp_path / "after", key).ok
    report = _check(tmp_path / "after", key, [kept])
    assert report.first_bad_index == 30
    assert report.reason == (
        "entries missing: kept checkpoint #1 commits to 50 entries, the export has 30"
    )


def test_kept_checkpoints_catch_rewritten_history(tmp_path: Path, key: Signer) -> None:
    entries = [_entry(i) for i in range(50)]
    original = write_export(tmp_path / "before", entries, SIZES, [key])
    kept = [_note(original, 25, 2, [key]), _note(original, 50, 4, [key])]
    forged = entries[:30] + [_entry(i, kind="wallet.win") for i in range(30, 50)]
    write_export(tmp_path / "after", forged, SIZES, [key])
    assert _check(tmp_path / "after", key).ok
    report = _check(tmp_path / "after", key, kept)
    assert report.first_bad_index == 25
    assert report.reason is not None
    assert "kept checkpoint #2" in report.reason


def test_a_kept_checkpoint_must_be_signed_by_a_trusted_key(export: Path, key: Signer) -> None:
    tree = _tree(1)
    forged = _note(tree, 1, 1, [Signer.generate("pitwarden-audit")])
    report = _check(export, key, [forged])
    assert report.message == "FAIL: kept checkpoint #1: no trusted key signed the note"


Tamper = Callable[[Path, Signer], None]


def _unlink(path: str) -> Tamper:
    return lambda export, _: (export / path).unlink()


def _shrink_third(export: Path, key: Signer) -> None:
    tree = _tree(20)
    (export / "checkpoints/00000003.note").write_text(_note(tree, 20, 3, [key]))


def _backdate_third(export: Path, key: Signer) -> None:
    tree = _tree(40)
    (export / "checkpoints/00000003.note").write_text(_note(tree, 40, 0, [key]))


def _corrupt_proof(export: Path, _: Signer) -> None:
    path = export / "proofs/00000003.json"
    proof = json.loads(path.read_text())
    proof["proof"][0] = base64.b64encode(bytes(32)).decode()
    path.write_text(json.dumps(proof))


def _manifest(**changes: object) -> Tamper:
    def edit(export: Path, _: Signer) -> None:
        manifest = json.loads((export / "manifest.json").read_text())
        (export / "manifest.json").write_text(json.dumps(manifest | changes))

    return edit


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (_unlink("proofs/00000003.json"), "FAIL: proofs/00000003.json is missing"),
        (_unlink("checkpoints/00000004.note"), "FAIL: checkpoints/ holds 3 notes"),
        (
            _corrupt_proof,
            "FAIL: checkpoints/00000003.note is not consistent with checkpoints/00000002.note",
        ),
        (_shrink_third, "FAIL: checkpoints/00000003.note: tree size 20 is below 25"),
        (_backdate_third, "FAIL: checkpoints/00000003.note: its time is earlier than that of"),
        (_manifest(origin="elsewhere"), "FAIL: checkpoints/00000001.note: origin"),
        (_manifest(size=60), "FAIL at index 50: the manifest lists 60 entries"),
        (_manifest(format="v2"), "FAIL: manifest.json: format"),
        (_unlink("leaf-hashes.bin"), "FAIL: cannot read"),
    ],
)
def test_a_broken_export_says_what_is_wrong(
    export: Path, key: Signer, tamper: Tamper, message: str
) -> None:
    tamper(export, key)
    report = _check(export, key)
    assert not report.ok
    assert report.message.startswith(message)


def test_progress_is_reported_every_so_often_and_at_the_end(
    export: Path, key: Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[int, int]] = []
    _check(export, key, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(50, 50)]
    calls.clear()
    monkeypatch.setattr(verify, "PROGRESS_EVERY", 20)
    _check(export, key, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(20, 50), (40, 50), (50, 50)]


def test_rotated_keys_verify_with_either(tmp_path: Path, key: Signer) -> None:
    new = Signer.generate("pitwarden-audit-2027")
    write_export(tmp_path, [_entry(i) for i in range(50)], SIZES, [key, new])
    assert verify_export(tmp_path, [new.verifier()]).ok
    assert verify_export(tmp_path, [key.verifier(), new.verifier()]).ok


def test_the_command_line_verifies(
    export: Path, key: Signer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = tmp_path / "trusted.keys"
    keys.write_text(f"# the log's key since 2026\n\n{key.verifier().to_string()}\n")
    assert main([str(export), "--key", str(keys)]) == 0
    assert capsys.readouterr().out.startswith("OK: 50 entries, 4 checkpoints, tree size 50, root ")

    kept = tmp_path / "kept.note"
    kept.write_text((export / "checkpoints/00000002.note").read_text())
    _edit_entries(export, lambda lines: lines.pop(17))
    assert main([str(export), "--key", str(keys), "--checkpoint", str(kept)]) == 1
    assert capsys.readouterr().out.startswith("FAIL at index 17: ")

    keys.write_text("not a key\n")
    assert main([str(export), "--key", str(keys)]) == 1
    assert capsys.readouterr().out.startswith(f"FAIL: {keys}:1: ")


def test_the_command_line_shows_progress_on_long_runs(
    export: Path,
    key: Signer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(verify, "PROGRESS_EVERY", 20)
    keys = tmp_path / "trusted.keys"
    keys.write_text(key.verifier().to_string())
    assert main([str(export), "--key", str(keys)]) == 0
    assert capsys.readouterr().err == (
        "\rverified 20/50 entries\rverified 40/50 entries\rverified 50/50 entries\n"
    )


def test_an_export_without_checkpoints_proves_nothing(tmp_path: Path, key: Signer) -> None:
    write_export(tmp_path, [_entry(i) for i in range(5)], (), [key])
    assert _check(tmp_path, key).message == "FAIL: the export has no signed checkpoint"


@pytest.mark.parametrize(
    ("edit", "index", "reason"),
    [
        (_change_byte, 17, "the entry differs"),
        (_swap, 10, "the entry differs"),
        (lambda lines: lines.__setitem__(3, b'{"idx": 3}'), 3, "the entry differs"),
    ],
    ids=["byte-changed", "swapped", "differs-and-not-canonical"],
)
def test_worker_processes_find_the_same_first_bad_index(
    export: Path,
    key: Signer,
    monkeypatch: pytest.MonkeyPatch,
    edit: Callable[[list[bytes]], None],
    index: int,
    reason: str,
) -> None:
    """Large exports are checked in chunks by several processes; the verdict must not change."""
    monkeypatch.setattr(verify, "PROGRESS_EVERY", 7)  # chunks of 7 entries
    monkeypatch.setattr(verify, "PARALLEL_FROM", 0)
    assert _check(export, key).ok
    _edit_entries(export, edit)
    report = _check(export, key)
    assert report.first_bad_index == index
    assert report.message.startswith(f"FAIL at index {index}: {reason}")


def test_worker_processes_name_a_non_canonical_entry(
    tmp_path: Path, key: Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(verify, "PROGRESS_EVERY", 7)
    monkeypatch.setattr(verify, "PARALLEL_FROM", 0)
    entries = [_entry(i) for i in range(50)]
    entries[33] = b'{"idx": 33}'
    write_export(tmp_path, entries, SIZES, [key])
    report = _check(tmp_path, key)
    assert (report.first_bad_index, report.reason) == (
        33,
        "the entry is not RFC 8785 canonical JSON",
    )
