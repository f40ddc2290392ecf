"""The worker's CPU budget from a sampling profile: which part of the pipeline each sample was in.

``py-spy record --format raw`` writes one line per distinct stack, ``frame;frame;...;leaf <count>`` with each
frame as ``function (path:line)``. A sample belongs to the first frame from the leaf up that names a part
(so orjson called by the sender counts as "send", and aiokafka called by faust as "framework"); GC is
measured apart (``bench/_gc_worker.py``) and taken out of the sampled parts in proportion, since a sampler
charges a collection to whatever line was allocating.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping

PARTS = ("decode", "hop", "resolve", "map", "encode", "tables", "send", "HTTP", "our glue", "framework",
         "other", "unattributed", "GC")

_INTERNAL = {  # streams/codecs/_internal.py: its helpers serve both kinds of record, so the caller decides
    "encode_event_internal": "hop", "decode_event_internal": "hop", "decode_event_routing": "hop",
    "encode_request": "encode", "decode_request": "encode", "_request_record": "encode", "_request_from": "encode",
}
_BY_PATH: tuple[tuple[str, str], ...] = (
    ("streams/codecs/_event.py", "decode"), ("streams/codecs/_source.py", "decode"),
    ("streams/codecs/_body.py", "decode"), ("/fastavro/", "decode"),
    ("streams/codecs/_frames.py", "hop"),
    ("streams/identity.py", "resolve"), ("streams/stages/_resolve.py", "resolve"),
    ("streams/mapping/", "map"), ("streams/stages/_apply.py", "map"), ("streams/transforms.py", "map"),
    ("streams/normalize.py", "map"),
    ("streams/stages/_tables.py", "tables"),
    ("streams/iterable/client.py", "HTTP"), ("/aiohttp/", "HTTP"), ("/yarl/", "HTTP"), ("/multidict/", "HTTP"),
    ("streams/iterable/", "send"), ("streams/stages/_send.py", "send"),
    ("streams/faust_patches.py", "framework"), ("streams/faust_compat.py", "framework"),
    ("/faust/", "framework"), ("/mode/", "framework"), ("/aiokafka/", "framework"), ("/kafka/", "framework"),
    ("/venusian/", "framework"),
    # A stack with nothing between the worker's entry point and its leaf (but the event loop, see _LOOP).
    ("streams/commands/worker.py", "unattributed"), ("streams/__main__.py", "unattributed"),
    ("streams/cli.py", "unattributed"), ("bench/_gc_worker.py", "unattributed"), ("<frozen runpy>", "unattributed"),
    ("streams/", "our glue"),
)
_LOOP = ("/asyncio/", "selectors.py")
"""The event loop's own files: a sample in them belongs to the first caller above that names a part (a socket
write under aiohttp is HTTP, under aiokafka framework), and to framework when only the entry point is above."""
_ENTRY = "unattributed"
_SHORT = re.compile(r" \(.*/(site-packages|lib/python3\.\d+|work/main)/")
_FRAME = re.compile(r"^(?P<function>.*?) \((?P<path>.*):\d+\)$")


def part_of(stack: str) -> tuple[str, str]:
    """The part a sampled stack (root first, ``;``-separated) belongs to, and the frame that decided it (the
    leaf for "other")."""
    frames = stack.split(";")
    loop_frame = ""
    for frame in reversed(frames):
        match = _FRAME.match(frame.strip())
        if match is None:
            continue
        path, function = match["path"], match["function"]
        if not path.startswith(("/", "<")):
            path = "/" + path  # py-spy names library files relative to sys.path: "asyncio/events.py"
        if path.endswith("streams/codecs/_internal.py"):
            if function in _INTERNAL:
                return _INTERNAL[function], frame
            continue
        if any(fragment in path for fragment in _LOOP):
            loop_frame = loop_frame or frame
            continue
        for fragment, part in _BY_PATH:
            if fragment in path:
                if part == _ENTRY and loop_frame:
                    return "framework", loop_frame
                return part, frame
    if loop_frame:
        return "framework", loop_frame
    return "other", frames[-1] if frames else ""


def thread_of(stack: str) -> str:
    """"main" for the event loop thread (the agents, the sender), "thread" for a stack started by
    ``threading`` (faust runs its aiokafka consumer in a thread of its own, with its own event loop)."""
    return "thread" if "threading.py:" in stack else "main"


def samples_by_thread(raw_lines: Iterable[str]) -> Counter[str]:
    """Samples of the main thread and of the other threads (``thread_of``)."""
    counts: Counter[str] = Counter()
    for line in raw_lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if stack and count.isdigit():
            counts[thread_of(stack)] += int(count)
    return counts


def samples_by_part(raw_lines: Iterable[str]) -> tuple[Counter[str], Counter[tuple[str, str]]]:
    """Samples per part, and per (part, deciding frame) to say what is inside a part."""
    counts: Counter[str] = Counter()
    frames: Counter[tuple[str, str]] = Counter()
    for line in raw_lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if stack and count.isdigit():
            part, frame = part_of(stack)
            counts[part] += int(count)
            frames[(part, _SHORT.sub(" (", frame.strip()))] += int(count)
    return counts, frames


def budget(samples: Mapping[str, int], total_us: float, gc_share: float) -> dict[str, float]:
    """µs per event of each part: ``total_us`` split by sample share after GC's measured share is set apart,
    so the parts add up to ``total_us`` exactly."""
    sampled = sum(samples.values())
    rest = total_us * (1.0 - gc_share)
    out = {part: rest * samples.get(part, 0) / sampled if sampled else 0.0 for part in PARTS if part != "GC"}
    out["GC"] = total_us * gc_share
    return out
