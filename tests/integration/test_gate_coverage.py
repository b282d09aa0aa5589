"""No route reaches a core money write without the gate.

Three views of one rule. In the source: every function that posts to the ledger for a player
takes a `Guard`, asks it unconditionally before posting, and posts the decision id the guard
returned. In the application: every mutating route is classified, as moving money or not, so a
new route cannot slip in unclassified. Through the API: each money route stores exactly one
decision per request, the ledger transaction and the journal event name it, and a denied
request moves nothing yet leaves its denial on record, answered alike under its key.
"""

import ast
import typing
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi.routing import iter_route_contexts

from app.client import PitwardenClient
from app.gating import Cashiered, Gated
from core.models import JournalEvent, LedgerTransaction
from core.uow import UnitOfWorkFactory
from policies.models import PolicyDecision
from tests import factories
from tests.conftest import ROOT, Api

# -- (a) the source: every ledger.post of a player's money is guarded -------------------------

PACKAGES = ("core", "compliance", "policies", "app", "reports", "audit")
LEDGER = "core.ledger"
# The functions that move a player's money today; a new one must join this list knowingly.
GUARDED_CALLERS = {
    "core.rounds.place_bet",
    "core.rounds.settle_bet",
    "core.rounds.rollback_bet",
    "core.wallets.adjust",
    "core.wallets.reverse_adjustment",
    "core.payments.service.open_withdrawal",
    "core.payments.service._move_held",
}
# Functions that post under a decision taken earlier and stored with what it allowed: a
# deposit is decided when it is initiated (payments.decision_id, unique) and credited when the
# provider confirms it. Each is listed with the attribute its decision id must come from.
PRE_DECIDED_CALLERS = {"core.payments.service._credit_deposit": "payment.decision_id"}
# Functions that post house-only transactions (no player_id): none exist yet. PostgreSQL lets
# such a transaction through without a decision, so each one must be listed here and reviewed.
HOUSE_ONLY_CALLERS: set[str] = set()

Function = ast.FunctionDef | ast.AsyncFunctionDef


