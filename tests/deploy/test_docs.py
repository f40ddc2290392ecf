"""docs/operations.md, k8s/ and the Helm chart name only what exists.

Every ``FPI_*`` variable they mention must be a field of ``streams.settings.Settings`` (the runbook once
documented a setting that never existed), and every line quoted in the runbook's troubleshooting table
must be text the code can print, with a reason code the error tree has.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from streams.errors import Reason
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = ROOT / "docs" / "operations.md"
VARIABLE = re.compile(r"\bFPI_[A-Z][A-Z0-9_]*[A-Z0-9]\b")
SETTINGS = {f"FPI_{name.upper()}" for name in Settings.model_fields}


def deployment_files() -> list[Path]:
    files = [RUNBOOK, ROOT / "docker-compose.yml"]
    for folder in ("k8s", "charts"):
        files += [path for path in sorted((ROOT / folder).rglob("*")) if path.is_file()]
    return files


def unknown_variables(text: str) -> set[str]:
    return set(VARIABLE.findall(text)) - SETTINGS


class TestVariables:
    @pytest.mark.parametrize("path", deployment_files(), ids=lambda p: str(p.relative_to(ROOT)))
    def test_every_variable_is_a_setting(self, path: Path) -> None:
        assert unknown_variables(path.read_text()) == set()

    def test_an_invented_variable_is_caught(self) -> None:
        assert unknown_variables("hold them with `FPI_HOLD_ANONYMOUS=true`") == {"FPI_HOLD_ANONYMOUS"}

    def test_the_files_mention_settings_at_all(self) -> None:
        found = set().union(*(VARIABLE.findall(path.read_text()) for path in deployment_files()))
        assert {"FPI_KAFKA_SSL_CAFILE", "FPI_KAFKA_SASL_PASSWORD", "FPI_SCHEMA_REGISTRY_URL",
                "FPI_REPLAY_TOPIC"} <= found


def troubleshooting_rows() -> list[tuple[str, str]]:
    section = RUNBOOK.read_text().split("## Troubleshooting by error line", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`") and cells[0].endswith("`"):
            rows.append((cells[0][1:-1], cells[1]))
    return rows


class TestTroubleshooting:
    def test_table_is_there(self) -> None:
        assert len(troubleshooting_rows()) >= 20

    @pytest.mark.parametrize(("fragment", "reason"), troubleshooting_rows())
    def test_line_is_printed_by_the_code(self, fragment: str, reason: str) -> None:
        source = "\n".join(path.read_text() for path in (ROOT / "streams").rglob("*.py"))
        assert fragment in source
        for word in re.findall(r"[a-z_]+", reason.split("(")[0]):
            if word != "or":
                assert word in {member.value for member in Reason}, word
