"""Offline verifier of an audit export: a regulator runs it alone, with the log's public key.

    python -m audit.verify DIR --key log.vkey [--key old.vkey] [--checkpoint kept.note ...]

Trust comes only from the keys given: every checkpoint in the export must be signed by one of
them, successive checkpoints must be consistent, and the entries must hash to every signed root.
The stored leaf hashes are not trusted; they only say which entry differs from what the log
hashed. Checkpoints the regulator kept from earlier (--checkpoint) must match the entries too,
so a log that rewrote or dropped history after showing it to the regulator is caught.
"""

import argparse
import base64
import binascii
import collections
import concurrent.futures
import contextlib
import itertools
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeGuard

from audit.canonical import is_canonical
from audit.merkle import HASH_SIZE, ProofError, RootBuilder, leaf_hash, verify_consistency
from audit.note import Checkpoint, NoteError, Verifier, open_checkpoint

FORMAT = "pitwarden-audit-export/1"
PROGRESS_EVERY = 10_000  # entries; also the size of the chunks checked together
PARALLEL_FROM = 50_000  # entries: below this, worker processes cost more than they save

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Report:
    ok: bool
    entries: int
    checkpoints: int
    size: int
    root: bytes | None
    first_bad_index: int | None = None
    reason: str | None = None

    @property
    def message(self) -> str:
        if self.ok:
            root = base64.b64encode(self.root or b"").decode()
            return (
                f"OK: {self.entries} entries, {self.checkpoints} checkpoints, "
                f"tree size {self.size}, root {root}"
            )
        if self.first_bad_index is None:
            return f"FAIL: {self.reason}"
        return f"FAIL at index {self.first_bad_index}: {self.reason}"


