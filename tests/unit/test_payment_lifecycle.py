"""Payment lifecycles: every (kind, state, event) answered, money effects balanced on every path.

The expected table and paths are written out here by hand, not derived from the module, so a
change to the machines shows up as a change to this file.
"""

import itertools
from typing import Literal, get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import Conflict, InvalidRequest
from core.payments.lifecycle import (
    DepositEvent,
    DepositState,
    Event,
    IllegalTransition,
    Kind,
    MoneyEffect,
    Moved,
    State,
    WithdrawalEvent,
    WithdrawalState,
    begin,
    is_terminal,
    step,
)

KINDS: tuple[Kind, ...] = get_args(Kind)
STATES: dict[Kind, tuple[State, ...]] = {
    "deposit": get_args(DepositState),
    "withdrawal": get_args(WithdrawalState),
}
EVENTS: dict[Kind, tuple[Event, ...]] = {
    "deposit": get_args(DepositEvent),
    "withdrawal": get_args(WithdrawalEvent),
}

# ("moved", money effect) | ("ignored", reason) | ("refused", transient)
Answer = tuple[Literal["moved", "ignored", "refused"], MoneyEffect | str | bool]

NONE: Answer = ("moved", MoneyEffect.NONE)
CREDIT: Answer = ("moved", MoneyEffect.CREDIT_PLAYER)
RELEASE: Answer = ("moved", MoneyEffect.RELEASE_HOLD)
PAY_OUT: Answer = ("moved", MoneyEffect.PAY_OUT)
DUPLICATE: Answer = ("ignored", "duplicate")
STALE: Answer = ("ignored", "stale")
REFUSED: Answer = ("refused", False)
PREMATURE: Answer = ("refused", True)  # transient: the provider's redelivery may act later

TABLE: dict[tuple[Kind, State, Event], Answer] = {
    # deposit: events pending, confirmed, failed, expired
    ("deposit", "initiated", "pending"): NONE,
    ("deposit", "initiated", "confirmed"): CREDIT,
    ("deposit", "initiated", "failed"): NONE,
    ("deposit", "initiated", "expired"): NONE,
    ("deposit", "pending", "pending"): DUPLICATE,
    ("deposit", "pending", "confirmed"): CREDIT,
    ("deposit", "pending", "failed"): NONE,
    ("deposit", "pending", "expired"): NONE,
    ("deposit", "confirmed", "pending"): STALE,
    ("deposit", "confirmed", "confirmed"): DUPLICATE,
    ("deposit", "confirmed", "failed"): REFUSED,
    ("deposit", "confirmed", "expired"): REFUSED,
    ("deposit", "failed", "pending"): STALE,
    ("deposit", "failed", "confirmed"): REFUSED,
    ("deposit", "failed", "failed"): DUPLICATE,
    ("deposit", "failed", "expired"): REFUSED,
    ("deposit", "expired", "pending"): STALE,
    ("deposit", "expired", "confirmed"): REFUSED,
    ("deposit", "expired", "failed"): REFUSED,
    ("deposit", "expired", "expired"): DUPLICATE,
    # withdrawal: events approved, rejected, sent, confirmed, failed
    ("withdrawal", "requested", "approved"): NONE,
    ("withdrawal", "requested", "rejected"): RELEASE,
    ("withdrawal", "requested", "sent"): PREMATURE,
    ("withdrawal", "requested", "confirmed"): PREMATURE,
    ("withdrawal", "requested", "failed"): PREMATURE,
    ("withdrawal", "approved", "approved"): DUPLICATE,
    ("withdrawal", "approved", "rejected"): REFUSED,
    ("withdrawal", "approved", "sent"): NONE,
    ("withdrawal", "approved", "confirmed"): PREMATURE,
    ("withdrawal", "approved", "failed"): RELEASE,
    ("withdrawal", "rejected", "approved"): REFUSED,
    ("withdrawal", "rejected", "rejected"): DUPLICATE,
    ("withdrawal", "rejected", "sent"): REFUSED,
    ("withdrawal", "rejected", "confirmed"): REFUSED,
    ("withdrawal", "rejected", "failed"): REFUSED,
    ("withdrawal", "sent", "approved"): STALE,
    ("withdrawal", "sent", "rejected"): REFUSED,
    ("withdrawal", "sent", "sent"): DUPLICATE,
    ("withdrawal", "sent", "confirmed"): PAY_OUT,
    ("withdrawal", "sent", "failed"): RELEASE,
    ("withdrawal", "confirmed", "approved"): STALE,
    ("withdrawal", "confirmed", "rejected"): REFUSED,
    ("withdrawal", "confirmed", "sent"): STALE,
    ("withdrawal", "confirmed", "confirmed"): DUPLICATE,
    ("withdrawal", "confirmed", "failed"): REFUSED,
    ("withdrawal", "failed", "approved"): STALE,
    ("withdrawal", "failed", "rejected"): REFUSED,
    ("withdrawal", "failed", "sent"): STALE,
    ("withdrawal", "failed", "confirmed"): REFUSED,
    ("withdrawal", "failed", "failed"): DUPLICATE,
}

