"""The AMQP 0-9-1 wire on the pure core: handshake, content assembly, nowait, heartbeats,
flow and every kind of bad input, with real frames, no sockets and a fake clock."""
from __future__ import annotations

import struct
from datetime import datetime, timezone
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import commands as C
from pamqp import frame, header
from pamqp.body import ContentBody
from pamqp.heartbeat import Heartbeat

from tests.support import patches_internals
from tests.unit.amqp_peer import AmqpPeer, make
from zbroker.protocol.amqp_codec import PROTOCOL_HEADER
from zbroker.wires.amqp import CLOSE_OK_WAIT_S
from zbroker.wires.amqp_connection import CLOSE_TIMEOUT_S


def opened(**broker_args) -> tuple:  # noqa: ANN003
    broker, wire, clock = make(**broker_args)
    peer = AmqpPeer(wire, clock)
    peer.handshake()
    peer.open_channel()
    return broker, wire, clock, peer


def closed_with(peer: AmqpPeer) -> tuple[int, str]:
    close = [m for m in peer.methods() if isinstance(m, C.Connection.Close)]
    assert close, "no connection.close"
    return close[0].reply_code, close[0].reply_text


def test_handshake_offers_rabbitmqs_capabilities_and_opens_a_core_connection() -> None:
    broker, wire, clock = make()
    peer = AmqpPeer(wire, clock, port=41234)
    peer.send_bytes(PROTOCOL_HEADER)
    start = peer.take()[1]
    assert isinstance(start, C.Connection.Start) and (start.version_major, start.version_minor) == (0, 9)
    assert start.mechanisms.split() == ["PLAIN", "AMQPLAIN"]
    caps = start.server_properties["capabilities"]
    for name in ("publisher_confirms", "consumer_cancel_notify", "basic.nack", "connection.blocked",
                 "exchange_exchange_bindings", "authentication_failure_close", "per_consumer_qos",
                 "direct_reply_to"):
        assert caps[name] is True, name
    peer.send(0, C.Connection.StartOk({"product": "t"}, "PLAIN", "\0guest\0guest", "en_US"))
    tune = peer.take()[1]
    assert (tune.channel_max, tune.frame_max, tune.heartbeat) == (2047, 131072, 60)
    peer.send(0, C.Connection.TuneOk(100, 65536, 30))
    assert not broker.connections  # not before connection.open
    peer.send(0, C.Connection.Open("/"))
    assert isinstance(peer.take()[1], C.Connection.OpenOk)
    conn = broker.connections[peer.key]
    assert (conn.protocol, conn.peer, conn.peer_port, conn.heartbeat, conn.frame_max) == (
        "AMQP 0-9-1", "127.0.0.1", 41234, 30, 65536)


def test_amqplain_logs_in_too() -> None:
    broker, wire, clock = make()
    peer = AmqpPeer(wire, clock)
    peer.send_bytes(PROTOCOL_HEADER)
    peer.take()
    table = b"\x05LOGINS\x00\x00\x00\x05guest\x08PASSWORDS\x00\x00\x00\x05guest"
    peer.send(0, C.Connection.StartOk({}, "AMQPLAIN", table.decode("ascii"), "en_US"))
    assert isinstance(peer.take()[1], C.Connection.Tune)


def test_a_wrong_protocol_header_gets_ours_and_the_socket_closes() -> None:
    broker, wire, clock = make()
    peer = AmqpPeer(wire, clock)
    peer.send_bytes(b"GET / HTTP/1.1\r\n")
    assert peer.take() == (0, PROTOCOL_HEADER) and peer.closed


