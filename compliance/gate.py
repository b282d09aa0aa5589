"""The gate: every money movement passes a stored, explainable policy decision.

`Gate` is the application's `core.guard.Guard`. The money core calls it under the player's
lock, right before posting; it gathers the facts (compliance.facts), asks the ruleset active for
the player's jurisdiction, and

- on allow, stores the decision in the same transaction and returns its id (the operation
  writes it into its journal event); when an override of an overturned appeal let it through
  (compliance.overrides), the use is recorded and journaled in the same transaction;
- on deny, raises `Refused` with the reason code, the human reason, the decision id, the rules
  and policy version, and for responsible-gambling reasons the help contacts of the player's
  country. Nothing moves; the decision's record rides along as a kept write, which the API
  stores after rolling the refused action back (app.api.idempotent), so a denial is stored and
  journaled too.

With no ruleset active, or a ruleset whose files no longer match their registered hash, nothing
moves (503): the gate fails closed.
"""

import uuid
from pathlib import Path

from compliance import facts, overrides
from compliance.ages import AgeSource
from compliance.helplines import contacts_for
from compliance.jurisdictions import Jurisdictions
from core.errors import InvalidRequest, Refused, Unavailable
from core.guard import Movement
from core.journal import EventContext
from core.uow import UnitOfWork
from policies import decisions, registry, ruleset
from policies.engine import InvalidFacts, UnknownAction

RESPONSIBLE_GAMBLING = "responsible_gambling"


class Gate:
    def __init__(
        self,
        *,
        ages: AgeSource,
        jurisdictions: Jurisdictions,
        kyt: facts.Screening,
        root: Path = ruleset.RULESETS,
    ) -> None:
        self.ages = ages
        self.jurisdictions = jurisdictions
        self.kyt = kyt
        self.root = root

    async def __call__(self, uow: UnitOfWork, movement: Movement, ctx: EventContext) -> uuid.UUID:
        row = await facts.read(uow, movement)
        version, content_hash, place = row["version"], row["content_hash"], row["jurisdiction"]
        if version is None or content_hash is None:
            raise Unavailable(
                "no_active_policy",
                f"no ruleset is active for {place}: money does not move without one",
                jurisdiction=place,
            )
        try:
            engine = registry.engine_for(version, content_hash, root=self.root)
        except ruleset.RulesetError as error:
            raise Unavailable("policy_unavailable", str(error), version=version) from None
        needed = engine.needs(movement.action)
        if facts.reads_due_diligence(needed) and len(row["linked_ids"]) > 1:
            # Linked players share one due-diligence total: decide their movements one at a
            # time, on a total read after the wait.
            await facts.lock_linked(uow, row["linked_ids"])
            row = await facts.read(uow, movement)
        try:
            sheet = await facts.complete(
                uow,
                movement,
                row,
                needed=needed,
                geo=ctx.geo,
                ages=self.ages,
                jurisdictions=self.jurisdictions,
                kyt=self.kyt,
            )
        except InvalidRequest as missing:  # no rate to EUR: the threshold cannot be checked
            raise Unavailable(missing.code, missing.message, **missing.details) from None
        try:
            recorded = decisions.evaluate(
                engine,
                action=movement.action,
                facts=sheet,
                player_id=movement.player_id,
                at=uow.now,
                amount=movement.amount,
            )
        except (InvalidFacts, UnknownAction) as error:  # a ruleset this gate cannot serve
            raise Unavailable("policy_unavailable", str(error), version=version) from None
        if recorded.decision.allowed:
            await decisions.store(uow, recorded, ctx)
            lifting = overrides.in_force(row)
            if lifting:  # which of them let this through, each use recorded and journaled
                used = overrides.used_by(engine, movement.action, sheet, lifting)
                await overrides.record_uses(
                    uow,
                    used=used,
                    decision_id=recorded.id,
                    player_id=movement.player_id,
                    ctx=ctx,
                )
            return recorded.id
        raise denial(recorded, country=place, ctx=ctx)


def denial(recorded: decisions.Recorded, *, country: str, ctx: EventContext) -> Refused:
    """The refusal a denied decision answers with; storing the record is its kept write."""
    decision = recorded.decision

    async def keep(uow: UnitOfWork) -> None:
        await decisions.store(uow, recorded, ctx)

    details: dict[str, object] = {
        "decision_id": str(recorded.id),
        "action": decision.action,
        "category": decision.category,
        "policy_version": decision.version,
        "rule_ids": list(decision.rule_ids),
    }
    if decision.category == RESPONSIBLE_GAMBLING:
        details["help"] = [contact.as_json() for contact in contacts_for(country)]
    # An operational stop (a kill-switch) lifts: the caller may retry the same request.
    transient = decision.category == "operations"
    return Refused(
        decision.reason_code, decision.reason, kept=(keep,), transient=transient, **details
    )
