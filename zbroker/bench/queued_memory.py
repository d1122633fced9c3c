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
them all, divided by the messages.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from zbroker.bench.stream_scale import memory_mib, serve, stop

QUEUE = "queued-memory"
#: The four cases of the module's text, in its order (``--case``).
CASES = ["memory", "properties", "transient", "persistent"]


def _fill(port: int, count: int, size: int, with_properties: bool, persistent: bool) -> None:
    import zbroker.client as pika
    connection = pika.BlockingConnection(pika.URLParameters(f"tcp://127.0.0.1:{port}"))
    channel = connection.channel()
    channel.queue_declare(QUEUE, durable=persistent)
    properties = pika.BasicProperties(content_type="text/plain", delivery_mode=1) if with_properties else None
    if persistent:
        properties = pika.BasicProperties(delivery_mode=2)
    body = b"x" * size
    for _ in range(count):
        channel.basic_publish("", QUEUE, body, properties)
    while channel.queue_declare(QUEUE, passive=True).method.message_count < count:
        time.sleep(0.1)  # (publishes still in the broker's input: a round trip per check)
    connection.close()


def per_message(data_dir: Path | None, count: int, size: int, with_properties: bool,
                persistent: bool = False) -> tuple[float, float]:
    """Bytes of broker RSS growth per queued message, and the broker's RSS (MiB) then."""
    proc, port = serve(data_dir)
    try:
        before = memory_mib(proc.pid, "VmRSS")
        _fill(port, count, size, with_properties, persistent)
        after = memory_mib(proc.pid, "VmRSS")
        return (after - before) * 1024 * 1024 / count, after
    finally:
        stop(proc)


def _report(name: str, size: int, count: int, grown: float, rss_mib: float) -> None:
    print(f"{name}: {grown:,.0f} B a queued {size} B message ({count:,} queued; broker RSS {rss_mib:,.1f} MiB)",
          flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--size", type=int, default=100, help="bytes a message")
    parser.add_argument("--dir", default=None, help="parent of the disk store (default: a temporary one)")
    parser.add_argument("--case", action="append", choices=CASES,
                        help="measure only this case (repeatable; default: all four)")
    args = parser.parse_args(argv)
    cases = args.case or CASES
    for name, with_properties in (("--in-memory, no properties", False),
                                  ("--in-memory, content type and delivery mode", True)):
        if CASES[with_properties] not in cases:
            continue
        _report(name, args.size, args.messages, *per_message(None, args.messages, args.size, with_properties))
    for name, persistent in (("disk store, transient, paged", False),
                             ("disk store, persistent in a durable queue, paged", True)):
        if CASES[2 + persistent] not in cases:
            continue
        data_dir = Path(tempfile.mkdtemp(prefix="zbroker-queued-memory-", dir=args.dir))
        try:
            _report(name, args.size, args.messages, *per_message(data_dir, args.messages, args.size, False, persistent))
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
