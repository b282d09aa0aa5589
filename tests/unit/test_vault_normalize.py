"""Blind-index normalization decides which spellings count as one person; masks hide the rest."""

import pytest

from compliance.vault.normalize import BLIND_KINDS, blind_index, mask, name_dob, normalize

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


@pytest.mark.parametrize(
    ("kind", "typed", "stored"),
    [
        ("email", " John.Doe+x@Example.COM ", "john.doe+x@example.com"),
        ("email", "\uff2a\uff2f\uff28\uff2e@example.com", "john@example.com"),  # full-width letters
        ("email", "STRASSE@example.de", "straße@example.de"),  # casefold, not lower
        ("phone", "+356 2123 4567", "00356-21234567"),
        ("phone", "(+356) 2123.4567", "+35621234567"),
        # Full-width digits, as typed on a Japanese keyboard.
        ("phone", "+356 \uff12\uff11\uff12\uff13 \uff14\uff15\uff16\uff17", "+35621234567"),
        ("national_id", "123456 m", "123456M"),
        ("national_id", "AB-12.34/56", "ab123456"),
        ("iban", "GB82 WEST 1234 5698 7654 32", "gb82west12345698765432"),
        ("iban", "DE89 3704 0044 0532 0130 00", "DE89370400440532013000"),
        ("name_dob", "José Ñúñez|1990-01-31", "JOSE NUNEZ|1990-01-31"),
        ("name_dob", "  O'Brien-Smith,  Mary |1985-12-01", "o brien smith mary|1985-12-01"),
    ],
)
def test_spellings_of_one_value_share_a_blind_index(kind: str, typed: str, stored: str) -> None:
    assert normalize(kind, typed) == normalize(kind, stored)
    assert blind_index(KEY, kind, typed) == blind_index(KEY, kind, stored)


@pytest.mark.parametrize(
    ("kind", "value", "normalized"),
    [
        ("email", " John.Doe+x@Example.COM ", "john.doe+x@example.com"),
        ("phone", "00356-21234567", "+35621234567"),
        ("phone", "2123 4567", "21234567"),
        ("national_id", "ab 12-34", "AB1234"),
        ("iban", "gb82 west 1234 5698 7654 32", "GB82WEST12345698765432"),
        ("name_dob", "José Ñúñez|1990-01-31", "jose nunez|1990-01-31"),
    ],
)
def test_the_normalized_form(kind: str, value: str, normalized: str) -> None:
    assert normalize(kind, value) == normalized


@pytest.mark.parametrize(
    ("kind", "one", "other"),
    [
        # Dots and +tags are kept: most providers deliver these to different mailboxes.
        ("email", "john.doe@example.com", "johndoe@example.com"),
        ("email", "john+casino@example.com", "john@example.com"),
        ("phone", "+35621234567", "35621234567"),  # "+" is not a digit to drop
        ("national_id", "123456M", "123456N"),
        ("name_dob", "José Ñúñez|1990-01-31", "José Ñúñez|1990-01-30"),
        ("name_dob", "José Ñúñez|1990-01-31", "José Núñes|1990-01-31"),
    ],
)
def test_different_values_get_different_indexes(kind: str, one: str, other: str) -> None:
    assert blind_index(KEY, kind, one) != blind_index(KEY, kind, other)


def test_name_dob_builds_the_indexed_value() -> None:
    assert name_dob("José  Ñúñez", " 1990-01-31 ") == "jose nunez|1990-01-31"
    assert name_dob("Jean-Luc Picard", "2305-07-13") == "jean luc picard|2305-07-13"
    indexed = name_dob("JOSE NUNEZ", "1990-01-31")
    assert blind_index(KEY, "name_dob", indexed) == blind_index(
        KEY, "name_dob", name_dob("José Ñúñez", "1990-01-31")
    )
    assert normalize("name_dob", indexed) == indexed


