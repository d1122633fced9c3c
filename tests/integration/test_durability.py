"""Durability with real processes: the broker is stopped or SIGKILLed and started again
on the same data directory, and clients check what survived."""
from __future__ import annotations

import hashlib
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

import zbroker.client as pika
from tests.support import Broker, Process, child_env, python_snippet
from zbroker.client import exceptions

PERSISTENT = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="zbroker-durable-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def connect(broker: Broker) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters(port=broker.port))


def durable_channel(broker: Broker, queue: str) -> tuple[pika.BlockingConnection, Any]:
    """A connection and a confirm-mode channel with the durable ``queue`` declared."""
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare(queue, durable=True)
    ch.confirm_delivery()
    return conn, ch


def drain(ch: pika.adapters.blocking_connection.BlockingChannel, queue: str) -> list[tuple[bytes, bool]]:
    """(body, redelivered) of everything in the queue, acked."""
    got = []
    while True:
        method, _, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            return got
        got.append((body, method.redelivered))


def restart(broker: Broker, data_dir: Path, kill: bool) -> Broker:
    if kill:
        broker.kill()
    else:
        assert broker.stop() == 0
    return Broker(data_dir=data_dir)


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_durable_things_survive_a_restart_and_transient_ones_do_not(data_dir: Path, kill: bool) -> None:
    broker = Broker(data_dir=data_dir)
    try:
        conn = connect(broker)
        ch = conn.channel()
        ch.exchange_declare("logs", "topic", durable=True)
        ch.exchange_declare("scratch", "fanout")
        ch.queue_declare("task_queue", durable=True, arguments={"x-queue-type": "quorum"})
        ch.queue_declare("classic_queue", durable=True)
        ch.queue_declare("temp")
        ch.queue_bind("task_queue", "logs", "kern.*")
        ch.confirm_delivery()
        for i in range(3):
            ch.basic_publish("", "task_queue", b"task %d" % i, PERSISTENT)
        ch.basic_publish("", "classic_queue", b"transient")  # a transient message in a durable classic queue
        ch.basic_publish("", "temp", b"lost", PERSISTENT)  # persistent, but in a transient queue
        broker = restart(broker, data_dir, kill)
        conn = connect(broker)
        ch = conn.channel()
        assert ch.queue_declare("task_queue", passive=True).method.message_count == 3
        assert ch.queue_declare("classic_queue", passive=True).method.message_count == 0
        for kind in ("queue", "exchange"):  # the transient queue "temp" and exchange "scratch"
            ch = conn.channel()
            with pytest.raises(exceptions.ChannelClosedByBroker) as info:
                if kind == "queue":
                    ch.queue_declare("temp", passive=True)
                else:
                    ch.exchange_declare("scratch", passive=True)
            assert info.value.reply_code == 404, kind
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish("logs", "kern.disk", b"routed by a recovered binding", PERSISTENT)
        assert drain(ch, "task_queue") == [(b"task 0", False), (b"task 1", False), (b"task 2", False),
                                           (b"routed by a recovered binding", False)]
        conn.close()
    finally:
        broker.stop()


def test_unacked_messages_come_back_redelivered_after_sigkill_and_acked_never(data_dir: Path) -> None:
    broker = Broker(data_dir=data_dir)
    try:
        conn, ch = durable_channel(broker, "work")
        for i in range(5):
            ch.basic_publish("", "work", b"job %d" % i, PERSISTENT)
        ch.basic_qos(prefetch_count=3)
        seen = []
        for method, _, body in ch.consume("work", inactivity_timeout=30):
            assert method is not None, seen
            seen.append(body)
            if body == b"job 0":
                ch.basic_ack(method.delivery_tag)
            if len(seen) == 4:  # job 0 acked (and its credit let job 3 come); 1, 2, 3 unacked
                break
        # A round trip after the ack: the broker commits a pass's changes before it answers,
        # so the ack is on disk before it dies.
        ch.queue_declare("work", durable=True, passive=True)
        broker = restart(broker, data_dir, kill=True)
        ch = connect(broker).channel()
        assert drain(ch, "work") == [(b"job 1", True), (b"job 2", True), (b"job 3", True), (b"job 4", False)]
    finally:
        broker.stop()


def test_second_broker_on_the_same_data_dir_refuses_to_start(data_dir: Path) -> None:
    first = Broker(data_dir=data_dir)
    try:
        second = python_snippet(
            "import sys; from zbroker.cli import main; "
            f"sys.argv = ['zbroker', 'serve', '--bind', 'tcp://127.0.0.1:0', '--data-dir', {str(data_dir)!r}]; main()",
            port=first.port)
        assert second.wait(15) != 0
        text = "\n".join(second.output.lines)  # whole: wait() waited for the end of the output
        assert f"data directory {data_dir} is in use by another zbroker (pid {first.pid})" in text
        assert "Traceback" not in text
        assert connect(first).is_open  # the first one is untouched
    finally:
        first.stop()


def test_pipelined_confirms_survive_sigkill(data_dir: Path) -> None:
    broker = Broker(data_dir=data_dir)
    try:
        _, ch = durable_channel(broker, "bulk")
        seqs = [ch.publish_nowait("", "bulk", b"%05d" % i, PERSISTENT) for i in range(2000)]
        assert seqs == list(range(1, 2001))
        assert ch.wait_for_confirms(timeout=30) is True
        broker = restart(broker, data_dir, kill=True)
        ch = connect(broker).channel()
        assert [body for body, _ in drain(ch, "bulk")] == [b"%05d" % i for i in range(2000)]
    finally:
        broker.stop()


