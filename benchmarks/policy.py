"""`python -m benchmarks.policy`: policy decision latency, partitioned engine against one enforcer.

Writes a 500-rule ruleset to a temporary directory: 10 actions x 5 jurisdictions, 10 rules for
each pair, every rule's condition pinning `r.sub.jurisdiction == 'XX'` as a top-level `&&` term
(9 denies over flags, age and limits, and 1 allow). `Engine` then builds one pycasbin enforcer
per (action, jurisdiction), so a decision evaluates 10 rules; `NaiveEngine` evaluates all 500
in one enforcer. Both decide the same random requests (flags rarely set, so most requests are
allowed, the case in which pycasbin must evaluate every rule); their decisions are checked
equal, and the p50/p99 of `decide()` replace the policy section of docs/benchmarks.md.
`--print-only` prints the table without touching the document.
"""

import json
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.wallet import machine, write_doc
from policies import ruleset
from policies.engine import Decision, Engine, NaiveEngine

BEGIN, END = "<!-- bench-policy:begin -->", "<!-- bench-policy:end -->"
ACTIONS = tuple(f"zone{n}.action" for n in range(10))
JURISDICTIONS = ("MT", "DE", "SE", "GB", "ES")
ENGINE_SAMPLES, NAIVE_SAMPLES, WARMUP = 5000, 300, 50
TARGET_P99_US, TARGET_RATIO = 500, 20
FACTS = {
    "jurisdiction": "str",
    "zone_off": "bool",
    "self_excluded": "bool",
    "timed_out": "bool",
    "kyc_verified": "bool",
    "age_years": "int",
    "stake_minor": "int",
    "balance_minor": "int",
    "wager_24h_minor": "int",
    "wager_limit_24h_minor": "int",
    "loss_24h_minor": "int",
    "loss_limit_24h_minor": "int",
}


def conditions(rng: random.Random) -> list[str]:
    """The 9 deny conditions of one (action, jurisdiction), thresholds varying per pair."""
    return [
        "r.sub.zone_off == True",
        f"r.sub.age_years < {rng.choice((18, 21))}",
        "r.sub.self_excluded == True",
        "r.sub.timed_out == True",
        f"r.sub.kyc_verified == False && r.sub.stake_minor > {rng.randrange(1_000, 5_000)}",
        f"r.sub.stake_minor > {rng.randrange(50_000, 100_000)}",
        "r.sub.stake_minor > r.sub.balance_minor",
        *(
            f"r.sub.{kind}_limit_24h_minor != -1 && "
            f"r.sub.{kind}_24h_minor + r.sub.stake_minor > r.sub.{kind}_limit_24h_minor"
            for kind in ("wager", "loss")
        ),
    ]


def write_ruleset(directory: Path, rng: random.Random) -> None:
    shipped = ruleset.RULESETS / "2026-11-v1"
    directory.mkdir()
    for name in ("model.conf", "reasons.json"):
        (directory / name).write_bytes((shipped / name).read_bytes())
    manifest = {
        "version": directory.name,
        "jurisdiction": "*",
        "effective_from": "2026-11-25T00:00:00Z",
        "description": "Benchmark: 500 rules, 10 actions x 5 jurisdictions.",
        "facts": {name: {"type": kind, "doc": name} for name, kind in FACTS.items()},
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))
    lines = []
    for action in ACTIONS:
        for place in JURISDICTIONS:
            pin = f"r.sub.jurisdiction == '{place}'"
            prefix = f"{action.replace('.', '-')}-{place.lower()}"
            lines += [
                f"p, {prefix}-deny-{n}, {action}, {pin} && {cond}, deny, zone_off"
                for n, cond in enumerate(conditions(rng))
            ]
            lines.append(f"p, {prefix}-allow, {action}, {pin}, allow, ok")
    (directory / "policy.csv").write_text("\n".join(lines) + "\n")


