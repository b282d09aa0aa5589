"""The gate as the API and the CLI get it: built once per app from settings, handed to every
operation that moves money (`Gated` in a route's signature)."""

from typing import Annotated

from fastapi import Depends, Request

from compliance import jurisdictions
from compliance.ages import VaultAges
from compliance.gate import Gate
from compliance.vault.keys import KeyProvider
from core.guard import Guard
from core.settings import Settings
from core.uow import UnitOfWorkFactory


def build_gate(settings: Settings, vault_uows: UnitOfWorkFactory, keys: KeyProvider) -> Gate:
    return Gate(
        ages=VaultAges(vault_uows, keys),
        jurisdictions=jurisdictions.load(
            settings.jurisdictions_file or jurisdictions.JURISDICTIONS
        ),
    )


def _gate(request: Request) -> Guard:
    gate: Guard = request.app.state.gate
    return gate


Gated = Annotated[Guard, Depends(_gate)]
