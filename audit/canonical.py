"""RFC 8785 canonical JSON: exact always, fast for the documents the journal writes.

`rfc8785.dumps` is the reference but pure Python (about 0.3 ms for an event envelope). For a
value without a float, without an integer beyond 2**53 and whose serialized form is ASCII,
orjson's sorted compact output is byte for byte the RFC 8785 form: the same escapes (short
forms, else lower-case \\u00xx, nothing else escaped), and ASCII keys sort the same by UTF-16
code unit as by code point (non-ASCII keys may not: U+1F600 sorts before U+FF61 in UTF-16).
Anything else takes the reference path. tests/unit/test_canonical.py holds the
two paths to each other.
"""

from typing import TYPE_CHECKING, Any

import orjson
import rfc8785

if TYPE_CHECKING:
    from collections.abc import Iterable

_SAFE_INTEGER = 2**53 - 1


def _plain(container: dict[str, Any] | list[Any]) -> bool:
    """No float anywhere inside, and every integer one that a JSON number holds exactly."""
    items: Iterable[Any] = container.values() if isinstance(container, dict) else container
    for item in items:
        kind = type(item)
        if kind is str or item is None or kind is bool:
            continue
        if kind is int:
            if -_SAFE_INTEGER <= item <= _SAFE_INTEGER:
                continue
            return False
        if (kind is dict or kind is list) and _plain(item):
            continue
        return False
    return True


def canonical(document: str | bytes) -> bytes:
    """The RFC 8785 bytes of the JSON `document`; ValueError if it has none."""
    return canonical_value(orjson.loads(document))


def canonical_value(value: Any) -> bytes:  # noqa: ANN401 - any parsed JSON value
    """The RFC 8785 bytes of a parsed JSON value."""
    if type(value) in {dict, list}:
        fast = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        if fast.isascii() and _plain(value):
            return fast
    return rfc8785.dumps(value)


def is_canonical(entry: bytes) -> bool:
    try:
        return canonical(entry) == entry
    except (ValueError, TypeError, UnicodeError):
        return False
