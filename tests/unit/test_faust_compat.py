"""The version guard (``streams.faust_compat``), and contracts: the shapes of faust, mode and aiokafka
that ``streams.faust_patches`` relies on, read from the installed code, so an upgrade fails here first."""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
import textwrap
import tomllib
from collections.abc import Callable
from importlib import metadata

import aiokafka
import click
import pytest
from click.testing import CliRunner
from faust.tables.base import Collection
from faust.tables.recovery import Recovery
from faust.transport.consumer import Consumer
from faust.transport.producer import ProducerBuffer
from mode import Service
from mode.services import ServiceTask
from mode.utils.queues import FlowControlEvent, FlowControlQueue

import streams.cli
from streams import faust_compat
from streams.errors import ConfigError, UnsupportedDependencies
from streams.faust_compat import CONTACTS, TESTED_VERSIONS, Contact, check_faust_compatibility
from tests.support import REPO, parse_python


def _tree(function: Callable[..., object]) -> ast.AST:
    return parse_python(textwrap.dedent(inspect.getsource(function)))


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    """Calls of ``name`` or ``<anything>.name`` in ``tree``."""
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)
            and ((isinstance(node.func, ast.Attribute) and node.func.attr == name)
                 or (isinstance(node.func, ast.Name) and node.func.id == name))]


def _races_delivery_against_suspend_flow(tree: ast.AST) -> bool:
    """``wait_first(callback(message), self.suspend_flow.wait())``, the only call shape the inline delivery takes
    over (any other falls back to faust's own ``wait_first``, and the patch would silently do nothing)."""
    for call in _calls(tree, "wait_first"):
        if len(call.args) != 2 or call.keywords:
            continue
        delivery, suspend = call.args
        if (isinstance(delivery, ast.Call) and isinstance(delivery.func, ast.Name)
                and delivery.func.id == "callback" and ast.unparse(suspend) == "self.suspend_flow.wait()"):
            return True
    return False


def _gives_up_after(tree: ast.AST) -> float | None:
    """The timeout of the ``asyncio.wait_for`` a flush gives up after."""
    for call in _calls(tree, "wait_for"):
        for keyword in call.keywords:
            if keyword.arg == "timeout" and isinstance(keyword.value, ast.Constant):
                return float(keyword.value.value)
    return None


def _moves_only_partitions_with_a_committed_offset(tree: ast.AST) -> bool:
    """``if offset and offset > 0: self._fetcher.seek_to(tp, offset)``: no else, so a partition never
    committed keeps its position (what ``_rewind_uncommitted_partitions_on_seek`` makes up for)."""
    for node in ast.walk(tree):
        if (isinstance(node, ast.If) and ast.unparse(node.test) == "offset and offset > 0" and not node.orelse
                and [ast.unparse(s) for s in node.body] == ["self._fetcher.seek_to(tp, offset)"]):
            return True
    return False


class TestContracts:
    def test_faust_races_each_delivery_against_suspend_flow_with_two_arguments(self) -> None:
        assert _races_delivery_against_suspend_flow(_tree(Consumer._drain_messages))

    def test_the_drain_check_rejects_another_call_shape(self) -> None:
        three = parse_python("async def f(self):\n"
                          "    await self.wait_first(callback(message), self.suspend_flow.wait(), self.x)\n")
        assert not _races_delivery_against_suspend_flow(three)

    def test_faust_flush_gives_up_after_a_tenth_of_a_second(self) -> None:
        assert [ast.unparse(call) for call in _calls(_tree(ProducerBuffer.flush), "flush_atmost")] == [
            "self.flush_atmost(None)"]
        assert _gives_up_after(_tree(ProducerBuffer.flush_atmost)) == 0.1

    def test_the_buffer_task_passes_records_on_through_send_pending_looked_up_at_start(self) -> None:
        # flush_the_whole_producer_buffer replaces _send_pending before the buffer starts; a task that looked it
        # up per record, or called another method, would bypass the count of records being passed on.
        source = inspect.getsource(ProducerBuffer._handle_pending.fun)  # type: ignore[attr-defined]
        assert "send_pending = self._send_pending" in source
        assert "self.message_sent.set()" in source

    async def test_a_redundant_resume_clears_the_managed_queues(self) -> None:
        flow = FlowControlEvent(initially_suspended=False)
        queue: FlowControlQueue = FlowControlQueue(flow_control=flow, clear_on_resume=True)
        queue.put_nowait("fetched")
        flow.resume()
        assert queue.empty()

    def test_aiokafka_seek_to_committed_leaves_partitions_never_committed(self) -> None:
        assert _moves_only_partitions_with_a_committed_offset(_tree(aiokafka.AIOKafkaConsumer.seek_to_committed))

    def test_the_seek_check_rejects_a_seek_to_the_start(self) -> None:
        rewinds = parse_python("if offset and offset > 0:\n    self._fetcher.seek_to(tp, offset)\n"
                            "else:\n    self._fetcher.seek_to(tp, 0)\n")
        assert not _moves_only_partitions_with_a_committed_offset(rewinds)


    def test_faust_recovery_loop_is_the_one_the_batched_loop_was_written_from(self) -> None:
        # drain_changelogs_in_batches repeats faust's per-record steps; on any change to faust's loop (comments
        # aside), re-read it, carry the change over and update the digest.
        tree = _tree(Recovery._slurp_changelogs.fun)
        assert hashlib.sha256(ast.unparse(tree).encode()).hexdigest() == _SLURP_CHANGELOGS_DIGEST

    def test_mode_starts_each_service_task_as_looked_up_on_the_instance(self) -> None:
        # so that the batched loop, set on one Recovery instance, replaces faust's for that instance only
        assert isinstance(vars(Recovery)["_slurp_changelogs"], ServiceTask)
        assert "task = getattr(self, attr_name)" in inspect.getsource(Service._get_tasks)
        assert "self.add_future(task.fun(self))" in inspect.getsource(Service._actually_start)

    def test_a_table_handles_a_changelog_event_only_with_a_callback_set(self) -> None:
        # the batched loop skips the per-record coroutine when the table has no on_changelog_event callback
        [function] = parse_python(textwrap.dedent(inspect.getsource(Collection.on_changelog_event))).body
        assert isinstance(function, ast.AsyncFunctionDef)
        docstring, check = function.body
        assert isinstance(docstring, ast.Expr) and isinstance(check, ast.If) and not check.orelse
        assert ast.unparse(check.test) == "self._on_changelog_event"
        assert [ast.unparse(statement) for statement in check.body] == ["await self._on_changelog_event(event)"]


