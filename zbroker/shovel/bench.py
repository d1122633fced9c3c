"""How fast one shovel worker moves messages: ``python -m zbroker.shovel.bench``.

Rules:
- The figures are messages per second to the worker's ``done`` line, with
  ``src-delete-after`` = the count (every message published to the destination and
  settled on the source per the ack-mode): from the worker's start (a process's start-up
  included) and from its ``running`` line (the steady rate).
- Source and destination are two queues on one broker: a ``zbroker serve --in-memory
  --amqp`` started here on free ports (or ``--url``, any broker, RabbitMQ included).
- The worker runs as the supervisor runs it (``python -m zbroker.shovel.worker``), or in
  a thread of this process (``--thread``: ``worker.run``), so both can be compared.
- The queues are filled before the clock starts, and emptied after.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import threading
import time
from typing import Any

import pika

from zbroker.shovel.worker import run

SOURCE, DESTINATION = "shovel-bench-in", "shovel-bench-out"
LISTENER = re.compile(r"AMQP 0-9-1 listener on (\S+):(\d+)")
START_TIMEOUT_S = 30.0


def start_broker() -> tuple[subprocess.Popen, str]:
    broker = subprocess.Popen([sys.executable, "-m", "zbroker", "serve", "--in-memory", "--bind", "tcp://127.0.0.1:0",
                               "--amqp", "127.0.0.1:0", "--log-level", "info"],
                              stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert broker.stderr is not None
    deadline = time.monotonic() + START_TIMEOUT_S
    for line in broker.stderr:
        match = LISTENER.search(line)
        if match:
            threading.Thread(target=lambda: [None for _ in broker.stderr], daemon=True).start()  # type: ignore[union-attr]
            return broker, f"amqp://guest:guest@{match.group(1)}:{match.group(2)}/%2F"
        if time.monotonic() > deadline:
            break
    broker.kill()
    raise SystemExit("zbroker did not start")


def fill(url: str, count: int, size: int, persistent: bool) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    for queue in (SOURCE, DESTINATION):
        channel.queue_delete(queue)
        channel.queue_declare(queue, durable=True)
    body = b"x" * size
    properties = pika.BasicProperties(delivery_mode=2 if persistent else 1)
    for _ in range(count):
        channel.basic_publish("", SOURCE, body, properties)
    while channel.queue_declare(SOURCE, passive=True).method.message_count < count:
        connection.process_data_events(0.05)
    connection.close()


def depths(url: str) -> tuple[int, int]:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    found = tuple(channel.queue_declare(q, passive=True).method.message_count for q in (SOURCE, DESTINATION))
    for queue in (SOURCE, DESTINATION):
        channel.queue_delete(queue)
    connection.close()
    return found  # type: ignore[return-value]


def move(config: dict, in_thread: bool) -> tuple[float, float]:
    """Seconds from the worker's start, and from its running line, to its done line."""
    started = time.perf_counter()
    running = started
    if in_thread:
        lines: list[dict] = []

        def report(line: dict) -> None:
            nonlocal running
            if line.get("state") == "running":
                running = time.perf_counter()
            lines.append(line)

        run(config, report, threading.Event())
        if not any(line.get("done") for line in lines):
            raise SystemExit(f"the shovel did not finish: {lines[-3:]}")
        end = time.perf_counter()
        return end - started, end - running
    worker = subprocess.Popen([sys.executable, "-m", "zbroker.shovel.worker"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert worker.stdin is not None and worker.stdout is not None
    worker.stdin.write(json.dumps(config) + "\n")
    worker.stdin.flush()
    for line in worker.stdout:
        report = json.loads(line)
        if report.get("state") == "running":
            running = time.perf_counter()
        if report.get("done"):
            end = time.perf_counter()
            worker.stdin.close()
            worker.wait(10)
            return end - started, end - running
        if "error" in report:
            worker.kill()
            raise SystemExit(f"the shovel failed: {report['error']}")
    raise SystemExit("the worker ended without finishing")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=1024, help="body bytes")
    parser.add_argument("--ack-mode", default="on-confirm", choices=["on-confirm", "on-publish", "no-ack"])
    parser.add_argument("--prefetch", type=int, default=1000)
    parser.add_argument("--persistent", action="store_true")
    parser.add_argument("--thread", action="store_true", help="run the worker in a thread of this process")
    parser.add_argument("--url", help="an existing broker's amqp:// URI instead of a zbroker started here")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args(argv)
    broker: Any = None
    url = args.url
    if url is None:
        broker, url = start_broker()
    try:
        for _ in range(args.runs):
            fill(url, args.count, args.size, args.persistent)
            config = {"vhost": "/", "name": "bench", "definition": {
                "src-uri": url, "src-queue": SOURCE, "dest-uri": url, "dest-queue": DESTINATION,
                "ack-mode": args.ack_mode, "src-prefetch-count": args.prefetch, "src-delete-after": args.count}}
            elapsed, moving = move(config, args.thread)
            left, arrived = depths(url)
            print(f"{args.count} x {args.size} B, {args.ack_mode}, prefetch {args.prefetch}, "
                  f"{'thread' if args.thread else 'process'}: {elapsed:.2f} s from start "
                  f"({args.count / elapsed:,.0f} msg/s), {moving:.2f} s from running ({args.count / moving:,.0f} "
                  f"msg/s); source {left}, destination {arrived}", flush=True)
    finally:
        if broker is not None:
            broker.terminate()
            broker.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