def test_wrong_credentials_and_guest_from_afar_are_refused_with_403() -> None:
    broker, wire, clock = make()
    bad = AmqpPeer(wire, clock)
    bad.handshake(password="nope")
    assert closed_with(bad) == (403, "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. "
                                     "For details see the broker logfile.")
    assert not bad.closed  # RabbitMQ's order: the client's close-ok, then the socket goes
    bad.send(0, C.Connection.CloseOk())
    assert bad.closed
    remote = AmqpPeer(wire, clock, host="192.0.2.7")
    remote.handshake()
    assert closed_with(remote)[0] == 403
    wire.tick(clock.advance(CLOSE_TIMEOUT_S + 0.5))  # a client that never answers: closed anyway
    assert remote.closed
    quiet = AmqpPeer(wire, clock)  # without authentication_failure_close: just closed
    quiet.handshake(password="nope", capabilities={})
    assert quiet.methods() == [] and quiet.closed
    assert not broker.connections


def test_a_frame_max_below_the_minimum_is_530() -> None:
    broker, wire, clock = make()
    peer = AmqpPeer(wire, clock)
    peer.handshake(frame_max=1024)
    assert closed_with(peer) == (530, "NOT_ALLOWED - frame_max=1024 < 4096 min size")


def test_a_publish_split_across_body_frames_is_one_message_and_deliveries_split_at_frame_max() -> None:
    broker, wire, clock = make()
    peer = AmqpPeer(wire, clock)
    peer.handshake(frame_max=4096)
    peer.open_channel()
    peer.send(1, C.Queue.Declare(queue="q"))
    peer.methods()
    body = bytes(range(256)) * 40  # 10,240 bytes: three frames at 4096
    props = C.Basic.Properties(content_type="text/plain", headers={"n": 1, "deep": {"x": [1, "a"]}},
                               delivery_mode=2, priority=4, message_type="kind")
    peer.publish(1, "", "q", body, props, frame_max=4096)
    message = broker.topology.queues["q"].take(True)
    assert message.body == body
    assert message.properties == {"content_type": "text/plain", "headers": {"n": 1, "deep": {"x": [1, "a"]}},
                                  "delivery_mode": 2, "priority": 4, "type": "kind"}
    broker.topology.queues["q"].enqueue(message)
    peer.send(1, C.Basic.Get(queue="q", no_ack=True))
    _, get_ok = peer.take()
    assert isinstance(get_ok, C.Basic.GetOk)
    _, content = peer.take()
    assert content.body_size == len(body) and content.properties.message_type == "kind"
    chunks = [peer.take()[1].value for _ in range(3)]
    assert [len(c) for c in chunks] == [4088, 4088, 2064] and b"".join(chunks) == body


def test_an_empty_body_needs_no_body_frame() -> None:
    broker, wire, clock, peer = opened()
    peer.send(1, C.Queue.Declare(queue="q"))
    peer.publish(1, "", "q", b"")
    assert broker.topology.queues["q"].message_count == 1


def test_nowait_swallows_exactly_the_answer() -> None:
    broker, wire, clock, peer = opened()
    peer.send(1, C.Queue.Declare(queue="q", nowait=True))
    peer.send(1, C.Exchange.Declare(exchange="x", exchange_type="fanout", nowait=True))
    peer.send(1, C.Queue.Bind(queue="q", exchange="x", nowait=True))
    peer.publish(1, "x", "", b"m")
    peer.send(1, C.Basic.Consume(queue="q", consumer_tag="c", no_ack=True, nowait=True))
    got = peer.methods()
    assert [type(m) for m in got] == [C.Basic.Deliver]
    assert broker.topology.queues["q"].consumers


def test_confirms_returns_and_a_broker_cancel_reach_the_client() -> None:
    broker, wire, clock, peer = opened()
    peer.send(1, C.Confirm.Select())
    peer.send(1, C.Queue.Declare(queue="q"))
    peer.send(1, C.Basic.Consume(queue="q", consumer_tag="c"))
    peer.methods()
    peer.publish(1, "", "q", b"1")
    peer.publish(1, "", "nowhere", b"2", mandatory=True)
    broker.after_input()
    peer.pump()
    got = peer.methods()
    assert [type(m) for m in got] == [C.Basic.Deliver, C.Basic.Ack, C.Basic.Return, C.Basic.Ack]
    assert (got[2].reply_code, got[2].reply_text) == (312, "NO_ROUTE")
    assert [(a.delivery_tag, a.multiple) for a in (got[1], got[3])] == [(1, True), (2, True)]
    other = AmqpPeer(wire, clock)
    other.handshake()
    other.open_channel()
    other.send(1, C.Queue.Delete(queue="q"))
    peer.pump()
    cancel = peer.methods()
    assert len(cancel) == 1 and isinstance(cancel[0], C.Basic.Cancel) and cancel[0].consumer_tag == "c"


