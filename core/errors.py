"""Domain errors: each carries a stable machine-readable code; the API maps class to status."""

from collections.abc import Awaitable, Callable
from typing import Any

# A write that must outlive the refusal it belongs to, e.g. the record of a denied decision:
# the refused action's transaction is rolled back, then these run in the next one.
KeptWrite = Callable[[Any], Awaitable[None]]


class DomainError(Exception):
    """A refusal the caller can act on. Nothing was changed when one is raised."""

    def __init__(self, code: str, message: str, **details: object) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details: dict[str, object] = details
        self.kept: tuple[KeptWrite, ...] = ()

    # A refusal that may not hold on a retry (a paused zone, no policy active yet): the API does
    # not keep it as the final answer of an Idempotency-Key, so the same request can succeed.
    transient = False


class InvalidRequest(DomainError):
    """The request is well-formed but its values are not acceptable (422)."""


class NotFound(DomainError):
    """A referenced player, round, bet or account does not exist (404)."""


class Conflict(DomainError):
    """The request contradicts the current state or an earlier request (409)."""


class Refused(DomainError):
    """A rule refuses this actor this action; the decision is recorded (403)."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        kept: tuple[KeptWrite, ...] = (),
        transient: bool = False,
        **details: object,
    ) -> None:
        super().__init__(code, message, **details)
        self.kept = kept
        self.transient = transient


class Gone(DomainError):
    """What was asked for existed and was deliberately destroyed, e.g. erased data (410)."""


class Unavailable(DomainError):
    """The service cannot decide safely right now, e.g. no policy is active (503). Fails closed."""

    transient = True
