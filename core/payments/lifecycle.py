"""The lifecycles of deposits and withdrawals as pure state machines: no database, no I/O.

Persistence, journal events and ledger postings call this module; it only answers what an event
does to a payment in a given state. An event names the state its sender says the payment is now
in (a webhook's "confirmed", our own "approved"); the initial state is not an event, `begin`
opens a payment in it.

    deposit     initiated ──> pending ──> confirmed | failed | expired
                initiated ──────────────> confirmed | failed | expired

    withdrawal  requested ──> approved ──> sent ──> confirmed | failed
                requested ──> rejected
                              approved ──────────> failed

Terminal: deposit confirmed, failed, expired; withdrawal rejected, confirmed, failed.

Shortcuts, and why a real provider flow needs each:

- deposit initiated -> confirmed: cards authorise and capture in one call, and webhooks arrive
  out of order, so "confirmed" may be the first news we get. Refusing it would strand money the
  provider already took.
- deposit initiated -> failed: the provider declines at once (card declined, 3-D Secure failed).
- deposit initiated -> expired: the player abandons the hosted payment page; our timer ends it.
- withdrawal approved -> failed: every provider refuses the payout instruction outright (account
  closed, the provider's own screening), so nothing was ever sent. Without it the hold would be
  stranded in "approved". A timeout or a 5xx is not this: it fails over with the same payment id.
- There is no withdrawal shortcut past "approved" or "sent": approval is our decision (policy,
  officer) and "sent" records that a provider accepted the instruction; neither may be skipped.

Stale or illegal. The graph has no cycles, so "the payment has passed that state" is exact:
state A is behind state B when B is reachable from A. For an event E on a payment in state S:

1. S -> E is an edge: `Moved`.
2. E is S (the same event again) or E is behind S (a late "pending" after "confirmed", a
   "sent" after "failed"): `Ignored`. It is old news of a state already passed, so it changes
   nothing; the caller journals it. This is why redelivered, duplicated and reordered webhooks
   never move a payment backwards.
3. Anything else raises `IllegalTransition` (409 `illegal_payment_transition`). Two cases:
   - E is ahead of S but skips a step (a withdrawal "confirmed" before it was "sent"). This
     can be a race with our own record of the step, so the refusal is *transient*: it is not
     kept as the final answer and the provider's redelivery acts once the payment catches up.
   - E is on another branch (a failed deposit "confirmed", a confirmed withdrawal "failed", an
     approved withdrawal "rejected"). Two final answers contradict each other and one of them
     is wrong about money; ignoring it would hide exactly what reconciliation and an officer
     must see. Such a refusal is final.

A terminal state therefore never changes: it has no edges, nothing is behind it that could move
it, and a different terminal state is never behind it (no terminal reaches another). An event
contradicting a terminal state is refused, never ignored. A provider that reverses a confirmed
deposit or returns a paid-out withdrawal later is a new movement (a chargeback, a return), not a
step of these machines.

Money effects, which the ledger performs on the transition (amounts live with the payment):

- deposit: `credit_player` on reaching confirmed (PSP clearing -> player). Every other step is
  `none`: a deposit touches no balance before the money is confirmed.
- withdrawal: `hold` on opening in requested (playable balance -> hold: not spendable, not
  withdrawable twice); `release_hold` on rejected or failed (hold -> playable balance);
  `pay_out` on sent -> confirmed (hold -> PSP clearing). The money stays held while sent, so a
  failure after sending releases the same hold, and the only step into the provider's hands is
  the one into a terminal state: nothing follows it that could turn it back into playable
  balance. Paying out on "sent" would instead need a failure path from clearing back to the
  player, the very reversal the issue forbids. On every path the hold meets exactly one
  `release_hold` or `pay_out`.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Literal, get_args

from core.errors import Conflict, InvalidRequest

Kind = Literal["deposit", "withdrawal"]
DepositState = Literal["initiated", "pending", "confirmed", "failed", "expired"]
DepositEvent = Literal["pending", "confirmed", "failed", "expired"]
WithdrawalState = Literal["requested", "approved", "rejected", "sent", "confirmed", "failed"]
WithdrawalEvent = Literal["approved", "rejected", "sent", "confirmed", "failed"]
State = DepositState | WithdrawalState
Event = DepositEvent | WithdrawalEvent


class MoneyEffect(StrEnum):
    """What the ledger must post on a transition; the amount is the payment's own."""

    NONE = "none"
    CREDIT_PLAYER = "credit_player"
    HOLD = "hold"
    RELEASE_HOLD = "release_hold"
    PAY_OUT = "pay_out"


