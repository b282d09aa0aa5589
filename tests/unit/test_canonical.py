"""The fast path of canonical JSON gives exactly the reference's bytes, or defers to it."""

import json

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.canonical import canonical, is_canonical

SAFE = 2**53 - 1
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-SAFE, max_value=SAFE)
    # Floats in [2**53, 1e21) print as integers too long to read back exactly: the reference
    # itself refuses its own output for them, so round trips cannot hold there.
    | st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not 2**53 <= abs(f) < 1e21)
    | st.text()
    | st.text(alphabet=st.characters(max_codepoint=127))
)
keys = st.text() | st.text(alphabet=st.characters(max_codepoint=127))
documents = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(keys, inner, max_size=5)
)


@settings(max_examples=500)
@given(value=documents)
def test_the_fast_path_writes_the_reference_bytes(value: object) -> None:
    text = json.dumps(value)  # ASCII, with \\u escapes for anything else
    raw = json.dumps(value, ensure_ascii=False)
    expected = rfc8785.dumps(value)
    assert canonical(text) == expected
    assert canonical(raw) == expected
    assert is_canonical(expected)


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ('{"b": 1, "a": "x"}', b'{"a":"x","b":1}'),
        ('{"amount": 1.0}', b'{"amount":1}'),  # a float: the reference writes it like ES6
        ('{"n": 1e21}', b'{"n":1e+21}'),
        (
            '{"\\u00e9": 1, "z": 2, "\\ud83d\\ude00": 3, "\\uff61": 4}',
            rfc8785.dumps(
                {
                    "é": 1,
                    "z": 2,
                    "\U0001f600": 3,
                    "\uff61": 4,
                }  # UTF-16 order: U+1F600 before U+FF61
            ),
        ),
        (
            '{"s": "\\u0000\\u001f\\u007f\\b\\t\\n\\f\\r\\"\\\\/\\u2028"}',
            rfc8785.dumps({"s": '\x00\x1f\x7f\b\t\n\f\r"\\/\u2028'}),
        ),
    ],
)
def test_known_answers(document: str, expected: bytes) -> None:
    assert canonical(document) == expected


@pytest.mark.parametrize(
    "entry",
    [
        b'{"b":1,"a":2}',  # keys out of order
        b'{"a": 1}',  # a space
        b'{"a":1.50}',  # not the shortest number
        b'{"a":"\\u00e9"}',  # an escape RFC 8785 does not write
        b'{"a":9007199254740993}',  # beyond what a JSON number holds exactly
        b'{"a":1',  # not JSON at all
        b"\xff",
    ],
)
def test_non_canonical_entries_are_recognised(entry: bytes) -> None:
    assert not is_canonical(entry)
