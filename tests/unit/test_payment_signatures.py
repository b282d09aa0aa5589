import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from typing import get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.payments.signatures import (
    DEFAULT_TOLERANCE,
    PAYRAIL_SIGNATURE,
    REASONS,
    WEBHOOK_ID,
    WEBHOOK_SIGNATURE,
    WEBHOOK_TIMESTAMP,
    Reason,
    SignatureRefused,
    Verified,
    sign,
    sign_payrail,
    verify,
    verify_payrail,
    webhook_headers,
)

# The test vector of the Standard Webhooks reference libraries, the same in each of them:
# https://github.com/standard-webhooks/standard-webhooks/blob/main/libraries/python/tests/test_webhooks.py
# (test_sign_function) and .../libraries/go/webhook_test.go (TestWebhookSign); checked once more
# with `openssl dgst -sha256 -mac HMAC -binary | base64`. OLJ1OA= is their near-miss forgery.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
SPEC_FORGERY = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="
SPEC_HEADERS = {
    WEBHOOK_ID: SPEC_ID,
    WEBHOOK_TIMESTAMP: str(SPEC_TIMESTAMP),
    WEBHOOK_SIGNATURE: SPEC_SIGNATURE,
}

# Payrail is our own contract, so its vector was made outside this code, with
# `printf '%s' "$T.$BODY" | openssl dgst -sha256 -hmac "$PAYRAIL_SECRET"`.
PAYRAIL_SECRET = "payrail-test-secret-0123456789abcdef"
PAYRAIL_BODY = (
    b'{"event_id":"evt_7Hq2","type":"deposit.confirmed","amount":"25.00","currency":"EUR"}'
)
PAYRAIL_HEX = "7a5e1c2a5b690fcd748b3bfb1570d3646ed004a6399f9f9d186e9bb904abd4eb"
PAYRAIL_HEADER = f"t={SPEC_TIMESTAMP},v1={PAYRAIL_HEX}"

T = SPEC_TIMESTAMP
NOW = datetime.fromtimestamp(T, UTC)
OLD_SECRET = "whsec_" + base64.b64encode(b"o" * 32).decode()
NEW_SECRET = "whsec_" + base64.b64encode(b"n" * 32).decode()
OTHER_PAYRAIL_SECRET = "payrail-next-secret-abcdefghijklmnop"
VISIBLE_ASCII = "".join(chr(c) for c in range(0x21, 0x7F))


def at(offset_s: int) -> datetime:
    return NOW + timedelta(seconds=offset_s)


def refused(reason: Reason, call: object, *args: object, **kwargs: object) -> SignatureRefused:
    """Run `call`, expect a refusal for `reason`, and check it leaks nothing it was given."""
    assert callable(call)
    with pytest.raises(SignatureRefused) as caught:
        call(*args, **kwargs)
    error = caught.value
    assert error.reason == reason
    shown = f"{error} {error.message} {error!r} {error.args}"
    for secret in (SPEC_SECRET, OLD_SECRET, NEW_SECRET, PAYRAIL_SECRET, OTHER_PAYRAIL_SECRET):
        assert secret.removeprefix("whsec_") not in shown
    for secret_part in ("MfKQ9r8G", "payrail-test", "payrail-next"):
        assert secret_part not in shown
    for signature in ("g0hM9SsE", PAYRAIL_HEX[:12]):
        assert signature not in shown
    for body_part in ("2432232314", "evt_7Hq2", "deposit.confirmed", "25.00"):
        assert body_part not in shown
    return error


# The spec's vector and plain round trips


def test_the_reference_vector_signs_byte_for_byte() -> None:
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


def test_the_reference_vector_verifies_with_its_id_and_timestamp() -> None:
    assert verify([SPEC_SECRET], SPEC_HEADERS, SPEC_BODY, NOW) == Verified(
        message_id=SPEC_ID, timestamp=NOW, secret_index=0
    )


def test_the_reference_near_miss_forgery_is_refused() -> None:
    headers = {**SPEC_HEADERS, WEBHOOK_SIGNATURE: SPEC_FORGERY}
    refused("no_valid_signature", verify, [SPEC_SECRET], headers, SPEC_BODY, NOW)


