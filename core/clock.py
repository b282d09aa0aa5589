"""The one clock of the product: every "now" that decides something is read through it.

Units of work read it once when they start (`UnitOfWork.now`) and everything they decide, write
or compare uses that instant; code outside a unit of work takes a `Clock` argument defaulting to
`utc_now`. Injecting another clock replays a decision, a window or an expiry at a given instant
(the tests do), and running the process under `faketime` moves all of it together with
PostgreSQL's own clock (`make test-shifted`, decision 0017).
"""

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)
