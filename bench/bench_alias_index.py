"""The cost of ``forget``'s person index on a new link: ``AliasTable.__setitem__`` (an index read, a SHA-256 and,
for a device new to the person, an index write, then the link) against the plain link write it replaced, the
baseline, in the same run on the same links. Only a new or earlier link pays it, not every event.

    python -m bench.bench_alias_index            # 200,000 new links, 3 rounds
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, datetime

from streams.identity import Link
from streams.stages import AliasTable, link_to_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--links", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    links = [(f"dev-{i}", Link(f"person{i}@example.com", datetime(2024, 3, 5, tzinfo=UTC)))
             for i in range(args.links)]

    def plain() -> float:
        table: dict[bytes, bytes] = {}
        start = time.perf_counter()
        for device, link in links:
            table[device.encode()] = link_to_bytes(link)
        return time.perf_counter() - start

    def indexed() -> float:
        aliases = AliasTable({})
        start = time.perf_counter()
        for device, link in links:
            aliases[device] = link
        return time.perf_counter() - start

    print(f"load before: {os.getloadavg()}")
    for number in range(args.rounds):
        base, new = plain(), indexed()
        print(f"round {number}: plain {base / args.links * 1e6:.2f} us/link, indexed {new / args.links * 1e6:.2f} "
              f"us/link, ratio {new / base:.2f}x")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
