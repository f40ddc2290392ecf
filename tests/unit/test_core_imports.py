"""The layers point one way (style.md "For our project" 1; README "How it works"): the pure core imports only
the standard library and itself; nothing outside the shell imports the shell (the app, services, the command
line); and only the faust boundary modules reach into faust's and mode's internals."""

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
