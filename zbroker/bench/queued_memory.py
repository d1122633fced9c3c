"""Broker memory per queued message, through a real broker: how much its resident size
grows while a ``zbroker.client`` publisher fills one queue.

    python -m zbroker.bench.queued_memory [--messages 1000000] [--size 100]

Three cases, each on a fresh ``zbroker serve``:
1. ``--in-memory``, messages without properties;
2. ``--in-memory``, each with a content type and a delivery mode (what most producers send);
3. a disk store, transient messages: past the queue's in-memory window they are paged
   (``zbroker/core/durability/paging.py``), so this is the paged index's cost.
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


def _fill(port: int, count: int, size: int, with_properties: bool) -> None:
    import zbroker.client as pika
    connection = pika.BlockingConnection(pika.URLParameters(f"tcp://127.0.0.1:{port}"))
    channel = connection.channel()
    channel.queue_declare(QUEUE)
    properties = pika.BasicProperties(content_type="text/plain", delivery_mode=1) if with_properties else None
    body = b"x" * size
    for _ in range(count):
        channel.basic_publish("", QUEUE, body, properties)
    while channel.queue_declare(QUEUE, passive=True).method.message_count < count:
        time.sleep(0.1)  # (publishes still in the broker's input: a round trip per check)
    connection.close()


def per_message(data_dir: Path | None, count: int, size: int, with_properties: bool) -> float:
    """Bytes of broker RSS growth per queued message."""
    proc, port = serve(data_dir)
    try:
        before = memory_mib(proc.pid, "VmRSS")
        _fill(port, count, size, with_properties)
        return (memory_mib(proc.pid, "VmRSS") - before) * 1024 * 1024 / count
    finally:
        stop(proc)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--size", type=int, default=100, help="bytes a message")
    parser.add_argument("--dir", default=None, help="parent of the disk store (default: a temporary one)")
    args = parser.parse_args(argv)
    for name, with_properties in (("--in-memory, no properties", False),
                                  ("--in-memory, content type and delivery mode", True)):
        grown = per_message(None, args.messages, args.size, with_properties)
        print(f"{name}: {grown:,.0f} B a queued {args.size} B message ({args.messages:,} queued)", flush=True)
    data_dir = Path(tempfile.mkdtemp(prefix="zbroker-queued-memory-", dir=args.dir))
    try:
        grown = per_message(data_dir, args.messages, args.size, False)
        print(f"disk store, paged: {grown:,.0f} B a queued {args.size} B message ({args.messages:,} queued)",
              flush=True)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
