"""Domain errors: each carries a stable machine-readable code; the API maps class to status."""


class DomainError(Exception):
    """A refusal the caller can act on. Nothing was changed when one is raised."""

    def __init__(self, code: str, message: str, **details: object) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details: dict[str, object] = details


class InvalidRequest(DomainError):
    """The request is well-formed but its values are not acceptable (422)."""


class NotFound(DomainError):
    """A referenced player, round, bet or account does not exist (404)."""


class Conflict(DomainError):
    """The request contradicts the current state or an earlier request (409)."""


class Refused(DomainError):
    """A rule refuses this actor this action; the decision is recorded (403)."""


class Gone(DomainError):
    """What was asked for existed and was deliberately destroyed, e.g. erased data (410)."""
