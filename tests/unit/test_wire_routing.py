"""Each wire owns its outbound path: the server hands every connection's events to the
wire whose connection it is (by the type of its id), the zbroker wire encodes only what
it is given, and the AMQP listener reports what it wrote to its wire, never to the core."""
from __future__ import annotations

import ast
import logging

from pamqp import commands as C

from tests.support import ROOT
from tests.unit.amqp_peer import AmqpPeer
from tests.unit.wire import FakeClock
from zbroker.core import Broker
from zbroker.protocol.native_packed import decode_frames
from zbroker.protocol import HEADER, Op, encode
from zbroker.server import Server
from zbroker.wires.amqp import WRITE_HIGH_BYTES, WRITE_LOW_BYTES, AmqpWire
from zbroker.wires.native import NativeWire


def mixed_server() -> tuple[Server, AmqpPeer, FakeClock]:
    """A server (no socket opened) with one zbroker-wire client, ``b"z"``, and one AMQP
    client, each on channel 1 with a queue of its own."""
    clock = FakeClock()
    broker = Broker(now=clock.now)
    server = Server(broker, "tcp://127.0.0.1:0")
    server.wire.handle(b"z", [HEADER, encode(Op.HELLO, None, "/", "guest", "guest", {}),
                              encode(Op.CHANNEL_OPEN, 1)], 0, clock.now)
    amqp = AmqpPeer(server.amqp_wire, clock)
    amqp.handshake()
    amqp.open_channel()
    return server, amqp, clock


def test_the_wires_ids_are_told_apart_by_type() -> None:
    assert NativeWire.CONN_ID is bytes and AmqpWire.CONN_ID is int


def test_the_server_hands_each_connections_events_to_its_own_wire() -> None:
    server, amqp, clock = mixed_server()
    server.wire.handle(b"z", [HEADER, encode(Op.QUEUE_DECLARE, 1, "zq", False, False, False, False, {})],
                       0, clock.now)
    amqp.wire.data_received(amqp.key, _marshal(C.Queue.Declare(queue="aq"), 1), clock.now)
    messages = server._route(clock.now)
    assert list(messages) == [b"z"]  # the AMQP connection's events are not the zbroker wire's
    ops = [op for message in messages[b"z"] for op, _, _ in decode_frames(message)]
    assert ops == [Op.HELLO_OK, Op.CHANNEL_OPEN_OK, Op.QUEUE_DECLARE_OK]
    written = server.amqp_wire.take_output("127.0.0.1:5672")
    assert list(written) == [amqp.key]  # the AMQP wire encoded its own into its buffers
    amqp.read(b"".join(bytes(b) for b in written[amqp.key]))
    ok = amqp.methods()
    assert [type(m) for m in ok] == [C.Queue.DeclareOk] and ok[0].queue == "aq"
    assert server._route(clock.now) == {} and not server.broker.outbox.pending


def test_events_for_an_id_no_wire_has_are_dropped_and_logged(caplog) -> None:  # noqa: ANN001
    server, amqp, clock = mixed_server()
    server._route(clock.now)
    server.broker.outbox.put(("nobody",), (Op.CONNECTION_CLOSE, 320, "gone"))
    with caplog.at_level(logging.ERROR, logger="zbroker.server"):
        assert server._route(clock.now) == {}
    assert "which no wire has" in caplog.text


def test_the_zbroker_wire_encodes_only_the_events_it_is_given() -> None:
    broker = Broker()
    wire = NativeWire(broker)
    broker.outbox.put(7, (Op.CONNECTION_CLOSE, 320, "not mine"))
    messages = wire.encode({b"p": [(Op.BASIC_DELIVER, 1, "c", 1, False, "", "q", {}), b"body"]})
    assert list(messages) == [b"p"]
    [(op, _, body)] = [command for message in messages[b"p"] for command in decode_frames(message)]
    assert (op, body) == (Op.BASIC_DELIVER, b"body")
    assert broker.outbox.pending == {7: [(Op.CONNECTION_CLOSE, 320, "not mine")]}


def test_what_waits_for_a_socket_decides_deliveries_through_the_wire() -> None:
    server, amqp, clock = mixed_server()
    wire, broker = server.amqp_wire, server.broker
    core = broker.connections[amqp.key]
    core.unread = 1000  # delivery bytes sent, not yet written
    wire.output_pending(amqp.key, WRITE_LOW_BYTES)  # not below the low mark: not read yet
    assert core.unread == 1000 and not core.pipe_full
    wire.output_pending(amqp.key, WRITE_HIGH_BYTES + 1)
    assert core.pipe_full
    wire.output_pending(amqp.key, WRITE_HIGH_BYTES)  # between the marks: still full
    assert core.pipe_full
    wire.output_pending(amqp.key, WRITE_LOW_BYTES - 1)
    assert not core.pipe_full and core.unread == 0


def test_the_listener_talks_to_its_wire_only() -> None:
    tree = ast.parse((ROOT / "zbroker" / "listener.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not any(name.startswith("zbroker.core") for name in imported if name)
    assert "broker" not in {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}


def _marshal(method: object, channel: int) -> bytes:
    from pamqp import frame

    return frame.marshal(method, channel)
