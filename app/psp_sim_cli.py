"""`pitwarden psp-sim`: the local payment-provider simulator (app/psp_sim.py) on a port."""

from pathlib import Path
from typing import Annotated

import typer

from core.payments.routing import EXAMPLE_CONFIG, PaymentsConfigError, load_config

psp_sim_cli = typer.Typer(
    help="A local simulator of the payment providers in a payments config.", no_args_is_help=True
)


@psp_sim_cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (the control API is open)")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8100,
    callback_base: Annotated[
        str, typer.Option(help="Pitwarden's base URL: webhooks go to /v1/webhooks/{provider}")
    ] = "http://127.0.0.1:8000",
    config: Annotated[
        Path, typer.Option(help="The payments config JSON Pitwarden uses, so secrets match")
    ] = EXAMPLE_CONFIG,
) -> None:
    """Serve every provider of the config under /{name}, and the control API under /_control."""
    import uvicorn  # noqa: PLC0415 - only serving needs it

    from app.psp_sim import create_app  # noqa: PLC0415

    try:
        payments = load_config(config)
    except PaymentsConfigError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    app = create_app(payments, callback_base=callback_base, log=typer.echo)
    base = f"http://{host}:{port}"
    for name, provider in payments.providers.items():
        typer.echo(f"{name} ({provider.contract}) at {base}/{name}")
        if provider.base_url != f"{base}/{name}":
            typer.echo(f"  note: the config's base_url for {name} is {provider.base_url}")
    typer.echo(f"webhooks to {callback_base.rstrip('/')}/v1/webhooks/{{provider}}")
    typer.echo(f"control API at {base}/_control (Ctrl-C stops)")
    uvicorn.run(app, host=host, port=port, log_level="warning", ws="none")
