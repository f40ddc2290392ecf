"""``freshpaint-iterable emulator``: serve the Iterable emulator on a local port."""

from __future__ import annotations

import asyncio
import contextlib

import click

from streams.model import ProjectType

__all__ = ["emulator"]


@click.command()
@click.option(
    "--host",
    default="127.0.0.1",
    envvar="FPI_EMULATOR_HOST",
    show_default=True,
    help="Address to listen on (FPI_EMULATOR_HOST).",
)
@click.option(
    "--port",
    default=8090,
    type=int,
    envvar="FPI_EMULATOR_PORT",
    show_default=True,
    help="Port to listen on (FPI_EMULATOR_PORT).",
)
@click.option(
    "--project-type",
    type=click.Choice([p.value for p in ProjectType]),
    default="email",
    envvar="FPI_PROJECT_TYPE",
    show_default=True,
    help="Iterable project type (FPI_PROJECT_TYPE).",
)
@click.option(
    "--api-key",
    default="emulator-key",
    envvar="FPI_ITERABLE_API_KEY",
    show_default=True,
    help="The key the emulator accepts (FPI_ITERABLE_API_KEY).",
)
@click.option("--no-rate-limits", is_flag=True, help="Do not answer 429 at Iterable's published limits.")
@click.option(
    "--hidden-limit",
    "hidden_limits",
    multiple=True,
    metavar="PATH=CALLS_PER_S",
    help="A limit Iterable does not publish, enforced with 429 (repeatable), e.g. /api/commerce/trackPurchase=400.",
)
@click.option(
    "--error-rate", default=0.0, type=float, show_default=True, help="Fraction of calls answered 500."
)
@click.option("--latency", default=0.0, type=float, show_default=True, help="Seconds added to every answer.")
@click.option(
    "--user-visible-after",
    default=0.0,
    type=float,
    show_default=True,
    help="Seconds before a new user is visible to events.",
)
def emulator(
    host: str,
    port: int,
    project_type: str,
    api_key: str,
    no_rate_limits: bool,
    hidden_limits: tuple[str, ...],
    error_rate: float,
    latency: float,
    user_visible_after: float,
) -> None:
    """Serve an emulated Iterable project; change faults at runtime with POST /_emulator/faults."""
    from streams.emulator import EmulatorConfig, EmulatorServer, Faults
    from streams.emulator.config import parse_limits

    try:
        hidden = parse_limits(hidden_limits)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--hidden-limit") from None
    config = EmulatorConfig(
        hidden_limits=hidden,
        api_keys=(api_key,),
        project_type=ProjectType(project_type),
        rate_limits_enabled=not no_rate_limits,
        faults=Faults(error_rate=error_rate, latency=latency, user_visible_after=user_visible_after),
    )

    async def serve() -> None:
        click.echo(f"Iterable emulator ({project_type} project) on http://{host}:{port}", err=True)
        await EmulatorServer(config, host, port).serve()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