def test_pipelined_unroutable_mandatory_is_reported_by_wait(broker: Broker) -> None:
    ch = connect(broker).channel()
    ch.queue_declare("here")
    ch.confirm_delivery()
    ch.publish_nowait("", "here", b"fine", mandatory=True)
    ch.publish_nowait("", "nowhere", b"lost", mandatory=True)
    with pytest.raises(exceptions.UnroutableError) as info:
        ch.wait_for_confirms(timeout=10)
    assert [m.body for m in info.value.messages] == [b"lost"]
    assert info.value.messages[0].method.reply_code == 312
    assert ch.wait_for_confirms(timeout=10) is True  # reported once


def test_wait_for_confirms_needs_confirm_mode(broker: Broker) -> None:
    ch = connect(broker).channel()
    with pytest.raises(exceptions.ChannelWrongStateError):
        ch.wait_for_confirms()


PRODUCER = r'''
import hashlib, os, sys, time
import zbroker.client as pika
port, count, batch, stop = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
props = pika.BasicProperties(delivery_mode=2)
def body(i):
    text = b"%d-%d" % (batch, i)
    return text + b":" + hashlib.sha256(text).hexdigest().encode() + b"." * (i % 700)
i = 0
def more():  # until the test says stop (so every kill lands mid-flight), at most count
    return i < count and not os.path.exists(stop)
while more():
    try:
        conn = pika.BlockingConnection(pika.ConnectionParameters(port=port, heartbeat=2))
        ch = conn.channel()
        ch.queue_declare("crash", durable=True)
        ch.confirm_delivery()
        while more():
            if batch:  # pipelined: a batch, then one wait
                last = min(count, i + batch)
                for j in range(i, last):
                    ch.publish_nowait("", "crash", body(j), props)
                if not ch.wait_for_confirms(timeout=5):
                    raise pika.exceptions.AMQPConnectionError("no confirms")
                print("confirmed", batch, *range(i, last), flush=True)
                i = last
                time.sleep(0.005)  # a steady pace, so the backlog to check stays modest
            else:
                ch.basic_publish("", "crash", body(i), props)
                print("confirmed", batch, i, flush=True)
                i += 1
    except pika.exceptions.AMQPError:
        time.sleep(0.05)  # the broker died: connect again, republish what was not confirmed
print("done", flush=True)
'''


def producer(port: int, count: int, batch: int, stop: Path) -> Process:
    """Up to ``count`` messages, one confirm each (``batch`` 0) or ``batch`` per
    wait_for_confirms, until the file ``stop`` exists."""
    return Process([sys.executable, "-c", PRODUCER, str(port), str(count), str(batch), str(stop)],
                   child_env(port))


def test_crash_loop_loses_no_confirmed_message(data_dir: Path) -> None:
    """Producers publish persistent messages with confirms (one by one, and pipelined)
    while the broker is SIGKILLed and restarted; every confirmed message must be there
    afterwards, intact, at least once."""
    broker = Broker(data_dir=data_dir)
    port = broker.port
    counts = {0: 50_000, 100: 2_000_000}  # ceilings; the test stops them after the kills
    stop = data_dir.parent / (data_dir.name + ".stop")
    producers = [producer(port, count, batch, stop) for batch, count in counts.items()]
    try:
        kills_mid_flight = [0] * len(producers)  # per producer: kills while it was publishing
        for cycle in range(5):
            time.sleep(0.6 + 0.15 * cycle)
            for i, proc in enumerate(producers):
                kills_mid_flight[i] += proc.output.count("^done$") == 0
            broker.popen.send_signal(signal.SIGKILL)
            broker.popen.wait(10)
            broker = Broker(data_dir=data_dir, bind=f"tcp://127.0.0.1:{port}")
        stop.touch()
        for proc in producers:
            proc.wait_for("^done$", timeout=90)
        confirmed = set()
        for proc in producers:
            proc.output.drain()
            for line in proc.output.lines:
                if line.startswith("confirmed"):
                    _, batch, *ids = line.split()
                    confirmed.update(f"{batch}-{i}" for i in ids)
        print("kills while each producer was publishing:", kills_mid_flight)
        assert min(kills_mid_flight) >= 2, f"producers finished too soon for the kills to test much: {kills_mid_flight}"
        per_producer = {b: sum(1 for key in confirmed if key.startswith(f"{b}-")) for b in counts}
        assert all(n > 0 for n in per_producer.values()), per_producer
        ch = connect(broker).channel()
        ch.basic_qos(prefetch_count=1000)
        queued = ch.queue_declare("crash", durable=True, passive=True).method.message_count
        stored = []
        for method, _, body in ch.consume("crash", auto_ack=True, inactivity_timeout=30):
            assert method is not None, f"{len(stored)} of {queued} messages came"
            stored.append(body)
            if len(stored) == queued:  # (the producers are done: nothing more comes)
                break
        ch.cancel()
        keys = set()
        for body in stored:
            text, _, rest = body.partition(b":")
            digest = rest.rstrip(b".")
            assert digest == hashlib.sha256(text).hexdigest().encode(), body[:80]
            keys.add(text.decode())
        missing = confirmed - keys
        assert not missing, f"{len(missing)} confirmed messages lost, e.g. {sorted(missing)[:5]}"
        assert "Traceback" not in broker.log()
    finally:
        stop.unlink(missing_ok=True)
        for proc in producers:
            proc.kill()
        broker.stop()