def request(rng: random.Random) -> tuple[str, dict[str, object]]:
    def rarely() -> bool:
        return rng.random() < 0.02

    facts: dict[str, object] = {
        "jurisdiction": rng.choice(JURISDICTIONS),
        "zone_off": rarely(),
        "self_excluded": rarely(),
        "timed_out": rarely(),
        "kyc_verified": not rarely(),
        "age_years": rng.randrange(18, 80),
        "stake_minor": rng.randrange(10, 10_000),
        "balance_minor": rng.randrange(10_000, 1_000_000),
        "wager_24h_minor": rng.randrange(0, 100_000),
        "wager_limit_24h_minor": rng.choice((-1, 1_000_000)),
        "loss_24h_minor": rng.randrange(0, 50_000),
        "loss_limit_24h_minor": rng.choice((-1, 500_000)),
    }
    return rng.choice(ACTIONS), facts


def timed(engine: Engine | NaiveEngine, requests: list[tuple[str, dict[str, object]]]) -> list[int]:
    for action, facts in requests[:WARMUP]:
        engine.decide(action, facts)
    samples = []
    for action, facts in requests:
        start = time.perf_counter_ns()
        engine.decide(action, facts)
        samples.append(time.perf_counter_ns() - start)
    return samples


def pct_us(samples: list[int], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] / 1000


def verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def main() -> None:
    rng = random.Random(20261125)
    with tempfile.TemporaryDirectory() as tmp:
        write_ruleset(Path(tmp) / "bench-v1", rng)
        rules = ruleset.load(Path(tmp) / "bench-v1")
    engine, naive = Engine(rules), NaiveEngine(rules)
    requests = [request(rng) for _ in range(ENGINE_SAMPLES)]

    def outcome(decision: Decision) -> tuple[bool, tuple[str, ...], str]:
        return decision.allowed, decision.rule_ids, decision.reason_code

    for action, facts in requests[:NAIVE_SAMPLES]:
        if outcome(engine.decide(action, facts)) != outcome(naive.decide(action, facts)):
            sys.exit(f"bench: engines disagree on {action} {facts}")
    allowed = sum(engine.decide(action, facts).allowed for action, facts in requests)
    fast = timed(engine, requests)
    slow = timed(naive, requests[:NAIVE_SAMPLES])
    p50, p99 = pct_us(fast, 0.5), pct_us(fast, 0.99)
    n50, n99 = pct_us(slow, 0.5), pct_us(slow, 0.99)
    pairs = len(ACTIONS) * len(JURISDICTIONS)
    rows = "\n".join(
        f"| {name} | {enforcers} | {rules_each} | {len(samples)} | {pct_us(samples, 0.5):.0f} | "
        f"{pct_us(samples, 0.99):.0f} |"
        for name, enforcers, rules_each, samples in (
            ("`Engine` (per action x jurisdiction)", pairs, len(rules.rules) // pairs, fast),
            ("`NaiveEngine` (one enforcer)", 1, len(rules.rules), slow),
        )
    )
    section = f"""{BEGIN}
Last run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, `python -m benchmarks.policy`, on {machine()}
(shared with other work; single-threaded). {len(rules.rules)} rules over {len(ACTIONS)} actions x
{len(JURISDICTIONS)} jurisdictions; {len(requests)} random requests, {allowed / len(requests):.0%}
allowed; both engines gave the same decisions.

| engine | enforcers | rules evaluated per decision | decisions timed | p50 µs | p99 µs |
|---|---|---|---|---|---|
{rows}

`Engine` is {n50 / p50:.0f}x faster at p50 and {n99 / p99:.0f}x at p99. Targets (issue):
p99 ≤ {TARGET_P99_US} µs — {verdict(p99 <= TARGET_P99_US)} ({p99:.0f} µs); ≥ {TARGET_RATIO}x
the naive enforcer — {verdict(n99 / p99 >= TARGET_RATIO and n50 / p50 >= TARGET_RATIO)}.
{END}"""
    if "--print-only" not in sys.argv:
        write_doc(section, begin=BEGIN, end=END, heading="## Policy engine")
    print(section)


if __name__ == "__main__":
    main()
