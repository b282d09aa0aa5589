"""Webhook signatures of the two payment-provider contracts: pure functions, no database, no clock.

Standard Webhooks (https://www.standardwebhooks.com, spec 1.0.0), symmetric scheme only:

    webhook-id: msg_2KWPBgLlAfxdpx2AI54pPJ85f4W
    webhook-timestamp: 1674087231
    webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")> [v1,<...> ...]

with the secret written `whsec_<base64 of the key>`. Payrail, our second contract, signs the way
Stripe does, with a plain-text secret and lowercase hex:

    X-Payrail-Signature: t=1674087231,v1=<hex HMAC-SHA256(secret, "{t}.{body}")>[,v1=<...>]

and carries its event id inside the signed JSON body (`event_id`), which the caller passes in.

Both schemes share one verification: the timestamp must lie within a tolerance (300 s by default)
of `now` in either direction, so a captured webhook cannot be replayed later nor pre-signed for
the future; several secrets may be configured at once, so a rotation has an overlap in which
the old and the new secret are both accepted; any listed signature made with any configured
secret is enough (the sender signs with each of its secrets during its own rotation); entries of
versions we do not know (e.g. `v1a`, asymmetric) are skipped so that a sender may add them; and
digests are compared with `hmac.compare_digest`, so the time taken does not tell an attacker how
much of a forged signature was right. A refusal raises `SignatureRefused` with one of `REASONS`;
its message never holds a secret, a signature or any byte of the body. Replays inside the window
are stopped by the replay store, keyed on `Verified.message_id`, not here.
"""

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal, get_args

DEFAULT_TOLERANCE: Final = timedelta(seconds=300)

WEBHOOK_ID: Final = "webhook-id"
WEBHOOK_TIMESTAMP: Final = "webhook-timestamp"
WEBHOOK_SIGNATURE: Final = "webhook-signature"
PAYRAIL_SIGNATURE: Final = "X-Payrail-Signature"

SECRET_PREFIX: Final = "whsec_"  # noqa: S105 - the spec's prefix, not a secret
# The spec's range for symmetric keys (192 to 512 bits); Payrail's contract asks the same minimum.
MIN_KEY_BYTES: Final = 24
MAX_KEY_BYTES: Final = 64
# The id becomes the replay store's key: bounded and printable, so it fits a column and a log line.
MAX_ID_CHARS: Final = 256
# 11 digits reach the year 5138; more would overflow a datetime and is no real timestamp.
MAX_TIMESTAMP_DIGITS: Final = 11

Reason = Literal[
    "missing_header",  # a required header is absent or empty
    "malformed_id",  # the message / event id is empty, too long, not visible ASCII, or has "."
    "malformed_timestamp",  # the timestamp is not plain Unix seconds (or Payrail's t= is not one)
    "timestamp_too_old",  # sent more than the tolerance before now
    "timestamp_in_future",  # sent more than the tolerance after now
    "no_valid_signature",  # no listed signature of a known version matches a configured secret
    "malformed_secret",  # a configured secret is unusable, or none is configured (our config)
]
REASONS: Final[frozenset[str]] = frozenset(get_args(Reason))

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND: Final = timedelta(seconds=1)
_OWS: Final = " \t"  # HTTP's optional whitespace around a field value or a list item
_HEX_DIGITS: Final = frozenset("0123456789abcdef")


