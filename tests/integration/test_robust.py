"""``RobustConnection`` against a real broker that is SIGKILLed and restarted (same port,
same data directory): topology, consumers and prefetch come back; stale acks are dropped;
permanent refusals are raised, not retried."""
from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import zbroker.client as pika
from tests.support import ROOT, WAIT_S, Broker, child_env
from zbroker.client.channel import BlockingChannel
from zbroker.client.robust import RobustChannel


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(data_dir: Path, port: int | None = None) -> tuple[int, Broker]:
    """A broker on a fixed port (a restart must come back where the clients look)."""
    port = port or free_port()
    return port, Broker(bind=f"tcp://127.0.0.1:{port}", data_dir=data_dir, amqp=None)


def restart(broker: Broker, port: int, data_dir: Path) -> Broker:
    broker.kill()
    return start(data_dir, port)[1]


def ctl(broker: Broker, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zbroker", "ctl", "--broker", broker.endpoint, *args],
                          capture_output=True, text=True, env=child_env(), cwd=ROOT, timeout=30, check=True)


def robust(port: int, **params: Any) -> pika.RobustConnection:
    return pika.RobustConnection(pika.ConnectionParameters(port=port, heartbeat=2, **params),
                                 reconnect_delay=0.1, max_reconnect_delay=0.5)


