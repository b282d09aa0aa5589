"""Know your transaction: crypto withdrawal addresses screened against the operator's deny list.

The list is a data file the operator maintains (`compliance/data/kyt_deny_list.csv`, or the file
named by PITWARDEN_KYT_DENY_LIST): one address a line, `address,chain,reason,source,added`,
blank lines and lines starting with '#' ignored. It is checked whole when loaded and refused
with the line at fault; there is no "empty because unreadable" list, so a broken file can never
screen an address as clean. Its sha256 travels with every decision it took part in.

Addresses are compared in a canonical form, because the same address has several spellings:

- EVM (0x + 40 hex digits): case only carries the EIP-55 checksum, so lowercase;
- bech32 and bech32m (bc1..., ltc1...): one case by definition (BIP 173), so lowercase;
- anything else (base58: legacy bitcoin 1.../3..., tron T...): case is part of the address,
  "1Bit..." and "1bit..." are different addresses, so unchanged.

A listed address must be a well-formed address of one of these forms, its checksum verified
where the form carries one we can check (bech32, and base58check on chains that use it): a typo
in the list would otherwise never match anything, silently letting the real address through.
(EIP-55, the checksum in an EVM address's case, needs Keccak-256, which the standard library
lacks; a mistyped EVM listing is caught only when it is not 40 hex digits.)
"""

import csv
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Literal

DENY_LIST = Path(__file__).parent / "data" / "kyt_deny_list.csv"
COLUMNS = ("address", "chain", "reason", "source", "added")

_EVM = re.compile(r"0x[0-9a-f]{40}\Z", re.IGNORECASE)
_CHAIN = re.compile(r"[a-z0-9][a-z0-9-]{0,31}\Z")
_BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_CONSTANTS = (1, 0x2BC830A3)  # bech32 (BIP 173), bech32m (BIP 350)
_BECH32_MAX = 90
_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_BASE58_LENGTH = range(25, 121)  # bitcoin's shortest address .. monero's integrated ones
_CHECKSUM = 4


@dataclass(frozen=True, slots=True)
class _Chain:
    """The address forms a chain we know uses, so a listing in another form is a typo."""

    evm: bool = False
    hrps: frozenset[str] = frozenset()  # bech32 human-readable parts
    base58check: bool = False


_EVM_CHAIN = _Chain(evm=True)
CHAINS: Mapping[str, _Chain] = MappingProxyType(
    {
        "bitcoin": _Chain(hrps=frozenset({"bc", "tb", "bcrt"}), base58check=True),
        "litecoin": _Chain(hrps=frozenset({"ltc", "tltc"}), base58check=True),
        "tron": _Chain(base58check=True),
        "ethereum": _EVM_CHAIN,
        "bsc": _EVM_CHAIN,
        "polygon": _EVM_CHAIN,
        "arbitrum": _EVM_CHAIN,
        "optimism": _EVM_CHAIN,
        "base": _EVM_CHAIN,
        "avalanche": _EVM_CHAIN,
    }
)


class DenyListError(ValueError):
    """The deny list cannot be used: unreadable or malformed. Screening must not go on without
    it (fail closed)."""


@dataclass(frozen=True, slots=True)
class Hit:
    """The list's entry for a screened address."""

    address: str  # canonical form
    chain: str
    reason: str
    source: str
    added: date
    line: int  # where in the list, for the officer who reads the decision


@dataclass(frozen=True, slots=True)
class DenyList:
    entries: Mapping[str, Hit]  # by canonical address
    content_hash: str  # "sha256:<hex>" of the file's bytes: recorded with every decision
    source: str  # where it was read from

    def screen(self, address: str) -> Hit | None:
        """The entry listing `address` in any of its spellings, or None when it is not listed."""
        return self.entries.get(canonical(address))

    def __len__(self) -> int:
        return len(self.entries)


def canonical(address: str) -> str:
    """The one spelling of an address that screening compares (rules in the module docstring).

    Any input is accepted: screening is not validation. A string that only looks like bech32
    stays as it is unless its checksum holds, so a base58 address is never lowercased by chance.
    """
    address = address.strip()
    if _EVM.match(address):
        return address.lower()
    lowered = address.lower()
    if _bech32_hrp(lowered) is not None:
        return lowered
    return address


def load(path: Path | None = None) -> DenyList:
    """Read and check the list at `path` (default: the packaged one); DenyListError if unusable.

    Not cached: the operator edits the file, and each decision records the hash of the list
    that actually screened it.
    """
    path = path or DENY_LIST
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DenyListError(f"{path}: cannot read the KYT deny list: {error.strerror}") from None
    return parse(data, source=str(path))