class SignatureRefused(Exception):
    """A webhook whose signature, timestamp or headers do not hold; nothing may act on it.

    `reason` is one of `REASONS`, for the API answer (401) and the security event; `message`
    is for a human and never carries a secret, a signature or body content.
    """

    def __init__(self, reason: Reason, message: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown refusal reason {reason!r}")
        super().__init__(message)
        self.reason: Reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class Verified:
    """What a valid webhook vouches for. `secret_index` says which configured secret matched,
    so an operator can see when the old one of a rotation is no longer used and remove it."""

    message_id: str
    timestamp: datetime
    secret_index: int


# Standard Webhooks


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64>` entry of the `webhook-signature` header."""
    return _standard_entry(_whsec_key(secret, 0), msg_id, timestamp, body)


def webhook_headers(
    secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three headers a sender sends, signed with each of its current secrets (rotation)."""
    keys = [_whsec_key(secret, index) for index, secret in enumerate(_listed(secrets))]
    entries = [_standard_entry(key, msg_id, timestamp, body) for key in keys]
    return {
        WEBHOOK_ID: msg_id,
        WEBHOOK_TIMESTAMP: _wire_timestamp(timestamp),
        WEBHOOK_SIGNATURE: " ".join(entries),
    }


def verify(
    secrets: Sequence[str],
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
    *,
    tolerance: timedelta = DEFAULT_TOLERANCE,
) -> Verified:
    """Accept a Standard Webhooks delivery, or raise `SignatureRefused`.

    `body` is the request body exactly as received: re-serialised JSON would not match.
    """
    _check_aware(now)
    keys = [_whsec_key(secret, index) for index, secret in enumerate(_listed(secrets))]
    fields = _lowered(headers)
    msg_id = _required(fields, WEBHOOK_ID)
    timestamp = _required(fields, WEBHOOK_TIMESTAMP)
    signatures = _required(fields, WEBHOOK_SIGNATURE)
    _check_id(msg_id, WEBHOOK_ID, dot_allowed=False)
    sent = _within_tolerance(_timestamp(timestamp, WEBHOOK_TIMESTAMP), now, tolerance)
    candidates = [_standard_candidate(entry) for entry in signatures.split(" ")]
    content = _standard_content(msg_id, timestamp, body)
    return _verified(keys, content, candidates, msg_id, sent)


def _standard_entry(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    _check_id(msg_id, WEBHOOK_ID, dot_allowed=False)
    digest = hmac.digest(key, _standard_content(msg_id, _wire_timestamp(timestamp), body), "sha256")
    return "v1," + base64.b64encode(digest).decode("ascii")


def _standard_content(msg_id: str, timestamp: str, body: bytes) -> bytes:
    # A "." in the id would make "{id}.{timestamp}.{body}" parse two ways; `_check_id` forbids it.
    return f"{msg_id}.{timestamp}.".encode() + body


def _standard_candidate(entry: str) -> bytes | None:
    """The signature bytes of a `v1,<base64>` entry; None for an entry to skip.

    The list is space-delimited (spec, "Webhook headers"): runs of spaces leave empty entries,
    and a tab or a space inside an entry makes it unreadable; both are skipped, not refused,
    as are entries of other versions.
    """
    version, _, encoded = entry.partition(",")
    if version != "v1":
        return None
    try:
        return base64.b64decode(encoded, validate=True)
    except binascii.Error:
        return None


def _whsec_key(secret: str, index: int) -> bytes:
    size = f"{MIN_KEY_BYTES}-{MAX_KEY_BYTES} bytes"
    problem = f"secret {index + 1} is not {SECRET_PREFIX} followed by base64 of {size}"
    if not secret.startswith(SECRET_PREFIX):
        raise SignatureRefused("malformed_secret", problem)
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        # Providers hand out keys with and without the trailing padding; both name the same key.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        raise SignatureRefused("malformed_secret", problem) from None
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise SignatureRefused("malformed_secret", problem)
    return key


# Payrail


def sign_payrail(secrets: Sequence[str], timestamp: int, body: bytes) -> str:
    """The `X-Payrail-Signature` value: the timestamp and one `v1=` per current secret."""
    keys = [_payrail_key(secret, index) for index, secret in enumerate(_listed(secrets))]
    wire = _wire_timestamp(timestamp)
    content = _payrail_content(wire, body)
    entries = [f"v1={hmac.digest(key, content, 'sha256').hex()}" for key in keys]
    return ",".join([f"t={wire}", *entries])


def verify_payrail(
    secrets: Sequence[str],
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
    *,
    event_id: str,
    tolerance: timedelta = DEFAULT_TOLERANCE,
) -> Verified:
    """Accept a Payrail delivery, or raise `SignatureRefused`.

    `event_id` is the body's `event_id` field: the signature covers it as part of the body.
    """
    _check_aware(now)
    keys = [_payrail_key(secret, index) for index, secret in enumerate(_listed(secrets))]
    value = _required(_lowered(headers), PAYRAIL_SIGNATURE)
    _check_id(event_id, "event_id", dot_allowed=True)
    timestamps: list[str] = []
    candidates: list[bytes | None] = []
    for item in value.split(","):
        key, _, field = item.strip(_OWS).partition("=")
        if key == "t":
            timestamps.append(field)
        elif key == "v1":
            candidates.append(_payrail_candidate(field))
    if len(timestamps) != 1:
        # None, or two: which one would the signature have covered?
        raise SignatureRefused("malformed_timestamp", f"{PAYRAIL_SIGNATURE} needs exactly one t=")
    sent = _within_tolerance(_timestamp(timestamps[0], PAYRAIL_SIGNATURE), now, tolerance)
    content = _payrail_content(timestamps[0], body)
    return _verified(keys, content, candidates, event_id, sent)


def _payrail_content(timestamp: str, body: bytes) -> bytes:
    return f"{timestamp}.".encode() + body


def _payrail_candidate(field: str) -> bytes | None:
    if len(field) != 2 * hashlib.sha256().digest_size or not set(field) <= _HEX_DIGITS:
        return None
    return bytes.fromhex(field)


def _payrail_key(secret: str, index: int) -> bytes:
    key = secret.encode()
    if len(key) < MIN_KEY_BYTES:
        raise SignatureRefused(
            "malformed_secret", f"secret {index + 1} is shorter than {MIN_KEY_BYTES} bytes"
        )
    return key


# Shared by both schemes


def _verified(
    keys: Sequence[bytes],
    content: bytes,
    candidates: Sequence[bytes | None],
    message_id: str,
    sent: datetime,
) -> Verified:
    listed = [candidate for candidate in candidates if candidate is not None]
    for index, key in enumerate(keys):
        expected = hmac.digest(key, content, "sha256")
        if any(hmac.compare_digest(expected, candidate) for candidate in listed):
            return Verified(message_id=message_id, timestamp=sent, secret_index=index)
    raise SignatureRefused("no_valid_signature", "no signature matches a configured secret")


def _check_aware(now: datetime) -> None:
    # A naive `now` would be read as local time and shift the window by the server's offset.
    if now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")


def _within_tolerance(timestamp: int, now: datetime, tolerance: timedelta) -> datetime:
    sent = _EPOCH + timedelta(seconds=timestamp)
    age = now - sent
    limit = f"at most {tolerance // _SECOND} s is accepted"
    if age > tolerance:
        raise SignatureRefused(
            "timestamp_too_old", f"the webhook was sent {age // _SECOND} s ago; {limit}"
        )
    if -age > tolerance:
        raise SignatureRefused(
            "timestamp_in_future", f"the webhook is dated {-age // _SECOND} s ahead; {limit}"
        )
    return sent


def _timestamp(text: str, where: str) -> int:
    """Unix seconds written plainly: no sign, no fraction, no exponent, no leading zero.

    One spelling per instant, so the signed text and the value we check are the same thing.
    """
    canonical = text.isascii() and text.isdigit() and (text == "0" or not text.startswith("0"))
    if not canonical or len(text) > MAX_TIMESTAMP_DIGITS:
        raise SignatureRefused("malformed_timestamp", f"{where} must be Unix seconds")
    return int(text)


def _wire_timestamp(timestamp: int) -> str:
    if isinstance(timestamp, bool) or not 0 <= timestamp < 10**MAX_TIMESTAMP_DIGITS:
        raise SignatureRefused("malformed_timestamp", "a timestamp must be Unix seconds")
    return str(timestamp)


def _check_id(value: str, name: str, *, dot_allowed: bool) -> None:
    # Visible ASCII only: the id travels in a header or a log line and keys the replay store.
    visible = value.isascii() and value.isprintable() and " " not in value
    if not (visible and 0 < len(value) <= MAX_ID_CHARS) or (not dot_allowed and "." in value):
        dots = "" if dot_allowed else " without '.'"
        raise SignatureRefused(
            "malformed_id", f"{name} must be 1-{MAX_ID_CHARS} visible ASCII characters{dots}"
        )


def _listed(secrets: Sequence[str]) -> Sequence[str]:
    # A lone string is a Sequence[str] too: each character would be taken for a secret.
    if isinstance(secrets, str):
        raise TypeError("secrets must be a sequence of secrets, not one string")
    if not secrets:
        raise SignatureRefused("malformed_secret", "no secret is configured")
    return secrets


def _lowered(headers: Mapping[str, str]) -> dict[str, str]:
    # Header names are case-insensitive; a plain dict from a test or a queue is not.
    return {name.lower(): value for name, value in headers.items()}


def _required(fields: Mapping[str, str], name: str) -> str:
    value = fields.get(name.lower(), "").strip(_OWS)
    if not value:
        raise SignatureRefused("missing_header", f"the {name} header is required")
    return value