def test_the_payrail_vector_signs_and_verifies() -> None:
    assert sign_payrail([PAYRAIL_SECRET], T, PAYRAIL_BODY) == PAYRAIL_HEADER
    headers = {PAYRAIL_SIGNATURE: PAYRAIL_HEADER}
    verified = verify_payrail([PAYRAIL_SECRET], headers, PAYRAIL_BODY, NOW, event_id="evt_7Hq2")
    assert verified == Verified(message_id="evt_7Hq2", timestamp=NOW, secret_index=0)


def test_webhook_headers_round_trip_and_name_the_message() -> None:
    headers = webhook_headers([NEW_SECRET], "msg_1", T, b"{}")
    assert headers[WEBHOOK_ID] == "msg_1"
    assert headers[WEBHOOK_TIMESTAMP] == str(T)
    assert verify([NEW_SECRET], headers, b"{}", NOW).message_id == "msg_1"


def test_header_names_are_case_insensitive() -> None:
    headers = {name.title(): value for name, value in SPEC_HEADERS.items()}
    assert verify([SPEC_SECRET], headers, SPEC_BODY, NOW).message_id == SPEC_ID
    payrail = {PAYRAIL_SIGNATURE.lower(): PAYRAIL_HEADER}
    verify_payrail([PAYRAIL_SECRET], payrail, PAYRAIL_BODY, NOW, event_id="evt_7Hq2")


def test_a_secret_with_or_without_base64_padding_is_the_same_key() -> None:
    padded = "whsec_" + base64.b64encode(b"k" * 25).decode()
    assert padded.endswith("=")
    unpadded = padded.rstrip("=")
    assert sign(padded, "msg_1", T, b"x") == sign(unpadded, "msg_1", T, b"x")


def test_timestamp_zero_is_a_plain_timestamp() -> None:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    headers = webhook_headers([NEW_SECRET], "msg_1", 0, b"x")
    assert verify([NEW_SECRET], headers, b"x", epoch).timestamp == epoch


# The tolerance window


@pytest.mark.parametrize("offset", [-300, -1, 0, 1, 300])
def test_a_timestamp_within_300_s_either_way_is_accepted(offset: int) -> None:
    assert verify([SPEC_SECRET], SPEC_HEADERS, SPEC_BODY, at(offset)).timestamp == NOW
    headers = {PAYRAIL_SIGNATURE: PAYRAIL_HEADER}
    verify_payrail([PAYRAIL_SECRET], headers, PAYRAIL_BODY, at(offset), event_id="evt_7Hq2")


def test_a_timestamp_301_s_old_is_refused_as_too_old() -> None:
    error = refused("timestamp_too_old", verify, [SPEC_SECRET], SPEC_HEADERS, SPEC_BODY, at(301))
    assert "301 s ago" in error.message
    headers = {PAYRAIL_SIGNATURE: PAYRAIL_HEADER}
    refused(
        "timestamp_too_old",
        verify_payrail,
        [PAYRAIL_SECRET],
        headers,
        PAYRAIL_BODY,
        at(301),
        event_id="evt_7Hq2",
    )


def test_a_timestamp_301_s_ahead_is_refused_as_in_the_future() -> None:
    error = refused("timestamp_in_future", verify, [SPEC_SECRET], SPEC_HEADERS, SPEC_BODY, at(-301))
    assert "301 s ahead" in error.message
    headers = {PAYRAIL_SIGNATURE: PAYRAIL_HEADER}
    refused(
        "timestamp_in_future",
        verify_payrail,
        [PAYRAIL_SECRET],
        headers,
        PAYRAIL_BODY,
        at(-301),
        event_id="evt_7Hq2",
    )


def test_the_window_is_exact_not_rounded_to_the_second() -> None:
    just_over = at(300) + timedelta(microseconds=1)
    refused("timestamp_too_old", verify, [SPEC_SECRET], SPEC_HEADERS, SPEC_BODY, just_over)