def parse(data: bytes, *, source: str) -> DenyList:
    """Check the whole list and index it by canonical address; DenyListError names the line."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DenyListError(f"{source}: not UTF-8 (byte {error.start})") from None
    entries: dict[str, Hit] = {}
    listed: dict[tuple[str, str], int] = {}  # (address, chain) -> line
    header_seen = False
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{source}:{number}"
        try:
            fields = [field.strip() for field in next(csv.reader([line], strict=True))]
        except csv.Error as error:
            raise DenyListError(f"{where}: not a CSV line ({error})") from None
        if not header_seen:
            if tuple(fields) != COLUMNS:
                raise DenyListError(f"{where}: the header must be {','.join(COLUMNS)}")
            header_seen = True
            continue
        hit = _entry(fields, number, where)
        first = listed.setdefault((hit.address, hit.chain), number)
        if first != number:
            raise DenyListError(f"{where}: {hit.address} is already listed on line {first}")
        # One EVM address is the same key on every EVM chain: listed for several, the first
        # listing answers, whichever chain the withdrawal names.
        entries.setdefault(hit.address, hit)
    if not header_seen:
        raise DenyListError(f"{source}: empty, not even the header {','.join(COLUMNS)}")
    return DenyList(MappingProxyType(entries), "sha256:" + hashlib.sha256(data).hexdigest(), source)


def _entry(fields: list[str], number: int, where: str) -> Hit:
    if len(fields) != len(COLUMNS):
        raise DenyListError(f"{where}: {len(fields)} fields, expected {len(COLUMNS)}")
    address, chain, reason, source, added = fields
    if not _CHAIN.match(chain):
        raise DenyListError(f"{where}: chain {chain!r} is not a lowercase name such as ethereum")
    problem = _address_problem(address, CHAINS.get(chain))
    if problem:
        raise DenyListError(f"{where}: {address!r} {problem}")
    if not reason:
        raise DenyListError(f"{where}: the reason is empty")
    if not source:
        raise DenyListError(f"{where}: the source is empty")
    try:
        added_on = date.fromisoformat(added)
    except ValueError:
        raise DenyListError(f"{where}: added {added!r} is not a date YYYY-MM-DD") from None
    return Hit(canonical(address), chain, reason, source, added_on, number)


def _address_problem(address: str, chain: _Chain | None) -> str | None:
    """Why `address` cannot be listed (for `chain` when we know it), or None."""
    try:
        form, hrp = _form(address)
    except ValueError as error:
        return str(error)
    if chain is None:
        return None
    if form == "evm":
        return None if chain.evm else "is an EVM address, not of this chain"
    if form == "bech32":
        return None if hrp in chain.hrps else f"is bech32 of {hrp}, not of this chain"
    if not chain.base58check:
        return "is base58, which this chain does not use"
    return None if _base58check(address) else "fails its base58check checksum"


def _form(address: str) -> tuple[Literal["evm", "bech32", "base58"], str]:
    """The address's form (and bech32's human-readable part); ValueError says why it has none."""
    if _EVM.match(address):
        return "evm", ""
    hrp = _bech32_hrp(address.lower())
    uniform = address in (address.lower(), address.upper())
    if hrp is not None:
        if not uniform:
            raise ValueError("mixes upper and lower case, which bech32 forbids")
        return "bech32", hrp
    if uniform and _looks_bech32(address.lower()):
        raise ValueError("fails its bech32 checksum")
    if not set(address) <= set(_BASE58) or len(address) not in _BASE58_LENGTH:
        raise ValueError("is not an EVM, bech32 or base58 address")
    return "base58", ""


def _looks_bech32(lowered: str) -> bool:
    hrp, separator, data = lowered.rpartition("1")
    return bool(
        separator
        and hrp
        and len(lowered) <= _BECH32_MAX
        and len(data) >= 6  # noqa: PLR2004 - the checksum's length
        and all(33 <= ord(c) <= 126 for c in hrp)  # noqa: PLR2004 - BIP 173's printable range
        and set(data) <= set(_BECH32_CHARSET)
    )


def _bech32_hrp(lowered: str) -> str | None:
    """The human-readable part of a lowercased bech32 or bech32m string whose checksum holds."""
    if not _looks_bech32(lowered):
        return None
    hrp, _, data = lowered.rpartition("1")
    values = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    values += [_BECH32_CHARSET.index(c) for c in data]
    return hrp if _bech32_polymod(values) in _BECH32_CONSTANTS else None


def _bech32_polymod(values: list[int]) -> int:
    generator = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    check = 1
    for value in values:
        top = check >> 25
        check = (check & 0x1FFFFFF) << 5 ^ value
        for i, g in enumerate(generator):
            check ^= g if (top >> i) & 1 else 0
    return check


def _base58check(address: str) -> bool:
    number = 0
    for c in address:
        number = number * 58 + _BASE58.index(c)
    zeros = len(address) - len(address.lstrip("1"))
    raw = b"\0" * zeros + number.to_bytes((number.bit_length() + 7) // 8, "big")
    payload, checksum = raw[:-_CHECKSUM], raw[-_CHECKSUM:]
    digest = hashlib.sha256(hashlib.sha256(payload).digest()).digest()
    return len(payload) > 0 and digest[:_CHECKSUM] == checksum
