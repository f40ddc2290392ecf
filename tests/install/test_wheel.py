"""What the wheel carries: the repository's schemas and sample, inside the ``streams`` package."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from tests.support import REPO

pytestmark = pytest.mark.install


class TestWheelContents:
    def test_schemas_are_the_repository_files(self, wheel: Path) -> None:
        with zipfile.ZipFile(wheel) as archive:
            packaged = {Path(n).name: archive.read(n) for n in archive.namelist() if n.startswith("streams/_avro/")}
        assert packaged == {p.name: p.read_bytes() for p in (REPO / "avro").glob("*.avsc")}

    def test_sample_events_for_dev(self, wheel: Path) -> None:
        with zipfile.ZipFile(wheel) as archive:
            sample = archive.read("streams/_data/sample_events.jsonl")
            data = [n for n in archive.namelist() if n.startswith("streams/_data/")]
        assert sample == (REPO / "tests" / "data" / "sample_events.jsonl").read_bytes()
        assert data == ["streams/_data/sample_events.jsonl"]

    def test_installs_nothing_outside_the_streams_package(self, wheel: Path) -> None:
        with zipfile.ZipFile(wheel) as archive:
            tops = {name.split("/")[0] for name in archive.namelist()}
        assert tops == {"streams", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}
