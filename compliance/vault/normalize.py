"""Blind indexes for exact-match lookups over encrypted PII, and masked views for display.

A blind index is an HMAC of a normalized value under a secret key: equal values give equal
indexes, so the vault can answer "is this email already registered?" without decrypting, and
without the key the indexes cannot be brute-forced from a list of likely values. Normalization
decides what counts as "equal": too loose merges different people, too strict lets a duplicate
account in with a trailing space.
"""

import hashlib
import hmac
import re
import unicodedata
from collections.abc import Callable
from datetime import date

BLIND_KINDS = ("email", "phone", "national_id", "iban", "name_dob")

MASK = "•••"
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_IBAN_SHAPE = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}")
_MIN_KEY_BYTES = 32


def normalize(kind: str, value: str) -> str:
    """The canonical form indexed under `kind`; ValueError if unknown or nothing is left."""
    if kind == "email":
        normalized = _email(value)
    elif kind == "phone":
        normalized = _phone(value)
    elif kind == "national_id":
        normalized = _national_id(value)
    elif kind == "iban":
        normalized = _iban(value)
    elif kind == "name_dob":
        # The value is what `name_dob` returns; the date follows the last "|".
        legal_name, separator, date_of_birth = value.rpartition("|")
        if not separator:
            raise ValueError("a name_dob value is 'legal name|YYYY-MM-DD'")
        normalized = name_dob(legal_name, date_of_birth)
    else:
        raise ValueError(f"unknown blind index kind {kind!r}; expected one of {BLIND_KINDS}")
    if not normalized:
        raise ValueError(f"the {kind} value is empty once normalized")
    return normalized


def name_dob(legal_name: str, date_of_birth: str) -> str:
    """'legal name|YYYY-MM-DD', normalized: the pair catches a person re-registering."""
    # Accents are dropped (NFKD, then combining marks removed) because the same name is typed
    # with and without them, "José" and "Jose"; case is folded (casefold, so "ß" matches "SS").
    # Casefolding first lets NFKD decompose what casefold produced, so no mark survives.
    decomposed = unicodedata.normalize("NFKD", legal_name.casefold())
    letters = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    # Hyphens, apostrophes, dots, digits and whitespace vary between documents and forms, so
    # any run of non-letters becomes one space: "O'Brien-Smith" and "o brien smith" match.
    name = " ".join(_words(letters))
    if not name:
        raise ValueError("the legal name has no letters")
    return f"{name}|{_iso_date(date_of_birth)}"


def blind_index(key: bytes, kind: str, value: str) -> bytes:
    """HMAC-SHA256(key, kind || 0x00 || normalized value): 32 bytes.

    The kind is part of the message so that one value indexed under two kinds (a number that is
    both a phone and a national id) gives unrelated indexes.
    """
    if len(key) < _MIN_KEY_BYTES:
        raise ValueError(f"a blind index key has at least {_MIN_KEY_BYTES} bytes")
    message = kind.encode() + b"\x00" + normalize(kind, value).encode()
    return hmac.new(key, message, hashlib.sha256).digest()


def mask(field: str, value: str) -> str:
    """A display form that lets staff recognise a record without reading the PII.

    Masking never fails on a malformed value (it is for display); it hides more instead.
    """
    if field.startswith("document_image:"):
        field = "document_image"
    masker = _MASKERS.get(field)
    if masker is None:
        raise ValueError(f"no mask for unknown field {field!r}")
    return masker(value)


def _mask_email(value: str) -> str:
    local, at, domain = value.strip().rpartition("@")
    return f"{local[0]}{MASK}@{domain}" if at and local else MASK


def _mask_date(value: str) -> str:
    try:
        return _iso_date(value)[:4] + "-••-••"
    except ValueError:
        return "••••-••-••"


_MASKERS: dict[str, Callable[[str], str]] = {
    "iban": lambda value: "•••• " + _tail(_alnum(value).upper(), 4),
    "email": _mask_email,
    "phone": lambda value: MASK + _tail(_digits(value), 2),
    "legal_name": lambda value: " ".join(f"{word[0].upper()}." for word in _words(value)),
    "date_of_birth": _mask_date,
    "national_id": lambda value: MASK + _tail(_alnum(value).upper(), 2),
    "address": lambda _value: MASK,
    "country": lambda value: value,  # a country alone identifies nobody, and the UI filters by it
    "document_image": lambda _value: MASK,
}


def _email(value: str) -> str:
    # NFKC folds look-alike forms (full-width letters); casefold then ignores case. Dots and
    # "+tags" in the local part are kept: Gmail ignores them but most providers deliver
    # "a.b@" and "ab@" to different people, so removing them would merge strangers.
    return unicodedata.normalize("NFKC", value).strip().casefold()


def _phone(value: str) -> str:
    # A leading "+" is kept and every other non-digit (spaces, dashes, brackets, dots) dropped;
    # "00" is the international prefix of most countries, so "00356..." equals "+356...".
    # Any Unicode decimal digit counts (full-width, Arabic-Indic), written as ASCII.
    # The "+" counts as leading if no digit comes before it, as in "(+356) 2123 4567".
    text = unicodedata.normalize("NFKC", value)
    digits = _digits(text)
    first_digit = next((i for i, ch in enumerate(text) if ch.isdecimal()), len(text))
    if "+" in text[:first_digit]:
        return "+" + digits if digits else ""
    if digits.startswith("00"):
        return "+" + digits[2:] if digits[2:] else ""
    return digits


def _national_id(value: str) -> str:
    # Identity numbers are written with spaces, dashes or dots depending on the form; only
    # letters and digits carry meaning, and letters are compared in upper case.
    return "".join(ch for ch in unicodedata.normalize("NFKC", value).upper() if ch.isalnum())


def _iban(value: str) -> str:
    # IBANs are printed in groups of four; spaces (and any other separators) are dropped and
    # letters upper-cased. The ISO 13616 mod-97 check catches typos before they become a
    # silently unmatched index.
    iban = _alnum(unicodedata.normalize("NFKC", value)).upper()
    if not iban:
        return ""
    if not iban.isascii() or not _IBAN_SHAPE.fullmatch(iban):
        raise ValueError("an IBAN is a country code, two check digits and 11-30 letters or digits")
    rearranged = iban[4:] + iban[:4]
    if int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 != 1:
        raise ValueError("the IBAN check digits are wrong")
    return iban


def _iso_date(value: str) -> str:
    # Python 3.11's fromisoformat also takes "19900131" and week dates; only YYYY-MM-DD is one
    # spelling per day, so the shape is checked first.
    text = value.strip()
    if not _ISO_DATE.fullmatch(text):
        raise ValueError(f"a date of birth is YYYY-MM-DD, got {value!r}")
    return date.fromisoformat(text).isoformat()


def check_date_of_birth(value: str) -> None:
    """Refuse (ValueError) anything but a real day spelt YYYY-MM-DD."""
    _iso_date(value)


def _digits(value: str) -> str:
    return "".join(str(unicodedata.decimal(ch)) for ch in value if ch.isdecimal())


def _alnum(value: str) -> str:
    return "".join(ch for ch in value if ch.isalnum())


def _words(value: str) -> list[str]:
    """Runs of letters; everything else separates words."""
    return "".join(ch if ch.isalpha() else " " for ch in value).split()


def _tail(text: str, count: int) -> str:
    # A value no longer than its visible tail would be shown whole: show nothing of it then.
    return text[-count:] if len(text) > count else ""
