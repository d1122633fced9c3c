"""Broker memory per queued message, through a real broker: how much its resident size
grows while a ``zbroker.client`` publisher fills one queue.

    python -m zbroker.bench.queued_memory [--messages 1000000] [--size 100]

Four cases, each on a fresh ``zbroker serve``:
1. ``--in-memory``, messages without properties;
2. ``--in-memory``, each with a content type and a delivery mode (what most producers send);
3. a disk store, transient messages: past the queue's in-memory window (100,000
   transient messages) they are paged (``zbroker/core/durability/paging.py``);
4. a disk store, persistent messages in a durable queue: past its window (2,000
   messages) they are paged, so this is the paged index's cost.
Each prints the growth of ``VmRSS`` from before the first publish to when the queue holds
them all, divided by the messages. ``--drain`` then consumes them all (auto-ack) and adds
the broker's CPU per message while they were published and while they were consumed,
and the rate they were consumed at: what paging costs in time.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from typing import Any

from zbroker.bench.stream_scale import cpu_seconds, memory_mib, serve, stop

QUEUE = "queued-memory"
#: The four cases of the module's text, in its order (``--case``).
CASES = ["memory", "properties", "transient", "persistent"]


def _fill(channel: Any, count: int, size: int, with_properties: bool, persistent: bool) -> None:
    import zbroker.client as pika
    channel.queue_declare(QUEUE, durable=persistent)
    properties = pika.BasicProperties(content_type="text/plain", delivery_mode=1) if with_properties else None
    if persistent:
        properties = pika.BasicProperties(delivery_mode=2)
    body = b"x" * size
    for _ in range(count):
        channel.basic_publish("", QUEUE, body, properties)
    while channel.queue_declare(QUEUE, passive=True).method.message_count < count:
        time.sleep(0.1)  # (publishes still in the broker's input: a round trip per check)


def _drain(channel: Any, count: int) -> None:
    taken = 0
    for _ in channel.consume(QUEUE, auto_ack=True):
        taken += 1
        if taken == count:
            break
    channel.cancel()


def measure(data_dir: Path | None, count: int, size: int, with_properties: bool,
            persistent: bool = False, drain: bool = False) -> str:
    """One case on a fresh broker, as the line ``main`` prints after its name."""
    import zbroker.client as pika
    proc, port = serve(data_dir)
    try:
        connection = pika.BlockingConnection(pika.URLParameters(f"tcp://127.0.0.1:{port}"))
        channel = connection.channel()
        channel.queue_declare(QUEUE, durable=persistent)
        before, cpu = memory_mib(proc.pid, "VmRSS"), cpu_seconds(proc.pid)
        _fill(channel, count, size, with_properties, persistent)
        after, filled = memory_mib(proc.pid, "VmRSS"), cpu_seconds(proc.pid)
        line = (f"{(after - before) * 1024 * 1024 / count:,.0f} B a queued {size} B message "
                f"({count:,} queued; broker RSS {after:,.1f} MiB)")
        if drain:
            started = time.perf_counter()
            _drain(channel, count)
            elapsed, drained = time.perf_counter() - started, cpu_seconds(proc.pid)
            line += (f"; broker CPU {(filled - cpu) * 1e6 / count:.1f} us a message published, "
                     f"{(drained - filled) * 1e6 / count:.1f} us consumed; drained at {count / elapsed:,.0f} msgs/s")
        connection.close()
        return line
    finally:
        stop(proc)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--size", type=int, default=100, help="bytes a message")
    parser.add_argument("--dir", default=None, help="parent of the disk store (default: a temporary one)")
    parser.add_argument("--case", action="append", choices=CASES,
                        help="measure only this case (repeatable; default: all four)")
    parser.add_argument("--drain", action="store_true", help="then consume them all, timed")
    args = parser.parse_args(argv)
    cases = args.case or CASES
    for name, with_properties in (("--in-memory, no properties", False),
                                  ("--in-memory, content type and delivery mode", True)):
        if CASES[with_properties] not in cases:
            continue
        print(f"{name}: {measure(None, args.messages, args.size, with_properties, drain=args.drain)}", flush=True)
    for name, persistent in (("disk store, transient, paged", False),
                             ("disk store, persistent in a durable queue, paged", True)):
        if CASES[2 + persistent] not in cases:
            continue
        data_dir = Path(tempfile.mkdtemp(prefix="zbroker-queued-memory-", dir=args.dir))
        try:
            line = measure(data_dir, args.messages, args.size, False, persistent, args.drain)
            print(f"{name}: {line}", flush=True)
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
