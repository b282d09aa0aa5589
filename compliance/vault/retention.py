"""How long AML record keeping holds a player's personal data back from erasure.

The hold runs for the jurisdiction's retention period (5 years unless configured) from the end
of the business relationship, which Pitwarden takes to be the player's last money movement
(or registration, if none): the ledger is where that relationship leaves its last trace.
"""

import uuid
from datetime import datetime

from core import sql
from core.errors import NotFound
from core.settings import Settings
from core.uow import UnitOfWork


def _add_years(moment: datetime, years: int) -> datetime:
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:  # 29 February, in a year that has none
        return moment.replace(year=moment.year + years, day=28)


async def held_until(
    uow: UnitOfWork, *, player_id: uuid.UUID, settings: Settings
) -> datetime | None:
    """When the hold ends (None: no hold configured for the player's jurisdiction)."""
    row = await sql.one(
        uow,
        "SELECT p.jurisdiction, coalesce((SELECT max(posted_at) FROM postings"
        " WHERE player_id = p.id), p.created_at) AS last_activity FROM players p"
        " WHERE p.id = %(p)s",
        {"p": player_id},
    )
    if row is None:
        raise NotFound("unknown_player", "no such player", player_id=str(player_id))
    years = settings.retention_years(row["jurisdiction"])
    return _add_years(row["last_activity"], years) if years else None
