"""The ``stream`` workload: publishing into a stream, and reading it back from the start.

Figures, each case in its own processes, started together on the shared ``go`` event:

1. Publish: 100 B persistent messages in confirm mode, waiting for the confirms after every
   ``CONFIRM_BATCH`` messages, into a fresh stream and (the other figure of the pair) into a
   fresh classic durable queue (which of the two goes first alternates from round to round);
   msgs/s from ``go`` to the last confirm, and stream/classic.
2. One consumer reads the stream's ``counts["stream"]`` messages from
   ``x-stream-offset: first`` (prefetch ``READ_PREFETCH``, an ack with multiple=True every
   ``ACK_EVERY``); msgs/s from ``go`` to its last delivery, and the broker's CPU share
   (cores: its CPU seconds over that wall time, read from /proc).
3. ``READERS`` consumers, one process each, read the same stream from first at once:
   deliveries/s over all of them, and the ratio to the one consumer's rate.

The stream the consumers read is filled once per target, on the workload's first run (the
fill is its own timed step, shown as ``fill_per_s`` in the progress line and the JSON, never
in the read figures), and deleted when the benchmark ends. Every round reads all of it.

How each client pipelines its confirms:

- ``zbroker.client``: its extension calls, ``publish_nowait`` for each message of a batch,
  then one ``wait_for_confirms(timeout=...)``.
- pika (``zbroker-amqp``, ``rabbitmq``): a ``BlockingChannel`` in confirm mode waits for each
  message's confirm inside ``basic_publish``, so a batch would be one round trip per message.
  The publisher therefore runs on pika's asynchronous ``SelectConnection``: its
  ``basic_publish`` only writes the frames, ``confirm_delivery``'s callback removes each
  acked delivery tag (all up to it when ``multiple``) from the batch's outstanding set, and
  the next batch is sent when that set is empty; a nack or an early close fails the run.
  Consumers use ``BlockingConnection`` on both clients, as the other workloads do.
"""
from __future__ import annotations

import importlib
import os
import time
from typing import TYPE_CHECKING, Any, Callable

from zbroker.bench import roles
from zbroker.bench.roles import BODY_100

if TYPE_CHECKING:
    from zbroker.bench.runner import Session, Target

#: Messages per confirm wait, as in the persistent workload's pipelined figures.
CONFIRM_BATCH = 1000
#: Seconds one batch's confirms may take before the run fails.
CONFIRM_TIMEOUT_S = 60.0
READ_PREFETCH = 1000
#: An ack (multiple=True) every half prefetch keeps the broker sending while acks travel.
ACK_EVERY = READ_PREFETCH // 2
READERS = 10
STREAM_ARGUMENTS = {"x-queue-type": "stream"}
#: What the table prints, and whether bigger is better (runner.METRICS["stream"]).
METRICS = [
    ("publish_stream_per_s", f"stream: publish 100 B persistent, confirms every {CONFIRM_BATCH}, msgs/s", True),
    ("publish_classic_per_s", "stream: the same into a classic durable queue, msgs/s", True),
    ("publish_ratio", "stream: publish, stream/classic (median of each round's ratio)", True),
    ("read_1_per_s", f"stream: 1 consumer reads from first, prefetch {READ_PREFETCH}, msgs/s", True),
    ("read_1_broker_cores", "stream: broker CPU while 1 consumer reads, cores", False),
    ("read_10_per_s", f"stream: {READERS} consumers read from first at once, deliveries/s", True),
    ("read_10_broker_cores", f"stream: broker CPU while {READERS} consumers read, cores", False),
    ("read_ratio", f"stream: deliveries/s, {READERS} consumers / 1 (median of each round's ratio)", True),
]
#: Ratios within one target, taken in each round (both figures under the same conditions),
#: so their median need not equal the ratio of the medians; the table prints them as 1.23x.
RATIOS = {"publish_ratio", "read_ratio"}


