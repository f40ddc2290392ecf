"""Several Iterable projects from one deployment: the routing file and which project an event goes to.

Freshpaint events carry their environment token (``properties.token`` of the raw dialect, kept by
``normalize`` in the event's ``context``); companies run production and staging environments, or several
brands, each with its own Iterable project. A routing file (TOML, ``FPI_PROJECTS_FILE``) maps a token, or
the value of another property, to a project::

    property = "token"              # optional: the property whose value selects the project (default token)
    default = "production"          # optional: the project of events no project claims; without it they
                                    # are dead-lettered ``no_project``

    [projects.production]
    values = ["env-123"]            # the property values routed here (a string or a list)
    api_key_env = "ITERABLE_KEY_PRODUCTION"   # the NAME of the environment variable holding the key
    region = "us"                   # us | eu (default us)
    # base_url = "http://127.0.0.1:8080"      # optional: instead of the region (the emulator)
    project_type = "email"          # email | userId | hybrid
    # property = "brand"            # optional: this project matches another property

    [projects.production.mapping]   # optional: the [mapping] keys of ``explain --config``, over the FPI_* ones
    default_identify_transformations = true
    page_event_name = "Page View"

    [[projects.production.transformations]]   # optional, with or instead of transformations_file = "..."
    action = "drop"
    event = "Debug Ping"

A property value is looked for in the event's ``properties``, then ``context``, then ``traits``; only a
string matches. Projects are tried in file order, the first that matches wins. A project's transformation
rules (``transformations_file``, relative to the routing file, then its ``[[...transformations]]``) replace
``FPI_TRANSFORMATIONS_FILE``'s; without any, that file's rules apply. ``carts``, ``push_app_name`` and the
subscription traits are deployment-wide (their tables): set ``FPI_CARTS``, ``FPI_PUSH_APP_NAME``, ``FPI_*_TRAIT(S)``.

Pure: the standard library and the core only. The shell checks that each key variable is set
(``streams.wiring.build_routing``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.errors import ConfigError
from streams.mapping import MappingConfig
from streams.mapping.config import mapping_values
from streams.model import Event, ProjectType
from streams.transforms import Rule, Transformations, load_transformations, parse_transformations, read_toml

__all__ = ["Project", "Routing", "load_routing", "parse_routing", "project_for", "unrouted_detail"]

REGIONS = ("us", "eu")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TOP = frozenset({"property", "default", "projects"})
_PROJECT = frozenset({"values", "property", "api_key_env", "region", "base_url", "project_type", "mapping",
                      "transformations_file", "transformations"})
_DEPLOYMENT_WIDE = {"carts": "FPI_CARTS", "push_app_name": "FPI_PUSH_APP_NAME",
                    **{trait: f"FPI_{trait.upper()}" for trait in ("unsubscribed_channels_trait",
                                                                  "unsubscribed_message_types_trait",
                                                                  "email_lists_trait", "opt_out_traits")}}
"""Mapping settings whose table the worker declares from its own settings (``carts``, ``devices``,
``subscriptions``): one value for every project."""


@dataclass(frozen=True, slots=True)
class Project:
    """One Iterable project of the routing file."""

    name: str
    """The project's name in the file: a request's ``project`` and the metrics' ``project`` label."""
    property: str
    values: frozenset[str]
    api_key_env: str
    """The name of the environment variable that holds the project's API key (never the key)."""
    region: str = "us"
    base_url: str | None = None
    mapping: MappingConfig = dataclasses.field(default_factory=MappingConfig)
    """The project's type, mapping settings and transformation rules."""


@dataclass(frozen=True, slots=True)
class Routing:
    """The projects of a routing file, in file order, and the default project's name (or ``None``)."""

    projects: tuple[Project, ...]
    default: str | None = None
    by_name: Mapping[str, Project] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {project.name: project for project in self.projects})

    def get(self, name: str) -> Project:
        """The project named ``name``. Raises ``KeyError``."""
        return self.by_name[name]

    def choose(self, event: Event) -> Project | None:
        """The project ``event`` goes to (``project_for``), or ``None``: dead-letter it ``no_project``."""
        name = project_for(event, self)
        return None if name is None else self.get(name)


def _value(event: Event, name: str) -> object:
    for fields in (event.properties, event.context, event.traits):
        if name in fields:
            return fields[name]
    return None


def project_for(event: Event, routing: Routing) -> str | None:
    """The name of the first project whose property has one of its values in ``event``; else the default
    project's name; else ``None`` (no project claims the event)."""
    for project in routing.projects:
        value = _value(event, project.property)
        if isinstance(value, str) and value in project.values:
            return project.name
    return routing.default


def unrouted_detail(event: Event, routing: Routing) -> str:
    """Why ``event`` goes to no project: the value it has for each routing property (the dead letter's detail)."""
    seen = []
    for name in dict.fromkeys(project.property for project in routing.projects):
        value = _value(event, name)
        seen.append(f"{name}={str(value)[:64]!r}" if value is not None else f"no {name}")
    return (f"no project of the routing file (FPI_PROJECTS_FILE) claims this event ({', '.join(seen)}) and no "
            "default project is configured: add its value to a project, or set default, then re-drive it")