def test_a_method_between_a_publish_and_its_content_is_505() -> None:
    broker, wire, clock, peer = opened()
    peer.send(1, C.Basic.Publish(exchange="", routing_key="q"))
    peer.send(1, C.Queue.Declare(queue="q"))
    code, text = closed_with(peer)
    assert code == 505 and text.startswith("UNEXPECTED_FRAME - expected content header for class 60")
    assert peer.key not in broker.connections


def test_a_body_without_a_publish_is_505_and_a_frame_over_frame_max_is_501() -> None:
    broker, wire, clock, peer = opened()
    peer.send(1, ContentBody(b"stray"))
    assert closed_with(peer)[0] == 505
    _, _, _, big = opened()
    big.send_bytes(struct.pack(">BHI", 1, 1, 200_000) + b"\x00" * 200_000 + b"\xce")
    assert closed_with(big) == (501, "FRAME_ERROR - type 1, all octets = <<>>: {frame_too_large,200000,131064}")


def test_garbage_and_a_bad_frame_end_close_only_that_connection() -> None:
    broker, wire, clock, peer = opened()
    bystander = AmqpPeer(wire, clock)
    bystander.handshake()
    bystander.open_channel()
    peer.send_bytes(struct.pack(">BHI", 1, 1, 4) + b"\x00\x3c\x00\x28" + b"\x00")
    assert closed_with(peer) == (501, "FRAME_ERROR - type 1, all octets = <<0,60,0,40>>: {invalid_frame_end_marker,0}")
    peer.send_bytes(b"more garbage after the close is ignored")
    bystander.send(1, C.Queue.Declare(queue="fine"))
    assert isinstance(bystander.take()[1], C.Queue.DeclareOk)


def test_undecodable_arguments_are_501_and_unknown_methods_503() -> None:
    """RabbitMQ's texts (compared with bin/compare-rabbitmq's amqp_errors_program.py)."""
    broker, wire, clock, peer = opened()
    payload = struct.pack(">HH", 50, 10) + b"\x00\x00\x09qu"
    peer.send_bytes(struct.pack(">BHI", 1, 1, len(payload)) + payload + b"\xce")
    assert closed_with(peer) == (501, "FRAME_ERROR - cannot decode <<0,0,9,113,117>>")
    _, _, _, other = opened()
    payload = struct.pack(">HH", 99, 1)
    other.send_bytes(struct.pack(">BHI", 1, 1, len(payload)) + payload + b"\xce")
    assert closed_with(other) == (503, "COMMAND_INVALID - unknown method: class 99, method 1")


def test_a_decimal_in_headers_is_refused_not_altered() -> None:
    broker, wire, clock, peer = opened()
    peer.send(1, C.Queue.Declare(queue="q"))
    peer.publish(1, "", "q", b"x", C.Basic.Properties(headers={"price": Decimal("1.25")}))
    code, text = closed_with(peer)
    assert code == 502 and "decimal" in text
    assert broker.topology.queues["q"].message_count == 0


def test_recover_async_requeues_without_an_answer() -> None:
    broker, wire, clock, peer = opened()
    peer.send(1, C.Queue.Declare(queue="q"))
    peer.publish(1, "", "q", b"m")
    peer.send(1, C.Basic.Get(queue="q"))
    peer.methods()
    peer.send(1, C.Basic.RecoverAsync(requeue=True))
    assert peer.methods() == [] and broker.topology.queues["q"].message_count == 1


