"""``freshpaint-iterable worker``: run the Faust worker with our settings."""

from __future__ import annotations

import asyncio
import gc
import logging
import logging.config
from typing import TYPE_CHECKING

import click

from streams.cli import LOG_FORMAT

if TYPE_CHECKING:
    from streams.settings import Settings

__all__ = ["worker"]


@click.command()
@click.option("--loglevel", "-l", default="info", envvar="FPI_LOG_LEVEL", show_default=True,
              help="Log level (FPI_LOG_LEVEL).")
@click.option("--log-format", type=click.Choice(["json", "text"]), default="json", envvar="FPI_LOG_FORMAT",
              show_default=True, help="json lines for log shippers, text for people (FPI_LOG_FORMAT).")
def worker(loglevel: str, log_format: str) -> None:
    """Run the stream processor. Settings come from FPI_* environment variables (see README)."""
    click.get_current_context().meta[LOG_FORMAT] = log_format
    import faust

    from streams.app import build_app
    from streams.brokers import client_options
    from streams.codecs import load_schemas
    from streams.faust_compat import check_faust_compatibility
    from streams.logs import logging_config
    from streams.settings import load_settings
    from streams.topics import ensure_topics
    from streams.wiring import build_mapping_config, build_routing, project_keys

    # Everything that can be wrong with the configuration fails here, before a topic is created.
    check_faust_compatibility()
    settings = load_settings()
    load_schemas()
    routing = build_routing(settings, build_mapping_config(settings))  # FPI_PROJECTS_FILE, if set
    client_options(settings)
    asyncio.run(ensure_topics(settings, create=settings.create_topics))
    if settings.schema_registry_url:
        asyncio.run(_ask_registry(settings))
    app = build_app(settings)
    config = logging_config(loglevel, (*settings.secret_values(), *project_keys(routing)), log_format)
    if settings.iterable_insecure_skip_tls_verify:
        logging.config.dictConfig(config)
        logging.getLogger("streams.worker").warning(
            "TLS verification of Iterable is DISABLED (FPI_ITERABLE_INSECURE_SKIP_TLS_VERIFY=true); "
            "never use this outside a test rig"
        )
    runner = faust.Worker(app, loglevel=loglevel, logging_config=config)
    # faust's terminal spinner (on at WARN and above) sets the root logger to DEBUG, which makes
    # every library build ~10 debug records per event that the handler then throws away.
    runner.spinner = None
    _collect_garbage_less_often()
    runner.execute_from_commandline()


async def _ask_registry(settings: Settings) -> None:
    """A wrong registry credential or URL fails the start, not each event later (RegistryUnavailable)."""
    from streams.codecs import SchemaRegistryClient

    async with SchemaRegistryClient.connect(settings) as registry:
        await registry.subjects()


YOUNG_THRESHOLD = 200_000
"""Net new container objects between young-generation collections (CPython's default is 700)."""


def _collect_garbage_less_often() -> None:
    """Keep the cyclic collector off the hot path.

    Start-up leaves a large, long-lived heap (faust, aiokafka, pydantic, our schemas); freezing it
    stops every collection from re-scanning it. The event path makes few reference cycles, so the
    collector's work is walking the live batches in flight (their dicts, tuples, requests and outcomes:
    about 50,000 objects under a backlog, measured with bench/_gc_worker.py's BENCH_GC_LOG): with a
    threshold at or below that, nearly every young collection walks a whole working set and frees next
    to nothing. A threshold well above it leaves collections to real growth and to cycles.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 50, 100)
