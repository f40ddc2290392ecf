"""bench/_budget.py: which part and which thread a py-spy sample belongs to (the CPU budget of bench_e2e)."""
from __future__ import annotations

from bench._budget import part_of, samples_by_thread

ROOT = "_run_module_as_main (<frozen runpy>:198);worker (/work/main/streams/commands/worker.py:62)"
THREAD = ("Thread._bootstrap (/usr/lib/python3.11/threading.py:1002);"
          "ServiceThread._start_thread (/x/site-packages/mode/threads.py:211)")


def test_a_sample_belongs_to_the_first_part_from_the_leaf_up() -> None:
    stack = ROOT + ";Sender._run (/work/main/streams/iterable/sender.py:447);dumps (/x/site-packages/orjson/x.py:1)"
    assert part_of(stack)[0] == "send"
    assert part_of(ROOT)[0] == "unattributed"


def test_library_files_are_named_relative_to_sys_path() -> None:
    # py-spy writes library files relative to sys.path ("asyncio/events.py"), --native or not
    stack = ROOT + ";Handle._run (asyncio/events.py:80);task_step (_asynciomodule.c:2990)"
    assert part_of(stack)[0] == "framework"
    assert part_of(ROOT + ";read_record (fastavro/_read.pyx:100)")[0] == "decode"


def test_the_internal_codec_counts_for_its_caller_kind() -> None:
    routing = (";ResolveStage.handle (streams/stages/_resolve.py:1);_decode (streams/stages/_resolve.py:33)"
               ";decode_event_routing (streams/codecs/_internal.py:2);_fields (streams/codecs/_internal.py:3)")
    assert part_of(ROOT + routing)[0] == "hop"


def test_the_event_loop_belongs_to_its_caller() -> None:
    loop = ";BaseEventLoop.run_forever (asyncio/base_events.py:607);EpollSelector.select (selectors.py:468)"
    assert part_of(ROOT + loop) == ("framework", "EpollSelector.select (selectors.py:468)")
    write = ";StreamWriter._writelines (aiohttp/http_writer.py:116);_SelectorSocketTransport.write (asyncio/x.py:1)"
    assert part_of(ROOT + write)[0] == "HTTP"
    kafka = ";AIOKafkaConnection.send (aiokafka/conn.py:423);_SelectorSocketTransport.write (asyncio/x.py:1)"
    assert part_of(ROOT + kafka)[0] == "framework"


def test_samples_by_thread() -> None:
    lines = [ROOT + ";f (/work/main/streams/app.py:1) 7", THREAD + ";select (selectors.py:468) 3", "garbage"]
    assert samples_by_thread(lines) == {"main": 7, "thread": 3}
