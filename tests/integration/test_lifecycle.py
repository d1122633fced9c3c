"""The message lifecycle with real processes: single-active-consumer failover when the
active consumer is SIGKILLed, priorities over a paged durable queue, and a durable
TTL + dead-letter queue across ``kill -9`` restarts."""
from __future__ import annotations

import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

import zbroker.client as pika
from tests.support import WAIT_S, Broker, python_snippet
from zbroker.management.client import ManagementClient

PERSISTENT = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent)

SAC_CONSUMER = """
import sys
import zbroker.client as pika
name = sys.argv[1] if len(sys.argv) > 1 else "?"
conn = pika.BlockingConnection(pika.ConnectionParameters())
ch = conn.channel()
ch.queue_declare("ordered", durable=True, arguments={"x-single-active-consumer": True})
ch.basic_qos(prefetch_count=5)
def on_message(ch, method, props, body):
    print(f"{NAME} got {body.decode()} redelivered={method.redelivered}", flush=True)
    if not body.startswith(b"hold"):
        ch.basic_ack(method.delivery_tag)
ch.basic_consume("ordered", on_message)
print(f"{NAME} consuming", flush=True)
ch.start_consuming()
"""


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="zbroker-lifecycle-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def consumer(broker: Broker, name: str):
    proc = python_snippet(SAC_CONSUMER.replace("{NAME}", name), broker.port)
    proc.wait_for(f"{name} consuming")
    return proc


def test_single_active_consumer_fails_over_when_the_active_one_is_killed(broker: Broker) -> None:
    first = consumer(broker, "first")
    second = consumer(broker, "second")
    conn = pika.BlockingConnection(pika.ConnectionParameters(port=broker.port))
    ch = conn.channel()
    try:
        for body in ("m1", "m2", "hold-m3", "hold-m4"):
            ch.basic_publish("", "ordered", body)
        first.wait_for("first got hold-m4")
        assert second.output.count("got") == 0, "only the active consumer receives"
        # Its acks of m1 and m2 are on their way: kill it once the broker has them, so
        # that exactly the two held messages are unacked when it dies.
        with ManagementClient(broker.endpoint) as client:
            deadline = time.monotonic() + WAIT_S
            while client.request("queue", name="ordered")["messages_unacknowledged"] != 2:
                assert time.monotonic() < deadline, "the first consumer's acks of m1 and m2 never arrived"
                conn.sleep(0.02)
        first.kill()  # SIGKILL with two unacked
        second.wait_for("second got hold-m3 redelivered=True")
        second.wait_for("second got hold-m4 redelivered=True")
        ch.basic_publish("", "ordered", "m5")
        second.wait_for("second got m5 redelivered=False")
        assert second.output.count("got m1") == 0 and second.output.count("got m2") == 0
    finally:
        conn.close()
        first.kill()
        second.kill()


def test_priorities_hold_over_a_paged_durable_queue() -> None:
    """5,000 persistent messages (past the 2,000 kept in memory) with random priorities
    come out highest first, in publish order within a priority."""
    broker = Broker()
    try:
        conn = pika.BlockingConnection(pika.ConnectionParameters(port=broker.port))
        ch = conn.channel()
        ch.queue_declare("prio", durable=True, arguments={"x-max-priority": 9})
        rng = random.Random(7)
        sent = []
        for i in range(5000):
            priority = rng.choice([None, 0, 1, 5, 9, 12])
            ch.basic_publish("", "prio", b"%d" % i,
                             pika.BasicProperties(delivery_mode=2, priority=priority))
            sent.append((min(priority or 0, 9), i))
        expected = [b"%d" % i for _, i in sorted(sent, key=lambda pi: (-pi[0], pi[1]))]
        got = []
        while True:
            method, _, body = ch.basic_get("prio", auto_ack=True)
            if method is None:
                break
            got.append(body)
        assert got == expected
        conn.close()
    finally:
        assert broker.stop() == 0
        broker.remove_data()


def test_a_durable_ttl_and_dead_letter_queue_across_kill_9(data_dir: Path) -> None:
    broker = Broker(data_dir=data_dir)
    try:
        conn = pika.BlockingConnection(pika.ConnectionParameters(port=broker.port))
        ch = conn.channel()
        ch.queue_declare("expired", durable=True)
        ch.queue_declare("delayed", durable=True, arguments={
            "x-message-ttl": 2500, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "expired"})
        ch.confirm_delivery()
        sent_at = time.time()
        for i in range(3):
            ch.basic_publish("", "delayed", b"job %d" % i, PERSISTENT)
        broker.kill()  # confirmed: on disk
        broker = Broker(data_dir=data_dir)
        conn = pika.BlockingConnection(pika.ConnectionParameters(port=broker.port))
        ch = conn.channel()
        waiting = ch.queue_declare("delayed", passive=True).method.message_count
        if time.time() - sent_at < 2.5:  # answered before any could expire (enqueued after sent_at)
            assert waiting == 3
        deadline = sent_at + 2.5 + 10  # (a slow restart on a loaded machine eats into it)
        while ch.queue_declare("expired", passive=True).method.message_count < 3:
            assert time.time() < deadline, "recovered messages did not expire at their time"
            conn.sleep(0.05)
        moved_at = time.time()
        assert moved_at - sent_at >= 2.5 - 0.05
        assert ch.queue_declare("delayed", passive=True).method.message_count == 0
        broker.kill()  # the dead letters are persistent too: they survive this
        broker = Broker(data_dir=data_dir)
        conn = pika.BlockingConnection(pika.ConnectionParameters(port=broker.port))
        ch = conn.channel()
        got = []
        while True:
            method, props, body = ch.basic_get("expired", auto_ack=True)
            if method is None:
                break
            assert props.delivery_mode == 2
            assert props.headers["x-death"][0]["reason"] == "expired"
            got.append(body)
        assert sorted(got) == [b"job 0", b"job 1", b"job 2"]
        conn.close()
    finally:
        broker.kill()


def test_reject_publish_nacks_the_refused_message(connect, pika) -> None:  # noqa: ANN001
    ch = connect().channel()
    ch.queue_declare("bounded", arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    ch.confirm_delivery()
    ch.basic_publish("", "bounded", b"1")
    with pytest.raises(pika.exceptions.NackError):
        ch.basic_publish("", "bounded", b"2")
    assert ch.queue_declare("bounded", passive=True).method.message_count == 1


def test_reject_publish_raises_nack_error_for_the_refused_message_only(zconnect) -> None:  # noqa: ANN001
    """zbroker's client hands back the refused messages (pika's NackError carries none)."""
    ch = zconnect().channel()
    ch.queue_declare("bounded", arguments={"x-max-length": 2, "x-overflow": "reject-publish"})
    ch.confirm_delivery()
    ch.basic_publish("", "bounded", b"1")
    ch.basic_publish("", "bounded", b"2")
    with pytest.raises(pika.exceptions.NackError) as info:
        ch.basic_publish("", "bounded", b"3")
    assert [m.body for m in info.value.messages] == [b"3"]
    for body in (b"4", b"5", b"6"):  # pipelined: exactly the refused ones come back
        ch.publish_nowait("", "bounded", body)
    ch.basic_get("bounded", auto_ack=True)  # (one place frees up too late for them)
    with pytest.raises(pika.exceptions.NackError) as info:
        ch.wait_for_confirms()
    assert [m.body for m in info.value.messages] == [b"4", b"5", b"6"]
    assert ch.queue_declare("bounded", passive=True).method.message_count == 1
