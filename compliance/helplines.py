"""Help for players with gambling problems: organisations per country, from a data file the
operator maintains (`compliance/data/help_contacts.json`, checked against each organisation's
site before it goes live). A responsible-gambling denial carries the entries of the player's
country, or the international ones where the file has none."""

import json
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

HELP_CONTACTS = Path(__file__).parent / "data" / "help_contacts.json"


@dataclass(frozen=True)
class Contact:
    name: str
    url: str
    phone: str | None
    languages: tuple[str, ...]

    def as_json(self) -> dict[str, object]:
        return {**asdict(self), "languages": list(self.languages)}


@cache
def _countries(path: Path) -> dict[str, tuple[Contact, ...]]:
    raw = json.loads(path.read_text(encoding="utf-8"))["countries"]
    return {
        country: tuple(
            Contact(e["name"], e["url"], e.get("phone"), tuple(e.get("languages", ())))
            for e in entries
        )
        for country, entries in raw.items()
    }


def contacts_for(country: str, *, path: Path = HELP_CONTACTS) -> tuple[Contact, ...]:
    """The organisations for `country` (ISO 3166-1 alpha-2), else the international ones."""
    countries = _countries(path)
    return countries.get(country.upper()) or countries["*"]