def test_the_tolerance_is_configurable() -> None:
    narrow = timedelta(seconds=10)
    verify([SPEC_SECRET], SPEC_HEADERS, SPEC_BODY, at(10), tolerance=narrow)
    refused(
        "timestamp_too_old",
        verify,
        [SPEC_SECRET],
        SPEC_HEADERS,
        SPEC_BODY,
        at(11),
        tolerance=narrow,
    )
    wide = timedelta(seconds=600)
    verify([SPEC_SECRET], SPEC_HEADERS, SPEC_BODY, at(-301), tolerance=wide)
    assert timedelta(seconds=300) == DEFAULT_TOLERANCE


def test_the_timestamp_is_checked_before_the_signature() -> None:
    # An old delivery is refused for its age even with a good signature: replays are cut off.
    headers = webhook_headers([NEW_SECRET], "msg_1", T - 3600, b"x")
    refused("timestamp_too_old", verify, [NEW_SECRET], headers, b"x", NOW)


# Rotation


def test_during_a_rotation_the_old_and_the_new_secret_are_both_accepted() -> None:
    rotating = [NEW_SECRET, OLD_SECRET]
    from_old = webhook_headers([OLD_SECRET], "msg_1", T, b"x")
    from_new = webhook_headers([NEW_SECRET], "msg_1", T, b"x")
    assert verify(rotating, from_old, b"x", NOW).secret_index == 1
    assert verify(rotating, from_new, b"x", NOW).secret_index == 0


def test_once_the_old_secret_is_removed_its_signatures_are_refused() -> None:
    from_old = webhook_headers([OLD_SECRET], "msg_1", T, b"x")
    refused("no_valid_signature", verify, [NEW_SECRET], from_old, b"x", NOW)


def test_a_sender_rotating_signs_with_both_and_either_receiver_accepts() -> None:
    both = webhook_headers([OLD_SECRET, NEW_SECRET], "msg_1", T, b"x")
    assert len(both[WEBHOOK_SIGNATURE].split(" ")) == 2
    verify([OLD_SECRET], both, b"x", NOW)
    verify([NEW_SECRET], both, b"x", NOW)


def test_payrail_rotation_follows_the_same_rules() -> None:
    rotating = [OTHER_PAYRAIL_SECRET, PAYRAIL_SECRET]
    from_old = {PAYRAIL_SIGNATURE: sign_payrail([PAYRAIL_SECRET], T, b"x")}
    assert verify_payrail(rotating, from_old, b"x", NOW, event_id="e").secret_index == 1
    refused(
        "no_valid_signature",
        verify_payrail,
        [OTHER_PAYRAIL_SECRET],
        from_old,
        b"x",
        NOW,
        event_id="e",
    )
    both = {PAYRAIL_SIGNATURE: sign_payrail([PAYRAIL_SECRET, OTHER_PAYRAIL_SECRET], T, b"x")}
    assert both[PAYRAIL_SIGNATURE].count(",v1=") == 2
    assert verify_payrail([OTHER_PAYRAIL_SECRET], both, b"x", NOW, event_id="e").secret_index == 0


# Tampering


def test_a_body_with_any_one_byte_changed_is_refused() -> None:
    for index in range(len(SPEC_BODY)):
        tampered = bytearray(SPEC_BODY)
        tampered[index] ^= 0x01
        refused("no_valid_signature", verify, [SPEC_SECRET], SPEC_HEADERS, bytes(tampered), NOW)
    payrail = {PAYRAIL_SIGNATURE: PAYRAIL_HEADER}
    for index in range(len(PAYRAIL_BODY)):
        tampered = bytearray(PAYRAIL_BODY)
        tampered[index] ^= 0x01
        refused(
            "no_valid_signature",
            verify_payrail,
            [PAYRAIL_SECRET],
            payrail,
            bytes(tampered),
            NOW,
            event_id="evt_7Hq2",
        )


def test_a_changed_id_or_timestamp_is_refused() -> None:
    other_id = {**SPEC_HEADERS, WEBHOOK_ID: SPEC_ID + "x"}
    refused("no_valid_signature", verify, [SPEC_SECRET], other_id, SPEC_BODY, NOW)
    other_time = {**SPEC_HEADERS, WEBHOOK_TIMESTAMP: str(T + 1)}
    refused("no_valid_signature", verify, [SPEC_SECRET], other_time, SPEC_BODY, NOW)
    payrail = {PAYRAIL_SIGNATURE: f"t={T + 1},v1={PAYRAIL_HEX}"}
    refused(
        "no_valid_signature",
        verify_payrail,
        [PAYRAIL_SECRET],
        payrail,
        PAYRAIL_BODY,
        NOW,
        event_id="evt_7Hq2",
    )