_H, _N = MoneyEffect.HOLD, MoneyEffect.NONE
# Every legal path from opening to a terminal state, with the effect of each step (opening first).
PATHS: dict[Kind, dict[tuple[State, ...], tuple[MoneyEffect, ...]]] = {
    "deposit": {
        ("initiated", "pending", "confirmed"): (_N, _N, MoneyEffect.CREDIT_PLAYER),
        ("initiated", "pending", "failed"): (_N, _N, _N),
        ("initiated", "pending", "expired"): (_N, _N, _N),
        ("initiated", "confirmed"): (_N, MoneyEffect.CREDIT_PLAYER),
        ("initiated", "failed"): (_N, _N),
        ("initiated", "expired"): (_N, _N),
    },
    "withdrawal": {
        ("requested", "rejected"): (_H, MoneyEffect.RELEASE_HOLD),
        ("requested", "approved", "failed"): (_H, _N, MoneyEffect.RELEASE_HOLD),
        ("requested", "approved", "sent", "failed"): (_H, _N, _N, MoneyEffect.RELEASE_HOLD),
        ("requested", "approved", "sent", "confirmed"): (_H, _N, _N, MoneyEffect.PAY_OUT),
    },
}
TERMINAL: dict[Kind, set[State]] = {
    "deposit": {"confirmed", "failed", "expired"},
    "withdrawal": {"rejected", "confirmed", "failed"},
}
# (a, b) when a comes before b on some legal path: moving from b to a would be going backwards.
BEHIND: dict[Kind, set[tuple[State, State]]] = {
    kind: {(p[i], p[j]) for p in paths for i, j in itertools.combinations(range(len(p)), 2)}
    for kind, paths in PATHS.items()
}


def answer(kind: Kind, state: State, event: Event) -> Answer:
    try:
        outcome = step(kind, state, event)
    except IllegalTransition as refused:
        return ("refused", refused.transient)
    if isinstance(outcome, Moved):
        assert (outcome.kind, outcome.from_state, outcome.to_state) == (kind, state, event)
        return ("moved", outcome.money_effect)
    assert (outcome.kind, outcome.state, outcome.event) == (kind, state, event)
    return ("ignored", outcome.reason)


def test_the_table_covers_every_kind_state_and_event() -> None:
    cross = {(k, s, e) for k in KINDS for s in STATES[k] for e in EVENTS[k]}
    assert set(TABLE) == cross
    assert len(cross) == 5 * 4 + 6 * 5


@pytest.mark.parametrize(("triple", "expected"), list(TABLE.items()), ids=str)
def test_every_event_in_every_state_has_its_outcome(
    triple: tuple[Kind, State, Event], expected: Answer
) -> None:
    assert answer(*triple) == expected


def test_terminal_states_are_the_ones_that_never_move() -> None:
    for kind in KINDS:
        assert {s for s in STATES[kind] if is_terminal(kind, s)} == TERMINAL[kind]
        for state in TERMINAL[kind]:
            assert all(answer(kind, state, e)[0] != "moved" for e in EVENTS[kind])


def test_opening_a_withdrawal_holds_and_opening_a_deposit_moves_nothing() -> None:
    assert begin("deposit") == Moved("deposit", None, "initiated", MoneyEffect.NONE)
    assert begin("withdrawal") == Moved("withdrawal", None, "requested", MoneyEffect.HOLD)


def test_a_refusal_is_a_conflict_with_a_stable_code_and_its_details() -> None:
    with pytest.raises(IllegalTransition) as refused:
        step("deposit", "failed", "confirmed")
    assert isinstance(refused.value, Conflict)
    assert refused.value.code == "illegal_payment_transition"
    assert refused.value.details == {"kind": "deposit", "from": "failed", "to": "confirmed"}
    assert not refused.value.transient
    with pytest.raises(IllegalTransition) as premature:
        step("withdrawal", "approved", "confirmed")  # confirmed before it was sent
    assert premature.value.transient


def test_a_state_or_event_of_another_kind_is_refused_by_name() -> None:
    with pytest.raises(InvalidRequest) as state:
        step("deposit", "approved", "confirmed")
    assert state.value.code == "unknown_payment_state"
    with pytest.raises(InvalidRequest) as event:
        step("withdrawal", "requested", "expired")
    assert event.value.code == "unknown_payment_event"
    with pytest.raises(InvalidRequest):
        is_terminal("deposit", "rejected")


