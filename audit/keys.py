"""The log's signing keys, from configuration.

Every configured key signs every checkpoint. Rotating is therefore: add the new key (both sign
for a while, so verifiers can move over), then remove the old one. Without configured keys the
key file is used, and created with one fresh key on first use, readable by its owner only.
"""

import os
from pathlib import Path

from audit.note import Signer, Verifier
from core.settings import Settings


def key_file(settings: Settings) -> Path:
    return settings.audit_key_file or settings.data_dir / "secrets" / "audit-signing-keys"


def signers(settings: Settings) -> list[Signer]:
    if settings.audit_signing_keys:
        lines = settings.audit_signing_keys.split()
    else:
        lines = _read_or_create(key_file(settings), settings).splitlines()
    keys = [Signer.from_string(line.strip()) for line in lines if _is_key(line)]
    if not keys:
        raise ValueError("no audit signing key is configured")
    return keys


def verifiers(settings: Settings) -> list[Verifier]:
    return [signer.verifier() for signer in signers(settings)]


def _is_key(line: str) -> bool:
    return bool(line.strip()) and not line.lstrip().startswith("#")


def _read_or_create(path: Path, settings: Settings) -> str:
    if path.exists():
        return path.read_text()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = Signer.generate(key_name(settings.audit_origin)).to_string() + "\n"
    # O_EXCL: two processes starting at once must not each write a different key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text()
    with os.fdopen(fd, "w") as file:
        file.write(text)
    return text


def key_name(origin: str) -> str:
    """C2SP convention: a log's key is named after its origin (which may not contain '+')."""
    return origin.replace("+", "-")
