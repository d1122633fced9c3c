"""Hostile peers, each bounded and refused or paused with a clear log line, while a
well-behaved bystander keeps publishing and consuming.

The bystander's rate is printed (``-s`` shows it) and checked only for a stall (at
least a tenth of its rate with the broker to itself: a starved bystander falls far below
that, while a machine busy with other work can halve its rate between two runs): speed is
measured by ``zbroker bench``; here the point is that nobody stalls."""
from __future__ import annotations

import resource
import time

import zmq

import zbroker.client as pika
from tests.support import Broker, hello_many
from zbroker.protocol import HEADER, Op, encode
from zbroker.protocol.native_packed import decode_frames

#: Below this fraction of its undisturbed rate the bystander counts as stalled.
FAIR_SHARE = 0.1


def bystander_rate(port: int, n: int = 2000) -> float:
    """Messages a second one client publishes and then consumes (100 B each)."""
    with pika.BlockingConnection(pika.ConnectionParameters(port=port)) as conn:
        ch = conn.channel()
        ch.queue_declare("bystander")
        started = time.monotonic()
        for i in range(n):
            ch.basic_publish("", "bystander", b"%06d" % i + b"." * 94)
        got = 0
        for method, _, body in ch.consume("bystander", auto_ack=True, inactivity_timeout=5):
            assert method is not None, "the bystander stalled"
            assert int(body[:6]) == got
            got += 1
            if got == n:
                break
        ch.cancel()
        return n / (time.monotonic() - started)


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def raw_peer(endpoint: str, ctx: zmq.Context, rcvhwm: int = 1000) -> zmq.Socket:
    """A ZeroMQ peer that says HELLO and opens channel 1, and from then on reads only
    what the test asks it to."""
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, rcvhwm)
    sock.connect(endpoint)
    sock.send_multipart([HEADER, encode(Op.HELLO, None, "/", "guest", "guest", {})])
    assert sock.poll(30_000)
    sock.recv_multipart()
    sock.send_multipart([HEADER, encode(Op.CHANNEL_OPEN, 1)])
    assert sock.poll(30_000)
    sock.recv_multipart()
    return sock


def test_a_peer_that_stops_reading_with_50000_deliveries_pending_costs_one_window() -> None:
    broker = Broker()
    ctx = zmq.Context()
    try:
        baseline = bystander_rate(broker.port)
        with pika.BlockingConnection(pika.ConnectionParameters(port=broker.port)) as conn:
            ch = conn.channel()
            ch.queue_declare("pending")
            for i in range(50_000):
                ch.basic_publish("", "pending", b"." * 1024)
            before = rss_mib(broker.pid)
            sock = raw_peer(broker.endpoint, ctx, rcvhwm=1)
            sock.send_multipart([HEADER, encode(Op.BASIC_CONSUME, 1, "pending", "silent", False, False, {})])
            time.sleep(1.0)  # let the broker send all it will
            ready = ch.queue_declare("pending", passive=True).method.message_count
            during = bystander_rate(broker.port)
            after = rss_mib(broker.pid)
            print(f"\nsilent reader holds {50_000 - ready} deliveries; broker RSS {before:.0f} -> "
                  f"{after:.0f} MiB; bystander {during:.0f} msg/s (alone: {baseline:.0f})")
            # One 4 MiB window of 1 KiB messages is ~3,280 deliveries; the rest stay queued.
            assert 50_000 - 3_400 <= ready < 50_000
            assert during >= FAIR_SHARE * baseline
            sock.close(0)  # gone: what it held goes back to the queue
            deadline = time.monotonic() + 15
            while ch.queue_declare("pending", passive=True).method.message_count < 50_000:
                assert time.monotonic() < deadline, "the silent reader's deliveries were not requeued"
                conn.sleep(0.1)
    finally:
        ctx.term()
        assert broker.stop() == 0
        broker.remove_data()
    assert "Traceback" not in broker.log()


def test_a_peer_declaring_100000_queues_is_refused_past_the_limit_and_logged_once() -> None:
    broker = Broker()
    ctx = zmq.Context()
    try:
        baseline = bystander_rate(broker.port)
        sock = raw_peer(broker.endpoint, ctx)
        started = time.monotonic()
        closed = None
        try:
            for batch in range(100):
                sock.send_multipart([HEADER, *(encode(Op.QUEUE_DECLARE, 1, f"q{batch}-{i}", False, False,
                                                      False, False, {}) for i in range(1000))])
            while closed is None:
                assert sock.poll(30_000), "no CHANNEL_CLOSE for the declare past the limit"
                for op, fields, _ in decode_frames(sock.recv_multipart(), 0):
                    if op == Op.CHANNEL_CLOSE:
                        closed = [op, *fields]
        finally:
            sock.close(0)
        elapsed = time.monotonic() - started
        during = bystander_rate(broker.port)
        print(f"\n100,000 declares in {elapsed:.1f} s; broker RSS {rss_mib(broker.pid):.0f} MiB; "
              f"bystander {during:.0f} msg/s (alone: {baseline:.0f})")
        assert closed is not None and closed[2] == 406
        assert "queue limit in cluster (50000) is reached" in closed[3]
        broker.wait_for(r"limit reached: queue limit in cluster \(50000\) is reached")
        assert during >= FAIR_SHARE * baseline
    finally:
        ctx.term()
        assert broker.stop() == 0
        broker.remove_data()
    assert broker.output.count(r"limit reached: queue limit in cluster \(50000\) is reached") == 1  # stopped: all


