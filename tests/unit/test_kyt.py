"""KYT deny list: canonical spellings both ways, a malformed or unreadable list never screens."""

from datetime import date
from pathlib import Path

import pytest

from compliance import kyt
from compliance.kyt import DenyListError

HEADER = "address,chain,reason,source,added\n"
EVM = "0x000000000000000000000000000000000000dEaD"  # EIP-55 spelling
BECH32 = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"  # BIP 173's vector
BECH32M = "bc1p5d7rjq7g6rdk2yhzks9smlaqtedr4dekq08ge8ztwac72sfr9rusxg3297"  # BIP 350's
BASE58 = "1BitcoinEaterAddressDontSendf59kuE"
TRON = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"


def deny_list(*lines: str) -> kyt.DenyList:
    return kyt.parse((HEADER + "".join(f"{line}\n" for line in lines)).encode(), source="t.csv")


def refused(text: str) -> str:
    with pytest.raises(DenyListError) as raised:
        kyt.parse(text.encode(), source="t.csv")
    return str(raised.value)


def test_a_listed_address_hits_with_its_entry() -> None:
    listing = deny_list(f"{BASE58},bitcoin,sanctions,OFAC SDN 2026-11-01,2026-11-02")
    hit = listing.screen(BASE58)
    assert hit == kyt.Hit(
        BASE58, "bitcoin", "sanctions", "OFAC SDN 2026-11-01", date(2026, 11, 2), line=2
    )
    assert listing.screen(TRON) is None
    assert listing.screen("") is None
    assert len(listing) == 1


def test_evm_addresses_match_whatever_their_case() -> None:
    checksummed = deny_list(f"{EVM},ethereum,scam,case 17,2026-11-01")
    assert checksummed.screen(EVM.lower()) is not None
    assert checksummed.screen(EVM.upper().replace("0X", "0x")) is not None
    lowercase = deny_list(f"{EVM.lower()},ethereum,scam,case 17,2026-11-01")
    hit = lowercase.screen(f"  {EVM}\n")
    assert hit is not None
    assert hit.address == EVM.lower()


def test_bech32_matches_in_either_case() -> None:
    listing = deny_list(
        f"{BECH32.upper()},bitcoin,hack,case 3,2026-11-01", f"{BECH32M},bitcoin,x,y,2026-11-01"
    )
    assert listing.screen(BECH32) is not None
    assert listing.screen(BECH32.upper()) is not None
    assert listing.screen(BECH32M.upper()) is not None


def test_base58_case_is_part_of_the_address() -> None:
    listing = deny_list(f"{BASE58},bitcoin,burn,example,2026-11-01", f"{TRON},tron,x,y,2026-11-01")
    assert listing.screen(BASE58) is not None
    assert listing.screen(BASE58.lower()) is None
    assert listing.screen(BASE58.upper()) is None
    assert listing.screen(TRON.swapcase()) is None
    assert kyt.canonical(BASE58) == BASE58


def test_comments_blank_lines_and_quoted_fields() -> None:
    listing = kyt.parse(
        (
            "# operator's list\n\n"
            + HEADER
            + "  # a comment after the header\n"
            + f'{TRON},tron,"sanctions, OFAC",SDN,2026-11-01\n'
        ).encode(),
        source="t.csv",
    )
    hit = listing.screen(TRON)
    assert hit is not None
    assert (hit.reason, hit.line) == ("sanctions, OFAC", 5)