def test_immediate_and_no_local_are_refused_540() -> None:
    for method, text in ((C.Basic.Publish(exchange="", routing_key="q", immediate=True), "immediate=true"),
                         (C.Basic.Consume(queue="q", no_local=True), "no_local=true")):
        _, _, _, peer = opened()
        peer.send(1, method)
        assert closed_with(peer) == (540, f"NOT_IMPLEMENTED - {text}")


def test_update_secret_is_answered_as_rabbitmq_s_internal_database_does() -> None:
    broker, _, _, peer = opened()
    user = broker.connections[peer.key].user
    peer.send(0, C.Connection.UpdateSecret("t0ken", "rotation"))
    assert [type(m) for m in peer.methods()] == [C.Connection.UpdateSecretOk]
    assert broker.connections[peer.key].user == user
    peer.send(1, C.Queue.Declare(queue="still-open"))
    assert isinstance(peer.methods()[0], C.Queue.DeclareOk)


def test_update_secret_before_the_connection_is_open_is_refused() -> None:
    broker, wire, clock = make()
    peer = AmqpPeer(wire, clock)
    peer.send_bytes(PROTOCOL_HEADER)
    peer.take()
    peer.send(0, C.Connection.UpdateSecret("t0ken", "early"))
    assert closed_with(peer)[0] == 503


def test_a_body_larger_than_allowed_closes_the_channel_at_its_header_and_is_skipped() -> None:
    broker, wire, clock, peer = opened(max_body_bytes=1000)
    peer.publish(1, "", "q", b"x" * 5000)
    got = peer.methods()
    assert len(got) == 1 and isinstance(got[0], C.Channel.Close)
    assert (got[0].reply_code, got[0].reply_text) == (
        406, "PRECONDITION_FAILED - message size 5000 is larger than configured max size 1000")
    peer.send(1, C.Channel.CloseOk())
    peer.open_channel()  # the connection is fine, the body frames were skipped
    assert peer.key in broker.connections


def test_a_method_on_an_unopened_channel_closes_the_connection_504() -> None:
    broker, wire, clock, peer = opened()
    peer.send(7, C.Queue.Declare(queue="q"))
    assert closed_with(peer) == (504, "CHANNEL_ERROR - expected 'channel.open'")


def test_heartbeats_go_out_and_a_silent_peer_is_dropped_after_two_intervals() -> None:
    broker, wire, clock = make()
    peer = AmqpPeer(wire, clock)
    peer.handshake(heartbeat=2)
    peer.open_channel()
    peer.send(1, C.Queue.Declare(queue="q"))
    peer.send(1, C.Basic.Consume(queue="q"))
    peer.publish(1, "", "q", b"held")
    peer.received.clear()
    wire.tick(clock.advance(1.1))
    peer.pump()
    assert [type(v) for _, v in peer.received] == [Heartbeat]
    peer.send_bytes(frame.marshal(Heartbeat(), 0))
    wire.tick(clock.advance(3.5))
    assert peer.key in broker.connections  # heard from 3.5 s ago: within two intervals
    wire.tick(clock.advance(1.0))
    assert peer.key not in broker.connections and peer.closed
    assert broker.topology.queues["q"].message_count == 1  # the unacked delivery is back


def test_a_stuck_handshake_is_closed_after_the_timeout() -> None:
    broker, wire, clock = make()
    peer = AmqpPeer(wire, clock)
    peer.send_bytes(PROTOCOL_HEADER)
    wire.tick(clock.advance(5))
    assert not peer.closed
    wire.tick(clock.advance(6))
    assert peer.closed


def test_an_alarm_holds_the_next_publish_in_the_buffer_until_it_clears() -> None:
    broker, wire, clock, peer = opened()
    peer.send(1, C.Queue.Declare(queue="q"))
    peer.publish(1, "", "q", b"before")
    peer.methods()
    broker.set_alarm("memory", True, clock.now)
    peer.pump()
    blocked = peer.methods()
    assert len(blocked) == 1 and blocked[0].reason == "low on memory"
    peer.publish(1, "", "q", b"during")
    assert not wire.reading(peer.key) and broker.topology.queues["q"].message_count == 1
    broker.set_alarm("memory", False, clock.now)
    peer.pump()
    assert isinstance(peer.methods()[0], C.Connection.Unblocked)
    assert wire.reading(peer.key) and broker.topology.queues["q"].message_count == 2


