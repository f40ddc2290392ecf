"""The faust-streaming, mode-streaming and aiokafka the worker was written against, checked at start-up.

``streams.faust_patches`` replaces methods on faust and mode instances, and ``streams.app`` reads faust's
private state. Those contacts are not an API: on another release a renamed attribute is not an error,
the patch is just never called, and the worker runs without it. So the worker refuses to start unless
the installed versions are exactly ``TESTED_VERSIONS`` (``pyproject.toml`` pins the same, and
``constraints.txt`` installs them) and every attribute in ``CONTACTS`` is still there.
``tests/unit/test_faust_compat.py`` reads faust's source for the behaviour each patch assumes.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata
from types import CodeType, FunctionType
from typing import Any, Final

from streams.errors import UnsupportedDependencies

__all__ = ["CONTACTS", "TESTED_VERSIONS", "Contact", "check_faust_compatibility"]

TESTED_VERSIONS: Final[Mapping[str, str]] = {
    "faust-streaming": "0.15.3",
    "mode-streaming": "0.7.1",
    "aiokafka": "0.14.0",
}
"""Distribution name -> the exact version the patches were read against."""


@dataclass(frozen=True, slots=True)
class Contact:
    """One attribute of faust, mode or aiokafka that our code reads, calls or replaces."""

    module: str
    owner: str
    """The class in ``module`` that holds the attribute; empty for a module attribute."""
    attribute: str
    on_instances: bool
    """Set on each instance (in ``__init__`` or a start-up hook), so the class does not hold it."""
    user: str
    """Which of our functions relies on it."""

    @property
    def name(self) -> str:
        return ".".join(part for part in (self.module, self.owner, self.attribute) if part)


def _on_class(module: str, owner: str, user: str, *attributes: str) -> list[Contact]:
    return [Contact(module, owner, attribute, False, user) for attribute in attributes]


def _on_instances(module: str, owner: str, user: str, *attributes: str) -> list[Contact]:
    return [Contact(module, owner, attribute, True, user) for attribute in attributes]


_CONSUMER = "faust.transport.consumer"
_AIOKAFKA_DRIVER = "faust.transport.drivers.aiokafka"
_PRODUCER = "faust.transport.producer"
_RECOVERY = "faust.tables.recovery"
_BATCHED = "faust_patches.drain_changelogs_in_batches"
_DIRECT = "faust_patches.queue_changelog_records_directly"

CONTACTS: Final[tuple[Contact, ...]] = (
    *_on_class(_PRODUCER, "ProducerBuffer", "faust_patches.flush_the_whole_producer_buffer",
               "flush", "_send_pending", "_handle_pending", "size", "should_stop"),
    *_on_instances(_PRODUCER, "ProducerBuffer", "faust_patches.flush_the_whole_producer_buffer", "message_sent"),
    *_on_instances(_PRODUCER, "Producer", "faust_patches.install", "buffer"),
    *_on_class(_CONSUMER, "Consumer", "faust_patches.bound_wait_for_acks", "wait_empty", "should_stop"),
    *_on_instances(_CONSUMER, "Consumer", "faust_patches.bound_wait_for_acks", "_unacked_messages"),
    *_on_class("faust.types.tuples", "Message", "faust_patches.bound_wait_for_acks", "acked"),
    *_on_class("faust.app.base", "App", "faust_patches", "flow_control", "tables", "consumer", "producer",
               "should_stop"),
    *_on_class("mode.utils.queues", "FlowControlEvent", "faust_patches._keep_buffered_messages_on_redundant_resume",
               "resume", "is_active"),
    *_on_instances(_AIOKAFKA_DRIVER, "Consumer", "faust_patches._rewind_uncommitted_partitions_on_seek", "_thread"),
    *_on_class(_AIOKAFKA_DRIVER, "Consumer", "faust_patches._rewind_uncommitted_partitions_on_seek",
               "seek_to_committed"),
    *_on_class(_AIOKAFKA_DRIVER, "AIOKafkaConsumerThread", "faust_patches._rewind_uncommitted_partitions_on_seek",
               "call_thread", "_ensure_consumer"),
    *_on_class("aiokafka", "AIOKafkaConsumer", "faust_patches._rewind_uncommitted_partitions_on_seek",
               "seek_to_committed", "seek"),
    *_on_class("faust.tables.manager", "TableManager", "faust_patches._rewind_uncommitted_partitions_on_seek",
               "changelog_topics"),
    *_on_class(_CONSUMER, "Consumer", "faust_patches.deliver_inline_while_flowing",
               "_drain_messages", "wait_first"),
    *_on_instances(_CONSUMER, "Consumer", "faust_patches.deliver_inline_while_flowing", "suspend_flow"),
    *_on_class("mode.services", "", "faust_patches.deliver_inline_while_flowing", "WaitResults"),
    *_on_class("faust.streams", "", "faust_patches.make_current", "_current_event"),
    *_on_instances(_CONSUMER, "Consumer", "faust_patches.committed_offset (lag)", "_committed_offset"),
    *_on_instances("faust.channels", "Channel", "faust_patches.bound_stream_buffer", "maxsize"),
    *_on_class(_RECOVERY, "Recovery", _BATCHED, "_slurp_changelogs", "need_recovery", "flush_buffers",
               "_set_recovery_ended", "signal_recovery_end", "in_recovery", "standby_remaining_total",
               "num_samples_required_for_estimate", "_actives_span", "_standbys_span", "_last_flush_at"),
    *_on_instances(_RECOVERY, "Recovery", _BATCHED, "tables", "app", "tp_to_table", "active_tps", "standby_tps",
                   "buffers", "buffer_sizes", "_processing_times", "active_offsets", "standby_offsets",
                   "active_highwaters", "_active_events_received_at", "_standby_events_received_at",
                   "_last_active_event_processed_at"),
    *_on_class("mode.services", "", _BATCHED, "ServiceTask"),
    *_on_class("mode.services", "Service", _BATCHED, "_get_tasks"),
    *_on_class("faust.utils.tracing", "", _BATCHED, "finish_span"),
    *_on_class("faust.tables.manager", "TableManager", _BATCHED, "recovery", "changelog_queue", "on_standbys_ready"),
    *_on_instances("faust.tables.manager", "TableManager", _BATCHED, "standbys_ready"),
    *_on_class("faust.tables.base", "Collection", _BATCHED, "on_changelog_event", "apply_changelog_batch"),
    *_on_instances("faust.tables.base", "Collection", _BATCHED, "recovery_buffer_size", "standby_buffer_size",
                   "_on_changelog_event"),
    *_on_class("faust.app.base", "App", _BATCHED, "in_transaction"),
    *_on_class(_CONSUMER, "Consumer", _BATCHED, "position"),
    *_on_instances(_CONSUMER, "Consumer", _DIRECT, "callback"),
    *_on_instances("faust.transport.conductor", "Conductor", _DIRECT, "_topic_name_index"),
    *_on_instances("faust.tables.manager", "TableManager", _DIRECT, "_changelogs"),
    *_on_class("faust.app.base", "App", _DIRECT, "topics", "conf"),
    *_on_class("faust.types.settings.settings", "Settings", _DIRECT, "Event"),
    *_on_class("faust.channels", "Channel", _DIRECT, "queue"),
    *_on_instances("faust.channels", "Channel", _DIRECT, "schema"),
    *_on_instances("faust.serializers.schemas", "Schema", _DIRECT, "key_type", "value_type", "key_serializer",
                   "value_serializer"),
    *_on_class("mode.utils.queues", "FlowControlQueue", _DIRECT, "pressure_high_size", "qsize", "put_nowait"),
)
"""Every attribute of faust, mode and aiokafka that ``streams.faust_patches`` and ``streams.app`` rely on."""


def check_faust_compatibility() -> None:
    """Return if the installed faust-streaming, mode-streaming and aiokafka are the ones the patches fit.

    Raises ``UnsupportedDependencies`` (one line: what differs and how to fix it) when a version is not
    the one in ``TESTED_VERSIONS`` or an attribute in ``CONTACTS`` is gone.
    """
    wrong = [f"{name} {_installed(name)} (want {want})"
             for name, want in TESTED_VERSIONS.items() if _installed(name) != want]
    if wrong:
        raise UnsupportedDependencies(
            f"the faust patches (streams/faust_patches.py) were written for exactly "
            f"{_as_list(TESTED_VERSIONS)}, but this environment has {', '.join(wrong)}: install the "
            f"pinned set (pip install -c constraints.txt), or re-check each patch against the new release "
            f"and then update TESTED_VERSIONS in streams/faust_compat.py, pyproject.toml and constraints.txt")
    missing = [f"{contact.name} (used by streams.{contact.user})" for contact in CONTACTS if not _exists(contact)]
    if missing:
        raise UnsupportedDependencies(
            f"the installed {_as_list(TESTED_VERSIONS)} lack {', '.join(missing)}, which streams relies on: "
            f"reinstall them unmodified (pip install --force-reinstall -c constraints.txt)")


def _installed(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def _as_list(versions: Mapping[str, str]) -> str:
    return ", ".join(f"{name} {version}" for name, version in versions.items())


def _exists(contact: Contact) -> bool:
    try:
        holder: Any = importlib.import_module(contact.module)
    except ImportError:
        return False
    if contact.owner:
        holder = getattr(holder, contact.owner, None)
        if not inspect.isclass(holder):
            return False
    if contact.on_instances:
        # Read from the compiled code, not the source, so that an install without .py files still passes.
        return any(contact.attribute in code.co_names for code in _code_of(holder))
    return hasattr(holder, contact.attribute)


def _code_of(cls: type) -> Iterator[CodeType]:
    """The code objects of every function defined on ``cls`` and its bases, nested functions included."""
    for klass in cls.__mro__:
        for value in vars(klass).values():
            function = inspect.unwrap(value.__func__ if isinstance(value, classmethod | staticmethod) else value)
            if isinstance(function, FunctionType):
                yield from _nested(function.__code__)


def _nested(code: CodeType) -> Iterator[CodeType]:
    yield code
    for constant in code.co_consts:
        if isinstance(constant, CodeType):
            yield from _nested(constant)
