"""Per-jurisdiction settings: blocked or not, the due-diligence threshold, the amount from
which a withdrawal waits for an officer's approval, and the appeals' clock (how long a refusal
may be appealed, within how many days an appeal is acknowledged and resolved, and the ADR body
a player whose appeal is upheld may turn to).

A data file the operator maintains (`compliance/data/jurisdictions.json`, or the file named by
PITWARDEN_JURISDICTIONS_FILE): '*' gives the defaults, and an entry per ISO 3166-1 code
overrides any of them. The file is checked whole when it is loaded, so a typo stops the server
at start instead of silently letting a blocked country through.
"""

import hashlib
import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from core import journal, sql
from core.errors import InvalidRequest
from core.journal import EventContext
from core.money import parse_amount
from core.uow import UnitOfWork

JURISDICTIONS = Path(__file__).parent / "data" / "jurisdictions.json"
_CODE = re.compile(r"[A-Z]{2}\Z")
_KEYS = {
    "blocked",
    "due_diligence_threshold_eur",
    "withdrawal_review_threshold_eur",
    "appeal_window_days",
    "appeal_ack_days",
    "appeal_resolution_days",
    "adr_body",
}
# When the file's '*' does not say: a refusal may be appealed for 30 days; an appeal is
# acknowledged within 5 days and resolved within 8 weeks (the UKGC's complaints rule).
APPEAL_DEFAULTS = {"appeal_window_days": 30, "appeal_ack_days": 5, "appeal_resolution_days": 56}
MAX_APPEAL_DAYS = 366
MAX_ADR_CHARS = 500
# When the file's '*' does not name one: where a player whose appeal was upheld may turn next.
DEFAULT_ADR = (
    "The gambling regulator of your country, or an alternative dispute resolution body it approves"
)


class JurisdictionsError(ValueError):
    pass


@dataclass(frozen=True)
class Jurisdiction:
    blocked: bool
    due_diligence_threshold_eur_minor: int
    # A withdrawal of at least this much (in EUR at the rate in force) needs an officer.
    withdrawal_review_threshold_eur_minor: int
    appeal_window_days: int = APPEAL_DEFAULTS["appeal_window_days"]
    appeal_ack_days: int = APPEAL_DEFAULTS["appeal_ack_days"]
    appeal_resolution_days: int = APPEAL_DEFAULTS["appeal_resolution_days"]
    # Where a player whose appeal was upheld may take their complaint next (an approved
    # alternative dispute resolution body): given to the player with the answer.
    adr_body: str = DEFAULT_ADR


@dataclass(frozen=True)
class Jurisdictions:
    default: Jurisdiction
    overrides: dict[str, Jurisdiction]
    content_hash: str  # "sha256:<hex>" of the file: recorded with every decision

    def of(self, code: str) -> Jurisdiction:
        return self.overrides.get(code, self.default)


def _entry(code: str, raw: object, base: Jurisdiction | None) -> Jurisdiction:
    if not isinstance(raw, dict) or not set(raw) <= _KEYS:
        raise JurisdictionsError(f"{code}: an object with keys among {sorted(_KEYS)}")
    blocked = raw.get("blocked", base.blocked if base else None)
    if not isinstance(blocked, bool):
        raise JurisdictionsError(f"{code}: blocked must be true or false")
    due_diligence = _eur(
        code,
        raw,
        "due_diligence_threshold_eur",
        base.due_diligence_threshold_eur_minor if base else None,
    )
    review = _eur(
        code,
        raw,
        "withdrawal_review_threshold_eur",
        base.withdrawal_review_threshold_eur_minor if base else None,
    )
    days = {
        key: _days(code, raw, key, getattr(base, key) if base else APPEAL_DEFAULTS[key])
        for key in APPEAL_DEFAULTS
    }
    if days["appeal_ack_days"] > days["appeal_resolution_days"]:
        raise JurisdictionsError(f"{code}: appeal_ack_days is after appeal_resolution_days")
    adr = raw.get("adr_body", base.adr_body if base else DEFAULT_ADR)
    if not isinstance(adr, str) or not adr.strip() or len(adr) > MAX_ADR_CHARS:
        raise JurisdictionsError(f"{code}: adr_body names the ADR body in 1 to 500 characters")
    return Jurisdiction(blocked, due_diligence, review, **days, adr_body=adr.strip())


def _days(code: str, raw: dict[str, object], key: str, inherited: int) -> int:
    value = raw.get(key, inherited)
    if type(value) is not int or not 1 <= value <= MAX_APPEAL_DAYS:
        raise JurisdictionsError(f"{code}: {key} must be a whole number of days, 1 to 366")
    return value


def _eur(code: str, raw: dict[str, object], key: str, inherited: int | None) -> int:
    value = raw.get(key)
    if value is None:
        if inherited is None:
            raise JurisdictionsError(f"{code}: {key} is required")
        return inherited
    try:
        return parse_amount(str(value), "EUR").minor
    except InvalidRequest as error:
        raise JurisdictionsError(f"{code}: {key}: {error}") from None


@cache
def load(path: Path = JURISDICTIONS) -> Jurisdictions:
    data = path.read_bytes()
    raw = json.loads(data)
    if "*" not in raw:
        raise JurisdictionsError(f"{path}: the '*' defaults are missing")
    default = _entry("*", raw["*"], None)
    overrides = {}
    for code, entry in raw.items():
        if code in ("*", "_about"):
            continue
        if not _CODE.match(code):
            raise JurisdictionsError(f"{path}: {code!r} is not an ISO 3166-1 alpha-2 code")
        overrides[code] = _entry(code, entry, default)
    return Jurisdictions(default, overrides, "sha256:" + hashlib.sha256(data).hexdigest())


async def record_loaded(
    uow: UnitOfWork, settings: Jurisdictions, *, source: str, ctx: EventContext
) -> bool:
    """Journal the settings the gate now decides with, when they differ from the last recorded
    (`compliance.settings_loaded`, with the file's hash and where it came from): the file is the
    operator's, so its changes reach the audit log this way. True if an event was written."""
    last = await sql.scalar(
        uow,
        "SELECT envelope->'data'->>'content_hash' FROM journal_events"
        " WHERE event = 'compliance.settings_loaded' ORDER BY id DESC LIMIT 1",
        {},
    )
    if last == settings.content_hash:
        return False
    await journal.record(
        uow,
        "compliance.settings_loaded",
        ctx=ctx,
        data={
            "content_hash": settings.content_hash,
            "previous_hash": last,
            "source": source,
            "blocked": sorted(code for code, j in settings.overrides.items() if j.blocked),
        },
    )
    return True
