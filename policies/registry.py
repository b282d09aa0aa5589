"""Which ruleset decides where: activation (journaled), and the engine for a jurisdiction.

A version is registered by activating it for a jurisdiction (or "*"), with the content hash of
its files at that moment. From then on the files must still hash the same, or the engine
refuses to load them (`RulesetTampered`): a ruleset cannot change under a decision that cites it.
"""

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from core import journal, sql
from core.errors import InvalidRequest, NotFound
from core.journal import EventContext
from core.uow import UnitOfWork
from policies import ruleset
from policies.engine import Engine

CONSOLE = "console"  # the scope of the officers' console's rulesets
_COUNTRY = re.compile(r"[A-Z]{2}")

# (root, version, hash): a ruleset's content is immutable, so its engine is built once per
# process; files changed afterwards are refused by the next process that loads them.
_ENGINES: dict[tuple[Path, str, str], Engine] = {}


@dataclass(frozen=True)
class Activation:
    jurisdiction: str
    version: str
    content_hash: str
    activated_at: datetime


def engine_for(version: str, content_hash: str, *, root: Path = ruleset.RULESETS) -> Engine:
    """The engine of `version`, whose files must still hash to `content_hash`."""
    key = (root.resolve(), version, content_hash)
    if key not in _ENGINES:
        _ENGINES[key] = Engine(ruleset.load(root / version, expected_hash=content_hash))
    return _ENGINES[key]


async def activate(
    uow: UnitOfWork,
    *,
    version: str,
    jurisdiction: str,
    actor: str,
    reason: str,
    ctx: EventContext,
    root: Path = ruleset.RULESETS,
) -> Activation:
    if version not in ruleset.available(root):
        raise NotFound("unknown_ruleset", f"no ruleset {version!r}", version=version)
    if jurisdiction not in ("*", CONSOLE) and not _COUNTRY.fullmatch(jurisdiction):
        raise InvalidRequest("invalid_jurisdiction", "a jurisdiction is XX, * or console")
    loaded = ruleset.load(root / version)
    if (loaded.jurisdiction == CONSOLE) != (jurisdiction == CONSOLE):
        raise InvalidRequest(
            "ruleset_scope_mismatch",
            f"{version} is a {'console' if loaded.jurisdiction == CONSOLE else 'money'} ruleset:"
            f" it cannot decide for {jurisdiction}",
            version=version,
            jurisdiction=jurisdiction,
        )
    await sql.run(
        uow,
        "INSERT INTO policy_activations (jurisdiction, version, content_hash, activated_at,"
        " activated_by, reason) VALUES (%(j)s, %(v)s, %(h)s, %(now)s, %(by)s, %(why)s)",
        {
            "j": jurisdiction,
            "v": version,
            "h": loaded.content_hash,
            "now": uow.now,
            "by": actor,
            "why": reason,
        },
    )
    await journal.record(
        uow,
        "policy.activated",
        ctx=ctx,
        data={
            "jurisdiction": jurisdiction,
            "version": version,
            "content_hash": loaded.content_hash,
            "actor": actor,
            "reason": reason,
        },
    )
    return Activation(jurisdiction, version, loaded.content_hash, uow.now)


async def active(uow: UnitOfWork, jurisdiction: str) -> Activation:
    """The jurisdiction's newest activation, else the newest for "*" (the console's never
    falls back: "*" holds money rulesets)."""
    row = await sql.one(
        uow,
        "SELECT jurisdiction, version, content_hash, activated_at FROM policy_activations"
        " WHERE jurisdiction = %(j)s OR (%(j)s <> 'console' AND jurisdiction = '*')"
        " ORDER BY jurisdiction = '*', id DESC LIMIT 1",
        {"j": jurisdiction},
    )
    if row is None:
        raise NotFound(
            "no_active_policy",
            f"no ruleset is active for {jurisdiction}",
            jurisdiction=jurisdiction,
        )
    return Activation(**row)
