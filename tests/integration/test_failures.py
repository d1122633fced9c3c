"""Processes dying, hanging or misbehaving: nothing is lost, everyone else is served."""
from __future__ import annotations

import os
import signal
import time

import msgpack
import pytest
import zmq

import zbroker.client as pika
from zbroker.client import exceptions
from zbroker.protocol import HEADER, Op, encode
from zbroker.protocol.native_packed import decode_frames
from tests.support import CHANNEL_CLOSED, WAIT_S, Broker, hello_many, python_snippet

HOLDER = """
import zbroker.client as pika
conn = pika.BlockingConnection(pika.ConnectionParameters(heartbeat={heartbeat}))
ch = conn.channel()
ch.queue_declare({queue!r}, exclusive={exclusive}, auto_delete={auto_delete})
ch.basic_qos(prefetch_count={prefetch})
held = []
def cb(c, m, p, b):
    held.append(m.delivery_tag)
    print("holding", b.decode(), flush=True)
ch.basic_consume({queue!r}, cb)
print("ready", flush=True)
ch.start_consuming()
"""


def holder(broker: Broker, queue: str, prefetch: int = 0, exclusive: bool = False,
           auto_delete: bool = False, heartbeat: int | None = None):
    proc = python_snippet(HOLDER.format(queue=queue, prefetch=prefetch, exclusive=exclusive,
                                        auto_delete=auto_delete, heartbeat=heartbeat), broker.port)
    proc.wait_for("ready")
    return proc


def wait_until(predicate, timeout: float, conn) -> float:
    """Pump ``conn`` until ``predicate()``; returns the seconds it took."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, "condition not met in time"
        conn.process_data_events(time_limit=0.05)
    return time.monotonic() - started


def queue_exists(conn, name: str) -> bool:
    try:
        conn.channel().queue_declare(name, passive=True)
        return True
    except CHANNEL_CLOSED as exc:
        if exc.reply_code == 405:  # an exclusive queue whose owner is not yet known gone
            return True
        assert exc.reply_code == 404
        return False


def test_sigkilled_consumer_unacked_messages_are_redelivered(broker, connect) -> None:
    victim = holder(broker, "work", prefetch=5)
    conn = connect()
    ch = conn.channel()
    for i in range(8):
        ch.basic_publish("", "work", b"task-%d" % i)
    for i in range(5):
        victim.wait_for(f"holding task-{i}")
    got = []
    ch.basic_consume("work", lambda c, m, p, b: (got.append((b, m.redelivered)), c.basic_ack(m.delivery_tag)))
    wait_until(lambda: len(got) == 3, 30, conn)  # the three the victim had no credit for
    assert all(not redelivered for _, redelivered in got)
    victim.kill()
    took = wait_until(lambda: len(got) == 8, 15, conn)
    assert took < 8, f"redelivery took {took:.1f}s"  # at the peer's death, not at a heartbeat timeout
    redelivered = sorted(b for b, r in got if r)
    assert redelivered == [b"task-%d" % i for i in range(5)]
    broker.wait_for("lost: peer")


def test_sigkilled_owner_loses_exclusive_and_auto_delete_queues(broker, connect) -> None:
    excl = holder(broker, "excl-q", exclusive=True)
    auto = holder(broker, "auto-q", auto_delete=True)
    conn = connect()
    assert queue_exists(conn, "auto-q")
    excl.kill()
    auto.kill()
    wait_until(lambda: not queue_exists(conn, "excl-q") and not queue_exists(conn, "auto-q"), 30, conn)


def test_frozen_consumer_with_heartbeat_2_is_dropped_within_10s(broker, connect) -> None:
    victim = holder(broker, "frozen", prefetch=1, heartbeat=2)
    conn = connect()
    ch = conn.channel()
    ch.basic_publish("", "frozen", b"stuck")
    victim.wait_for("holding stuck")
    # The client's heartbeat TTL reaches the broker with its first ZMTP ping, one
    # interval (heartbeat/2) after connecting; freeze the victim only after that.
    conn.sleep(1.5)
    os.kill(victim.pid, signal.SIGSTOP)  # alive, sockets open, but silent
    try:
        got = []
        ch.basic_consume("frozen", lambda c, m, p, b: got.append(m.redelivered))
        took = wait_until(lambda: got == [True], 10, conn)
        assert took < 10
    finally:
        os.kill(victim.pid, signal.SIGCONT)
        victim.kill()


def test_long_callback_keeps_its_connection(broker, connect) -> None:
    """A callback far longer than the heartbeat timeout must not cost the connection."""
    code = """
import time, zbroker.client as pika
conn = pika.BlockingConnection(pika.ConnectionParameters(heartbeat=1))
ch = conn.channel()
ch.queue_declare("slow")
def cb(c, m, p, b):
    print("start", flush=True)
    time.sleep(6)   # six heartbeat timeouts, with the user's thread busy
    c.basic_ack(m.delivery_tag)
    print("acked", flush=True)
    c.stop_consuming()