class StreamBench:
    """Runs the workload on one target at a time; keeps each target's filled stream."""

    def __init__(self, counts: dict[str, int], session: Callable[[], Session],
                 cpu_seconds: Callable[[list[int]], float]) -> None:
        self.counts = counts
        self._session = session
        self._cpu_seconds = cpu_seconds
        self._filled: dict[str, tuple[Target, str]] = {}
        self._serial = 0
        self._runs: dict[str, int] = {}

    def _name(self, kind: str) -> str:
        self._serial += 1
        return f"bench.stream.{kind}.{os.getpid()}.{self._serial}"

    def run(self, target: Target) -> dict[str, float]:
        metrics: dict[str, float] = {}
        if target.name not in self._filled:
            stream = self._name("read")
            _declare(target, stream, STREAM_ARGUMENTS)
            self._filled[target.name] = (target, stream)
            metrics["fill_per_s"] = self._publish(target, stream, self.counts["stream"])
        stream = self._filled[target.name][1]
        # Which of the pair goes first alternates from round to round.
        self._runs[target.name] = runs = self._runs.get(target.name, 0) + 1
        pair = [("publish_stream_per_s", STREAM_ARGUMENTS), ("publish_classic_per_s", None)]
        for key, arguments in pair if runs % 2 else pair[::-1]:
            queue = self._name("publish")
            _declare(target, queue, arguments)
            try:
                metrics[key] = self._publish(target, queue, self.counts["stream_publish"])
            finally:
                _delete(target, queue)
        metrics["publish_ratio"] = metrics["publish_stream_per_s"] / metrics["publish_classic_per_s"]
        metrics["read_1_per_s"], metrics["read_1_broker_cores"] = self._read(target, stream, 1)
        metrics["read_10_per_s"], metrics["read_10_broker_cores"] = self._read(target, stream, READERS)
        metrics["read_ratio"] = metrics["read_10_per_s"] / metrics["read_1_per_s"]
        return metrics

    def _publish(self, target: Target, queue: str, count: int) -> float:
        s = self._session()
        try:
            s.spawn(publisher, target.client, target.url, queue, count)
            s.start(1)
            return count / s.expect("elapsed")
        finally:
            s.close()

    def _read(self, target: Target, stream: str, readers: int) -> tuple[float, float]:
        """(deliveries/s from go to the last reader's last delivery, broker cores meanwhile)."""
        n = self.counts["stream"]
        s = self._session()
        try:
            for _ in range(readers):
                s.spawn(reader, target.client, target.url, stream, n)
            for _ in range(readers):
                s.expect("ready")
            before = self._cpu_seconds(target.pids)
            started = s.start(0)
            done = [s.expect("done") for _ in range(readers)]
            used = self._cpu_seconds(target.pids) - before
        finally:
            s.close()
        elapsed = max(last for _, last in done) - started
        return n * readers / elapsed, used / elapsed

    def close(self) -> None:
        """Delete the filled streams (a broker that is gone keeps nothing to delete)."""
        for target, stream in self._filled.values():
            try:
                _delete(target, stream)
            except Exception:  # the benchmark's figures are made; a failed clean-up changes none
                pass
        self._filled.clear()


def _declare(target: Target, queue: str, arguments: dict[str, Any] | None) -> None:
    _, conn = roles.connect(target.client, target.url)
    conn.channel().queue_declare(queue, durable=True, arguments=arguments)
    conn.close()


def _delete(target: Target, queue: str) -> None:
    _, conn = roles.connect(target.client, target.url)
    conn.channel().queue_delete(queue)
    conn.close()


# -- the processes ---------------------------------------------------------------------------

def publisher(client: str, url: str, queue: str, count: int, report: Any, go: Any) -> None:
    """Publish ``count`` persistent 100 B messages to ``queue`` (declared by the caller),
    waiting for the confirms after every ``CONFIRM_BATCH``; report seconds from ``go`` to
    the last confirm."""
    publish = _publish_async if client == "pika" else _publish_nowait
    report.put(("elapsed", publish(client, url, queue, count, report, go)))


def _publish_nowait(client: str, url: str, queue: str, count: int, report: Any, go: Any) -> float:
    pika, conn = roles.connect(client, url)
    ch = conn.channel()
    ch.confirm_delivery()
    props = pika.BasicProperties(delivery_mode=2)
    report.put(("ready", None))
    go.wait()
    started = time.perf_counter()
    for first in range(0, count, CONFIRM_BATCH):
        for _ in range(min(CONFIRM_BATCH, count - first)):
            ch.publish_nowait("", queue, BODY_100, props)
        if not ch.wait_for_confirms(timeout=CONFIRM_TIMEOUT_S):
            raise RuntimeError(f"confirms did not arrive within {CONFIRM_TIMEOUT_S:.0f} s")
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


