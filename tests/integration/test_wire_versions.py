"""Versions of the zbroker wire across processes: a version 1 client still works with
this broker, and this client tells a version 1 broker apart with a clear error."""
from __future__ import annotations

import pytest
import zmq

import zbroker.client as pika
from tests.support import Broker, FakeBroker
from zbroker.client import exceptions
from zbroker.protocol import Op, encode
from zbroker.protocol.native_codec import V1_HEADER, decode_message


def v1_call(sock: zmq.Socket, *command: bytes) -> list[tuple]:
    """Send one version 1 message; the commands of the version 1 replies up to the first
    that holds one (publish credit and the liveness probe may come first)."""
    sock.send_multipart([V1_HEADER, *command])
    while True:
        assert sock.poll(10_000), "no reply"
        reply = sock.recv_multipart()
        assert reply[0] == V1_HEADER, reply  # what a version 1 client checks first
        got = [c for c in decode_message(reply, 1) if c[0] != Op.PUBLISH_CREDIT]
        if got:
            return got


def test_a_version_1_client_is_served_beside_a_version_2_one(broker: Broker) -> None:
    ctx = zmq.Context()
    old = ctx.socket(zmq.DEALER)
    old.setsockopt(zmq.LINGER, 0)
    old.connect(broker.endpoint)
    try:
        assert v1_call(old, encode(Op.HELLO, None, "/", "guest", "guest", {}))[0][0] == Op.HELLO_OK
        assert v1_call(old, encode(Op.CHANNEL_OPEN, 1))[0][0] == Op.CHANNEL_OPEN_OK
        assert v1_call(old, encode(Op.QUEUE_DECLARE, 1, "v1", False, False, False, False, {}))[0][0] == \
            Op.QUEUE_DECLARE_OK
        assert v1_call(old, encode(Op.BASIC_CONSUME, 1, "v1", "old", True, False, {}))[0][0] == Op.BASIC_CONSUME_OK
        new = pika.BlockingConnection(pika.ConnectionParameters(port=broker.port))
        ch = new.channel()
        for i in range(3):
            ch.basic_publish("", "v1", b"from v2 %d" % i)
        old.send_multipart([V1_HEADER, encode(Op.BASIC_PUBLISH, 1, "", "v1", False, {}), b"from v1"])
        bodies = []
        while len(bodies) < 4:
            assert old.poll(10_000), bodies
            reply = old.recv_multipart()
            assert reply[0] == V1_HEADER
            bodies += [body for op, _, body in decode_message(reply, 1) if op == Op.BASIC_DELIVER]
        assert sorted(bodies) == [b"from v1", b"from v2 0", b"from v2 1", b"from v2 2"]
        new.close()
        assert [op for op, _, _ in v1_call(old, encode(Op.CONNECTION_CLOSE, 200, "bye"))] == \
            [Op.CONNECTION_CLOSE_OK]
    finally:
        old.close(0)
        ctx.term()


class VersionOneBroker(FakeBroker):
    """What a zbroker of wire version 1 does with a peer of another version: it closes
    its connection with 540 and the codec's words, in its own form."""

    def answer(self, message: list[bytes]) -> None:
        peer, header, *_ = message
        if header != V1_HEADER:  # (version 1's codec, in its words)
            text = f"protocol version mismatch: peer speaks {header[2]}, broker speaks 1"
            self.sock.send_multipart([peer, V1_HEADER, encode(Op.CONNECTION_CLOSE, 540, text)])


def test_this_client_tells_a_version_1_broker_apart() -> None:
    old = VersionOneBroker()
    old.start()
    try:
        with pytest.raises(exceptions.IncompatibleProtocolError, match="version 1 of the zbroker wire.*upgrade"):
            pika.BlockingConnection(pika.ConnectionParameters(port=old.port, socket_timeout=10))
    finally:
        old.close()
