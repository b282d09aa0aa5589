"""`pitwarden officers`: console accounts from the command line (the administrator's pages come
later). Registered by app/cli.py; opens the database as its commands do, through app.runtime."""

import json
from typing import Annotated

import typer

from app.console import accounts
from app.console.models import ROLES
from app.runtime import run_with_uow
from core.errors import DomainError
from core.journal import EventContext
from core.settings import Settings
from core.uow import UnitOfWorkFactory

officers_cli = typer.Typer(help="Console officers: create accounts.", no_args_is_help=True)
CONTEXT = EventContext(actor="cli", trace_id="cli-officers")


@officers_cli.command("create")
def create_command(
    username: str,
    role: Annotated[str, typer.Option(help=", ".join(ROLES))],
    name: Annotated[str | None, typer.Option(help="Display name")] = None,
    oidc_issuer: Annotated[
        str | None, typer.Option(help="Signs in at this OpenID provider (with --oidc-subject)")
    ] = None,
    oidc_subject: Annotated[str | None, typer.Option(help="The provider's `sub` claim")] = None,
) -> None:
    """Create an officer. A local account gets a generated password, printed once (the second
    factor is enrolled at the first sign-in); an OIDC account signs in at its provider."""
    if (oidc_issuer is None) != (oidc_subject is None):
        raise typer.BadParameter("--oidc-issuer and --oidc-subject go together")
    password = None if oidc_issuer else accounts.new_password()

    async def work(uows: UnitOfWorkFactory) -> None:
        async with uows() as uow:
            officer = await accounts.create(
                uow,
                username=username,
                display_name=name or username,
                role=role,
                password=password,
                oidc=(oidc_issuer, oidc_subject) if oidc_issuer and oidc_subject else None,
                ctx=CONTEXT,
            )
            await uow.commit()
        typer.echo(f"officer={officer.username} role={officer.role} id={officer.id}")
        if password:
            typer.echo(f"password={password}")

    try:
        run_with_uow(Settings.from_env(), work)
    except DomainError as error:
        body = {"error": {"code": error.code, "message": error.message, "details": error.details}}
        typer.echo(json.dumps(body), err=True)
        raise typer.Exit(2) from None