class _AsyncPublisher:
    """pika's SelectConnection: a batch of publishes, then its confirms, then the next."""

    def __init__(self, pika: Any, url: str, queue: str, count: int, report: Any, go: Any) -> None:
        self.pika, self.queue, self.count, self.report, self.go = pika, queue, count, report, go
        self.props = pika.BasicProperties(delivery_mode=2)
        self.sent = 0
        self.outstanding: set[int] = set()
        self.started = 0.0
        self.elapsed: float | None = None
        self.failure: str | None = None
        self.channel: Any = None
        self.conn = pika.SelectConnection(roles.parameters(pika, url), on_open_callback=self._on_open,
                                          on_open_error_callback=self._on_open_error,
                                          on_close_callback=self._on_closed)

    def run(self) -> float:
        self.conn.ioloop.start()
        if self.elapsed is None:
            raise RuntimeError(f"publishing to {self.queue} failed: {self.failure}")
        return self.elapsed

    def _on_open(self, conn: Any) -> None:
        conn.channel(on_open_callback=self._on_channel)

    def _on_open_error(self, conn: Any, error: Any) -> None:
        self.failure = repr(error)
        conn.ioloop.stop()

    def _on_channel(self, channel: Any) -> None:
        self.channel = channel
        channel.add_on_close_callback(self._on_channel_closed)
        channel.confirm_delivery(self._on_confirm, callback=self._on_selected)

    def _on_selected(self, _frame: Any) -> None:
        self.report.put(("ready", None))
        self.go.wait()
        self.started = time.perf_counter()
        self._send_batch()

    def _send_batch(self) -> None:
        n = min(CONFIRM_BATCH, self.count - self.sent)
        for _ in range(n):
            self.channel.basic_publish("", self.queue, BODY_100, self.props)
        self.outstanding.update(range(self.sent + 1, self.sent + n + 1))  # tags count from 1
        self.sent += n

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        if not isinstance(method, self.pika.spec.Basic.Ack):
            self.failure = f"the broker refused a message: {method}"
            self.conn.close()
            return
        if method.multiple:
            self.outstanding.difference_update([tag for tag in self.outstanding if tag <= method.delivery_tag])
        else:
            self.outstanding.discard(method.delivery_tag)
        if self.outstanding:
            return
        if self.sent < self.count:
            self._send_batch()
        else:
            self.elapsed = time.perf_counter() - self.started
            self.conn.close()

    def _on_channel_closed(self, _channel: Any, reason: Exception) -> None:
        if self.elapsed is None:
            self.failure = f"channel closed: {reason!r}"
            self.conn.close()

    def _on_closed(self, conn: Any, reason: Exception) -> None:
        if self.elapsed is None and self.failure is None:
            self.failure = f"connection closed: {reason!r}"
        conn.ioloop.stop()


def _publish_async(client: str, url: str, queue: str, count: int, report: Any, go: Any) -> float:
    return _AsyncPublisher(importlib.import_module(client), url, queue, count, report, go).run()


def reader(client: str, url: str, stream: str, expect: int, report: Any, go: Any) -> None:
    """After ``go``, consume ``stream`` from first until ``expect`` messages; report
    (count, wall clock of the last one).

    The last delivery is acked (multiple=True) before the consumer is cancelled, so nothing
    is unacked at the cancel: pika rejects what is pending then, and a stream answers a
    reject by closing the connection (540), as RabbitMQ's does.
    """
    _, conn = roles.connect(client, url)
    ch = conn.channel()
    ch.basic_qos(prefetch_count=READ_PREFETCH)
    state = {"count": 0, "last": 0.0}

    def on_message(channel: Any, method: Any, properties: Any, body: bytes) -> None:
        state["count"] += 1
        count = state["count"]
        if count % ACK_EVERY == 0 or count == expect:
            channel.basic_ack(method.delivery_tag, multiple=True)
        if count == expect:
            state["last"] = time.time()
            channel.stop_consuming()

    report.put(("ready", None))
    go.wait()
    ch.basic_consume(stream, on_message, arguments={"x-stream-offset": "first"})
    ch.start_consuming()
    report.put(("done", (state["count"], state["last"])))
    conn.close()

