"""The AMQP 0-9-1 listener against a real broker process, with unmodified pika and raw
sockets: what only this wire has (handshake, frames, heartbeats, blocking by reading
less) and how both wires meet in one broker. The pika-API tests that run over both
wires are in test_client_api.py, test_errors.py, test_pika_parity.py, test_lifecycle.py."""
from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time

import pamqp.exceptions
import pytest
from pamqp import commands as C
from pamqp import frame
from pamqp.heartbeat import Heartbeat

from tests.support import Broker, child_env, python_snippet

pika = pytest.importorskip("pika")

import zbroker.client as zpika  # noqa: E402
from zbroker.protocol.amqp_codec import PROTOCOL_HEADER  # noqa: E402


def amqp(broker: Broker, **kwargs: object) -> "pika.BlockingConnection":
    return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.amqp_port, **kwargs))


def raw_exchange(port: int, data: bytes, timeout: float = 3.0) -> bytes:
    """Send ``data`` on a fresh TCP connection; everything the broker wrote back until it
    closed the connection (or ``timeout``)."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(timeout)
        sock.sendall(data)
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except socket.timeout:
            out += b"<open>"
        return out


def test_a_message_crosses_the_wires_with_every_property(broker: Broker) -> None:
    props = dict(content_type="application/json", content_encoding="utf-8",
                 headers={"s": "x", "i": -5, "big": 2**40, "b": b"\x00\xff", "l": [1, "a", {"k": None}]},
                 delivery_mode=2, priority=3, correlation_id="cid", reply_to="rq", expiration="60000",
                 message_id="mid", timestamp=1_700_000_000, type="t", user_id="guest", app_id="app")
    a = amqp(broker).channel()
    z = zpika.BlockingConnection(zpika.ConnectionParameters(port=broker.port)).channel()
    a.queue_declare("cross")
    a.basic_publish("", "cross", b"from amqp", pika.BasicProperties(**props))
    a.queue_declare("cross", passive=True)  # a round trip: the AMQP publish is in before the next
    z.basic_publish("", "cross", b"from zbroker", zpika.BasicProperties(**props))
    _, zprops, zbody = z.basic_get("cross", auto_ack=True)
    _, aprops, abody = a.basic_get("cross", auto_ack=True)
    assert (zbody, abody) == (b"from amqp", b"from zbroker")
    for got in (zprops, aprops):
        assert {k: getattr(got, k) for k in props} == props


def test_both_protocols_show_in_list_connections(broker: Broker) -> None:
    conn = amqp(broker, client_properties={"connection_name": "amqp-side"})
    zconn = zpika.BlockingConnection(zpika.ConnectionParameters(port=broker.port))
    out = subprocess.run([sys.executable, "-m", "zbroker", "ctl", "--broker", broker.endpoint, "list_connections",
                          "name", "protocol", "user", "peer_port", "--formatter", "json"],
                         capture_output=True, text=True, env=child_env(), timeout=30)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    protocols = sorted(r["protocol"] for r in rows)
    assert protocols == ["AMQP 0-9-1", "zbroker"]
    amqp_row = next(r for r in rows if r["protocol"] == "AMQP 0-9-1")
    port = conn._impl._transport._sock.getsockname()[1]
    assert amqp_row["name"] == f"127.0.0.1:{port} -> 127.0.0.1:{broker.amqp_port}"
    assert amqp_row["peer_port"] == port and amqp_row["user"] == "guest"
    conn.close()
    zconn.close()


def test_wrong_credentials_are_pikas_probable_authentication_error(broker: Broker) -> None:
    with pytest.raises(pika.exceptions.ProbableAuthenticationError, match="ACCESS_REFUSED - Login was refused"):
        amqp(broker, credentials=pika.PlainCredentials("guest", "wrong"))
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError, match="vhost nope not found"):
        amqp(broker, virtual_host="nope")
    broker.wait_for(r"PLAIN login refused from 127.0.0.1: user 'guest' - invalid credentials")
    assert "wrong" not in broker.log()  # the password is never logged


def test_bad_bytes_close_only_their_connection(broker: Broker) -> None:
    bystander = amqp(broker).channel()
    bystander.queue_declare("by")
    assert raw_exchange(broker.amqp_port, b"GET / HTTP/1.1\r\n\r\n") == b"AMQP\x00\x00\x09\x01"
    # A method frame whose end octet is wrong, right after a valid handshake's header.
    reply = raw_exchange(broker.amqp_port, b"AMQP\x00\x00\x09\x01" + struct.pack(">BHI", 1, 0, 4)
                         + b"\x00\x0a\x00\x0b" + b"\x00")
    assert b"FRAME_ERROR - type 1, all octets = <<0,10,0,11>>: {invalid_frame_end_marker,0}" in reply
    # A frame larger than frame_max from pika itself: a header table of 200 kB.
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker, match="501"):
        ch = amqp(broker).channel()
        ch.basic_publish("", "by", b"x", pika.BasicProperties(headers={"blob": "x" * 200_000}))
        ch.queue_declare("by", passive=True)
    bystander.basic_publish("", "by", b"still served")
    assert bystander.basic_get("by", auto_ack=True)[2] == b"still served"
    broker.wait_for("frame_too_large,200\\d+,131064")


class RawAmqp:
    """A client on a bare socket: frames in and out with pamqp, nothing hidden."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.settimeout(10)
        self.buffer = b""

    def send(self, channel: int, method: object) -> None:
        self.sock.sendall(frame.marshal(method, channel))

    def receive(self) -> object:
        while True:
            try:
                used, _, value = frame.unmarshal(self.buffer)
            except pamqp.exceptions.UnmarshalingException:
                chunk = self.sock.recv(65536)
                assert chunk, "the broker closed the socket"
                self.buffer += chunk
                continue
            self.buffer = self.buffer[used:]
            return value

    def open(self, heartbeat: int) -> None:
        self.sock.sendall(PROTOCOL_HEADER)
        assert isinstance(self.receive(), C.Connection.Start)
        self.send(0, C.Connection.StartOk({"product": "raw"}, "PLAIN", "\0guest\0guest", "en_US"))
        tune = self.receive()
        self.send(0, C.Connection.TuneOk(tune.channel_max, tune.frame_max, heartbeat))
        self.send(0, C.Connection.Open("/"))
        assert isinstance(self.receive(), C.Connection.OpenOk)