def test_a_peer_opening_2000_connections_is_served_and_a_bystander_goes_on() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    broker = Broker()
    try:
        baseline = bystander_rate(broker.port)
        with hello_many(broker.port, 2000) as answers:
            during = bystander_rate(broker.port)
            print(f"\n2,000 connections: broker RSS {rss_mib(broker.pid):.0f} MiB; "
                  f"bystander {during:.0f} msg/s (alone: {baseline:.0f})")
            assert answers == {"ok": 2000, "refused": 0, "silent": 0}
            assert during >= FAIR_SHARE * baseline
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        assert broker.stop(timeout=30) == 0
        broker.remove_data()


def test_an_amqp_consumer_that_stops_reading_is_held_by_tcp_and_the_write_limit() -> None:
    """A raw AMQP client consumes 50,000 x 1 KiB with no_ack and never reads: the broker
    stops delivering once ~4 MiB wait unwritten (plus what the kernel buffers hold), the
    rest stay queued, the broker stays small and a bystander goes on."""
    import socket

    from pamqp import commands as C
    from pamqp import frame

    from tests.fuzz_amqp import HANDSHAKE

    broker = Broker()
    sock = None
    try:
        baseline = bystander_rate(broker.port)
        with pika.BlockingConnection(pika.ConnectionParameters(port=broker.port)) as conn:
            ch = conn.channel()
            ch.queue_declare("pending-amqp")
            for _ in range(50_000):
                ch.basic_publish("", "pending-amqp", b"." * 1024)
            before = rss_mib(broker.pid)
            sock = socket.create_connection(("127.0.0.1", broker.amqp_port))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(HANDSHAKE + frame.marshal(C.Basic.Consume(queue="pending-amqp", no_ack=True), 1))
            time.sleep(1.5)  # let the broker send all it will
            ready = ch.queue_declare("pending-amqp", passive=True).method.message_count
            during = bystander_rate(broker.port)
            after = rss_mib(broker.pid)
            print(f"\nsilent AMQP reader took {50_000 - ready} deliveries; broker RSS {before:.0f} -> "
                  f"{after:.0f} MiB; bystander {during:.0f} msg/s (alone: {baseline:.0f})")
            assert 30_000 <= ready < 50_000  # at most ~4 MiB queued to write, and the kernel's buffers
            assert after - before < 64
            assert during >= FAIR_SHARE * baseline
    finally:
        if sock is not None:
            sock.close()
        assert broker.stop() == 0
        broker.remove_data()
    assert "Traceback" not in broker.log()


def test_a_thousand_idle_amqp_connections_are_served_and_released() -> None:
    """Each opens (handshake to channel.open-ok), a pika client beside them is served, and
    when they all drop, the broker forgets them. (The round trip beside them is printed:
    with every socket in one epoll set, idle connections cost a loop pass nothing.)"""
    import socket

    import pika as real_pika

    from tests.fuzz_amqp import HANDSHAKE

    broker = Broker()
    socks = []
    try:
        params = real_pika.ConnectionParameters("127.0.0.1", broker.amqp_port)
        with real_pika.BlockingConnection(params) as conn:
            ch = conn.channel()
            started = time.monotonic()
            for _ in range(200):
                ch.queue_declare("idle-test", passive=False)
            alone = (time.monotonic() - started) / 200
            for _ in range(1000):
                sock = socket.create_connection(("127.0.0.1", broker.amqp_port))
                sock.sendall(HANDSHAKE)
                socks.append(sock)
            deadline = time.monotonic() + 20
            while len(broker_connections(broker)) < 1001:
                assert time.monotonic() < deadline, "not every connection was opened"
                time.sleep(0.1)
            started = time.monotonic()
            for _ in range(200):
                ch.queue_declare("idle-test", passive=False)
            beside = (time.monotonic() - started) / 200
            print(f"\nround trip alone {alone * 1e6:.0f} us, beside 1,000 idle AMQP connections {beside * 1e6:.0f} us")
            for sock in socks:
                sock.close()
            socks.clear()
            deadline = time.monotonic() + 20
            while len(broker_connections(broker)) > 1:
                assert time.monotonic() < deadline, "closed connections were not released"
                time.sleep(0.1)
    finally:
        for sock in socks:
            sock.close()
        assert broker.stop() == 0
        broker.remove_data()
    assert "Traceback" not in broker.log()


def broker_connections(broker: Broker) -> list:
    from zbroker.management.client import ManagementClient
    with ManagementClient(broker.endpoint) as client:
        return client.request("list", kind="connections")
