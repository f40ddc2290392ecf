"""``freshpaint-iterable explain``: the event tester (runs the mapping core; no Kafka, no Iterable)."""

from __future__ import annotations

import dataclasses
import json
import sys
import tomllib
from pathlib import Path
from typing import IO, Any

import click

__all__ = ["explain"]

_EPILOG = """\b
Example:
  $ echo '{"type":"identify","messageId":"m1","timestamp":"2024-03-05T14:07:00Z",
           "userId":"u1","traits":{"email":"jane@example.com","plan":"pro"}}' \\
      | freshpaint-iterable explain --project-type hybrid -
  {"message_id": "m1", "decision": "send", "reason": null, "detail": null, "requests":
   [{"method": "POST", "path": "/api/users/update", "body": {"email": "jane@example.com",
     "userId": "u1", "dataFields": {"plan": "pro"}, "mergeNestedObjects": false}}]}

\b
--config FILE is TOML:
  [mapping]
  project_type = "hybrid"                 # email | userId | hybrid
  default_identify_transformations = false
  require_identify_first = true
  merge_nested_objects = false
  page_event_name = "Page Viewed"
  screen_event_name = "Screen Viewed"
  date_fields = ["trial_ends"]            # epoch numbers in these fields are dates
  transformations_file = "rules.toml"     # optional, relative to FILE
  [[transformations]]                     # optional rules, after the file's
  action = "rename_event"                 # drop | rename_event | rename_property |
  event = "Signed Up"                     #   drop_property | set_property | map_values
  to = "Sign Up"
Settings come from FPI_* variables (FPI_PROJECT_TYPE, FPI_TRANSFORMATIONS_FILE, ...) as for every
command; the --config file overrides them and command-line options override both.

\b
Output: one JSON object per input line, in order:
  message_id, decision (send | drop | error), reason (a stable code or null),
  detail (text or null), requests [{method, path, body}].
Exit status 1 when any line was an error (unparseable or invalid event), else 0.
"""


@click.command(epilog=_EPILOG)
@click.option("--project-type", type=click.Choice(["email", "userId", "hybrid"]), default=None,
              help="Iterable project type (default: the config file's, else FPI_PROJECT_TYPE, else email).")
@click.option("--default-identify-transformations", is_flag=True, default=None,
              help="Rename first_name, last_name, phone_number, date_of_birth, zip_code on identify.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="TOML file with a [mapping] table and [[transformations]] rules (see below).")
@click.option("--transformations", "transformations_file", default=None,
              type=click.Path(dir_okay=False, path_type=Path),
              help="A separate TOML file of [[transformations]] rules (replaces the config file's).")
@click.argument("file", type=click.File("r", encoding="utf-8"), default="-")
def explain(
    project_type: str | None,
    default_identify_transformations: bool | None,
    config_file: Path | None,
    transformations_file: Path | None,
    file: IO[str],
) -> None:
    """Show what each Freshpaint event in FILE (JSON lines, either dialect; - for stdin) becomes in
    Iterable: the requests it would send, or why it is dropped. Identity state carries from line to
    line, exactly as in the worker.
    """
    from streams.explain import explain_lines
    from streams.mapping import load_mapping_config
    from streams.model import ProjectType
    from streams.settings import Settings
    from streams.transforms import load_transformations
    from streams.wiring import build_mapping_config, build_routing

    overrides: dict[str, Any] = {}
    if project_type is not None:
        overrides["project_type"] = ProjectType(project_type)
    if default_identify_transformations:
        overrides["default_identify_transformations"] = True
    if transformations_file is not None:
        overrides["transformations"] = load_transformations(transformations_file)
    # FPI_* as for every command, then what --config sets, then the flags.
    settings = Settings.load()
    config = build_mapping_config(settings)
    if config_file is not None:
        from_file = load_mapping_config(config_file, **overrides)
        overrides = {name: getattr(from_file, name) for name in (*_set_in(config_file), *overrides)}
    config = dataclasses.replace(config, **overrides)

    errors = 0
    routing = build_routing(settings, config, need_keys=False)  # FPI_PROJECTS_FILE: each event's project
    for record in explain_lines(file, config, hold=settings.hold_rule(), routing=routing):
        errors += record["decision"] == "error"
        click.echo(json.dumps(record, ensure_ascii=False))
    sys.stdout.flush()
    if errors:
        sys.exit(1)


def _set_in(config_file: Path) -> list[str]:
    """The ``MappingConfig`` fields a ``--config`` file sets (it was read, and checked, already)."""
    with config_file.open("rb") as handle:
        document = tomllib.load(handle)
    section = document.get("mapping", {})
    names = [name for name in section if name != "transformations_file"]
    if "transformations_file" in section or "transformations" in document:
        names.append("transformations")
    return names