def test_client_close_is_answered_and_closing_the_socket_is_left_to_the_client() -> None:
    """RabbitMQ's order: close-ok, then the client closes; the broker keeps reading (to
    see end-of-file) and discards what comes, and closes the socket itself only after
    the client's heartbeat timeout (at most CLOSE_OK_WAIT_S)."""
    for heartbeat, wait in ((0, CLOSE_OK_WAIT_S), (5, 5.0)):
        broker, wire, clock = make()
        peer = AmqpPeer(wire, clock)
        peer.handshake(heartbeat=heartbeat)
        peer.open_channel()
        peer.send(0, C.Connection.Close(200, "bye", 0, 0))
        assert isinstance(peer.take()[1], C.Connection.CloseOk)
        assert peer.key not in broker.connections
        assert not peer.closed and wire.reading(peer.key)  # it sees the client's end-of-file
        peer.send(1, C.Queue.Declare(queue="ignored"))
        assert "ignored" not in broker.topology.queues and peer.methods() == []
        wire.tick(clock.advance(wait - 0.5))
        assert not peer.closed
        wire.tick(clock.advance(0.75))
        assert peer.closed


def test_after_the_brokers_close_only_close_ok_is_read() -> None:
    broker, wire, clock, peer = opened()
    broker.force_close(broker.connections[peer.key], "maintenance")
    peer.pump()
    code, text = closed_with(peer)
    assert (code, text) == (320, "CONNECTION_FORCED - broker forced connection closure with reason 'maintenance'")
    peer.send(1, C.Queue.Declare(queue="ignored"))
    assert "ignored" not in broker.topology.queues and not peer.closed
    peer.send(0, C.Connection.CloseOk())
    assert peer.closed


def test_content_header_properties_round_trip_exactly() -> None:
    broker, wire, clock, peer = opened()
    peer.send(1, C.Queue.Declare(queue="q"))
    headers = {"s": "x", "i": -5, "big": 2**40, "f": 0.5, "t": True, "n": None, "b": bytearray(b"\x00\xff"),
               "l": [1, "a", {"k": []}]}
    props = C.Basic.Properties(content_type="a", content_encoding="b", headers=headers, delivery_mode=1,
                               priority=9, correlation_id="c", reply_to="r", expiration="1000",
                               message_id="m", message_type="t", user_id="guest", app_id="app")
    peer.publish(1, "", "q", b"x", props)
    peer.methods()
    peer.send(1, C.Basic.Get(queue="q", no_ack=True))
    peer.take()
    content = peer.take()[1]
    assert isinstance(content, header.ContentHeader)
    got = content.properties
    for name in ("content_type", "content_encoding", "delivery_mode", "priority", "correlation_id",
                 "reply_to", "expiration", "message_id", "message_type", "user_id", "app_id"):
        assert getattr(got, name) == getattr(props, name), name
    assert got.headers == headers


def test_the_codec_keeps_doubles_and_long_keys_exact() -> None:
    """pamqp's own table encoder writes floats as 32 bits and cuts keys at 128 bytes; the
    content headers zbroker writes keep both (decoded here as pika would)."""
    from zbroker.protocol.amqp_codec import content_header, decode_header

    props = {"headers": {"f": 0.1, "k" * 200: "long key", "when": datetime(2024, 1, 2, tzinfo=timezone.utc)},
             "timestamp": 1_700_000_000, "type": "t"}
    encoded = content_header(1, 3, props)
    size, decoded = decode_header(encoded[7:-1])
    assert size == 3
    assert decoded == {**props, "headers": {**props["headers"]}}
    assert decoded["headers"]["f"] == 0.1


