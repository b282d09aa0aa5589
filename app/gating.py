"""The gate as the API and the CLI get it: built once per app from settings, handed to every
operation that moves money (`Gated` in a route's signature); and the cashier around it, with
the payment providers of the payments config."""

from typing import Annotated

import httpx
from fastapi import Depends, Request

from compliance import jurisdictions, kyt
from compliance.ages import VaultAges
from compliance.cashier import Cashier
from compliance.gate import Gate
from compliance.vault.keys import KeyProvider
from core.errors import Unavailable
from core.guard import Guard
from core.payments import routing
from core.settings import Settings
from core.uow import UnitOfWorkFactory


def build_gate(settings: Settings, vault_uows: UnitOfWorkFactory, keys: KeyProvider) -> Gate:
    return Gate(
        ages=VaultAges(vault_uows, keys),
        jurisdictions=jurisdictions.load(
            settings.jurisdictions_file or jurisdictions.JURISDICTIONS
        ),
        kyt=kyt.load(settings.kyt_deny_list),
    )


PAYMENTS_OFF = (
    "payments are off: PITWARDEN_PAYMENTS_CONFIG names no payments config (the example's"
    " secrets are public: only `serve --demo` and the tests use them)"
)


class PaymentsOff(Unavailable):
    """No payments config: every payment operation and webhook is refused (503), so a webhook
    signed with a secret someone read in our repository moves nothing. Not transient: an
    operator has to configure payments, no timer lifts it."""

    transient = False

    def __init__(self) -> None:
        super().__init__("payments_disabled", PAYMENTS_OFF)


def build_cashier(
    settings: Settings, uows: UnitOfWorkFactory, gate: Gate, client: httpx.AsyncClient
) -> Cashier | None:
    """The cashier of the configured providers, or None when payments are not configured (never
    a fallback to the example file: its webhook secrets are public)."""
    if settings.payments_config is None:
        return None
    config = routing.load_config(settings.payments_config)
    return Cashier(
        uows=uows,
        gate=gate,
        config=config,
        adapters=routing.build_adapters(config, client),
        jurisdictions=gate.jurisdictions,
    )


# Dependencies are `async def` even with nothing to await: FastAPI runs a plain `def` one in a
# worker thread, a thread hop per request for nothing (its cost was lost in this machine's
# noise when measured, 2026-11-26).
async def _gate(request: Request) -> Guard:
    gate: Guard = request.app.state.gate
    return gate


Gated = Annotated[Guard, Depends(_gate)]


async def _cashier(request: Request) -> Cashier:
    cashier: Cashier | None = request.app.state.cashier
    if cashier is None:
        raise PaymentsOff
    return cashier


Cashiered = Annotated[Cashier, Depends(_cashier)]