def test_only_the_second_of_several_signatures_valid_is_accepted() -> None:
    headers = {**SPEC_HEADERS, WEBHOOK_SIGNATURE: f"{SPEC_FORGERY} {SPEC_SIGNATURE}"}
    assert verify([SPEC_SECRET], headers, SPEC_BODY, NOW).message_id == SPEC_ID
    forged_hex = "0" * 64
    payrail = {PAYRAIL_SIGNATURE: f"t={T},v1={forged_hex},v1={PAYRAIL_HEX}"}
    verify_payrail([PAYRAIL_SECRET], payrail, PAYRAIL_BODY, NOW, event_id="evt_7Hq2")


def test_entries_of_unknown_versions_are_ignored() -> None:
    digest = SPEC_SIGNATURE.removeprefix("v1,")
    skipped = f"v1a,{digest} v2,{digest} v0,!!! {SPEC_SIGNATURE}"
    headers = {**SPEC_HEADERS, WEBHOOK_SIGNATURE: skipped}
    verify([SPEC_SECRET], headers, SPEC_BODY, NOW)
    # Ignored, not trusted: the right digest under another version does not count.
    only_other = {**SPEC_HEADERS, WEBHOOK_SIGNATURE: f"v1a,{digest} v2,{digest}"}
    refused("no_valid_signature", verify, [SPEC_SECRET], only_other, SPEC_BODY, NOW)
    payrail = {PAYRAIL_SIGNATURE: f"t={T},v0={PAYRAIL_HEX},v2={PAYRAIL_HEX},x=1"}
    refused(
        "no_valid_signature",
        verify_payrail,
        [PAYRAIL_SECRET],
        payrail,
        PAYRAIL_BODY,
        NOW,
        event_id="evt_7Hq2",
    )


def test_unreadable_entries_are_skipped_not_fatal() -> None:
    entries = f"v1,!!notbase64!! v1 v1,g0hM v1,{'A' * 44} nocomma {SPEC_SIGNATURE}"
    headers = {**SPEC_HEADERS, WEBHOOK_SIGNATURE: entries}
    verify([SPEC_SECRET], headers, SPEC_BODY, NOW)
    payrail = {PAYRAIL_SIGNATURE: f"t={T},v1=zz,v1,junk,v1={PAYRAIL_HEX[:10]},v1={PAYRAIL_HEX}"}
    verify_payrail([PAYRAIL_SECRET], payrail, PAYRAIL_BODY, NOW, event_id="evt_7Hq2")


def test_a_signature_with_a_stray_character_is_not_read_leniently() -> None:
    digest = SPEC_SIGNATURE.removeprefix("v1,")
    for stray in (f"v1,{digest[:10]}*{digest[10:]}", f"v1,{digest[:10]}\n{digest[10:]}"):
        headers = {**SPEC_HEADERS, WEBHOOK_SIGNATURE: stray}
        refused("no_valid_signature", verify, [SPEC_SECRET], headers, SPEC_BODY, NOW)


def test_payrail_hex_is_lowercase_as_its_contract_says() -> None:
    payrail = {PAYRAIL_SIGNATURE: f"t={T},v1={PAYRAIL_HEX.upper()}"}
    refused(
        "no_valid_signature",
        verify_payrail,
        [PAYRAIL_SECRET],
        payrail,
        PAYRAIL_BODY,
        NOW,
        event_id="evt_7Hq2",
    )


# Whitespace: the spec's list is space-delimited; HTTP trims optional whitespace around values


def test_whitespace_around_header_values_is_trimmed() -> None:
    headers = {name: f" \t{value}\t " for name, value in SPEC_HEADERS.items()}
    assert verify([SPEC_SECRET], headers, SPEC_BODY, NOW).message_id == SPEC_ID


def test_runs_of_spaces_between_entries_are_one_delimiter() -> None:
    headers = {**SPEC_HEADERS, WEBHOOK_SIGNATURE: f"{SPEC_FORGERY}   {SPEC_SIGNATURE}  "}
    verify([SPEC_SECRET], headers, SPEC_BODY, NOW)