def legal_paths(kind: Kind) -> dict[tuple[State, ...], tuple[MoneyEffect, ...]]:
    """Walk the machine itself: every sequence of `Moved` from opening to a terminal state."""
    opened = begin(kind)
    found: dict[tuple[State, ...], tuple[MoneyEffect, ...]] = {}
    todo: list[tuple[tuple[State, ...], tuple[MoneyEffect, ...]]] = [
        ((opened.to_state,), (opened.money_effect,))
    ]
    while todo:
        states, effects = todo.pop()
        if is_terminal(kind, states[-1]):
            found[states] = effects
        for event in EVENTS[kind]:
            if answer(kind, states[-1], event)[0] == "moved":
                moved = step(kind, states[-1], event)
                assert isinstance(moved, Moved)
                todo.append(((*states, moved.to_state), (*effects, moved.money_effect)))
    return found


@pytest.mark.parametrize("kind", KINDS)
def test_every_legal_path_ends_with_its_money_settled_once(kind: Kind) -> None:
    assert legal_paths(kind) == PATHS[kind]
    for states, effects in PATHS[kind].items():
        confirmed = states[-1] == "confirmed"
        if kind == "deposit":
            assert effects.count(MoneyEffect.CREDIT_PLAYER) == int(confirmed)
            assert {MoneyEffect.HOLD, MoneyEffect.RELEASE_HOLD, MoneyEffect.PAY_OUT}.isdisjoint(
                effects
            )
        else:
            released = effects.count(MoneyEffect.RELEASE_HOLD)
            paid = effects.count(MoneyEffect.PAY_OUT)
            assert effects.count(MoneyEffect.HOLD) == released + paid == 1
            assert paid == int(confirmed)
            assert MoneyEffect.CREDIT_PLAYER not in effects


def deliveries() -> st.SearchStrategy[tuple[Kind, list[Event]]]:
    return st.sampled_from(KINDS).flatmap(
        lambda kind: st.tuples(st.just(kind), st.lists(st.sampled_from(EVENTS[kind]), max_size=25))
    )


def assert_money_so_far(kind: Kind, state: State, effects: list[MoneyEffect]) -> None:
    assert effects.count(MoneyEffect.CREDIT_PLAYER) <= 1
    assert effects.count(MoneyEffect.PAY_OUT) <= 1
    outstanding = effects.count(MoneyEffect.HOLD) - (
        effects.count(MoneyEffect.RELEASE_HOLD) + effects.count(MoneyEffect.PAY_OUT)
    )
    if kind == "deposit":
        assert outstanding == 0
        assert effects.count(MoneyEffect.CREDIT_PLAYER) == int(state == "confirmed")
    else:
        assert outstanding == (0 if is_terminal(kind, state) else 1)
        assert effects.count(MoneyEffect.PAY_OUT) == int(state == "confirmed")


@given(deliveries())
def test_no_sequence_of_events_moves_a_payment_backwards_or_pays_twice(
    delivery: tuple[Kind, list[Event]],
) -> None:
    kind, events = delivery
    opened = begin(kind)
    state, effects = opened.to_state, [opened.money_effect]
    for event in events:
        try:
            outcome = step(kind, state, event)
        except IllegalTransition:
            continue  # refused: nothing changed
        if isinstance(outcome, Moved):
            assert not is_terminal(kind, state)
            assert (state, outcome.to_state) in BEHIND[kind]
            state = outcome.to_state
            effects.append(outcome.money_effect)
        assert_money_so_far(kind, state, effects)


@given(
    st.sampled_from([(k, p) for k in KINDS for p in PATHS[k]]).flatmap(
        lambda story: st.tuples(
            st.just(story),
            st.lists(st.sampled_from(story[1][1:]), max_size=6).flatmap(
                lambda extra: st.permutations([*story[1][1:], *extra])
            ),
        )
    )
)
def test_a_true_story_delivered_out_of_order_and_twice_ends_where_the_provider_ended(
    case: tuple[tuple[Kind, tuple[State, ...]], list[Event]],
) -> None:
    (kind, path), queue = case
    opened = begin(kind)
    state, effects = opened.to_state, [opened.money_effect]
    contradictions: list[Event] = []
    for _ in range(100):  # the provider redelivers what we refused as premature
        if not queue:
            break
        event = queue.pop(0)
        try:
            outcome = step(kind, state, event)
        except IllegalTransition as refused:
            if not refused.transient:
                contradictions.append(event)
            queue.append(event)
            continue
        if isinstance(outcome, Moved):
            state = outcome.to_state
            effects.append(outcome.money_effect)
    assert contradictions == []  # a reordering of a true story never contradicts itself
    assert not queue
    assert state == path[-1]
    moved_money = [e for e in effects if e is not MoneyEffect.NONE]
    assert moved_money == [e for e in PATHS[kind][path] if e is not MoneyEffect.NONE]
    assert_money_so_far(kind, state, effects)
