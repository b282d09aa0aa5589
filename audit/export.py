"""Write an export directory that audit/verify.py checks offline (layout in docs/audit.md).

The exporter copies what the database holds, as it holds it: it does not check or repair
anything, so that whatever was done to the tables reaches the verifier unchanged.
"""

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from audit import log
from audit.note import Verifier
from audit.verify import FORMAT
from core.journal import rfc3339
from core.uow import UnitOfWork

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class Exported:
    entries: int
    checkpoints: int
    size: int


async def export(
    uow: UnitOfWork,
    directory: Path,
    *,
    origin: str,
    verifiers: Sequence[Verifier],
    size: int | None = None,
    progress: Progress | None = None,
) -> Exported:
    """Export entries [0, size) and every checkpoint up to size (default: the latest one's).

    Run it in a REPEATABLE READ transaction, so that entries, hashes and checkpoints come from
    one snapshot.
    """
    if size is None:
        size = (await log.latest_checkpoint(uow)).tree_size
    published = await log.checkpoints(uow, up_to_size=size)
    _make_layout(directory)
    count = await _write_entries(uow, directory, size, progress)
    await _write_leaf_hashes(uow, directory, count)
    for seq, checkpoint in enumerate(published, start=1):
        (directory / "checkpoints" / f"{seq:08d}.note").write_text(checkpoint.note)
        if seq > 1:
            before = published[seq - 2].tree_size
            proof = await log.stored_consistency_proof(
                uow, size1=before, size2=checkpoint.tree_size
            )
            _write_json(
                directory / "proofs" / f"{seq:08d}.json",
                {
                    "from": before,
                    "to": checkpoint.tree_size,
                    "proof": [base64.b64encode(h).decode() for h in proof],
                },
            )
    for verifier in verifiers:
        (directory / "keys" / f"{verifier.name.replace('/', '_')}.vkey").write_text(
            verifier.to_string() + "\n"
        )
    _write_json(
        directory / "manifest.json",
        {
            "format": FORMAT,
            "origin": origin,
            "size": count,
            "checkpoints": len(published),
            "exported_at": rfc3339(uow.now),
        },
    )
    return Exported(count, len(published), size)


async def _write_entries(
    uow: UnitOfWork, directory: Path, size: int, progress: Progress | None
) -> int:
    count = 0
    with (directory / "entries.jsonl").open("wb") as out:
        async for _, entry in log.stream_entries(uow, end=size):
            out.write(entry + b"\n")
            count += 1
            if progress and count % 10_000 == 0:
                progress(count, size)
    if progress:
        progress(count, size)
    return count


async def _write_leaf_hashes(uow: UnitOfWork, directory: Path, count: int) -> None:
    with (directory / "leaf-hashes.bin").open("wb") as out:
        for start in range(0, count, log.MAX_PAGE):
            end = min(count, start + log.MAX_PAGE)
            out.write(b"".join(await log.leaf_hashes(uow, start=start, end=end)))


def _make_layout(directory: Path) -> None:
    # Blocking file work in an async function is fine here: this is a batch tool.
    for sub in ("checkpoints", "proofs", "keys"):
        (directory / sub).mkdir(parents=True, exist_ok=True)


def _write_json(path: Path, body: object) -> None:
    path.write_text(json.dumps(body, indent=2) + "\n")
