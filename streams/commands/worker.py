"""``freshpaint-iterable worker``: run the Faust worker with our settings."""

from __future__ import annotations

import click

__all__ = ["worker"]


@click.command()
@click.option("--loglevel", "-l", default="info", envvar="FPI_LOG_LEVEL", show_default=True,
              help="Log level of the worker (FPI_LOG_LEVEL).")
def worker(loglevel: str) -> None:
    """Run the stream processor (settings from FPI_* environment variables)."""
    import faust

    from streams.app import build_app
    from streams.settings import Settings

    app = build_app(Settings())
    faust.Worker(app, loglevel=loglevel).execute_from_commandline()