def test_a_tab_is_not_a_delimiter_and_a_space_inside_an_entry_breaks_it() -> None:
    tabbed = {**SPEC_HEADERS, WEBHOOK_SIGNATURE: f"{SPEC_FORGERY}\t{SPEC_SIGNATURE}"}
    refused("no_valid_signature", verify, [SPEC_SECRET], tabbed, SPEC_BODY, NOW)
    split = SPEC_SIGNATURE.replace(",", ", ")
    spaced = {**SPEC_HEADERS, WEBHOOK_SIGNATURE: split}
    refused("no_valid_signature", verify, [SPEC_SECRET], spaced, SPEC_BODY, NOW)


def test_payrail_items_may_have_spaces_after_the_commas() -> None:
    payrail = {PAYRAIL_SIGNATURE: f" t={T}, v1={'0' * 64} ,\tv1={PAYRAIL_HEX} "}
    verify_payrail([PAYRAIL_SECRET], payrail, PAYRAIL_BODY, NOW, event_id="evt_7Hq2")


# Every refusal reason


@pytest.mark.parametrize("name", [WEBHOOK_ID, WEBHOOK_TIMESTAMP, WEBHOOK_SIGNATURE])
@pytest.mark.parametrize("value", [None, "", " \t "])
def test_a_missing_or_empty_header_is_refused(name: str, value: str | None) -> None:
    headers = {key: val for key, val in SPEC_HEADERS.items() if key != name}
    if value is not None:
        headers[name] = value
    error = refused("missing_header", verify, [SPEC_SECRET], headers, SPEC_BODY, NOW)
    assert name in error.message


def test_a_missing_payrail_header_is_refused() -> None:
    refused(
        "missing_header",
        verify_payrail,
        [PAYRAIL_SECRET],
        {WEBHOOK_SIGNATURE: PAYRAIL_HEADER},
        PAYRAIL_BODY,
        NOW,
        event_id="evt_7Hq2",
    )


@pytest.mark.parametrize(
    "timestamp",
    [
        "hello",
        "1614265330.0",
        "1614265330.5",
        "-1614265330",
        "+1614265330",
        "1.6e9",
        "01614265330",
        "1614265330 1614265330",
        "0x6037a0f2",
        "\N{ARABIC-INDIC DIGIT ONE}\N{ARABIC-INDIC DIGIT TWO}",
        "9" * 12,
    ],
)
def test_a_timestamp_not_plain_unix_seconds_is_refused(timestamp: str) -> None:
    headers = {**SPEC_HEADERS, WEBHOOK_TIMESTAMP: timestamp}
    refused("malformed_timestamp", verify, [SPEC_SECRET], headers, SPEC_BODY, NOW)
    payrail = {PAYRAIL_SIGNATURE: f"t={timestamp},v1={PAYRAIL_HEX}"}
    refused(
        "malformed_timestamp",
        verify_payrail,
        [PAYRAIL_SECRET],
        payrail,
        PAYRAIL_BODY,
        NOW,
        event_id="evt_7Hq2",
    )


@pytest.mark.parametrize(
    "header",
    [f"v1={PAYRAIL_HEX}", f"t={T},t={T},v1={PAYRAIL_HEX}", f"t={T - 1},v1={PAYRAIL_HEX},t={T}"],
)
def test_a_payrail_header_without_exactly_one_t_is_refused(header: str) -> None:
    refused(
        "malformed_timestamp",
        verify_payrail,
        [PAYRAIL_SECRET],
        {PAYRAIL_SIGNATURE: header},
        PAYRAIL_BODY,
        NOW,
        event_id="evt_7Hq2",
    )


def test_a_header_with_no_valid_signature_is_refused() -> None:
    for entries in ("v1a,abc", SPEC_FORGERY, "v1,"):
        headers = {**SPEC_HEADERS, WEBHOOK_SIGNATURE: entries}
        refused("no_valid_signature", verify, [SPEC_SECRET], headers, SPEC_BODY, NOW)
    refused(
        "no_valid_signature",
        verify_payrail,
        [PAYRAIL_SECRET],
        {PAYRAIL_SIGNATURE: f"t={T}"},
        PAYRAIL_BODY,
        NOW,
        event_id="evt_7Hq2",
    )


