"""The client's side of a refused publish: a scripted broker that nacks what it is told to.

A real zbroker nacks only when its disk fails, which a test cannot arrange portably, so
a small ROUTER thread plays the broker here and speaks the same wire.
"""
from __future__ import annotations

from typing import Iterator

import pytest

import zbroker.client as pika
from zbroker.client import exceptions
from zbroker.protocol import HEADER, Op, encode
from zbroker.protocol.native_packed import decode_frames
from tests.support import FakeBroker


class NackingBroker(FakeBroker):
    """Answers the handshake; confirms publishes whose body starts with b"ok", nacks the rest."""

    seq = 0

    def answer(self, message: list[bytes]) -> None:
        peer, *parts = message
        if not parts:
            return
        out = []
        for op, fields, body in decode_frames(parts, 0):
            ch = fields[0] if fields else 0
            if op == Op.HELLO:
                out.append(encode(Op.HELLO_OK, 60, 1 << 20, {}))
            elif op == Op.CHANNEL_OPEN:
                out.append(encode(Op.CHANNEL_OPEN_OK, ch))
            elif op == Op.CONFIRM_SELECT:
                out.append(encode(Op.CONFIRM_SELECT_OK, ch))
            elif op == Op.BASIC_PUBLISH:
                self.seq += 1
                if bytes(body).startswith(b"ok"):
                    out.append(encode(Op.BASIC_ACK, ch, self.seq, False))
                else:
                    out.append(encode(Op.BASIC_NACK, ch, self.seq, False, False))
            elif op == Op.CONNECTION_CLOSE:
                out.append(encode(Op.CONNECTION_CLOSE_OK))
        if out:
            self.sock.send_multipart([peer, HEADER, *out])


@pytest.fixture
def channel() -> Iterator[pika.adapters.blocking_connection.BlockingChannel]:
    fake = NackingBroker()
    fake.start()
    conn = pika.BlockingConnection(pika.ConnectionParameters(port=fake.port))
    ch = conn.channel()
    ch.confirm_delivery()
    yield ch
    conn.close()
    fake.close()


def test_basic_publish_raises_nack_error_for_its_own_message_only(channel) -> None:
    channel.basic_publish("", "q", b"ok 1")
    with pytest.raises(exceptions.NackError) as info:
        channel.basic_publish("", "q", b"refused", pika.BasicProperties(message_id="m2"))
    assert [(m.body, m.properties.message_id) for m in info.value.messages] == [(b"refused", "m2")]
    channel.basic_publish("", "q", b"ok 3")  # the next one is fine again


def test_wait_for_confirms_hands_back_exactly_the_nacked_messages(channel) -> None:
    bodies = [b"ok a", b"bad b", b"ok c", b"bad d", b"ok e"]
    assert [channel.publish_nowait("", "q", b) for b in bodies] == [1, 2, 3, 4, 5]
    with pytest.raises(exceptions.NackError) as info:
        channel.wait_for_confirms(timeout=5)
    assert [m.body for m in info.value.messages] == [b"bad b", b"bad d"]
    channel.publish_nowait("", "q", b"ok f")
    assert channel.wait_for_confirms(timeout=5) is True


def test_pika_0x_publish_waits_and_raises_for_its_own_message(channel) -> None:
    with pytest.warns(DeprecationWarning, match="pika 0.x"):
        channel.publish("", "q", b"ok 1")
    with pytest.warns(DeprecationWarning), pytest.raises(exceptions.NackError):
        channel.publish("", "q", b"refused")
