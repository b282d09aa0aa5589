"""A decision allows one movement of one amount: the ledger transaction that names it must move
exactly that, the way its action moves money.

Decisions now record the movement's amount in the wallet's currency. At commit (a deferred
trigger, ENABLE ALWAYS: postings are written after their transaction), the postings of a
player's ledger transaction on that player's own accounts must add up to what the decision's
action moves for that amount:

    bet.place  -A    bet.settle  +A    bet.rollback  +A
    adjustment.credit  +A    adjustment.debit  -A
    deposit  +A    withdrawal  0 (cash to held)    withdrawal.release  0 (held to cash)
    withdrawal.pay_out  -A (held to the provider)

So a movement cannot post another sum or the other direction than the one decided. Decisions
from before this migration carry no amount and are not checked. What remains possible: the
application role writing a decision by hand (the audit log has every `policy.decided`).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The sign of what each action moves on the player's own accounts (0: between them).
SIGNS = {
    "bet.place": -1,
    "bet.settle": 1,
    "bet.rollback": 1,
    "adjustment.credit": 1,
    "adjustment.debit": -1,
    "deposit": 1,
    "withdrawal": 0,
    "withdrawal.release": 0,
    "withdrawal.pay_out": -1,
}


def upgrade() -> None:
    op.add_column("policy_decisions", sa.Column("amount_minor", sa.BigInteger(), nullable=True))
    op.add_column("policy_decisions", sa.Column("amount_currency", sa.String(3), nullable=True))
    op.create_check_constraint(
        op.f("ck_policy_decisions_amount"),
        "policy_decisions",
        "(amount_minor IS NULL) = (amount_currency IS NULL) AND amount_minor >= 0",
    )
    signs = " ".join(f"WHEN '{action}' THEN {sign}" for action, sign in SIGNS.items())
    op.execute(f"""
CREATE FUNCTION pw_moves_what_was_decided() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    decided policy_decisions%ROWTYPE;
    moved bigint;
BEGIN
    SELECT * INTO decided FROM policy_decisions WHERE id = NEW.decision_id;
    IF decided.amount_minor IS NULL THEN  -- a decision from before amounts were recorded
        RETURN NULL;
    END IF;
    SELECT coalesce(sum(x.amount), 0) INTO moved
    FROM postings x JOIN accounts a ON a.id = x.account_id
    WHERE x.transaction_id = NEW.id AND a.player_id = NEW.player_id
      AND x.currency = decided.amount_currency;
    IF moved IS DISTINCT FROM
       (CASE decided.action {signs} END) * decided.amount_minor THEN
        RAISE EXCEPTION 'ledger transaction % moves % on player %''s accounts; decision % allowed % % of %',
            NEW.id, moved, NEW.player_id, decided.id, decided.action, decided.amount_minor,
            decided.amount_currency USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER ledger_transactions_move_what_was_decided
    AFTER INSERT ON ledger_transactions DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (NEW.player_id IS NOT NULL AND NEW.decision_id IS NOT NULL)
    EXECUTE FUNCTION pw_moves_what_was_decided();
ALTER TABLE ledger_transactions ENABLE ALWAYS TRIGGER ledger_transactions_move_what_was_decided;
""")


def downgrade() -> None:
    op.execute(
        "DROP TRIGGER ledger_transactions_move_what_was_decided ON ledger_transactions;"
        " DROP FUNCTION pw_moves_what_was_decided()"
    )
    op.drop_constraint(op.f("ck_policy_decisions_amount"), "policy_decisions")
    op.drop_column("policy_decisions", "amount_currency")
    op.drop_column("policy_decisions", "amount_minor")