def test_one_evm_address_listed_on_several_chains() -> None:
    listing = deny_list(f"{EVM},ethereum,scam,a,2026-11-01", f"{EVM.lower()},bsc,scam,b,2026-11-02")
    hit = listing.screen(EVM)
    assert hit is not None
    assert (hit.chain, hit.source) == ("ethereum", "a")


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (f"{BASE58},bitcoin,x,y", "4 fields, expected 5"),
        (f"{BASE58},bitcoin,x,y,2026-11-01,extra", "6 fields"),
        (f'{BASE58},bitcoin,"x,y,2026-11-01', "not a CSV line"),
        (f"{BASE58},Bitcoin,x,y,2026-11-01", "is not a lowercase name"),
        (f"{BASE58},bitcoin,,y,2026-11-01", "the reason is empty"),
        (f"{BASE58},bitcoin,x,,2026-11-01", "the source is empty"),
        (f"{BASE58},bitcoin,x,y,01/11/2026", "is not a date"),
        ("0x1234,ethereum,x,y,2026-11-01", "is not an EVM, bech32 or base58 address"),
        ("not an address!,other,x,y,2026-11-01", "is not an EVM, bech32 or base58 address"),
        (f"{BECH32[:-1]}5,bitcoin,x,y,2026-11-01", "fails its bech32 checksum"),
        ("bc1QW508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4,bitcoin,x,y,2026-11-01", "mixes upper"),
        (f"{BASE58[:-1]}F,bitcoin,x,y,2026-11-01", "fails its base58check checksum"),
        (f"{EVM},bitcoin,x,y,2026-11-01", "is an EVM address, not of this chain"),
        (f"{BECH32},litecoin,x,y,2026-11-01", "is bech32 of bc, not of this chain"),
        (f"{BASE58},ethereum,x,y,2026-11-01", "is base58, which this chain does not use"),
    ],
)
def test_a_malformed_line_is_named(line: str, why: str) -> None:
    message = refused(f"# list\n{HEADER}{line}\n")
    assert message.startswith("t.csv:3: ")
    assert why in message


def test_an_unknown_chain_takes_any_well_formed_address() -> None:
    listing = deny_list(f"{BASE58[:-1]}F,monero-ish,x,y,2026-11-01", f"{EVM},gnosis,x,y,2026-11-01")
    assert len(listing) == 2


def test_a_repeated_listing_names_both_lines() -> None:
    message = refused(
        f"{HEADER}{EVM},ethereum,a,b,2026-11-01\n{EVM.lower()},ethereum,c,d,2026-11-02\n"
    )
    assert message == f"t.csv:3: {EVM.lower()} is already listed on line 2"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty, not even the header"),
        ("# only comments\n\n", "empty, not even the header"),
        (f"{BASE58},bitcoin,x,y,2026-11-01\n", "t.csv:1: the header must be"),
        ("address,chain,reason,source\n", "t.csv:1: the header must be"),
    ],
)
def test_a_list_without_its_header_is_refused(text: str, why: str) -> None:
    assert why in refused(text)


def test_not_utf8_is_refused() -> None:
    with pytest.raises(DenyListError, match="not UTF-8"):
        kyt.parse(HEADER.encode() + b"\xff\n", source="t.csv")


def test_an_unreadable_list_fails_closed(tmp_path: Path) -> None:
    with pytest.raises(DenyListError, match="cannot read the KYT deny list"):
        kyt.load(tmp_path / "missing.csv")
    with pytest.raises(DenyListError, match="cannot read"):
        kyt.load(tmp_path)  # a directory


def test_the_hash_is_of_the_content(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text(f"{HEADER}{EVM},ethereum,a,b,2026-11-01\n")
    first = kyt.load(path)
    assert kyt.load(path).content_hash == first.content_hash
    assert first.content_hash.startswith("sha256:")
    path.write_text(f"{HEADER}{EVM},ethereum,a,b,2026-11-02\n")
    assert kyt.load(path).content_hash != first.content_hash
    path.write_text(f"# a new comment\n{HEADER}{EVM},ethereum,a,b,2026-11-01\n")
    assert kyt.load(path).content_hash != first.content_hash  # the file, byte for byte


def test_the_packaged_example_loads() -> None:
    listing = kyt.load()
    assert listing.source == str(kyt.DENY_LIST)
    assert listing.screen("0x000000000000000000000000000000000000DEAD") is not None
    assert listing.screen(BASE58) is not None
    assert listing.screen(BASE58.lower()) is None


def test_canonical_leaves_lookalikes_alone() -> None:
    assert kyt.canonical(BECH32.upper()) == BECH32
    assert kyt.canonical("BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T5") == (
        "BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T5"  # checksum fails: not bech32, left as is
    )
    assert kyt.canonical("0X" + "AB" * 20) == "0x" + "ab" * 20