def modules() -> Iterator[tuple[str, ast.Module]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            yield name, ast.parse(path.read_text(), filename=str(path))


def parents_of(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


@dataclass(frozen=True)
class Aliases:
    """The names under which a module imported core.ledger and core.ledger.post."""

    module: frozenset[str]
    function: frozenset[str]

    @classmethod
    def of(cls, name: str, tree: ast.Module) -> "Aliases":
        modules_as: set[str] = set()
        functions_as: set[str] = {"post"} if name == LEDGER else set()
        for statement in ast.walk(tree):
            if isinstance(statement, ast.ImportFrom) and statement.module == "core":
                modules_as |= {a.asname or a.name for a in statement.names if a.name == "ledger"}
            elif isinstance(statement, ast.ImportFrom) and statement.module == LEDGER:
                functions_as |= {a.asname or a.name for a in statement.names if a.name == "post"}
            elif isinstance(statement, ast.Import):
                modules_as |= {a.asname for a in statement.names if a.name == LEDGER and a.asname}
        return cls(frozenset(modules_as), frozenset(functions_as))

    def names_post(self, node: ast.AST) -> bool:
        if isinstance(node, ast.Name):
            return node.id in self.function
        if isinstance(node, ast.Attribute) and node.attr == "post":
            if isinstance(node.value, ast.Name):
                return node.value.id in self.module
            return ast.unparse(node.value) == LEDGER  # import core.ledger; core.ledger.post()
        return False


def enclosing(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> Function | None:
    while node in parents:
        node = parents[node]
        if isinstance(node, Function):
            return node
    return None


def guard_assignment(statement: ast.stmt) -> str | None:
    """`name = await guard(...)`: the name the decision id is bound to, else None."""
    match statement:
        case ast.Assign(
            targets=[ast.Name(id=name)],
            value=ast.Await(value=ast.Call(func=ast.Name(id="guard"))),
        ):
            return name
    return None


def guarded_before(call: ast.Call, parents: dict[ast.AST, ast.AST]) -> set[str]:
    """Names bound by `await guard(...)` in a statement that always runs before `call`: an
    earlier sibling of the call's statement or of any block that contains it."""
    bound: set[str] = set()
    node: ast.AST = call
    while node in parents and not isinstance(node, Function):
        parent = parents[node]
        for field in ("body", "orelse", "finalbody"):
            block = getattr(parent, field, None)
            if isinstance(block, list) and node in block:
                earlier = block[: block.index(node)]
                bound |= {name for s in earlier if (name := guard_assignment(s))}
        node = parent
    return bound


def assignments_to(function: Function, name: str) -> int:
    return sum(
        isinstance(target, ast.Name) and target.id == name
        for node in ast.walk(function)
        for target in (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AugAssign | ast.AnnAssign | ast.For | ast.NamedExpr)
            else []
        )
    )


@dataclass(frozen=True)
class PostSite:
    caller: str
    call: ast.Call
    function: Function
    parents: dict[ast.AST, ast.AST]


def post_sites() -> list[PostSite]:
    sites = []
    for module, tree in modules():
        aliases, parents = Aliases.of(module, tree), parents_of(tree)
        for node in ast.walk(tree):
            if not aliases.names_post(node):
                continue
            call, where = parents[node], f"{module}:{getattr(node, 'lineno', '?')}"
            # Only ever called, never handed around: a callback could post unguarded.
            assert isinstance(call, ast.Call), f"{where}: ledger.post used other than called"
            assert call.func is node, f"{where}: ledger.post passed as an argument"
            function = enclosing(call, parents)
            assert function is not None, f"{where}: ledger.post called at module level"
            sites.append(PostSite(f"{module}.{function.name}", call, function, parents))
    return sites


def names_a_player(call: ast.Call) -> bool:
    return any(k.arg == "player_id" for k in call.keywords)


def test_every_ledger_post_for_a_player_is_asked_of_the_guard_first() -> None:
    sites = post_sites()
    for site in sites:  # every argument named: a **splat could hide a player_id
        assert all(k.arg is not None for k in site.call.keywords), site.caller
    for_players = [s for s in sites if names_a_player(s.call)]
    house_only = {s.caller for s in sites if not names_a_player(s.call)}
    assert {s.caller for s in for_players} == GUARDED_CALLERS | set(PRE_DECIDED_CALLERS)
    assert len(for_players) == len(GUARDED_CALLERS) + len(PRE_DECIDED_CALLERS)  # one each
    assert house_only == HOUSE_ONLY_CALLERS

    for site in for_players:
        if site.caller in PRE_DECIDED_CALLERS:
            decision = next(k.value for k in site.call.keywords if k.arg == "decision_id")
            assert ast.unparse(decision) == PRE_DECIDED_CALLERS[site.caller], site.caller
            continue
        arguments = site.function.args
        parameters = arguments.posonlyargs + arguments.args + arguments.kwonlyargs
        guard = next((p for p in parameters if p.arg == "guard"), None)
        assert guard is not None, f"{site.caller} takes no guard"
        assert guard.annotation is not None
        assert ast.unparse(guard.annotation) == "Guard", site.caller
        assert guard in arguments.kwonlyargs, f"{site.caller}: guard is keyword-only"
        default = arguments.kw_defaults[arguments.kwonlyargs.index(guard)]
        assert default is None, f"{site.caller}: there is no default guard"
        assert assignments_to(site.function, "guard") == 0, f"{site.caller} rebinds its guard"

        decision = next((k.value for k in site.call.keywords if k.arg == "decision_id"), None)
        assert isinstance(decision, ast.Name), f"{site.caller} posts without decision_id="
        assert decision.id in guarded_before(site.call, site.parents), (
            f"{site.caller}: decision_id={decision.id} is not what `await guard(...)` returned"
            " in a statement that always runs before the posting"
        )
        assert assignments_to(site.function, decision.id) == 1, (
            f"{site.caller} rebinds {decision.id} after asking the guard"
        )


def test_the_source_check_sees_an_unguarded_posting() -> None:
    """The check above is not vacuous: the shapes it must refuse are refused."""
    unguarded = """
async def f(uow, *, guard: Guard):
    if uow:
        decision_id = await guard(uow, m, ctx)
    await ledger.post(uow, kind="stake", legs=[], ctx=ctx, player_id=p, decision_id=decision_id)
"""
    after = """
async def f(uow, *, guard: Guard):
    decision_id = None
    await ledger.post(uow, kind="stake", legs=[], ctx=ctx, player_id=p, decision_id=decision_id)
    decision_id = await guard(uow, m, ctx)
"""
    guarded = """
async def f(uow, *, guard: Guard):
    decision_id = await guard(uow, m, ctx)
    if uow:
        await ledger.post(uow, kind="stake", legs=[], ctx=ctx, player_id=p, decision_id=decision_id)
"""
    found = {}
    for name, source in {"unguarded": unguarded, "after": after, "guarded": guarded}.items():
        tree = ast.parse("from core import ledger\n" + source)
        aliases, parents = Aliases.of("example", tree), parents_of(tree)
        (call,) = [
            n for n in ast.walk(tree) if isinstance(n, ast.Call) and aliases.names_post(n.func)
        ]
        found[name] = guarded_before(call, parents)
    assert found == {"unguarded": set(), "after": set(), "guarded": {"decision_id"}}
    # However the ledger was imported, its post is recognised.
    for imported, called in [
        ("from core import ledger as books", "books.post"),
        ("import core.ledger", "core.ledger.post"),
        ("import core.ledger as books", "books.post"),
        ("from core.ledger import post as book", "book"),
    ]:
        tree = ast.parse(f"{imported}\n{called}(uow)\nother.post(uow)\npost(uow)")
        aliases = Aliases.of("example", tree)
        calls = [n.func for n in ast.walk(tree) if isinstance(n, ast.Call)]
        assert [ast.unparse(f) for f in calls if aliases.names_post(f)] == [called]


# -- (b) the application: every mutating route is classified ----------------------------------

MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
MONEY = {
    ("POST", "/v1/wallet/bet"),
    ("POST", "/v1/wallet/win"),
    ("POST", "/v1/wallet/rollback"),
    ("POST", "/v1/admin/adjustments"),
    ("POST", "/v1/admin/adjustments/{ledger_transaction_id}/reversal"),
}
# Payments move money through the cashier, which holds the application's gate (and moves it
# later too, on a webhook): tests/integration/test_payments.py follows their decisions.
PAYMENTS = {
    ("POST", "/v1/payments/deposits"),
    ("POST", "/v1/payments/withdrawals"),
    ("POST", "/v1/admin/payments/{payment_id}/review"),
    ("POST", "/v1/admin/payments/{payment_id}/submit"),
    ("POST", "/v1/webhooks/{provider}"),
}
NO_MONEY = {
    ("POST", "/v1/wallet/balance"),
    ("POST", "/v1/admin/players"),
    ("POST", "/v1/admin/fx-rates"),
    ("POST", "/v1/admin/kill-switches"),
    ("POST", "/v1/admin/players/{player_id}/limits"),
    ("POST", "/v1/admin/players/{player_id}/exclusions"),
    ("POST", "/v1/admin/players/{player_id}/kyc"),
    ("POST", "/v1/admin/players/{player_id}/aml-hold"),
    ("POST", "/v1/admin/players/{player_id}/links"),
    ("POST", "/v1/admin/players/{player_id}/session"),
    ("POST", "/v1/players"),
    ("POST", "/v1/vault/players/{player_id}/reveal"),
    ("POST", "/v1/vault/players/{player_id}/export"),
    ("POST", "/v1/vault/players/{player_id}/erasure"),
    ("POST", "/v1/vault/players/{player_id}/documents"),
    ("POST", "/v1/me/limits"),
    ("POST", "/v1/me/exclusions"),
    # the officers' console: signing in and out, sessions; no money moves there yet
    ("POST", "/console/sign-in"),
    ("POST", "/console/second-factor"),
    ("POST", "/console/enrolling"),
    ("POST", "/console/step-up"),
    ("POST", "/console/sign-out"),
    ("POST", "/console/sessions/{ref}/end"),
    ("POST", "/console/players/{player_id}/reveal"),
    ("POST", "/console/sso"),
    # protections: they stop money (kill-switch, AML hold) or ask a second officer to lift them
    ("POST", "/console/kill-switches/{zone}/off"),
    ("POST", "/console/kill-switches/{zone}/on"),
    ("POST", "/console/players/{player_id}/aml-hold"),
    ("POST", "/console/players/{player_id}/aml-hold/clear"),
    ("POST", "/console/approvals/{request_id}/{verdict}"),
    ("POST", "/console/payments/{payment_id}/reject"),
    ("POST", "/console/payments/{payment_id}/approve"),
    ("POST", "/console/passkeys/options"),
    ("POST", "/console/passkeys"),
    ("POST", "/console/passkeys/sign-in/options"),
    ("POST", "/console/passkeys/sign-in"),
    ("POST", "/console/rulesets/{version}/activate"),
    # a player's standing and the officers' accounts, the subject access export
    ("POST", "/console/players/{player_id}/kyc"),
    ("POST", "/console/players/{player_id}/exclusion"),
    ("POST", "/console/players/{player_id}/dsar"),
    ("POST", "/console/officers"),
    ("POST", "/console/officers/{officer_id}/role"),
    ("POST", "/console/officers/{officer_id}/{state}"),
    # appeals: an overturn grants an override the gate honours later; nothing moves here
    ("POST", "/console/appeals/{appeal_id}/acknowledge"),
    ("POST", "/console/appeals/{appeal_id}/information"),
    ("POST", "/console/appeals/{appeal_id}/reveal"),
    ("POST", "/console/appeals/{appeal_id}/decide"),
    # the player's page: its session, limits and breaks, appeals
    ("POST", "/player/session"),
    ("POST", "/player/sign-out"),
    ("POST", "/player/limits"),
    ("POST", "/player/time-out"),
    ("POST", "/player/appeals"),
    ("POST", "/player/appeals/{appeal_id}/answer"),
}


def mutating_routes(api: Api) -> dict[tuple[str, str], Callable[..., Any]]:
    found: dict[tuple[str, str], Callable[..., Any]] = {}
    for route in iter_route_contexts(api.app.routes):  # every route, also unlisted in OpenAPI
        assert route.path is not None
        for method in (route.methods or set()) & MUTATING:
            assert route.endpoint is not None
            found[method, route.path] = route.endpoint
    return found


def takes(endpoint: Callable[..., Any], dependency: object) -> bool:
    return dependency in typing.get_type_hints(endpoint, include_extras=True).values()


def takes_the_gate(endpoint: Callable[..., Any]) -> bool:
    return takes(endpoint, Gated)


def test_every_mutating_route_is_classified(api: Api) -> None:
    routes = mutating_routes(api)
    assert not MONEY & NO_MONEY
    assert not PAYMENTS & (MONEY | NO_MONEY)
    unclassified = routes.keys() - MONEY - NO_MONEY - PAYMENTS
    assert unclassified == set(), "classify these routes as MONEY, PAYMENTS or NO_MONEY"
    assert routes.keys() == MONEY | NO_MONEY | PAYMENTS, "routes listed here no longer exist"
    # A money route gets the application's gate handed in, a payment route the cashier (who
    # holds that gate); no other route asks for either.
    assert {r for r, endpoint in routes.items() if takes_the_gate(endpoint)} == MONEY
    assert {r for r, endpoint in routes.items() if takes(endpoint, Cashiered)} == PAYMENTS


# -- (c) and (d) through the API: one decision per money request ------------------------------


@dataclass(frozen=True)
class Prepared:
    """A player, and a valid request of the route for them, ready to send."""

    player_id: uuid.UUID
    client: PitwardenClient
    path: str
    body: dict[str, Any]


async def placed(api: Api, uows: UnitOfWorkFactory) -> tuple[uuid.UUID, dict[str, Any]]:
    player_id = await factories.committed_player(uows, cash="100.00")
    bet = factories.bet_body(player_id, "10.00")
    response = await api.provider.post("/v1/wallet/bet", bet)
    assert response.status_code == 200, response.text
    return player_id, bet


async def to_bet(api: Api, uows: UnitOfWorkFactory) -> Prepared:
    player_id = await factories.committed_player(uows, cash="100.00")
    return Prepared(player_id, api.provider, "/v1/wallet/bet", factories.bet_body(player_id))


async def to_win(api: Api, uows: UnitOfWorkFactory) -> Prepared:
    player_id, bet = await placed(api, uows)
    return Prepared(player_id, api.provider, "/v1/wallet/win", factories.win_body(bet, "15.00"))


async def to_roll_back(api: Api, uows: UnitOfWorkFactory) -> Prepared:
    player_id, bet = await placed(api, uows)
    body = factories.rollback_body(bet)
    return Prepared(player_id, api.provider, "/v1/wallet/rollback", body)


def adjustment(player_id: uuid.UUID) -> dict[str, Any]:
    return {
        "player_id": str(player_id),
        "amount": "20.00",
        "currency": "EUR",
        "direction": "credit",
        "source": "cash",
        "reason": "goodwill",
    }


async def to_adjust(api: Api, uows: UnitOfWorkFactory) -> Prepared:
    player_id = await factories.committed_player(uows, cash="100.00")
    return Prepared(player_id, api.operator, "/v1/admin/adjustments", adjustment(player_id))


async def to_reverse(api: Api, uows: UnitOfWorkFactory) -> Prepared:
    player_id = await factories.committed_player(uows, cash="100.00")
    done = await api.operator.post("/v1/admin/adjustments", adjustment(player_id))
    assert done.status_code == 200, done.text
    path = f"/v1/admin/adjustments/{done.json()['ledger_transaction_id']}/reversal"
    return Prepared(player_id, api.operator, path, {"reason": "typo"})


@dataclass(frozen=True)
class MoneyRoute:
    route: str
    prepare: Callable[[Api, UnitOfWorkFactory], Awaitable[Prepared]]
    action: str  # of the decision
    event: str  # the journal event of the movement
    zone: str  # the kill-switch that stops it


CASES = [
    MoneyRoute("/v1/wallet/bet", to_bet, "bet.place", "bet.placed", "bet"),
    MoneyRoute("/v1/wallet/win", to_win, "bet.settle", "bet.settled", "settlement"),
    MoneyRoute("/v1/wallet/rollback", to_roll_back, "bet.rollback", "bet.voided", "settlement"),
    MoneyRoute(
        "/v1/admin/adjustments", to_adjust, "adjustment.credit", "wallet.adjusted", "adjustment"
    ),
    MoneyRoute(
        "/v1/admin/adjustments/{ledger_transaction_id}/reversal",
        to_reverse,
        "adjustment.debit",  # reversing a credit takes the money back
        "wallet.adjustment_reversed",
        "adjustment",
    ),
]
BY_ROUTE = pytest.mark.parametrize("case", CASES, ids=[c.event for c in CASES])


def test_every_money_route_has_a_case() -> None:
    assert {("POST", c.route) for c in CASES} == MONEY


@dataclass(frozen=True)
class Books:
    """What a request may change, as seen for one player."""

    cash: str
    bonus: str
    ledger_transactions: int  # all of them: a denied request must add none anywhere
    decisions: frozenset[tuple[str, str, str, str]]  # (id, action, effect, reason_code)
    journal: list[tuple[str, str | None, str | None]]  # (event, decision_id, effect)


async def books(api: Api, uows: UnitOfWorkFactory, player_id: uuid.UUID) -> Books:
    wallet = await factories.wallet(api, player_id)
    data = JournalEvent.envelope["data"]
    async with uows() as uow:
        transactions = await uow.session.scalar(
            sa.select(sa.func.count()).select_from(LedgerTransaction)
        )
        decided = await uow.session.execute(
            sa.select(
                PolicyDecision.id,
                PolicyDecision.action,
                PolicyDecision.effect,
                PolicyDecision.reason_code,
            ).where(PolicyDecision.player_id == player_id)
        )
        events = await uow.session.execute(
            sa.select(
                JournalEvent.event,
                data["decision_id"].astext,
                data["effect"].astext,
            )
            .where(JournalEvent.player_id == player_id)
            .order_by(JournalEvent.id)
        )
        return Books(
            wallet["cash"],
            wallet["bonus"],
            int(transactions or 0),
            frozenset((str(i), a, e, r) for i, a, e, r in decided.all()),
            [(event, d, e) for event, d, e in events.all()],
        )


def error_of(response: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    return error


@BY_ROUTE
async def test_a_money_request_stores_one_allowing_decision_and_names_it(
    api: Api, uows: UnitOfWorkFactory, case: MoneyRoute
) -> None:
    ready = await case.prepare(api, uows)
    before = await books(api, uows, ready.player_id)

    response = await ready.client.post(ready.path, ready.body)

    assert response.status_code == 200, response.text
    after = await books(api, uows, ready.player_id)
    assert before.decisions <= after.decisions
    ((decision_id, action, effect, reason),) = after.decisions - before.decisions
    assert (action, effect, reason) == (case.action, "allow", "ok")
    txn_id = response.json()["ledger_transaction_id"]
    async with uows() as uow:
        txn = await uow.session.get(LedgerTransaction, txn_id)
        assert txn is not None
        assert (txn.player_id, str(txn.decision_id)) == (ready.player_id, decision_id)
        movement = await uow.session.scalar(
            sa.select(JournalEvent.envelope["data"]).where(
                JournalEvent.player_id == ready.player_id,
                JournalEvent.event == case.event,
                JournalEvent.envelope["data"]["ledger_transaction_id"].as_integer() == txn_id,
            )
        )
    assert movement is not None
    assert movement["decision_id"] == decision_id
    new_events = after.journal[len(before.journal) :]
    assert ("policy.decided", decision_id, "allow") in new_events
    assert [event for event, _, _ in new_events].count(case.event) == 1
    assert after.ledger_transactions == before.ledger_transactions + 1


@BY_ROUTE
async def test_a_denied_money_request_moves_nothing_and_each_attempt_is_on_record(
    api: Api, uows: UnitOfWorkFactory, case: MoneyRoute
) -> None:
    ready = await case.prepare(api, uows)
    switched = await api.operator.post(
        "/v1/admin/kill-switches",
        {"zone": case.zone, "off": True, "reason": "incident 42"},
    )
    assert switched.status_code == 200, switched.text
    before = await books(api, uows, ready.player_id)
    key = f"denied-{uuid.uuid4()}"

    first = await ready.client.post(ready.path, ready.body, idempotency_key=key)

    assert first.status_code == 403, first.text
    error = error_of(first)
    assert error["code"] == "zone_off"
    assert error["details"]["action"] == case.action
    decision_id = error["details"]["decision_id"]
    denied = await books(api, uows, ready.player_id)
    assert (denied.cash, denied.bonus) == (before.cash, before.bonus)
    assert denied.ledger_transactions == before.ledger_transactions
    assert denied.decisions == before.decisions | {(decision_id, case.action, "deny", "zone_off")}
    assert denied.journal == [*before.journal, ("policy.decided", decision_id, "deny")]

    # A kill-switch is an operational pause: the refusal is not the key's final answer. The
    # same request under the same key is decided afresh (refused again while the zone is off,
    # on record again), and nothing moves.
    again = await ready.client.post(ready.path, ready.body, idempotency_key=key)

    assert again.status_code == 403, again.text
    assert first.headers.get("Retry-After")
    assert again.headers.get("Retry-After")
    assert "Idempotent-Replayed" not in again.headers
    second_id = error_of(again)["details"]["decision_id"]
    assert second_id != decision_id
    after = await books(api, uows, ready.player_id)
    assert (after.cash, after.bonus, after.ledger_transactions) == (
        before.cash,
        before.bonus,
        before.ledger_transactions,
    )
    assert after.decisions == denied.decisions | {(second_id, case.action, "deny", "zone_off")}
