"""The processes a workload is made of, speaking only the pika API.

Each role is a top-level function so it can run in a freshly spawned process. It gets
the client module's name (``zbroker.client`` or ``pika``) and a broker URL, connects and
declares what it needs, reports ``ready``, waits for the shared ``go`` event, then does
its part and reports its figures on the ``report`` queue. Start-up is thus never timed.
"""
from __future__ import annotations

import importlib
import os
import time
import uuid
from typing import Any

BODY_100 = b"x" * 100
STOP = b"__stop__"


#: The CA file that signs the broker's TLS certificate (``amqps://`` targets).
CA_ENV = "ZBROKER_BENCH_CA"


def parameters(pika: Any, url: str) -> Any:
    """The connection parameters of ``url``; ``amqps://`` trusts ``$ZBROKER_BENCH_CA``."""
    params = pika.URLParameters(url)
    if url.startswith("amqps://"):
        import ssl
        params.ssl_options = pika.SSLOptions(ssl.create_default_context(cafile=os.environ[CA_ENV]), "localhost")
    return params


def connect(client: str, url: str) -> tuple[Any, Any]:
    """(the client module, a blocking connection to ``url``)."""
    pika = importlib.import_module(client)
    return pika, pika.BlockingConnection(parameters(pika, url))



def _ready(report: Any, go: Any) -> None:
    report.put(("ready", None))
    go.wait()


def publisher(client: str, url: str, queue: str, count: int, report: Any, go: Any) -> None:
    """Publish ``count`` messages; report seconds until all of them are in the queue."""
    pika, conn = connect(client, url)
    ch = conn.channel()
    ch.queue_declare(queue)
    ch.queue_purge(queue)
    _ready(report, go)
    started = time.perf_counter()
    for _ in range(count):
        ch.basic_publish("", queue, BODY_100)
    while ch.queue_declare(queue, passive=True).method.message_count < count:
        conn.sleep(0.001)
    report.put(("elapsed", time.perf_counter() - started))
    ch.queue_delete(queue)
    conn.close()


def producer(client: str, url: str, exchange: str, routing_key: str, count: int, stops: int,
             report: Any, go: Any) -> None:
    """Publish ``count`` messages as fast as the client allows, then ``stops`` stop markers."""
    pika, conn = connect(client, url)
    ch = conn.channel()
    _ready(report, go)
    for _ in range(count):
        ch.basic_publish(exchange, routing_key, BODY_100)
    for _ in range(stops):
        ch.basic_publish(exchange, routing_key, STOP)
    conn.close()
    report.put(("sent", count))


def consumer(client: str, url: str, queue: str, exchange: str, expect: int, prefetch: int,
             auto_ack: bool, report: Any, go: Any) -> None:
    """Consume until ``expect`` messages, or (``expect`` 0, competing consumers that cannot
    know their share) until a stop marker; report (count, wall clock of the last one).

    ``queue`` empty means a server-named exclusive queue bound to ``exchange`` (fanout).
    """
    pika, conn = connect(client, url)
    ch = conn.channel()
    if queue:
        ch.queue_declare(queue)
    else:
        queue = ch.queue_declare("", exclusive=True).method.queue
        ch.queue_bind(queue, exchange)
    if prefetch:
        ch.basic_qos(prefetch_count=prefetch)
    state = {"count": 0, "last": 0.0}

    def on_message(channel: Any, method: Any, properties: Any, body: bytes) -> None:
        if not auto_ack:
            channel.basic_ack(method.delivery_tag)
        if body == STOP:
            channel.stop_consuming()
            return
        state["count"] += 1
        state["last"] = time.time()
        if state["count"] == expect:
            channel.stop_consuming()

    ch.basic_consume(queue, on_message, auto_ack=auto_ack)
    _ready(report, go)
    ch.start_consuming()
    report.put(("done", (state["count"], state["last"])))
    conn.close()


def rpc_server(client: str, url: str, queue: str, report: Any, go: Any) -> None:
    """The tutorial's RPC server shape: prefetch 1, reply to reply_to, ack."""
    pika, conn = connect(client, url)
    ch = conn.channel()
    ch.queue_declare(queue)
    ch.basic_qos(prefetch_count=1)

    def on_request(channel: Any, method: Any, props: Any, body: bytes) -> None:
        if body == b"stop":
            channel.basic_ack(method.delivery_tag)
            channel.stop_consuming()
            return
        channel.basic_publish("", props.reply_to, body,
                              pika.BasicProperties(correlation_id=props.correlation_id))
        channel.basic_ack(method.delivery_tag)

    ch.basic_consume(queue, on_request)
    _ready(report, go)
    ch.start_consuming()
    ch.queue_delete(queue)
    conn.close()


def rpc_client(client: str, url: str, queue: str, calls: int, report: Any, go: Any) -> None:
    """Make ``calls`` sequential calls; report each round trip in seconds."""
    pika, conn = connect(client, url)
    ch = conn.channel()
    reply_to = ch.queue_declare("", exclusive=True).method.queue
    state: dict[str, Any] = {"want": None, "got": False}

    def on_response(channel: Any, method: Any, props: Any, body: bytes) -> None:
        if props.correlation_id == state["want"]:
            state["got"] = True

    ch.basic_consume(reply_to, on_response, auto_ack=True)
    _ready(report, go)
    latencies = []
    for _ in range(calls):
        state["want"], state["got"] = uuid.uuid4().hex, False
        started = time.perf_counter()
        ch.basic_publish("", queue, BODY_100,
                         pika.BasicProperties(reply_to=reply_to, correlation_id=state["want"]))
        while not state["got"]:
            conn.process_data_events(time_limit=None)
        latencies.append(time.perf_counter() - started)
    ch.basic_publish("", queue, b"stop")
    report.put(("latencies", latencies))
    conn.close()


def persistent_publisher(client: str, url: str, queue: str, count: int, size: int, batch: int,
                         report: Any, go: Any) -> None:
    """Persistent messages to a durable queue in confirm mode; report seconds for all of them.

    ``batch`` 0: pika's way, each ``basic_publish`` waits for its own confirm. Otherwise
    zbroker's pipelined extension: ``publish_nowait`` ``batch`` messages, then one
    ``wait_for_confirms`` (pika has neither call, so this runs on zbroker only).
    """
    pika, conn = connect(client, url)
    ch = conn.channel()
    ch.queue_declare(queue, durable=True)
    ch.queue_purge(queue)
    ch.confirm_delivery()
    body = b"x" * size
    props = pika.BasicProperties(delivery_mode=2)
    _ready(report, go)
    started = time.perf_counter()
    if batch:
        for first in range(0, count, batch):
            for _ in range(min(batch, count - first)):
                ch.publish_nowait("", queue, body, props)
            if not ch.wait_for_confirms(timeout=60):
                raise RuntimeError("confirms did not arrive within 60 s")
    else:
        for _ in range(count):
            ch.basic_publish("", queue, body, props)
    report.put(("elapsed", time.perf_counter() - started))
    ch.queue_delete(queue)
    conn.close()
