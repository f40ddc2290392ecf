"""The layers point one way (style.md "For our project" 1; README "How it works"): the pure core imports only
the standard library and itself; nothing outside the shell imports the shell (the app, services, the command
line); and only the faust boundary modules reach into faust's and mode's internals: their submodules, and
private attributes of objects not the module's own."""

from __future__ import annotations

import ast
import pkgutil
import sys
from pathlib import Path

import faust
import mode
import pytest

import streams.explain
import streams.identity
import streams.mapping
import streams.normalize
import streams.transforms
from tests.support import parse_python

STREAMS = Path(streams.mapping.__file__).resolve().parent.parent
CORE = sorted(
    [
        STREAMS / "model.py",
        STREAMS / "errors.py",
        STREAMS / "normalize.py",
        STREAMS / "identity.py",
        STREAMS / "transforms.py",
        STREAMS / "explain.py",
        STREAMS / "steps.py",
        STREAMS / "projects.py",
        *(STREAMS / "mapping").glob("*.py"),
    ]
)
ALLOWED_INTERNAL = {
    "streams.model",
    "streams.errors",
    "streams.normalize",
    "streams.identity",
    "streams.transforms",
    "streams.mapping",
    "streams.steps",
    "streams.projects",
}
FORBIDDEN = {"faust", "aiokafka", "aiohttp", "httpx", "fastavro", "pydantic", "pydantic_settings", "mode", "orjson"}


EVERY_MODULE = sorted(STREAMS.rglob("*.py"))
SHELL = {"streams.app", "streams.services", "streams.cli", "streams.__main__", "streams.commands"}
FAUST_BOUNDARY = {"streams.faust_patches", "streams.faust_compat"}
"""The modules that may touch faust's and mode's internals."""
FAUST_SUBMODULES = {
    f"{package.__name__}.{module.name}"
    for package in (faust, mode)
    for module in pkgutil.iter_modules(package.__path__)
}


def module_name(path: Path) -> str:
    """``streams.codecs._body`` for ``streams/codecs/_body.py``; the bare stem for a file outside the package."""
    if not path.is_relative_to(STREAMS):
        return path.stem
    parts = path.relative_to(STREAMS.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, source: str | None = None) -> set[str]:
    """Absolute names of what ``path`` imports; ``from package import name`` counts ``package.name`` too."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(parse_python(path.read_text() if source is None else source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            elif node.module:
                module = node.module
            else:
                continue
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def within(name: str, modules: set[str]) -> bool:
    return any(name == m or name.startswith(m + ".") for m in modules)


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.name)
def test_core_imports_only_stdlib_and_core(path: Path) -> None:
    for name in imported_modules(path):
        top = name.split(".")[0]
        assert top not in FORBIDDEN, f"{path.name} imports {name}"
        if top == "streams":
            assert name == "streams" or within(name, ALLOWED_INTERNAL), f"{path.name}: {name}"
        else:
            assert top in sys.stdlib_module_names or top == "__future__", f"{path.name} imports {name}"


def test_checker_catches_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import httpx\n")
    with pytest.raises(AssertionError):
        test_core_imports_only_stdlib_and_core(bad)


def shell_imports(path: Path, source: str | None = None) -> list[str]:
    if within(module_name(path), SHELL):
        return []
    return sorted(name for name in imported_modules(path, source) if within(name, SHELL))


@pytest.mark.parametrize("path", EVERY_MODULE, ids=module_name)
def test_only_the_shell_imports_the_shell(path: Path) -> None:
    assert not shell_imports(path), f"{module_name(path)} imports the shell: {shell_imports(path)}"


STAGES = sorted((STREAMS / "stages").glob("*.py"))
BROKER_LIBRARIES = {"faust", "mode", "aiokafka"}


@pytest.mark.parametrize("path", STAGES, ids=module_name)
def test_the_stages_know_nothing_of_faust_or_kafka(path: Path) -> None:
    """The stages take a batch and tables and hand back what to write (issue 18 item 1): broker-free."""
    found = sorted(name for name in imported_modules(path) if name.split(".")[0] in BROKER_LIBRARIES)
    assert not found, f"{module_name(path)} imports {found}"


def faust_internals(path: Path) -> set[str]:
    """What ``path`` reaches inside faust or mode for: submodules imported or named as attributes
    (``faust.streams``), and private names (``faust._x``)."""
    touched = {name for name in imported_modules(path) if within(name, FAUST_SUBMODULES)
               or (name.split(".")[0] in {"faust", "mode"} and "._" in name)}
    for node in ast.walk(parse_python(path.read_text())):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in {"faust", "mode"}:
            name = f"{node.value.id}.{node.attr}"
            if name in FAUST_SUBMODULES or node.attr.startswith("_"):
                touched.add(name)
    return touched


@pytest.mark.parametrize("path", EVERY_MODULE, ids=module_name)
def test_only_the_faust_boundary_touches_faust_internals(path: Path) -> None:
    if module_name(path) in FAUST_BOUNDARY:
        return
    assert not faust_internals(path), f"{module_name(path)} reaches into faust: {sorted(faust_internals(path))}"


@pytest.mark.parametrize(("source", "found"), [
    ("from faust.streams import _current_event\n", {"faust.streams", "faust.streams._current_event"}),
    ("import faust\nfaust.transport.consumer.Consumer\n", {"faust.transport"}),
    ("import mode.services\n", {"mode.services"}),
    ("import faust\nfaust._private\n", {"faust._private"}),
    ("from faust import _private\n", {"faust._private"}),
    ("import faust\nfrom mode import Service\napp = faust.App('x')\n", set()),
])
def test_the_faust_check_sees_internals(tmp_path: Path, source: str, found: set[str]) -> None:
    module = tmp_path / "module.py"
    module.write_text(source)
    assert faust_internals(module) == found


PRIVATE_ELSEWHERE = {
    "streams.brokers": {"_client", "_security_protocol", "_sasl_mechanism", "_bootstrap_servers", "_ssl_context",
                        "_sasl_plain_username", "_sasl_plain_password"},
}
"""Private attributes read outside the faust boundary, all of them not faust's: ``brokers._diagnose`` reads the
connection options of an aiokafka client (aiokafka is pinned exactly) to name the cause of a failed connect."""
NOT_PRIVATE = {"_replace", "_asdict", "_fields", "_value2member_map_"}
"""Underscore names that are public API: a namedtuple's methods, an Enum's value index."""
_BY_NAME = {"getattr", "setattr", "hasattr", "delattr"}


def private_reaches(path: Path, source: str | None = None) -> set[str]:
    """The private attributes (``x._name``, also by ``getattr(x, "_name")``) that ``path`` reaches on objects
    that are not its own: anything but ``self``/``cls`` and the standard library's modules; and on ``self``
    in a class built on a faust or mode class, a private name the class never assigns (the base's)."""
    tree = parse_python(path.read_text() if source is None else source)
    modules: set[str] = set()
    framework: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in {"faust", "mode"}:
            framework.update(alias.asname or alias.name for alias in node.names)
    mine = (modules - {"faust", "mode"}) | {"self", "cls"}
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            if not (isinstance(node.value, ast.Name) and node.value.id in mine):
                found.add(ast.unparse(node))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _BY_NAME
              and len(node.args) > 1 and isinstance(node.args[1], ast.Constant)
              and isinstance(node.args[1].value, str) and _private(node.args[1].value)):
            found.add(f"{ast.unparse(node.args[0])}.{node.args[1].value}")
        elif isinstance(node, ast.ClassDef) and any(
                ast.unparse(base).split(".")[0] in framework | {"faust", "mode"} for base in node.bases):
            found |= _inherited_privates(node)
    return found


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__") and name not in NOT_PRIVATE