_SLURP_CHANGELOGS_DIGEST = "37b7821eba6e4d7b0a48921ec5646bd2979097b14c4b61770e33bf44e1a5ffc8"
"""SHA-256 of ``ast.unparse`` of faust-streaming 0.15.3's ``Recovery._slurp_changelogs``."""


class TestGuard:
    def test_passes_on_the_installed_set(self) -> None:
        check_faust_compatibility()

    @pytest.mark.parametrize(("installed", "shown"), [("0.15.4", "0.15.4"), (None, "not installed")])
    def test_refuses_another_faust_with_one_line(
        self, monkeypatch: pytest.MonkeyPatch, installed: str | None, shown: str
    ) -> None:
        real = metadata.version

        def version(name: str) -> str:
            if name != "faust-streaming":
                return real(name)
            if installed is None:
                raise metadata.PackageNotFoundError(name)
            return installed

        monkeypatch.setattr(metadata, "version", version)
        with pytest.raises(UnsupportedDependencies) as refused:
            check_faust_compatibility()
        line = str(refused.value)
        assert "\n" not in line
        assert f"faust-streaming {shown} (want 0.15.3)" in line
        assert "mode-streaming 0.7.1 (want" not in line
        assert "pip install -c constraints.txt" in line

    def test_refuses_when_a_patched_attribute_is_gone(self, monkeypatch: pytest.MonkeyPatch) -> None:
        gone = Contact("faust.transport.consumer", "Consumer", "_unacked_records", True, "faust_patches.x")
        monkeypatch.setattr(faust_compat, "CONTACTS", (*CONTACTS, gone))
        with pytest.raises(UnsupportedDependencies, match=r"lack faust\.transport\.consumer\.Consumer\."
                                                          r"_unacked_records \(used by streams\.faust_patches\.x\)"):
            check_faust_compatibility()

    @pytest.mark.parametrize("contact", [
        Contact("faust.streams", "", "_current_evnt", False, "app"),
        Contact("faust.transport.producer", "ProducerBuffer", "flush_all", False, "faust_patches"),
        Contact("faust.transport.producer", "NoSuchBuffer", "flush", False, "faust_patches"),
        Contact("faust.no_such_module", "", "x", False, "app"),
        Contact("faust.channels", "Channel", "max_size", True, "app"),
    ], ids=lambda c: c.name)
    def test_each_kind_of_contact_can_be_missing(self, contact: Contact) -> None:
        assert not faust_compat._exists(contact)

    def test_is_a_configuration_error_the_command_line_shows_as_one_line(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(metadata, "version", lambda name: "9.9")
        monkeypatch.setitem(streams.cli._COMMANDS, "probe", f"{__name__}:probe")
        result = CliRunner().invoke(streams.cli.main, ["probe"])
        assert result.exit_code == 2
        assert issubclass(UnsupportedDependencies, ConfigError)
        assert result.output.startswith("error [unsupported_dependencies]: the faust patches")
        assert result.output.count("\n") == 1

    def test_the_worker_refuses_to_start_before_anything_else(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(metadata, "version", lambda name: "9.9")
        monkeypatch.setenv("FPI_KAFKA_BOOTSTRAP", "127.0.0.1:1")  # never reached: the guard comes first
        result = CliRunner().invoke(streams.cli.main, ["worker", "--log-format", "json"])
        assert result.exit_code == 2
        [line] = result.output.splitlines()
        record = json.loads(line)
        assert record["reason"] == "unsupported_dependencies"
        assert "faust-streaming 9.9 (want 0.15.3)" in record["message"]

    def test_pyproject_and_constraints_pin_the_tested_versions(self) -> None:
        dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
        constraints = (REPO / "constraints.txt").read_text().splitlines()
        for name, version in TESTED_VERSIONS.items():
            assert f"{name}=={version}" in dependencies
            assert f"{name}=={version}" in constraints


@click.command()
def probe() -> None:
    check_faust_compatibility()
