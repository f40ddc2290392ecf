"""The pure core imports only the standard library and itself (style.md "For our project" 1)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import streams.explain
import streams.identity
import streams.mapping
import streams.normalize
import streams.transforms

STREAMS = Path(streams.mapping.__file__).resolve().parent.parent
CORE = sorted(
    [
        STREAMS / "model.py",
        STREAMS / "errors.py",
        STREAMS / "normalize.py",
        STREAMS / "identity.py",
        STREAMS / "transforms.py",
        STREAMS / "explain.py",
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
}
FORBIDDEN = {"faust", "aiokafka", "aiohttp", "httpx", "fastavro", "pydantic", "pydantic_settings", "mode", "orjson"}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.name)
def test_core_imports_only_stdlib_and_core(path: Path) -> None:
    for name in imported_modules(path):
        top = name.split(".")[0]
        assert top not in FORBIDDEN, f"{path.name} imports {name}"
        if top == "streams":
            assert any(name == m or name.startswith(m + ".") for m in ALLOWED_INTERNAL), (
                f"{path.name}: {name}"
            )
        else:
            assert top in sys.stdlib_module_names or top == "__future__", f"{path.name} imports {name}"


def test_checker_catches_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import httpx\n")
    with pytest.raises(AssertionError):
        test_core_imports_only_stdlib_and_core(bad)


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