class _Failure(Exception):
    def __init__(self, reason: str, index: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.index = reason, index


@dataclass(frozen=True)
class _Manifest:
    origin: str
    size: int
    checkpoints: int


@dataclass(frozen=True)
class _Signed:
    """A signed tree head the entries must rebuild, with where it came from."""

    label: str
    checkpoint: Checkpoint
    kept: bool = False


class _Targets:
    """The signed roots the rebuilt tree must meet, smallest size first.

    A mismatch is placed after the last matching root from the same source: the export's own
    checkpoints may all belong to a rewritten history that agrees with itself, so a checkpoint
    the regulator kept only vouches for what earlier kept checkpoints covered.
    """

    def __init__(self, targets: Sequence[_Signed]) -> None:
        self.due = collections.deque(sorted(targets, key=lambda s: s.checkpoint.size))
        self.matched = {False: 0, True: 0}

    def check(self, builder: RootBuilder) -> None:
        while self.due and self.due[0].checkpoint.size == builder.size:
            target = self.due.popleft()
            since, size = self.matched[target.kept], builder.size
            if target.checkpoint.root != builder.root():
                where = f"; the difference is in entries {since} to {size - 1}" if size else ""
                reason = (
                    f"the first {size} entries do not hash to the root signed in {target.label}"
                )
                raise _Failure(reason + where, since)
            self.matched[target.kept] = size


class _Tally:
    """What has been verified so far, for the report when a later step fails."""

    def __init__(self) -> None:
        self.entries = 0
        self.checkpoints = 0
        self.newest: Checkpoint | None = None

    def report(self, failure: _Failure | None = None) -> Report:
        return Report(
            ok=failure is None,
            entries=self.entries,
            checkpoints=self.checkpoints,
            size=self.newest.size if self.newest else 0,
            root=self.newest.root if self.newest else None,
            first_bad_index=failure.index if failure else None,
            reason=failure.reason if failure else None,
        )


def verify_export(
    directory: Path,
    trusted: Sequence[Verifier],
    *,
    extra_checkpoints: Sequence[str] = (),
    progress: Progress | None = None,
) -> Report:
    tally = _Tally()
    try:
        manifest = _read_manifest(directory)
        signed = _read_checkpoints(directory, manifest, trusted)
        _check_proofs(directory, signed)
        tally.checkpoints, tally.newest = len(signed), signed[-1].checkpoint
        kept = [
            _open(f"kept checkpoint #{i}", note, manifest, trusted, kept=True)
            for i, note in enumerate(extra_checkpoints, start=1)
        ]
        _check_entries(directory, manifest, _Targets([*signed, *kept]), tally, progress)
    except _Failure as failure:
        return tally.report(failure)
    except OSError as error:
        return tally.report(_Failure(f"cannot read {error.filename}: {error.strerror}"))
    return tally.report()


def _read_manifest(directory: Path) -> _Manifest:
    manifest = _load_json(directory, "manifest.json")
    if manifest.get("format") != FORMAT:
        raise _Failure(f"manifest.json: format is not {FORMAT}")
    origin, size, count = (manifest.get(k) for k in ("origin", "size", "checkpoints"))
    if isinstance(origin, str) and _natural(size) and _natural(count):
        return _Manifest(origin, size, count)
    raise _Failure("manifest.json: origin, size or checkpoints is missing or malformed")


def _read_checkpoints(
    directory: Path, manifest: _Manifest, trusted: Sequence[Verifier]
) -> list[_Signed]:
    found = sorted(p.name for p in (directory / "checkpoints").glob("*.note"))
    expected = [f"{seq:08d}.note" for seq in range(1, manifest.checkpoints + 1)]
    if found != expected:
        raise _Failure(f"checkpoints/ holds {len(found)} notes, the manifest lists {len(expected)}")
    if not expected:
        raise _Failure("the export has no signed checkpoint")
    signed: list[_Signed] = []
    for name in expected:
        label = f"checkpoints/{name}"
        current = _open(label, _read_text(directory / label), manifest, trusted)
        if signed:
            _check_order(signed[-1], current)
        signed.append(current)
    return signed


def _check_order(before: _Signed, after: _Signed) -> None:
    old, new = before.checkpoint, after.checkpoint
    if new.size < old.size:
        raise _Failure(f"{after.label}: tree size {new.size} is below {old.size} before it")
    if old.time is not None and new.time is not None and new.time < old.time:
        raise _Failure(f"{after.label}: its time is earlier than that of {before.label}")


def _check_proofs(directory: Path, signed: Sequence[_Signed]) -> None:
    for seq, (before, after) in enumerate(itertools.pairwise(signed), start=2):
        old, new = before.checkpoint, after.checkpoint
        label = f"proofs/{seq:08d}.json"
        exists = (directory / label).exists()
        proof = (
            [] if old.size == new.size and not exists else _read_proof(directory, label, old, new)
        )
        try:
            verify_consistency(old.size, new.size, proof, old.root, new.root)
        except ProofError as error:
            raise _Failure(
                f"{after.label} is not consistent with {before.label}: {error}"
            ) from None


def _read_proof(directory: Path, label: str, old: Checkpoint, new: Checkpoint) -> list[bytes]:
    if not (directory / label).exists():
        raise _Failure(f"{label} is missing (consistency from size {old.size} to {new.size})")
    proof = _load_json(directory, label)
    if (proof.get("from"), proof.get("to")) != (old.size, new.size):
        raise _Failure(f"{label}: not a proof from size {old.size} to {new.size}")
    hashes = proof.get("proof")
    if not isinstance(hashes, list) or not all(isinstance(h, str) for h in hashes):
        raise _Failure(f"{label}: proof is not a list of base64 hashes")
    try:
        return [base64.b64decode(h, validate=True) for h in hashes]
    except binascii.Error:
        raise _Failure(f"{label}: a proof hash is not base64") from None


def _open(
    label: str, note: str, manifest: _Manifest, trusted: Sequence[Verifier], *, kept: bool = False
) -> _Signed:
    try:
        checkpoint, _ = open_checkpoint(note, trusted)
    except NoteError as error:
        raise _Failure(f"{label}: {error}") from None
    if checkpoint.origin != manifest.origin:
        raise _Failure(f"{label}: origin {checkpoint.origin!r} is not {manifest.origin!r}")
    return _Signed(label, checkpoint, kept)


def _check_entries(
    directory: Path,
    manifest: _Manifest,
    targets: _Targets,
    tally: _Tally,
    progress: Progress | None,
) -> None:
    """Rebuild the tree entry by entry and hold it against every signed root on the way.

    Entries go by in chunks. Whether each is canonical JSON is checked by worker processes a
    few chunks ahead (the costliest check, and independent of order), so that on a large
    export every core works; the first bad index is the same as a plain loop would find.
    """
    builder = RootBuilder()
    targets.check(builder)
    with (
        (directory / "leaf-hashes.bin").open("rb") as stored,
        _canonical_checks(manifest.size) as check,
    ):
        for (start, chunk, unterminated), not_canonical in check(
            _chunks(directory / "entries.jsonl")
        ):
            leaves = stored.read(HASH_SIZE * len(chunk))
            for offset, entry in enumerate(chunk):
                index = start + offset
                if unterminated and offset == len(chunk) - 1:
                    raise _Failure("the last entry does not end with a newline", index)
                stored_leaf = leaves[offset * HASH_SIZE : (offset + 1) * HASH_SIZE]
                builder.add(_check_leaf(index, entry, stored_leaf))
                if offset == not_canonical:
                    raise _Failure("the entry is not RFC 8785 canonical JSON", index)
                targets.check(builder)
            tally.entries = start + len(chunk)
            if progress:
                progress(tally.entries, manifest.size)
    if progress and not tally.entries:
        progress(0, manifest.size)
    if targets.due:
        missing = targets.due[0]
        raise _Failure(
            f"entries missing: {missing.label} commits to {missing.checkpoint.size} entries, "
            f"the export has {tally.entries}",
            tally.entries,
        )
    if tally.entries != manifest.size:
        raise _Failure(
            f"the manifest lists {manifest.size} entries, entries.jsonl has {tally.entries}",
            min(tally.entries, manifest.size),
        )


# (index of the first entry, the entries, whether the last one lacks its newline)
Chunk = tuple[int, list[bytes], bool]
Checked = Iterator[tuple[Chunk, int | None]]


def _chunks(path: Path) -> Iterator[Chunk]:
    chunk: list[bytes] = []
    start = 0
    with path.open("rb") as lines:
        for line in lines:
            if not line.endswith(b"\n"):  # only the file's last line can lack it
                chunk.append(line)
                yield start, chunk, True
                return
            chunk.append(line[:-1])
            if len(chunk) == PROGRESS_EVERY:
                yield start, chunk, False
                start, chunk = start + len(chunk), []
    if chunk:
        yield start, chunk, False


def _first_not_canonical(chunk: list[bytes]) -> int | None:
    return next((n for n, entry in enumerate(chunk) if not is_canonical(entry)), None)


@contextlib.contextmanager
def _canonical_checks(size: int) -> Iterator[Callable[[Iterator[Chunk]], Checked]]:
    """Each chunk, in order, with the offset of its first entry that is not canonical."""
    workers = os.cpu_count() or 1
    if size < PARALLEL_FROM or workers == 1:
        yield lambda chunks: ((chunk, _first_not_canonical(chunk[1])) for chunk in chunks)
        return
    with concurrent.futures.ProcessPoolExecutor(workers) as pool:

        def checked(chunks: Iterator[Chunk]) -> Checked:
            ahead: collections.deque[tuple[Chunk, concurrent.futures.Future[int | None]]] = (
                collections.deque()
            )
            for chunk in chunks:
                ahead.append((chunk, pool.submit(_first_not_canonical, chunk[1])))
                if len(ahead) > workers:
                    done, result = ahead.popleft()
                    yield done, result.result()
            while ahead:
                done, result = ahead.popleft()
                yield done, result.result()

        yield checked


def _check_leaf(index: int, entry: bytes, stored: bytes) -> bytes:
    leaf = leaf_hash(entry)
    if len(stored) != HASH_SIZE:
        raise _Failure("leaf-hashes.bin ends before this entry", index)
    if leaf != stored:
        raise _Failure(
            "the entry differs from the one the log hashed (changed, inserted or removed)", index
        )
    return leaf


def _read_text(path: Path) -> str:
    """The file's exact text: no newline translation, since signatures cover exact bytes."""
    try:
        return path.read_bytes().decode()
    except UnicodeDecodeError:
        raise _Failure(f"{path.parent.name}/{path.name} is not UTF-8") from None


def _load_json(directory: Path, label: str) -> dict[str, Any]:
    try:
        value = json.loads((directory / label).read_bytes())
    except ValueError:
        raise _Failure(f"{label} is not JSON") from None
    if not isinstance(value, dict):
        raise _Failure(f"{label} is not a JSON object")
    return value


def _natural(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _read_keys(path: Path) -> list[Verifier]:
    keys = []
    for number, line in enumerate(path.read_bytes().decode().splitlines(), start=1):
        text = line.strip()
        if text and not text.startswith("#"):
            try:
                keys.append(Verifier.from_string(text))
            except NoteError as error:
                raise NoteError(f"{path}:{number}: {error}") from None
    return keys


class _ProgressLine:
    """One line on stderr, rewritten in place, for runs long enough to need it."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        if total >= PROGRESS_EVERY:
            self.stream.write(f"\rverified {done}/{total} entries")
            self.stream.flush()
            self.shown = True

    def finish(self) -> None:
        if self.shown:
            self.stream.write("\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m audit.verify", description="Verify a Pitwarden audit export offline."
    )
    parser.add_argument("directory", type=Path, help="the export directory")
    parser.add_argument(
        "--key", type=Path, action="append", required=True, help="file of trusted verifier keys"
    )
    parser.add_argument(
        "--checkpoint", type=Path, action="append", default=[], help="a signed note kept earlier"
    )
    args = parser.parse_args(argv)
    try:
        trusted = [key for path in args.key for key in _read_keys(path)]
        kept = [path.read_bytes().decode() for path in args.checkpoint]
    except (OSError, ValueError) as error:
        sys.stdout.write(f"FAIL: {error}\n")
        return 1
    progress = _ProgressLine(sys.stderr)
    report = verify_export(args.directory, trusted, extra_checkpoints=kept, progress=progress)
    progress.finish()
    sys.stdout.write(report.message + "\n")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