def test_after_close_ok_the_client_closes_the_socket_as_with_rabbitmq(broker: Broker) -> None:
    """The broker does not hang up after close-ok (an asyncio client would meet
    end-of-file before its own close): it waits for the client, bounded by the heartbeat."""
    client = RawAmqp(broker.amqp_port)
    client.open(heartbeat=0)
    client.send(0, C.Connection.Close(200, "bye", 0, 0))
    assert isinstance(client.receive(), C.Connection.CloseOk)
    client.sock.settimeout(1.0)
    with pytest.raises(socket.timeout):  # still open: closing is the client's to do
        client.sock.recv(1)
    client.sock.close()
    bounded = RawAmqp(broker.amqp_port)
    bounded.open(heartbeat=1)  # a silent client: the broker closes 1 s (its heartbeat) later
    bounded.send(0, C.Connection.Close(200, "bye", 0, 0))
    started = time.monotonic()
    assert isinstance(bounded.receive(), C.Connection.CloseOk)
    while True:
        data = bounded.sock.recv(65536)
        if not data:
            break
        assert data == frame.marshal(Heartbeat(), 0), data  # (one may have been on its way)
    assert time.monotonic() - started < 10
    bounded.sock.close()


def test_a_sigkilled_amqp_consumer_s_messages_go_to_a_zbroker_consumer(broker: Broker) -> None:
    code = f"""
import pika
ch = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", {broker.amqp_port})).channel()
ch.queue_declare("jobs")
ch.basic_qos(prefetch_count=2)
ch.basic_consume("jobs", lambda c, m, p, b: print("holding", b.decode(), flush=True))
ch.start_consuming()
"""
    victim = python_snippet(code, broker.port)
    z = zpika.BlockingConnection(zpika.ConnectionParameters(port=broker.port)).channel()
    z.queue_declare("jobs")
    for n in (1, 2, 3):
        z.basic_publish("", "jobs", str(n).encode())
    victim.wait_for("holding 2")
    victim.kill()
    got = []
    for method, _, body in z.consume("jobs", inactivity_timeout=5):
        if method is None:
            break
        got.append((body, method.redelivered))
        z.basic_ack(method.delivery_tag)
        if len(got) == 3:
            break
    assert sorted(got) == [(b"1", True), (b"2", True), (b"3", False)]


