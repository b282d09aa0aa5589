"""Rulesets as registered, decided with, replayed and tried: the database side of the engine."""

import random
import shutil
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from core.uow import UnitOfWork
from policies import decisions, registry, ruleset
from tests import factories
from tests.conftest import CTX

SHIPPED = "2026-11-v1"
ALLOW_STAKES = "p, allow-bet-place, bet.place, True, allow, ok"


@pytest.fixture
def rulesets(tmp_path: Path) -> Path:
    """A private copy of the shipped rulesets, free to be edited by the test."""
    root = tmp_path / "rulesets"
    shutil.copytree(ruleset.RULESETS / SHIPPED, root / SHIPPED)
    return root


async def test_activation_is_journaled_and_the_jurisdiction_wins_over_the_default(
    uow: UnitOfWork, rulesets: Path
) -> None:
    everywhere = await registry.activate(
        uow, version=SHIPPED, jurisdiction="*", actor="cco", reason="launch", ctx=CTX, root=rulesets
    )
    assert everywhere.content_hash == ruleset.content_hash(rulesets / SHIPPED)
    assert (await registry.active(uow, "SE")).jurisdiction == "*"
    await registry.activate(
        uow, version=SHIPPED, jurisdiction="MT", actor="cco", reason="MGA", ctx=CTX, root=rulesets
    )
    assert (await registry.active(uow, "MT")).jurisdiction == "MT"
    events = (
        await uow.session.execute(
            sa.text(
                "SELECT envelope->'data' FROM journal_events WHERE event = 'policy.activated'"
                " ORDER BY id DESC LIMIT 2"
            )
        )
    ).scalars()
    assert [(e["jurisdiction"], e["reason"]) for e in events] == [("MT", "MGA"), ("*", "launch")]


async def test_a_ruleset_whose_files_changed_refuses_to_load(
    uow: UnitOfWork, rulesets: Path
) -> None:
    await registry.activate(
        uow, version=SHIPPED, jurisdiction="*", actor="cco", reason="x", ctx=CTX, root=rulesets
    )
    policy = rulesets / SHIPPED / "policy.csv"
    policy.write_text(policy.read_text().replace("deny", "allow", 1))
    with pytest.raises(ruleset.RulesetTampered, match=SHIPPED):
        await decisions.decide(
            uow,
            action="bet.place",
            jurisdiction="MT",
            facts=factories.policy_facts(),
            player_id=None,
            ctx=CTX,
            root=rulesets,
        )


async def test_stored_decisions_replay_the_same_after_a_newer_version(
    uow: UnitOfWork, rulesets: Path
) -> None:
    await registry.activate(
        uow, version=SHIPPED, jurisdiction="*", actor="cco", reason="x", ctx=CTX, root=rulesets
    )
    chance = random.Random(7)  # noqa: S311 - reproducible test data, not secrets
    taken = []
    for _ in range(120):
        facts = factories.policy_facts(
            self_excluded=chance.random() < 0.2,
            age_years=chance.choice([17, 18, 40]),
            stake_minor=chance.randrange(1, 5000),
            wager_24h_minor=chance.randrange(0, 10_000),
            wager_limit_24h_minor=chance.choice([-1, 5000, 10_000]),
            kyc_verified=chance.random() < 0.7,
            due_diligence_reached=chance.random() < 0.3,
        )
        action = chance.choice(["bet.place", "deposit", "withdrawal", "bet.settle"])
        taken.append(
            await decisions.decide(
                uow,
                action=action,
                jurisdiction="MT",
                facts=facts,
                player_id=uuid.uuid4(),
                ctx=CTX,
                root=rulesets,
            )
        )
    assert {t.decision.effect for t in taken} == {"allow", "deny"}
    # a stricter version: no stake is allowed any more
    strict = rulesets / "2026-12-strict"
    shutil.copytree(rulesets / SHIPPED, strict)
    manifest = strict / "manifest.json"
    manifest.write_text(manifest.read_text().replace(SHIPPED, "2026-12-strict"))
    policy = strict / "policy.csv"
    policy.write_text(
        policy.read_text().replace(ALLOW_STAKES, ALLOW_STAKES.replace("True", "False"))
    )
    await registry.activate(
        uow,
        version="2026-12-strict",
        jurisdiction="*",
        actor="cco",
        reason="y",
        ctx=CTX,
        root=rulesets,
    )
    for recorded in taken:
        again = await decisions.replay(uow, recorded.id, root=rulesets)
        assert again.same, (recorded, again)
        assert again.now.version == SHIPPED
    tried = await decisions.what_if(
        uow, version="2026-12-strict", since=uow.now - timedelta(minutes=1), root=rulesets
    )
    allowed_stakes = {
        t.id for t in taken if t.decision.action == "bet.place" and t.decision.allowed
    }
    ours = {t.id for t in taken}  # committed tests' decisions of the same minute are there too
    assert {c.id for c in tried.changed if c.id in ours} == allowed_stakes
    assert all(c.now.effect == "deny" for c in tried.changed if c.id in ours)
    assert [d for d, _ in tried.undecidable if d in ours] == []
    assert tried.tried >= len(taken)