def test_topology_consumers_and_prefetch_come_back_and_stale_acks_are_dropped(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    port, broker = start(tmp_path)
    conn = robust(port)
    events: list[str] = []
    conn.add_on_connection_lost_callback(lambda c, reason: events.append(f"lost {type(reason).__name__}"))
    conn.add_on_reconnect_callback(lambda c: events.append("restored"))
    try:
        ch = conn.channel()
        ch.exchange_declare("jobs", "topic")
        ch.queue_declare("work", durable=True)
        ch.queue_bind("work", "jobs", "job.*")
        private = ch.queue_declare("", exclusive=True).method.queue  # server-named, renamed by a restore
        ch.queue_bind(private, "jobs", "#")
        ch.basic_qos(prefetch_count=1)
        got: list[tuple[int, bytes]] = []
        tag = ch.basic_consume("work", lambda c, m, p, body: got.append((m.delivery_tag, body)))
        ch.basic_publish("jobs", "job.a", b"first", pika.BasicProperties(delivery_mode=2))
        while not got:
            conn.process_data_events(0.1)
        stale_tag = got[0][0]
        broker = restart(broker, port, tmp_path)
        caplog.set_level(logging.INFO, "zbroker.client.robust")
        # The first message (unacked at the kill, persistent) comes back, with a new tag.
        deadline = time.monotonic() + 10
        while len(got) < 2 and time.monotonic() < deadline:
            conn.process_data_events(0.1)
        assert [body for _, body in got] == [b"first", b"first"] and got[1][0] > stale_tag
        assert events == ["lost StreamLostError", "restored"] and conn.reconnects == 1
        ch.basic_ack(stale_tag)  # from before the cut: dropped, it must not settle anything
        assert "BASIC_ACK of delivery tag 1 dropped" in caplog.text
        listed = ctl(broker, "list_consumers", "-q", "queue_name", "consumer_tag", "prefetch_count").stdout
        assert f"work\t{tag}\t1" in listed  # same tag, same prefetch
        queues = ctl(broker, "list_queues", "-q", "name", "messages_unacknowledged").stdout
        assert "work\t1" in queues  # still unacked: the stale ack did nothing
        ch.basic_ack(got[1][0])
        ch.basic_publish("jobs", "job.b", b"second")  # the bindings were declared again
        while len(got) < 3:
            conn.process_data_events(0.1)
        assert got[2][1] == b"second"
        renamed = conn.alias(private)
        assert renamed != private and renamed.startswith("amq.gen-")
        # The old name still works; the queue is new (transient: "first" went with the old broker).
        assert ch.queue_declare(private, passive=True).method.message_count == 1
        assert ch.basic_get(private, auto_ack=True)[2] == b"second"
    finally:
        conn.close()
        broker.stop()


def confirming_channel(conn: pika.RobustConnection) -> Any:
    """A channel in confirm mode, with the durable queue ``q`` declared."""
    ch = conn.channel()
    ch.queue_declare("q", durable=True)
    ch.confirm_delivery()
    return ch


def publish_numbered(ch: Any, count: int) -> set[bytes]:
    """``count`` persistent messages "0", "1", … with ``publish_nowait``; returns their bodies."""
    for i in range(count):
        ch.publish_nowait("", "q", str(i).encode(), pika.BasicProperties(delivery_mode=2))
    return {str(i).encode() for i in range(count)}


def bodies_in(ch: Any) -> set[bytes]:
    """Every body in ``q``, taken out of it."""
    bodies = set()
    while (message := ch.basic_get("q", auto_ack=True))[0] is not None:
        bodies.add(message[2])
    return bodies


def test_unconfirmed_messages_are_published_again(tmp_path: Path) -> None:
    port, broker = start(tmp_path)
    conn = robust(port)
    try:
        ch = confirming_channel(conn)
        sent = publish_numbered(ch, 100)
        broker = restart(broker, port, tmp_path)  # some may be confirmed, some not
        assert ch.wait_for_confirms(timeout=20)
        ch.basic_publish("", "q", b"after", pika.BasicProperties(delivery_mode=2))
        assert bodies_in(ch) == sent | {b"after"}  # none lost (some twice)
    finally:
        conn.close()
        broker.stop()


@pytest.mark.parametrize("cut_in", ["round_trip", "publishing_again"])
def test_unconfirmed_messages_survive_a_restore_cut_short_by_another_kill(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cut_in: str) -> None:
    """The broker is killed again while the first restore is under way, in one of its
    round trips (confirm.select) or while it publishes the unconfirmed messages again
    (the loss noticed there, as a wait for publish credit would): the messages not
    confirmed before the first kill are still published again, by the next restore."""
    port, broker = start(tmp_path)
    conn = robust(port)
    try:
        ch = confirming_channel(conn)
        broker.kill()  # (the client notices at its next wait)
        sent = publish_numbered(ch, 20)
        broker = start(tmp_path, port)[1]
        calls = 0

        def kill_once(call: Any) -> Any:
            """The patched method: on its first call (the fifth when publishing again),
            the broker is killed and started again before the call goes on."""
            def patched(channel: Any, *args: Any) -> Any:
                nonlocal broker, calls
                calls += 1
                if calls == (5 if cut_in == "publishing_again" else 1):
                    broker = restart(broker, port, tmp_path)
                    if cut_in == "publishing_again":
                        conn.sleep(WAIT_S)  # raises inside the restore once the loss is noticed
                        pytest.fail("the client did not notice the broker's death")
                return call(channel, *args)
            return patched

        if cut_in == "round_trip":
            monkeypatch.setattr(BlockingChannel, "confirm_delivery", kill_once(BlockingChannel.confirm_delivery))
        else:
            monkeypatch.setattr(RobustChannel, "publish_nowait", kill_once(RobustChannel.publish_nowait))
        assert ch.wait_for_confirms(timeout=WAIT_S)
        assert calls >= 5 if cut_in == "publishing_again" else calls >= 1
        assert conn.reconnects == 1  # (one restore, which took two connections)
        assert bodies_in(ch) == sent
    finally:
        conn.close()
        broker.stop()


def test_a_refused_login_after_a_reconnection_is_raised_not_retried(tmp_path: Path) -> None:
    port, broker = start(tmp_path)
    try:
        ctl(broker, "add_user", "bob", "pw")
        ctl(broker, "set_permissions", "bob", ".*", ".*", ".*")
        conn = robust(port, credentials=pika.PlainCredentials("bob", "pw"))
        ch = conn.channel()
        with pytest.raises(pika.exceptions.AMQPChannelError, match="transactions are not supported"):
            ch.tx_select()  # refused, never half-restored
        ctl(broker, "change_password", "bob", "new")
        name = ctl(broker, "list_connections", "-q", "name").stdout.splitlines()[1]
        ctl(broker, "close_connection", name, "maintenance")  # 320: the client reconnects...
        with pytest.raises(pika.exceptions.ProbableAuthenticationError):  # ...and is refused for good
            while True:
                conn.process_data_events(0.1)
        assert conn.is_closed
    finally:
        broker.stop()
