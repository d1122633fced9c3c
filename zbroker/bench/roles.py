"""The processes a workload is made of. Each role is a top-level function so it can run in
a freshly spawned process; it gets the client module's name and a broker URL, and reports
through a multiprocessing queue. Only pika API calls are used here."""
from __future__ import annotations

import importlib
import time
from typing import Any

BODY_100 = b"x" * 100
STOP = b"__stop__"


def _connect(client: str, url: str) -> Any:
    pika = importlib.import_module(client)
    return pika, pika.BlockingConnection(pika.URLParameters(url))


def publisher(client: str, url: str, queue: str, count: int, report: Any) -> None:
    """Publish ``count`` messages to ``queue``; report seconds until all are in the queue."""
    pika, conn = _connect(client, url)
    ch = conn.channel()
    ch.queue_declare(queue)
    ch.queue_purge(queue)
    started = time.perf_counter()
    for _ in range(count):
        ch.basic_publish("", queue, BODY_100)
    while ch.queue_declare(queue, passive=True).method.message_count < count:
        conn.sleep(0.001)
    report.put(("published", time.perf_counter() - started))
    ch.queue_delete(queue)
    conn.close()


def producer(client: str, url: str, queue: str, count: int, stops: int, report: Any) -> None:
    """Publish ``count`` messages then ``stops`` stop markers; report the wall-clock start."""
    pika, conn = _connect(client, url)
    ch = conn.channel()
    ch.queue_declare(queue)
    report.put(("start", time.time()))
    for _ in range(count):
        ch.basic_publish("", queue, BODY_100)
    for _ in range(stops):
        ch.basic_publish("", queue, STOP)
    conn.close()


def worker(client: str, url: str, queue: str, prefetch: int, report: Any) -> None:
    """Ack each message; at a stop marker report (count, wall clock of last ack) and leave."""
    pika, conn = _connect(client, url)
    ch = conn.channel()
    ch.queue_declare(queue)
    ch.basic_qos(prefetch_count=prefetch)
    state = {"count": 0, "last": 0.0}

    def on_message(channel: Any, method: Any, properties: Any, body: bytes) -> None:
        channel.basic_ack(method.delivery_tag)
        if body == STOP:
            channel.stop_consuming()
            return
        state["count"] += 1
        state["last"] = time.time()

    ch.basic_consume(queue, on_message)
    report.put(("ready", None))
    ch.start_consuming()
    report.put(("done", (state["count"], state["last"])))
    conn.close()
