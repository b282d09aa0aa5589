import base64
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest

from audit.merkle import EMPTY_ROOT, leaf_hash
from audit.note import (
    Checkpoint,
    NoteError,
    Signer,
    Verifier,
    open_checkpoint,
    open_note,
    sign_checkpoint,
    sign_note,
)

# The example key and note of Go's golang.org/x/mod/sumdb/note documentation and tests.
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_SIGNATURE = (
    "\N{EM DASH} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgK"
    "vqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
TEXT = "pitwarden.test/audit\n42\n" + base64.b64encode(EMPTY_ROOT).decode() + "\n"
ROOT = leaf_hash(b"root")
WHEN = datetime(2026, 11, 25, 1, 2, 3, 456789, tzinfo=UTC)


@pytest.fixture(scope="module")
def old() -> Signer:
    return Signer.generate("pitwarden.test/audit")


@pytest.fixture(scope="module")
def new() -> Signer:
    return Signer.generate("pitwarden.test/audit")


def test_the_go_reference_note_signs_and_opens_byte_for_byte() -> None:
    signer, verifier = Signer.from_string(GO_SKEY), Verifier.from_string(GO_VKEY)
    assert signer.verifier() == verifier
    assert signer.key_id == verifier.key_id == 0xC74F20A3
    assert sign_note(GO_TEXT, [signer]) == GO_TEXT + "\n" + GO_SIGNATURE
    assert open_note(GO_TEXT + "\n" + GO_SIGNATURE, [verifier]) == (GO_TEXT, [verifier])


def test_key_id_is_the_first_four_bytes_of_the_name_and_typed_key_hash() -> None:
    verifier = Verifier.from_string(GO_VKEY)
    digest = hashlib.sha256(b"PeterNeumann\n\x01" + verifier.public_key).digest()
    assert verifier.key_id == int.from_bytes(digest[:4], "big")


def test_key_strings_round_trip(old: Signer) -> None:
    assert Signer.from_string(old.to_string()) == old
    assert Verifier.from_string(old.verifier().to_string()) == old.verifier()
    assert old.to_string().startswith(f"PRIVATE+KEY+{old.name}+{old.key_id:08x}+")
    assert old.verifier().to_string().startswith(f"{old.name}+{old.key_id:08x}+")
    assert old.seed.hex() not in repr(old)


@pytest.mark.parametrize(
    "vkey",
    [
        GO_VKEY.replace("c74f20a3", "c74f20a4"),  # key id of another key
        GO_VKEY.replace("c74f20a3", "C74F20A3"),  # ids are lowercase
        GO_VKEY + "BADKEY==",
        GO_VKEY.replace("PeterNeumann", "Peter Neumann"),
        "PeterNeumann+c74f20a3",
        "PeterNeumann+c74f20a3+!!!!",
        "",
    ],
)
def test_malformed_verifier_keys_are_refused(vkey: str) -> None:
    with pytest.raises(NoteError):
        Verifier.from_string(vkey)


def test_only_ed25519_keys_are_accepted() -> None:
    public = Verifier.from_string(GO_VKEY).public_key
    digest = hashlib.sha256(b"PeterNeumann\n\x02" + public).digest()
    typed = base64.b64encode(b"\x02" + public).decode()
    with pytest.raises(NoteError, match="Ed25519"):
        Verifier.from_string(f"PeterNeumann+{digest[:4].hex()}+{typed}")


@pytest.mark.parametrize("name", ["", "a+b", "a b", "a\u00a0b", "a\tb"])
def test_key_names_are_non_empty_without_spaces_or_plus(name: str) -> None:
    with pytest.raises(NoteError):
        Signer.generate(name)


def test_signer_strings_are_checked() -> None:
    with pytest.raises(NoteError):
        Signer.from_string(GO_SKEY.removeprefix("PRIVATE+KEY+"))
    with pytest.raises(NoteError):
        Signer.from_string(GO_SKEY.replace("c74f20a3", "00000000"))


def test_a_note_opens_and_lists_who_signed(old: Signer) -> None:
    note = sign_note(TEXT, [old])
    assert note.startswith(TEXT + "\n\N{EM DASH} pitwarden.test/audit ")
    assert open_note(note, [old.verifier()]) == (TEXT, [old.verifier()])


def test_a_note_signed_by_old_and_new_keys_opens_with_either(old: Signer, new: Signer) -> None:
    note = sign_note(TEXT, [old, new])
    assert open_note(note, [old.verifier()])[1] == [old.verifier()]
    assert open_note(note, [new.verifier()])[1] == [new.verifier()]
    assert open_note(note, [new.verifier(), old.verifier()])[1] == [old.verifier(), new.verifier()]


def test_a_changed_text_does_not_open(old: Signer) -> None:
    note = sign_note(TEXT, [old]).replace("\n42\n", "\n43\n")
    with pytest.raises(NoteError, match="does not verify"):
        open_note(note, [old.verifier()])


def test_a_changed_signature_does_not_open(old: Signer, new: Signer) -> None:
    note = sign_note(TEXT, [old, new])
    lines = note.split("\n")
    raw = bytearray(base64.b64decode(lines[-2].split(" ")[-1]))
    raw[10] ^= 1
    lines[-2] = lines[-2].rsplit(" ", 1)[0] + " " + base64.b64encode(raw).decode()
    with pytest.raises(NoteError, match="does not verify"):
        open_note("\n".join(lines), [old.verifier(), new.verifier()])
    assert open_note("\n".join(lines), [old.verifier()])[1] == [old.verifier()]


def test_a_signature_by_another_key_of_the_same_name_does_not_count(old: Signer) -> None:
    impostor = Signer.generate(old.name)
    with pytest.raises(NoteError, match="no trusted key"):
        open_note(sign_note(TEXT, [impostor]), [old.verifier()])


def test_a_note_without_a_known_signature_does_not_open(old: Signer) -> None:
    stranger = Signer.generate("someone.else/log")
    with pytest.raises(NoteError, match="no trusted key"):
        open_note(sign_note(TEXT, [stranger]), [old.verifier()])
    with pytest.raises(NoteError, match="no trusted key"):
        open_note(sign_note(TEXT, [old]), [])


@pytest.mark.parametrize(
    "text", ["no final newline", "\n", "a\n\nb\n", "tab\there\n", "bell\a\n", "cr\r\n", ""]
)
def test_only_well_formed_text_is_signed(old: Signer, text: str) -> None:
    with pytest.raises(NoteError):
        sign_note(text, [old])


def test_a_note_needs_a_signer() -> None:
    with pytest.raises(NoteError):
        sign_note(TEXT, [])


@pytest.mark.parametrize(
    "mangle",
    [
        lambda note: note.replace("\n\n", "\n"),  # no signature block
        lambda note: note.replace("\N{EM DASH} ", "- "),
        lambda note: note.replace("\N{EM DASH} ", "\N{EM DASH}  "),
        lambda note: note.removesuffix("\n"),
        lambda note: note + "\N{EM DASH} other AAAA\n",  # too short for a key id
        lambda note: note + "\N{EM DASH} other not-base64\n",
        lambda note: note + "\n",
        lambda note: note + ("\N{EM DASH} other AAAAAAAA\n" * 100),
    ],
)
def test_malformed_notes_are_refused(old: Signer, mangle: Callable[[str], str]) -> None:
    note = sign_note(TEXT, [old])
    with pytest.raises(NoteError):
        open_note(mangle(note), [old.verifier()])


def test_unknown_signature_lines_are_skipped(old: Signer) -> None:
    note = sign_note(TEXT, [old]) + "\N{EM DASH} other.example/log AAAAAAAA\n"
    assert open_note(note, [old.verifier()]) == (TEXT, [old.verifier()])


def test_a_checkpoint_text_is_origin_size_root_and_time() -> None:
    checkpoint = Checkpoint("pitwarden.test/audit", 1234, ROOT, WHEN, ("other extension",))
    text = checkpoint.to_text()
    assert text == (
        f"pitwarden.test/audit\n1234\n{base64.b64encode(ROOT).decode()}\n"
        "time 2026-11-25T01:02:03.456789Z\nother extension\n"
    )
    assert Checkpoint.from_text(text) == checkpoint
    bare = Checkpoint("pitwarden.test/audit", 0, EMPTY_ROOT)
    assert Checkpoint.from_text(bare.to_text()) == bare


def test_checkpoint_times_are_kept_in_utc() -> None:
    local = WHEN.astimezone(timezone(timedelta(hours=-5)))
    checkpoint = Checkpoint("o", 1, ROOT, local)
    assert checkpoint.time == WHEN
    assert checkpoint.time.tzinfo is UTC
    assert "time 2026-11-25T01:02:03.456789Z\n" in checkpoint.to_text()
    with pytest.raises(NoteError):
        Checkpoint("o", 1, ROOT, datetime(2026, 11, 25))  # noqa: DTZ001 - a naive time is the error


def test_checkpoints_sign_and_open(old: Signer) -> None:
    checkpoint = Checkpoint("pitwarden.test/audit", 7, ROOT, WHEN)
    note = sign_checkpoint(checkpoint, [old])
    assert open_checkpoint(note, [old.verifier()]) == (checkpoint, [old.verifier()])


ROOT64 = base64.b64encode(ROOT).decode()


@pytest.mark.parametrize(
    "text",
    [
        f"o\n7\n{ROOT64}",  # no final newline
        f"o\n7\n{ROOT64}\n\n",  # empty line
        f"\n7\n{ROOT64}\n",  # empty origin
        "o\n7\n",
        f"o\n07\n{ROOT64}\n",
        f"o\n+7\n{ROOT64}\n",
        f"o\n 7\n{ROOT64}\n",
        f"o\n-7\n{ROOT64}\n",
        f"o\n\N{ARABIC-INDIC DIGIT SEVEN}\n{ROOT64}\n",
        f"o\n7\n{ROOT64[:-2]}\n",  # bad padding
        f"o\n7\n{base64.b64encode(ROOT[:31]).decode()}\n",
        f"o\n7\n{ROOT64[:42]}B=\n",  # non-canonical: stray low bits
        f"o\n7\n{ROOT64.replace('=', '')}\n",
        f"o\n7\n{ROOT64}\ntime 2026-11-25T01:02:03Z\n",
        f"o\n7\n{ROOT64}\ntime 2026-11-25T01:02:03.456789+00:00\n",
        f"o\n7\n{ROOT64}\ntime 2026-13-25T01:02:03.456789Z\n",
        f"o\n7\n{ROOT64}\nother\ntime 2026-11-25T01:02:03.456789Z\n",
    ],
)
def test_checkpoint_text_is_parsed_strictly(text: str) -> None:
    with pytest.raises(NoteError):
        Checkpoint.from_text(text)


@pytest.mark.parametrize(
    "fields",
    [
        {"origin": "a\nb"},
        {"origin": ""},
        {"size": -1},
        {"root": ROOT[:31]},
        {"extensions": ("",)},
        {"extensions": ("two\nlines",)},
        {"extensions": ("time 2026-11-25T01:02:03.456789Z",)},
    ],
)
def test_checkpoints_that_would_not_round_trip_are_refused(fields: dict[str, object]) -> None:
    values: dict[str, object] = {"origin": "o", "size": 1, "root": ROOT} | fields
    with pytest.raises(NoteError):
        Checkpoint(**values)  # type: ignore[arg-type]
