"""What the console offers an officer: a link for each page their role may open, as the newest
console ruleset on disk says. It only hides what would be refused: every page is still decided
(and recorded) by the active console ruleset when it is opened."""

import functools

from app.console import web
from policies import ruleset
from policies.engine import Engine, UnknownAction

LINKS = (
    ("/console", "Home", "console.home.view"),
    ("/console/appeals", "Appeals", "console.appeals.view"),
    ("/console/payments", "Payments", "console.payments.view"),
    ("/console/approvals", "Four-eyes", "console.approvals.view"),
    ("/console/kill-switches", "Kill-switches", "console.killswitches.view"),
    ("/console/decisions", "Decisions", "console.decisions.view"),
    ("/console/rulesets", "Rulesets", "console.rulesets.view"),
    ("/console/audit", "Audit log", "console.audit.view"),
    ("/console/activity", "Activity", "console.activity.view"),
    ("/console/officers", "Officers", "console.officers.manage"),
    ("/console/sessions", "My sessions", "console.sessions.own"),
    ("/console/security", "Security", "console.sessions.own"),
)


@functools.cache
def _engine() -> Engine:
    return Engine(ruleset.load(ruleset.RULESETS / ruleset.newest(console=True)))


@functools.cache
def may(role: str, action: str) -> bool:
    """Whether the role may, its second factor fresh (what the step-up rules then ask)."""
    try:
        facts = {"role": role, "second_factor_age_s": 0, "own_request": False}
        return _engine().decide(action, facts).allowed
    except UnknownAction:
        return False


def links(role: str) -> list[tuple[str, str]]:
    return [(href, label) for href, label, action in LINKS if may(role, action)]


web.templates.env.globals["console_links"] = links
web.templates.env.globals["console_may"] = may