@pytest.mark.parametrize("date_of_birth", ["19900131", "1990-02-30", "1990-1-31", "31/01/1990", ""])
def test_a_date_of_birth_must_be_a_real_iso_date(date_of_birth: str) -> None:
    with pytest.raises(ValueError, match=r"YYYY-MM-DD|day is out of range"):
        name_dob("Jose Nunez", date_of_birth)


@pytest.mark.parametrize(
    "iban",
    [
        "GB83 WEST 1234 5698 7654 32",  # wrong check digits
        "GB82 WEST 1234 5698 7654 33",  # a typo in the account number
    ],
)
def test_an_iban_failing_the_checksum_is_refused(iban: str) -> None:
    with pytest.raises(ValueError, match="check digits are wrong"):
        normalize("iban", iban)


@pytest.mark.parametrize("iban", ["GB82", "82GB WEST 1234 5698 7654 32", "GB82 WÉST 1234 5698"])
def test_a_value_that_is_no_iban_is_refused(iban: str) -> None:
    with pytest.raises(ValueError, match="country code"):
        normalize("iban", iban)


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("email", "   "),
        ("phone", "+"),
        ("phone", "call me"),
        ("phone", "00"),
        ("national_id", " - "),
        ("iban", "  "),
        ("name_dob", "1234|1990-01-31"),
        ("name_dob", "no date"),
    ],
)
def test_a_value_with_nothing_left_is_refused(kind: str, value: str) -> None:
    with pytest.raises(ValueError, match=r"empty|no letters|legal name"):
        normalize(kind, value)


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown blind index kind"):
        normalize("passport", "X1")
    with pytest.raises(ValueError, match="unknown blind index kind"):
        blind_index(KEY, "passport", "X1")


def test_a_blind_index_is_32_bytes_and_hides_the_value() -> None:
    index = blind_index(KEY, "email", "john@example.com")
    assert len(index) == 32
    assert b"john" not in index


def test_the_same_value_gets_unrelated_indexes_under_each_kind() -> None:
    # This digit string is valid as a phone and a national id alike.
    indexes = {blind_index(KEY, kind, "35621234567") for kind in ("phone", "national_id")}
    assert len(indexes) == 2
    all_kinds = {
        blind_index(KEY, kind, value)
        for kind, value in [
            ("email", "a1@b.c"),
            ("phone", "+1"),
            ("national_id", "A1"),
            ("iban", "GB82WEST12345698765432"),
            ("name_dob", "A|2000-01-01"),
        ]
    }
    assert len(all_kinds) == len(BLIND_KINDS)


def test_each_key_gives_its_own_indexes() -> None:
    assert blind_index(KEY, "email", "a@b.c") != blind_index(OTHER_KEY, "email", "a@b.c")


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        blind_index(b"secret", "email", "a@b.c")


@pytest.mark.parametrize(
    ("field", "value", "masked"),
    [
        ("iban", "GB82 WEST 1234 5698 7654 32", "•••• 5432"),
        ("email", "john.doe@example.com", "j•••@example.com"),
        ("email", "not an address", "•••"),
        ("phone", "+356 2123 4567", "•••67"),
        ("phone", "12", "•••"),  # too short: its tail would be all of it
        ("legal_name", "John Doe", "J. D."),
        ("legal_name", "josé  ñúñez-garcía", "J. Ñ. G."),
        ("date_of_birth", "1990-01-31", "1990-••-••"),
        ("date_of_birth", "31/01/1990", "••••-••-••"),
        ("national_id", "123456M", "•••6M"),
        ("address", "1 Main Street, Valletta", "•••"),
        ("country", "MT", "MT"),
        ("document_image", "passport.png", "•••"),
        ("document_image:tok_1", "passport.png", "•••"),
    ],
)
def test_masks(field: str, value: str, masked: str) -> None:
    assert mask(field, value) == masked


def test_masking_an_unknown_field_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown field"):
        mask("password", "hunter2")