def test_a_frozen_pika_client_is_dropped_after_two_heartbeats(broker: Broker) -> None:
    code = f"""
import pika
conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", {broker.amqp_port}, heartbeat=1))
ch = conn.channel()
ch.queue_declare("hb")
ch.basic_consume("hb", lambda c, m, p, b: print("holding", flush=True))
print("ready", flush=True)
ch.start_consuming()
"""
    victim = python_snippet(code, broker.port)
    victim.wait_for("ready")
    ch = amqp(broker).channel()
    ch.basic_publish("", "hb", b"stuck")
    victim.wait_for("holding")
    os.kill(victim.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        broker.wait_for("missed heartbeats from client, timeout: 1s", timeout=10)
        assert time.monotonic() - started < 8  # two intervals, checked every 0.25 s (slack for a loaded machine)
        method, _, body = ch.basic_get("hb", auto_ack=True)
        assert body == b"stuck" and method.redelivered
    finally:
        os.kill(victim.pid, signal.SIGCONT)
        victim.kill()


def test_an_idle_client_with_heartbeats_stays_connected(broker: Broker) -> None:
    conn = amqp(broker, heartbeat=1)
    ch = conn.channel()
    conn.sleep(3.5)  # pika answers the broker's heartbeats while it sleeps
    ch.queue_declare("alive")
    assert conn.is_open


def test_pika_select_connection_publishes_with_confirms_and_consumes(broker: Broker) -> None:
    code = f"""
import pika
got = []
def on_open(conn):
    conn.channel(on_open_callback=on_channel)
def on_channel(ch):
    def declared(_frame):
        ch.confirm_delivery(lambda f: got.append(type(f.method).__name__))
        for i in range(3):
            ch.basic_publish("", "sel", str(i).encode())
        ch.basic_consume("sel", on_message, auto_ack=True)
    ch.queue_declare("sel", auto_delete=True, callback=declared)
def on_message(ch, method, props, body):
    got.append(body.decode())
    if [g for g in got if g.isdigit()] == ["0", "1", "2"] and "Ack" in got:
        ch.connection.close()
conn = pika.SelectConnection(pika.ConnectionParameters("127.0.0.1", {broker.amqp_port}), on_open_callback=on_open)
conn.add_on_close_callback(lambda *a: conn.ioloop.stop())
conn.ioloop.call_later(15, conn.ioloop.stop)
conn.ioloop.start()
print("got", sorted(g for g in got if g.isdigit()), "Ack" in got, flush=True)
"""
    proc = python_snippet(code, broker.port)
    proc.wait_for(r"got \['0', '1', '2'\] True", timeout=20)
    assert proc.wait() == 0


def test_an_alarm_blocks_pika_with_connection_blocked_and_its_timeout() -> None:
    broker = Broker("--memory-limit", "0", in_memory=True)
    try:
        events = []
        conn = amqp(broker, blocked_connection_timeout=1.0)
        conn.add_on_connection_blocked_callback(lambda c, f: events.append(f.method.reason))
        ch = conn.channel()
        ch.queue_declare("held")
        started = time.monotonic()
        with pytest.raises(pika.exceptions.ConnectionBlockedTimeout):
            ch.basic_publish("", "held", b"1")  # this publish makes the connection a publisher
            for _ in range(40):
                conn.process_data_events(0.1)
                ch.basic_publish("", "held", b"more")
        assert time.monotonic() - started < 8  # the 1 s timeout, not pika's 10 s socket timeout
        assert events == ["low on memory"]
        other = amqp(broker).channel()  # consumers and declarations go on
        assert other.queue_declare("held", passive=True).method.message_count <= 1
    finally:
        broker.stop()
        broker.remove_data()


def test_confirmed_persistent_messages_survive_kill_9_over_amqp(tmp_path) -> None:  # noqa: ANN001
    broker = Broker(data_dir=tmp_path)
    try:
        ch = amqp(broker).channel()
        ch.queue_declare("kept", durable=True)
        ch.confirm_delivery()
        for i in range(100):
            ch.basic_publish("", "kept", b"%d" % i, pika.BasicProperties(delivery_mode=2, headers={"i": i}))
        broker.kill()
        broker = Broker(data_dir=tmp_path, amqp=f"127.0.0.1:{broker.amqp_port}")
        ch = amqp(broker).channel()
        got = []
        for method, props, body in ch.consume("kept", inactivity_timeout=5):
            if method is None:
                break
            got.append((body, props.headers["i"], props.delivery_mode))
            ch.basic_ack(method.delivery_tag)
            if len(got) == 100:
                break
        assert got == [(b"%d" % i, i, 2) for i in range(100)]
    finally:
        broker.stop()


def test_single_active_consumer_after_a_pika_channel_close_gets_the_requeued_first(broker: Broker) -> None:
    """pika's channel.close() cancels the consumer first, then closes: the next active
    consumer gets the unacked messages back first, in order, then the newer ones."""
    first_conn, second_conn = amqp(broker), amqp(broker)
    first, second = first_conn.channel(), second_conn.channel()
    first.queue_declare("sac", arguments={"x-single-active-consumer": True})
    first.basic_qos(prefetch_count=2)
    held = []
    first.basic_consume("sac", lambda ch, method, props, body: held.append(body))
    got = []
    second.basic_consume("sac", lambda ch, method, props, body: got.append((body, method.redelivered)))
    for i in range(4):
        first.basic_publish("", "sac", b"m%d" % i)
    while len(held) < 2:
        first_conn.process_data_events(time_limit=1)
    first.close()
    while len(got) < 4:
        second_conn.process_data_events(time_limit=1)
    assert got == [(b"m0", True), (b"m1", True), (b"m2", False), (b"m3", False)]
    first_conn.close()
    second_conn.close()
