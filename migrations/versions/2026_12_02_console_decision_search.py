"""The console's searches walk an index: decisions by action and refusals, newest first; the
console's own events in the journal, newest first.

- `ix_policy_decisions_action_decided_at` (action, decided_at, id): a search by action (or by
  rule: a rule governs one action) reads that action's decisions newest first from the page's
  (decided_at, id) cursor. Some actions are rare among the stakes (a payout, a reveal), so
  walking the time index and skipping the others would read most of the window.
- `ix_policy_decisions_refused_decided_at` (decided_at, id) WHERE effect = 'deny': the
  refusals newest first, for a search by outcome, by a refusal's reason or by a deny rule.
  Refusals are a few in a hundred decisions, so the index costs nothing to allowed stakes.
- `ix_journal_events_event_id` (event, id) in place of `ix_journal_events_event` (event): the
  console's activity page reads each console event newest first, a page of each, instead of
  every console event ever written. It serves `event = ...` as the old one did, so the
  journal keeps one index on its event name.

Migrations run in one transaction, so these are plain CREATE INDEX, which blocks writes to the
table while it builds. On a large live database, build them beforehand with
`CREATE INDEX CONCURRENTLY IF NOT EXISTS ...` (same names and columns): this migration then
finds them and only drops the journal's old index.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_policy_decisions_action_decided_at",
        "policy_decisions",
        ["action", "decided_at", "id"],
        if_not_exists=True,
    )
    op.create_index(
        "ix_policy_decisions_refused_decided_at",
        "policy_decisions",
        ["decided_at", "id"],
        postgresql_where=sa.text("effect = 'deny'"),
        if_not_exists=True,
    )
    op.create_index(
        "ix_journal_events_event_id", "journal_events", ["event", "id"], if_not_exists=True
    )
    op.drop_index("ix_journal_events_event", table_name="journal_events")


def downgrade() -> None:
    op.create_index("ix_journal_events_event", "journal_events", ["event"])
    op.drop_index("ix_journal_events_event_id", table_name="journal_events")
    op.drop_index("ix_policy_decisions_refused_decided_at", table_name="policy_decisions")
    op.drop_index("ix_policy_decisions_action_decided_at", table_name="policy_decisions")
