"""Files that ship inside the package: the Avro schemas and the sample events of ``dev``.

Each has one source of truth in the repository (``avro/``, ``tests/data/``); ``setup.py`` maps those
folders into the wheel as ``streams/_avro`` and ``streams/_data``, so an installed package finds them
through ``importlib.resources``. A source checkout (and its editable install, whose import hook does
not serve such mapped folders) has no copies there and reads the repository's folders instead.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

__all__ = ["bundled"]

_CHECKOUT = Path(__file__).resolve().parents[1]


def bundled(name: str, checkout: str) -> Traversable:
    """The folder ``streams/<name>`` of the installed package, else ``<checkout root>/<checkout>``."""
    packaged = files("streams").joinpath(name)
    if packaged.is_dir():
        return packaged
    return _CHECKOUT / checkout