@pytest.mark.parametrize(
    "secret",
    [
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",  # no whsec_ prefix
        "whsec_",
        "whsec_MfKQ9r8G!!!!TwjUPD8ILPZIo2LaLaSw",
        "whsec_MfKQ9r8GKYqr*TwjUPD8ILPZIo2LaLaSw",  # the right key with one stray character
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwA",  # 33 characters: no base64 text is that long
        "whsec_" + base64.b64encode(b"s" * 23).decode(),  # below the spec's 24 bytes
        "whsec_" + base64.b64encode(b"s" * 65).decode(),  # above its 64
        "whsec_" + base64.urlsafe_b64encode(b"\xfb" * 30).decode(),  # URL-safe alphabet
    ],
)
def test_a_malformed_secret_is_refused_wherever_it_stands(secret: str) -> None:
    error = refused("malformed_secret", verify, [SPEC_SECRET, secret], SPEC_HEADERS, SPEC_BODY, NOW)
    assert "secret 2" in error.message
    if secret.removeprefix("whsec_"):
        assert secret.removeprefix("whsec_") not in error.message
    refused("malformed_secret", sign, secret, SPEC_ID, T, SPEC_BODY)
    error = refused("malformed_secret", webhook_headers, [SPEC_SECRET, secret], SPEC_ID, T, b"")
    assert "secret 2" in error.message


def test_a_short_payrail_secret_and_no_secret_at_all_are_refused() -> None:
    payrail = {PAYRAIL_SIGNATURE: PAYRAIL_HEADER}
    refused(
        "malformed_secret",
        verify_payrail,
        ["short-secret"],
        payrail,
        PAYRAIL_BODY,
        NOW,
        event_id="evt_7Hq2",
    )
    refused("malformed_secret", verify_payrail, [], payrail, PAYRAIL_BODY, NOW, event_id="evt_7Hq2")
    refused("malformed_secret", verify, [], SPEC_HEADERS, SPEC_BODY, NOW)
    refused("malformed_secret", sign_payrail, ["short-secret"], T, PAYRAIL_BODY)


def test_a_secret_problem_is_reported_before_anything_about_the_request() -> None:
    # Configuration errors must not hide behind whichever request arrives first.
    refused("malformed_secret", verify, ["whsec_"], {}, b"", NOW)


@pytest.mark.parametrize(
    "msg_id",
    ["msg.1", "msg 1", "msg\x001", "msg\N{EURO SIGN}", "m" * 257],
)
def test_a_malformed_message_id_is_refused(msg_id: str) -> None:
    headers = {**SPEC_HEADERS, WEBHOOK_ID: msg_id}
    refused("malformed_id", verify, [SPEC_SECRET], headers, SPEC_BODY, NOW)
    refused("malformed_id", sign, SPEC_SECRET, msg_id, T, SPEC_BODY)


@pytest.mark.parametrize("event_id", ["", "evt 1", "evt\n1", "e" * 257])
def test_a_malformed_payrail_event_id_is_refused(event_id: str) -> None:
    refused(
        "malformed_id",
        verify_payrail,
        [PAYRAIL_SECRET],
        {PAYRAIL_SIGNATURE: PAYRAIL_HEADER},
        PAYRAIL_BODY,
        NOW,
        event_id=event_id,
    )


def test_a_payrail_event_id_may_hold_a_dot_the_body_delimits_nothing() -> None:
    headers = {PAYRAIL_SIGNATURE: sign_payrail([PAYRAIL_SECRET], T, b"{}")}
    verify_payrail([PAYRAIL_SECRET], headers, b"{}", NOW, event_id="evt.2026.1")


def test_a_dot_in_the_id_would_let_a_signature_be_read_two_ways() -> None:
    # Why "." is refused: id "a" at T with body "7.x" signs the same bytes as id "a.T" at 7.
    key = base64.b64decode(NEW_SECRET.removeprefix("whsec_"))
    digest = hmac.digest(key, f"a.{T}.7.x".encode(), hashlib.sha256)
    entry = "v1," + base64.b64encode(digest).decode()
    assert sign(NEW_SECRET, "a", T, b"7.x") == entry
    shifted = {WEBHOOK_ID: f"a.{T}", WEBHOOK_TIMESTAMP: "7", WEBHOOK_SIGNATURE: entry}
    refused("malformed_id", verify, [NEW_SECRET], shifted, b"x", at(-T + 7))


