"""The published contract: money is a patterned string, never a JSON number; examples exist."""

from typing import Any

from app.main import create_app
from core.settings import Settings
from core.uow import UnitOfWorkFactory


def walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, value in node.items():
            found.extend(walk(value, f"{path}/{key}"))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(walk(value, f"{path}/{index}"))
    return found


def openapi(uows: UnitOfWorkFactory, settings: Settings) -> dict[str, Any]:
    # The document needs no database: the factories are never used.
    return create_app(settings=settings, uow_factory=uows, vault_uow_factory=uows).openapi()


def test_no_number_types_in_the_contract(uows: UnitOfWorkFactory, settings: Settings) -> None:
    schemas = openapi(uows, settings)["components"]["schemas"]
    numbers = [path for path, node in walk(schemas) if node.get("type") == "number"]
    assert numbers == []


def test_amounts_and_currencies_are_patterned_strings(
    uows: UnitOfWorkFactory, settings: Settings
) -> None:
    schemas = openapi(uows, settings)["components"]["schemas"]
    for name in ("BetRequest", "WinRequest", "Adjustment"):
        amount = schemas[name]["properties"]["amount"]
        assert amount["type"] == "string"
        assert amount["pattern"].startswith("^")
        currency = schemas[name]["properties"]["currency"]
        assert (currency["type"], currency["pattern"]) == ("string", "^[A-Z]{3}$")


def test_wallet_endpoints_document_examples_and_errors(
    uows: UnitOfWorkFactory, settings: Settings
) -> None:
    document = openapi(uows, settings)
    for endpoint in ("balance", "bet", "win", "rollback"):
        operation = document["paths"][f"/v1/wallet/{endpoint}"]["post"]
        assert {"401", "409", "422"} <= set(operation["responses"])
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert document["components"]["schemas"][ref.rsplit("/", 1)[1]]["examples"]