@dataclass(frozen=True, slots=True)
class Moved:
    """A legal transition. `from_state` is None when `begin` opens the payment."""

    kind: Kind
    from_state: State | None
    to_state: State
    money_effect: MoneyEffect


@dataclass(frozen=True, slots=True)
class Ignored:
    """A duplicate or stale event: nothing changes, but the caller journals that it came."""

    kind: Kind
    state: State
    event: Event
    reason: Literal["duplicate", "stale"]


Outcome = Moved | Ignored


class IllegalTransition(Conflict):
    """An event neither legal nor explainable as old news; transient when it may be premature."""

    def __init__(self, *, kind: Kind, current: State, event: Event, transient: bool) -> None:
        super().__init__(
            "illegal_payment_transition",
            f"a {kind} that is {current} cannot become {event}",
            **{"kind": kind, "from": current, "to": event},
        )
        self.transient = transient


@dataclass(frozen=True, slots=True)
class _Machine:
    initial: State
    opening: MoneyEffect
    states: frozenset[State]
    events: frozenset[Event]
    edges: Mapping[tuple[State, Event], MoneyEffect]
    # (a, b) when b is reachable from a in one step or more: "a is behind b".
    reach: frozenset[tuple[State, State]]


def _machine(
    *,
    initial: State,
    opening: MoneyEffect,
    states: tuple[State, ...],
    events: tuple[Event, ...],
    edges: dict[tuple[State, Event], MoneyEffect],
) -> _Machine:
    reach: set[tuple[State, State]] = {(a, b) for a, b in edges}
    while True:  # transitive closure; a handful of states, computed once at import
        longer = {(a, d) for a, b in reach for c, d in reach if b == c} - reach
        if not longer:
            break
        reach |= longer
    return _Machine(
        initial,
        opening,
        frozenset(states),
        frozenset(events),
        MappingProxyType(edges),
        frozenset(reach),
    )


_NONE = MoneyEffect.NONE
_MACHINES: Mapping[Kind, _Machine] = MappingProxyType(
    {
        "deposit": _machine(
            initial="initiated",
            opening=_NONE,
            states=get_args(DepositState),
            events=get_args(DepositEvent),
            edges={
                ("initiated", "pending"): _NONE,
                ("initiated", "confirmed"): MoneyEffect.CREDIT_PLAYER,
                ("initiated", "failed"): _NONE,
                ("initiated", "expired"): _NONE,
                ("pending", "confirmed"): MoneyEffect.CREDIT_PLAYER,
                ("pending", "failed"): _NONE,
                ("pending", "expired"): _NONE,
            },
        ),
        "withdrawal": _machine(
            initial="requested",
            opening=MoneyEffect.HOLD,
            states=get_args(WithdrawalState),
            events=get_args(WithdrawalEvent),
            edges={
                ("requested", "approved"): _NONE,
                ("requested", "rejected"): MoneyEffect.RELEASE_HOLD,
                ("approved", "sent"): _NONE,
                ("approved", "failed"): MoneyEffect.RELEASE_HOLD,
                ("sent", "confirmed"): MoneyEffect.PAY_OUT,
                ("sent", "failed"): MoneyEffect.RELEASE_HOLD,
            },
        ),
    }
)


def begin(kind: Kind) -> Moved:
    """Open a payment in its initial state; a withdrawal holds its amount from this moment."""
    machine = _MACHINES[kind]
    return Moved(kind, None, machine.initial, machine.opening)


def step(kind: Kind, current: State, event: Event) -> Outcome:
    """What `event` does to a `kind` payment in state `current` (rules in the module docstring)."""
    machine = _known(kind, current)
    if event not in machine.events:
        raise InvalidRequest("unknown_payment_event", f"a {kind} has no event {event}")
    effect = machine.edges.get((current, event))
    if effect is not None:
        return Moved(kind, current, event, effect)
    if event == current:
        return Ignored(kind, current, event, "duplicate")
    if (event, current) in machine.reach:
        return Ignored(kind, current, event, "stale")
    ahead = (current, event) in machine.reach
    raise IllegalTransition(kind=kind, current=current, event=event, transient=ahead)


def is_terminal(kind: Kind, state: State) -> bool:
    """A terminal state has no way out: no event ever moves the payment again."""
    return not any(source == state for source, _ in _known(kind, state).edges)


def _known(kind: Kind, state: State) -> _Machine:
    machine = _MACHINES[kind]
    if state not in machine.states:
        raise InvalidRequest("unknown_payment_state", f"a {kind} has no state {state}")
    return machine