def test_the_reason_codes_are_the_documented_set() -> None:
    assert (
        set(get_args(Reason))
        == REASONS
        == {
            "missing_header",
            "malformed_id",
            "malformed_timestamp",
            "timestamp_too_old",
            "timestamp_in_future",
            "no_valid_signature",
            "malformed_secret",
        }
    )
    with pytest.raises(ValueError, match="unknown refusal reason"):
        SignatureRefused("bad_vibes", "no")  # type: ignore[arg-type]


# Programming errors are not refusals


def test_one_string_in_place_of_a_list_of_secrets_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="not one string"):
        verify(SPEC_SECRET, SPEC_HEADERS, SPEC_BODY, NOW)


def test_a_naive_now_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        verify([SPEC_SECRET], SPEC_HEADERS, SPEC_BODY, NOW.replace(tzinfo=None))
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_payrail([PAYRAIL_SECRET], {}, b"", NOW.replace(tzinfo=None), event_id="e")


@pytest.mark.parametrize("timestamp", [-1, 10**11, True])
def test_sign_refuses_a_timestamp_that_is_not_unix_seconds(timestamp: int) -> None:
    refused("malformed_timestamp", sign, SPEC_SECRET, SPEC_ID, timestamp, SPEC_BODY)
    refused("malformed_timestamp", sign_payrail, [PAYRAIL_SECRET], timestamp, SPEC_BODY)


# Properties

ids = st.text(alphabet=VISIBLE_ASCII.replace(".", ""), min_size=1, max_size=256)
timestamps = st.integers(min_value=0, max_value=10**11 - 1)
skews = st.integers(min_value=-300, max_value=300)


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=2048), msg_id=ids, timestamp=timestamps, skew=skews)
def test_any_body_and_id_round_trip(body: bytes, msg_id: str, timestamp: int, skew: int) -> None:
    headers = webhook_headers([OLD_SECRET, NEW_SECRET], msg_id, timestamp, body)
    sent = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=timestamp)
    now = sent + timedelta(seconds=skew)
    assert verify([NEW_SECRET], headers, body, now) == Verified(msg_id, sent, 0)
    payrail = {PAYRAIL_SIGNATURE: sign_payrail([PAYRAIL_SECRET], timestamp, body)}
    event = verify_payrail([PAYRAIL_SECRET], payrail, body, now, event_id=msg_id)
    assert event == Verified(msg_id, sent, 0)


@settings(max_examples=200, deadline=None)
@given(body=st.binary(min_size=1, max_size=512), msg_id=ids, data=st.data())
def test_any_one_byte_change_of_any_body_is_refused(
    body: bytes, msg_id: str, data: st.DataObject
) -> None:
    index = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
    flip = data.draw(st.integers(min_value=1, max_value=255))
    tampered = bytearray(body)
    tampered[index] ^= flip
    headers = webhook_headers([NEW_SECRET], msg_id, T, body)
    refused("no_valid_signature", verify, [NEW_SECRET], headers, bytes(tampered), NOW)
    payrail = {PAYRAIL_SIGNATURE: sign_payrail([PAYRAIL_SECRET], T, body)}
    refused(
        "no_valid_signature",
        verify_payrail,
        [PAYRAIL_SECRET],
        payrail,
        bytes(tampered),
        NOW,
        event_id=msg_id,
    )


@settings(max_examples=100, deadline=None)
@given(prefix=ids, suffix=ids)
def test_any_id_with_a_dot_is_refused_by_sign_and_verify(prefix: str, suffix: str) -> None:
    msg_id = f"{prefix[:127]}.{suffix[:128]}"
    refused("malformed_id", sign, NEW_SECRET, msg_id, T, b"x")
    headers = {WEBHOOK_ID: msg_id, WEBHOOK_TIMESTAMP: str(T), WEBHOOK_SIGNATURE: "v1,AAAA"}
    refused("malformed_id", verify, [NEW_SECRET], headers, b"x", NOW)
