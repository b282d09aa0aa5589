"""Running usage per player, kept by the database from the bets: the gate's facts in O(1);
and decision records carry their human reason.

Summing a player's bets for every decision grows with their history (measured: 1.3 ms of facts
at a handful of bets, 7.3 ms at 3,000). Two derived tables, written only by triggers on `bets`
(the application role may read them), make it constant:

- `player_usage_hourly`: per player and UTC hour of placement, wager (stakes) and loss
  (stakes minus payouts); a window is its full hours from here plus the partial first hour
  from `bets` itself, so windows stay exact to the microsecond.
- `player_turnover`: per player, everything staked since registration (due diligence).

A bet places once, settles or voids once, and never changes stake, placement time or player:
the same trigger refuses anything else, so the counters cannot drift from the bets. Existing
bets are counted in by the migration.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A decision record carries its human reason too, as worded by its ruleset, so the table
    # reads on its own (the text also follows from the pinned ruleset's reasons.json).
    op.add_column("policy_decisions", sa.Column("reason", sa.Text(), nullable=True))
    # Redundant beside (player_id, placed_at) from 0006, which serves every lookup by player:
    # one index less to write per bet.
    op.drop_index("ix_bets_player_id", table_name="bets")
    op.create_table(
        "player_usage_hourly",
        sa.Column("player_id", sa.Uuid(), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("wager", sa.BigInteger(), nullable=False),
        sa.Column("loss", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("wager >= 0", name=op.f("ck_player_usage_hourly_wager")),
        sa.ForeignKeyConstraint(
            ["player_id"], ["players.id"], name=op.f("fk_player_usage_hourly_player_id_players")
        ),
        sa.PrimaryKeyConstraint("player_id", "hour", name=op.f("pk_player_usage_hourly")),
    )
    op.create_table(
        "player_turnover",
        sa.Column("player_id", sa.Uuid(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("staked", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("staked >= 0", name=op.f("ck_player_turnover_staked")),
        sa.ForeignKeyConstraint(
            ["player_id"], ["players.id"], name=op.f("fk_player_turnover_player_id_players")
        ),
        sa.PrimaryKeyConstraint("player_id", name=op.f("pk_player_turnover")),
    )
    op.execute("""
CREATE FUNCTION pw_count_bet() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    d_wager bigint := 0;
    d_loss bigint := 0;
    d_staked bigint := 0;
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.status <> 'OPEN' THEN
            RAISE EXCEPTION 'a bet is placed OPEN' USING ERRCODE = 'check_violation';
        END IF;
        d_wager := NEW.stake; d_loss := NEW.stake; d_staked := NEW.stake;
    ELSE
        IF (NEW.player_id, NEW.stake, NEW.placed_at, NEW.currency)
           IS DISTINCT FROM (OLD.player_id, OLD.stake, OLD.placed_at, OLD.currency) THEN
            RAISE EXCEPTION 'bet %: player, stake, currency and placement never change', OLD.id
                USING ERRCODE = 'check_violation';
        END IF;
        IF NEW.status IS NOT DISTINCT FROM OLD.status
           AND NEW.payout IS NOT DISTINCT FROM OLD.payout THEN
            RETURN NULL;
        END IF;
        IF OLD.status <> 'OPEN' THEN
            RAISE EXCEPTION 'bet % is already %: it settles once', OLD.id, OLD.status
                USING ERRCODE = 'check_violation';
        END IF;
        IF NEW.status = 'VOID' THEN
            d_wager := -OLD.stake; d_loss := -OLD.stake; d_staked := -OLD.stake;
        ELSE
            d_loss := -coalesce(NEW.payout, 0);
        END IF;
    END IF;
    IF TG_OP = 'INSERT' THEN  -- counted in; the rows exist from the first stake on
        INSERT INTO player_usage_hourly AS h (player_id, hour, wager, loss)
        VALUES (NEW.player_id, date_trunc('hour', NEW.placed_at, 'UTC'), d_wager, d_loss)
        ON CONFLICT (player_id, hour)
        DO UPDATE SET wager = h.wager + EXCLUDED.wager, loss = h.loss + EXCLUDED.loss;
        INSERT INTO player_turnover AS t (player_id, currency, staked)
        VALUES (NEW.player_id, NEW.currency, d_staked)
        ON CONFLICT (player_id) DO UPDATE SET staked = t.staked + EXCLUDED.staked;
        RETURN NULL;
    END IF;
    UPDATE player_usage_hourly SET wager = player_usage_hourly.wager + d_wager,
        loss = player_usage_hourly.loss + d_loss
     WHERE player_id = NEW.player_id AND hour = date_trunc('hour', NEW.placed_at, 'UTC');
    IF NOT FOUND THEN
        RAISE EXCEPTION 'bet % was never counted', NEW.id USING ERRCODE = 'check_violation';
    END IF;
    UPDATE player_turnover SET staked = player_turnover.staked + d_staked
     WHERE player_id = NEW.player_id;
    RETURN NULL;
END $$;
CREATE TRIGGER bets_counted AFTER INSERT OR UPDATE ON bets
    FOR EACH ROW EXECUTE FUNCTION pw_count_bet();
ALTER TABLE bets ENABLE ALWAYS TRIGGER bets_counted;

INSERT INTO player_usage_hourly (player_id, hour, wager, loss)
SELECT player_id, date_trunc('hour', placed_at, 'UTC'), sum(stake),
       sum(stake - coalesce(payout, 0))
FROM bets WHERE status <> 'VOID' GROUP BY 1, 2;
INSERT INTO player_turnover (player_id, currency, staked)
SELECT player_id, min(currency), sum(stake) FROM bets WHERE status <> 'VOID' GROUP BY 1;

REVOKE ALL ON player_usage_hourly, player_turnover FROM PUBLIC;
GRANT SELECT ON player_usage_hourly, player_turnover TO pitwarden_app;
""")


def downgrade() -> None:
    op.drop_column("policy_decisions", "reason")
    op.create_index("ix_bets_player_id", "bets", ["player_id"])
    op.execute("DROP TRIGGER bets_counted ON bets")
    op.execute("DROP FUNCTION pw_count_bet()")
    op.drop_table("player_turnover")
    op.drop_table("player_usage_hourly")
