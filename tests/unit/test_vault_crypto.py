"""Vault field encryption: round trips, and every misplaced or altered ciphertext refused."""

import uuid

import pytest

from compliance.vault.crypto import (
    FIELDS,
    DecryptionFailed,
    VaultCryptoError,
    decrypt_field,
    encrypt_field,
    new_data_key,
)

PLAYER = uuid.UUID("6f1c1e4e-8a0b-4c3e-9a51-2b7d8f0c1a11")
OTHER_PLAYER = uuid.UUID("6f1c1e4e-8a0b-4c3e-9a51-2b7d8f0c1a12")
SAMPLES = {
    "legal_name": "José Ñúñez Øresund 李小龍".encode(),
    "date_of_birth": b"1990-01-31",
    "address": "Triq il-Kbira, Ħal Qormi".encode(),
    "country": b"MT",
    "email": b"john.doe+x@example.com",
    "phone": b"+35621234567",
    "national_id": b"123456M",
    "iban": b"GB82WEST12345698765432",
    "document_image": bytes(range(256)) * 4,
}


@pytest.mark.parametrize("field", FIELDS)
def test_every_field_round_trips(field: str) -> None:
    key = new_data_key()
    sealed = encrypt_field(key, PLAYER, field, SAMPLES[field])
    assert SAMPLES[field] not in sealed
    assert decrypt_field(key, PLAYER, field, sealed) == SAMPLES[field]


@pytest.mark.parametrize("field", FIELDS)
def test_an_empty_value_round_trips(field: str) -> None:
    key = new_data_key()
    assert decrypt_field(key, PLAYER, field, encrypt_field(key, PLAYER, field, b"")) == b""


def test_a_document_field_with_a_token_round_trips_and_is_bound_to_the_token() -> None:
    key = new_data_key()
    sealed = encrypt_field(key, PLAYER, "document_image:tok_1", b"\x89PNG\r\n")
    assert decrypt_field(key, PLAYER, "document_image:tok_1", sealed) == b"\x89PNG\r\n"
    with pytest.raises(DecryptionFailed):
        decrypt_field(key, PLAYER, "document_image:tok_2", sealed)


def test_a_ciphertext_moved_to_another_player_fails() -> None:
    key = new_data_key()
    sealed = encrypt_field(key, PLAYER, "email", b"a@example.com")
    with pytest.raises(DecryptionFailed):
        decrypt_field(key, OTHER_PLAYER, "email", sealed)


def test_a_ciphertext_moved_to_another_field_fails() -> None:
    key = new_data_key()
    sealed = encrypt_field(key, PLAYER, "email", b"a@example.com")
    with pytest.raises(DecryptionFailed):
        decrypt_field(key, PLAYER, "phone", sealed)


def test_a_ciphertext_under_another_data_key_fails() -> None:
    sealed = encrypt_field(new_data_key(), PLAYER, "email", b"a@example.com")
    with pytest.raises(DecryptionFailed):
        decrypt_field(new_data_key(), PLAYER, "email", sealed)


def test_one_flipped_bit_anywhere_fails() -> None:
    key = new_data_key()
    sealed = encrypt_field(key, PLAYER, "national_id", b"123456M")
    for position in range(len(sealed) * 8):
        tampered = bytearray(sealed)
        tampered[position // 8] ^= 1 << (position % 8)
        with pytest.raises(DecryptionFailed):
            decrypt_field(key, PLAYER, "national_id", bytes(tampered))


@pytest.mark.parametrize("cut", [0, 1, 13, 28])
def test_a_truncated_value_fails(cut: int) -> None:
    key = new_data_key()
    sealed = encrypt_field(key, PLAYER, "email", b"")
    with pytest.raises(DecryptionFailed):
        decrypt_field(key, PLAYER, "email", sealed[:cut])


def test_another_format_version_fails_even_with_valid_bytes_behind_it() -> None:
    key = new_data_key()
    sealed = encrypt_field(key, PLAYER, "email", b"a@example.com")
    assert sealed[0] == 1
    with pytest.raises(DecryptionFailed):
        decrypt_field(key, PLAYER, "email", b"\x02" + sealed[1:])


def test_the_sealed_layout_is_version_nonce_ciphertext_and_tag() -> None:
    sealed = encrypt_field(new_data_key(), PLAYER, "email", b"12345")
    assert len(sealed) == 1 + 12 + 5 + 16


def test_two_encryptions_of_the_same_value_differ() -> None:
    key = new_data_key()
    first = encrypt_field(key, PLAYER, "email", b"a@example.com")
    second = encrypt_field(key, PLAYER, "email", b"a@example.com")
    assert first != second
    assert first[1:13] != second[1:13]  # fresh nonce


def test_data_keys_are_32_random_bytes() -> None:
    keys = {new_data_key() for _ in range(10)}
    assert len(keys) == 10
    assert all(len(key) == 32 for key in keys)


@pytest.mark.parametrize("field", ["", "naïve", "email\x00phone"])
def test_an_invalid_field_name_is_refused(field: str) -> None:
    with pytest.raises(ValueError, match="field name"):
        encrypt_field(new_data_key(), PLAYER, field, b"x")


def test_a_key_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(VaultCryptoError, match="32 bytes"):
        encrypt_field(b"short", PLAYER, "email", b"x")