def load_routing(path: str | Path, base: MappingConfig) -> Routing:
    """The routing file at ``path`` (``parse_routing``). Raises ``ConfigError`` (one line) for a file that
    cannot be read, is not TOML, or holds a wrong key or value."""
    return parse_routing(read_toml(path, "routing file"), base, Path(path).parent)


def parse_routing(document: Mapping[str, Any], base: MappingConfig, base_dir: Path = Path()) -> Routing:
    """Validate a parsed routing file; ``base`` is the mapping of the ``FPI_*`` settings each project starts
    from, ``base_dir`` where a ``transformations_file`` is looked for. Raises ``ConfigError`` naming the key."""
    unknown = sorted(set(document) - _TOP)
    if unknown:
        raise ConfigError(f"unknown top-level key(s) {', '.join(unknown)} (known: {', '.join(sorted(_TOP))})")
    default_property = _text(document, "property", "property") or "token"
    tables = document.get("projects")
    if not isinstance(tables, Mapping) or not tables:
        raise ConfigError("no projects: add at least one [projects.<name>] table")
    projects = tuple(_project(name, table, default_property, base, base_dir) for name, table in tables.items())
    claimed: dict[tuple[str, str], str] = {}
    for project in projects:
        for value in sorted(project.values):
            other = claimed.setdefault((project.property, value), project.name)
            if other != project.name:
                raise ConfigError(f"[projects.{project.name}] values: {project.property} {value!r} is already "
                                  f"routed to project {other!r}; a value belongs to one project")
    default = _text(document, "default", "default")
    if default is not None and default not in tables:
        raise ConfigError(f"default = {default!r} names no [projects.<name>] table (projects: "
                          f"{', '.join(tables)})")
    return Routing(projects, default)


def _text(table: Mapping[str, Any], key: str, where: str) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} must be a non-empty string")
    return value


def _project(name: str, table: Any, default_property: str, base: MappingConfig, base_dir: Path) -> Project:
    where = f"[projects.{name}]"
    if not _NAME.match(name):
        raise ConfigError(f"{where}: a project name is letters, digits, '_', '.' or '-' (it labels metrics)")
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} must be a table")
    unknown = sorted(set(table) - _PROJECT)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_PROJECT))})")
    missing = [key for key in ("values", "api_key_env", "project_type") if key not in table]
    if missing:
        raise ConfigError(f"{where}: missing {', '.join(missing)}")
    raw_values = table["values"]
    values = [raw_values] if isinstance(raw_values, str) else raw_values
    if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values):
        raise ConfigError(f"{where} values must be a non-empty string or a non-empty list of strings")
    variable = _text(table, "api_key_env", f"{where} api_key_env")
    assert variable is not None
    if not _VARIABLE.match(variable):
        raise ConfigError(f"{where} api_key_env = {variable!r} is not an environment variable name: give the "
                          "NAME of the variable that holds the key, never the key")
    region = _text(table, "region", f"{where} region") or "us"
    if region not in REGIONS:
        raise ConfigError(f"{where} region = {region!r}: use one of {', '.join(REGIONS)}")
    base_url = _text(table, "base_url", f"{where} base_url")
    if base_url is not None and not re.match(r"^https?://[^/\s]+", base_url):
        raise ConfigError(f"{where} base_url = {base_url!r} is not an http(s) URL")
    try:
        project_type = ProjectType(table["project_type"])
    except ValueError:
        raise ConfigError(f"{where} project_type = {table['project_type']!r}: use one of "
                          f"{', '.join(p.value for p in ProjectType)}") from None
    mapping = _mapping(where, table.get("mapping", {}), base)
    mapping = dataclasses.replace(mapping, project_type=project_type,
                                  transformations=_rules(where, table, base_dir, base.transformations))
    return Project(name=name, property=_text(table, "property", f"{where} property") or default_property,
                   values=frozenset(values), api_key_env=variable, region=region, base_url=base_url,
                   mapping=mapping)


def _mapping(where: str, section: Any, base: MappingConfig) -> MappingConfig:
    if not isinstance(section, Mapping):
        raise ConfigError(f"{where} mapping must be a table ([projects.<name>.mapping])")
    for key in section:
        if key in _DEPLOYMENT_WIDE:
            raise ConfigError(f"[{where[1:-1]}.mapping] {key}: deployment-wide (its table is the worker's); set "
                              f"{_DEPLOYMENT_WIDE[key]} instead")
    if "project_type" in section:
        raise ConfigError(f"[{where[1:-1]}.mapping] project_type: it goes in the project table {where}")
    return dataclasses.replace(base, **mapping_values(section, f"[{where[1:-1]}.mapping]"))


def _rules(where: str, table: Mapping[str, Any], base_dir: Path, inherited: Transformations) -> Transformations:
    if "transformations_file" not in table and "transformations" not in table:
        return inherited
    rules: list[Rule] = []
    try:
        if "transformations_file" in table:
            file = _text(table, "transformations_file", f"{where} transformations_file")
            rules.extend(load_transformations(base_dir / str(file)).rules)
        rules.extend(parse_transformations(table.get("transformations", [])).rules)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return Transformations(tuple(rules))