def _inherited_privates(cls: ast.ClassDef) -> set[str]:
    """``self._name`` read in ``cls`` although ``cls`` never assigns it: a faust or mode base class's internals."""
    nodes = [node for node in ast.walk(cls) if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
             and node.value.id == "self" and _private(node.attr)]
    assigned = {node.attr for node in nodes if isinstance(node.ctx, ast.Store)}
    defined = {node.name for node in cls.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}
    return {f"self.{node.attr}" for node in nodes if node.attr not in assigned | defined}


@pytest.mark.parametrize("path", EVERY_MODULE, ids=module_name)
def test_only_the_faust_boundary_reaches_private_attributes(path: Path) -> None:
    name = module_name(path)
    if name in FAUST_BOUNDARY:
        return
    allowed = PRIVATE_ELSEWHERE.get(name, set())
    reached = sorted(r for r in private_reaches(path) if r.rpartition(".")[2] not in allowed)
    assert not reached, f"{name} reaches private attributes of objects not its own (faust's?): {reached}"


@pytest.mark.parametrize(("source", "found"), [
    ("def f(consumer):\n    return consumer._committed_offset\n", {"consumer._committed_offset"}),
    ("def f(app):\n    app.topic._maxsize = 5\n", {"app.topic._maxsize"}),
    ("def f(consumer):\n    return getattr(consumer, '_thread', None)\n", {"consumer._thread"}),
    ("from mode import Service\nclass S(Service):\n    def f(self):\n        return self._crash_reason\n",
     {"self._crash_reason"}),
    ("from mode import Service\nclass S(Service):\n    def __init__(self):\n        self._own = 1\n"
     "    def _helper(self):\n        return self._own\n    def f(self):\n        return self._helper()\n", set()),
    ("import os\nclass C:\n    def f(self):\n        os._exit(self._code)\n", set()),
    ("def f(parts, kind):\n    return parts._replace(x=1), kind._value2member_map_\n", set()),
])
def test_the_private_attribute_check_sees_reaches(source: str, found: set[str]) -> None:
    assert private_reaches(STREAMS / "module.py", source) == found


@pytest.mark.parametrize(("source", "found"), [
    ("from streams.app import build_app\n", ["streams.app", "streams.app.build_app"]),
    ("from streams import cli\n", ["streams.cli"]),
    ("import streams.commands.replay\n", ["streams.commands.replay"]),
    ("from ..commands import dev\n", ["streams.commands", "streams.commands.dev"]),
    ("from .. import services\n", ["streams.services"]),
    ("from . import _event\nfrom streams import errors\n", []),
])
def test_the_shell_check_sees_upward_imports(source: str, found: list[str]) -> None:
    assert shell_imports(STREAMS / "codecs" / "_body.py", source) == found


@pytest.mark.parametrize(
    "module", [streams.mapping, streams.normalize, streams.identity, streams.transforms, streams.explain]
)
def test_all_lists_the_public_names(module: object) -> None:
    public = {name for name in vars(module) if not name.startswith("_")}
    exported = set(module.__all__)  # type: ignore[attr-defined]
    assert exported <= public
    defined_here = {
        name
        for name in public
        if getattr(getattr(module, name), "__module__", None) == module.__name__
        and callable(getattr(module, name))
    }  # type: ignore[attr-defined]
    assert defined_here <= exported