short_text = st.text(max_size=40).filter(lambda t: len(t.encode()) <= 255)
#: (pamqp checks exchange names against AMQP's exchange-name grammar)
exchange_name = st.text("abcXYZ019-_.:", max_size=40)


@settings(max_examples=200, derandomize=True)
@given(channel=st.integers(1, 65535), exchange=exchange_name, routing_key=short_text, mandatory=st.booleans(),
       immediate=st.booleans(), tag=st.integers(0, 2**63 - 1), multiple=st.booleans(), redelivered=st.booleans())
def test_the_per_message_fast_paths_agree_with_pamqp(channel, exchange, routing_key, mandatory, immediate,  # noqa: ANN001
                                                     tag, multiple, redelivered) -> None:
    from zbroker.protocol import amqp_codec as codec

    publish = frame.marshal(C.Basic.Publish(exchange=exchange, routing_key=routing_key, mandatory=mandatory,
                                            immediate=immediate), channel)
    assert codec.decode_publish(publish[7:-1]) == (exchange, routing_key, mandatory, immediate)
    ack = frame.marshal(C.Basic.Ack(tag, multiple), channel)
    assert codec.decode_ack(ack[7:-1]) == (tag, multiple)
    deliver = C.Basic.Deliver(routing_key or "ctag", tag, redelivered, exchange, routing_key)
    assert codec.deliver_frame(channel, routing_key or "ctag", tag, redelivered, exchange, routing_key) == \
        frame.marshal(deliver, channel)


def test_a_truncated_publish_is_501() -> None:
    broker, wire, clock, peer = opened()
    payload = b"\x00\x3c\x00\x28\x00\x00\x05ab"
    peer.send_bytes(struct.pack(">BHI", 1, 1, len(payload)) + payload + b"\xce")
    assert closed_with(peer) == (501, "FRAME_ERROR - cannot decode <<0,0,5,97,98>>")


def test_every_outbound_method_encodes_as_pamqp_would() -> None:
    """zbroker encodes from pamqp's description of each method (pamqp's marshal would
    refuse names RabbitMQ accepts); for names pamqp accepts, the bytes are pamqp's."""
    from zbroker.protocol import amqp_codec as codec, amqp_methods as methods
    from zbroker.methods import Method as M

    samples = {M.CONNECTION_CLOSE: (M.CONNECTION_CLOSE, 320, "CONNECTION_FORCED - bye"),
               M.CONNECTION_BLOCKED: (M.CONNECTION_BLOCKED, "low on memory"),
               M.CHANNEL_CLOSE: (M.CHANNEL_CLOSE, 3, 404, "NOT_FOUND - no queue 'q'"),
               M.CHANNEL_FLOW_OK: (M.CHANNEL_FLOW_OK, 3, True),
               M.QUEUE_DECLARE_OK: (M.QUEUE_DECLARE_OK, 3, "q.1", 5, 2),
               M.QUEUE_PURGE_OK: (M.QUEUE_PURGE_OK, 3, 7), M.QUEUE_DELETE_OK: (M.QUEUE_DELETE_OK, 3, 0),
               M.BASIC_CONSUME_OK: (M.BASIC_CONSUME_OK, 3, "ctag"), M.BASIC_CANCEL: (M.BASIC_CANCEL, 3, "ctag"),
               M.BASIC_CANCEL_OK: (M.BASIC_CANCEL_OK, 3, "ctag"),
               M.BASIC_RETURN: (M.BASIC_RETURN, 3, 312, "NO_ROUTE", "ex", "key"),
               M.BASIC_GET_OK: (M.BASIC_GET_OK, 3, 9, True, "ex", "key", 4),
               M.BASIC_ACK: (M.BASIC_ACK, 3, 2**40, True), M.BASIC_NACK: (M.BASIC_NACK, 3, 5, True, False)}
    for op, (cls, args) in methods.OUTBOUND.items():
        event = samples.get(op, (op, 3))
        channel = event[1] if op >= M.CHANNEL_OPEN else 0
        values = args(event)
        if cls is C.Channel.OpenOk:
            assert codec.method_frame(1, cls, *values)[7:-1] == b"\x00\x14\x00\x0b\x00\x00\x00\x00"
            continue  # an empty channel-id, as RabbitMQ sends (pamqp insists on '0')
        expected = frame.marshal(cls(*values), channel)
        assert codec.method_frame(channel, cls, *values) == expected, cls.name