ch.basic_consume("slow", cb)
print("ready", flush=True)
ch.start_consuming()
conn.close()
print("closed cleanly", flush=True)
"""
    worker = python_snippet(code, broker.port)
    worker.wait_for("ready")
    conn = connect()
    conn.channel().basic_publish("", "slow", b"job")
    worker.wait_for("start")
    worker.wait_for("closed cleanly", timeout=20)
    assert worker.wait() == 0
    assert queue_exists(conn, "slow")
    assert conn.channel().queue_declare("slow", passive=True).method.message_count == 0
    assert "lost" not in broker.log()


def test_broker_killed_raises_stream_lost_promptly() -> None:
    broker = Broker()
    try:
        conn = pika.BlockingConnection(pika.ConnectionParameters(port=broker.port))
        ch = conn.channel()
        ch.queue_declare("q")
        ch.basic_consume("q", lambda *a: None)
        os.kill(broker.pid, signal.SIGKILL)
        started = time.monotonic()
        with pytest.raises(exceptions.StreamLostError):
            ch.start_consuming()
        assert time.monotonic() - started < 8  # at once, not at the 10 s socket timeout
        assert conn.is_closed
    finally:
        broker.kill()
        broker.remove_data()


def test_broker_shutdown_tells_clients_320() -> None:
    broker = Broker()
    conn = pika.BlockingConnection(pika.ConnectionParameters(port=broker.port))
    ch = conn.channel()
    broker.stop()
    broker.remove_data()
    with pytest.raises(exceptions.ConnectionClosedByBroker) as info:
        ch.queue_declare("", exclusive=True)
    assert info.value.reply_code == 320
    assert "shutdown" in info.value.reply_text


@pytest.fixture
def raw(broker):
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, int(WAIT_S * 1000))
    sock.connect(broker.endpoint)
    yield sock
    sock.close(0)
    ctx.term()


@pytest.mark.parametrize("frames", [
    [b"garbage"],
    [HEADER, b"\xc1\xc1\xc1"],
    [HEADER, msgpack.packb([12345])],
    [HEADER, msgpack.packb([Op.HELLO, "wrong", "types"])],
    [b"ZB\x09", encode(Op.CHANNEL_OPEN, 1)],
])
def test_malformed_frames_get_an_error_and_the_broker_serves_on(broker, connect, raw, frames) -> None:
    healthy = connect().channel()
    healthy.queue_declare("still-served")
    raw.send_multipart([HEADER, encode(Op.HELLO, None, "/", "guest", "guest", {})])
    reply = raw.recv_multipart()
    assert list(decode_frames(reply, 0))[0][0] == Op.HELLO_OK
    raw.send_multipart(frames)
    reply = raw.recv_multipart()
    [(op, fields, _)] = list(decode_frames(reply, 0))
    assert op == Op.CONNECTION_CLOSE and fields[0] >= 500
    healthy.basic_publish("", "still-served", b"ok")
    assert healthy.basic_get("still-served", auto_ack=True)[2] == b"ok"
    assert "Traceback" not in broker.log()


@pytest.mark.parametrize("form", ["split", "packed"])
def test_a_100_mb_header_table_is_cut_and_a_bystander_goes_on(broker: Broker, form: str) -> None:
    """A raw peer sends one command of 100 MB (a header table), in either form: 501 for
    it alone, refused before any decoding; a well-behaved client publishes and consumes
    throughout."""
    conn = pika.BlockingConnection(pika.ConnectionParameters(port=broker.port))
    ch = conn.channel()
    ch.queue_declare("bystander")
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(broker.endpoint)
    try:
        sock.send_multipart([HEADER, msgpack.packb([Op.HELLO, None, "/", "guest", "guest", {}])])
        assert sock.poll(30_000)
        sock.recv_multipart()
        sock.send_multipart([HEADER, msgpack.packb([Op.CHANNEL_OPEN, 1])])
        assert sock.poll(30_000)
        sock.recv_multipart()
        table = {"h": "x" * (100 * 1024 * 1024)}
        started = time.monotonic()
        command = msgpack.packb([Op.BASIC_PUBLISH, 1, "", "bystander", False, {"headers": table}])
        if form == "split":
            sock.send_multipart([HEADER, command, b"body"])
        else:  # (a packed frame over frame_max is read item by item: the command is not decoded)
            sock.send_multipart([HEADER + b"\x92" + command + msgpack.packb(b"body")])
        del table
        ch.basic_publish("", "bystander", b"still served")
        assert sock.poll(10_000)
        [(op, fields, _)] = list(decode_frames(sock.recv_multipart(), 0))
        assert op == Op.CONNECTION_CLOSE and fields[0] == 501, fields
        assert time.monotonic() - started < 10
        method, _, body = ch.basic_get("bystander", auto_ack=True)
        assert body == b"still served"
        assert ch.queue_declare("bystander", passive=True).method.message_count == 0
    finally:
        sock.close(0)
        ctx.term()
        conn.close()
    broker.wait_for("command frame of 104857\\d+ bytes is larger than frame_max")


def test_the_broker_takes_the_descriptors_the_system_allows() -> None:
    """Started with a soft open-file limit of 300 (hard 4096), the broker raises its own
    limit: 400 connections are all served and a bystander connects and works."""
    broker = Broker(prefix=("prlimit", "--nofile=300:4096"))
    try:
        with hello_many(broker.port, 400) as answers:
            assert answers == {"ok": 400, "refused": 0, "silent": 0}
            ch = pika.BlockingConnection(pika.ConnectionParameters(port=broker.port)).channel()
            ch.queue_declare("bystander")
            ch.basic_publish("", "bystander", b"x")
            assert ch.queue_declare("bystander", passive=True).method.message_count == 1
    finally:
        assert broker.stop() == 0
        broker.remove_data()


def test_connections_past_the_limit_are_refused_with_530_and_logged_once() -> None:
    broker = Broker("--max-connections", "50")
    try:
        with hello_many(broker.port, 80) as answers:
            assert answers == {"ok": 50, "refused": 30, "silent": 0}
            broker.wait_for("node connection limit \\(50\\) is reached")
    finally:
        assert broker.stop() == 0
        broker.remove_data()
    assert broker.output.count("node connection limit \\(50\\) is reached") == 1  # the whole log: stopped
