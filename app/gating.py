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


def build_cashier(
    settings: Settings, uows: UnitOfWorkFactory, gate: Gate, client: httpx.AsyncClient
) -> Cashier:
    config = routing.load_config(settings.payments_config or routing.EXAMPLE_CONFIG)
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
    cashier: Cashier = request.app.state.cashier
    return cashier


Cashiered = Annotated[Cashier, Depends(_cashier)]