def test_a_queue_name_pamqp_would_refuse_is_declared_ok() -> None:
    """Found by the AMQP fuzzer: pamqp's marshal refuses such names on the way out."""
    broker, wire, clock, peer = opened()
    payload = frame.marshal(C.Queue.Declare(queue="x"), 1)[7:-1].replace(b"\x01x", "my queue ü*".encode().join(
        (bytes((len("my queue ü*".encode()),)), b"")))
    peer.send_bytes(struct.pack(">BHI", 1, 1, len(payload)) + payload + b"\xce")
    ok = peer.take()[1]
    assert isinstance(ok, C.Queue.DeclareOk) and ok.queue == "my queue ü*"


def test_frames_after_the_broker_closed_the_connection_in_the_same_read_are_dropped() -> None:
    """A channel.open beyond --channel-max closes the connection; a publish with an
    oversized header in the same bytes must not reach anything (no 541, no traceback)."""
    broker, wire, clock, peer = opened(max_body_bytes=10)
    data = frame.marshal(C.Basic.Recover(requeue=False), 1)  # 540: the connection closes
    data += frame.marshal(C.Basic.Publish(exchange="", routing_key="q"), 1)
    data += frame.marshal(header.ContentHeader(0, 1000, C.Basic.Properties()), 1)
    peer.send_bytes(data)
    assert closed_with(peer) == (540, "NOT_IMPLEMENTED - requeue=false")
    assert peer.key not in broker.connections and not peer.closed
    peer.send(0, C.Connection.CloseOk())
    assert peer.closed


@patches_internals
def test_a_bug_while_applying_input_closes_that_connection_541(monkeypatch) -> None:  # noqa: ANN001
    broker, wire, clock, peer = opened()
    monkeypatch.setattr(wire, "_channel_command", lambda *a: 1 / 0)
    peer.send(1, C.Queue.Declare(queue="q"))
    assert closed_with(peer) == (541, "INTERNAL_ERROR - internal error")


text = short_text.filter(bool)  # (pamqp's encoder leaves out empty strings and zeros)


@settings(max_examples=150, derandomize=True)
@given(content_type=st.none() | text, correlation_id=st.none() | text, reply_to=st.none() | text,
       delivery_mode=st.none() | st.sampled_from([1, 2]), priority=st.none() | st.integers(1, 255),
       timestamp=st.none() | st.integers(1, 253_402_300_799),  # (datetime ends in 9999)
       headers=st.none() | st.dictionaries(st.text("abcxyz", min_size=1, max_size=5),
                                           st.integers(-2**31, 2**31 - 1) | short_text | st.booleans(),
                                           min_size=1, max_size=4))
def test_content_headers_decode_as_pamqp_decodes_them(content_type, correlation_id, reply_to, delivery_mode,  # noqa: ANN001
                                                      priority, timestamp, headers) -> None:
    from zbroker.protocol.amqp_codec import decode_header

    props = C.Basic.Properties(content_type=content_type, correlation_id=correlation_id, reply_to=reply_to,
                               delivery_mode=delivery_mode, priority=priority, headers=headers,
                               timestamp=datetime.fromtimestamp(timestamp, timezone.utc) if timestamp is not None
                               else None)
    encoded = frame.marshal(header.ContentHeader(0, 42, props), 1)
    size, decoded = decode_header(encoded[7:-1])
    expected = {name: value for name, value in (
        ("content_type", content_type), ("headers", headers), ("delivery_mode", delivery_mode),
        ("priority", priority), ("correlation_id", correlation_id), ("reply_to", reply_to),
        ("timestamp", timestamp)) if value is not None}
    assert (size, decoded) == (42, expected)
