"""How the AMQP wire reads (``zbroker/wires/amqp.py``, rule 10): a frame whole in one
read is taken from it where it lies, a frame cut by the end of a read waits in the
connection's buffer. Wherever the reads cut a client's bytes, the broker does and
answers exactly what it does when they come in one read: the same bytes written, the
same messages queued, through a pause for an alarm and a frame error alike."""
from __future__ import annotations

import random

from pamqp import commands as C
from pamqp import frame, header
from pamqp.body import ContentBody

from tests.unit.amqp_peer import AmqpPeer, make
from zbroker.protocol.amqp_codec import PROTOCOL_HEADER

FRAME_MAX = 4096
BODIES = [b"", b"x", b"a" * 100, bytes(range(256)) * 20, b"z" * (3 * FRAME_MAX + 17)]


def _frames(channel: int, *methods: object) -> bytes:
    return b"".join(frame.marshal(m, channel) for m in methods)


def _publish(body: bytes) -> bytes:
    parts = [frame.marshal(C.Basic.Publish(exchange="", routing_key="q"), 1),
             frame.marshal(header.ContentHeader(0, len(body), C.Basic.Properties(message_id=str(len(body)))), 1)]
    step = FRAME_MAX - 8
    parts += [frame.marshal(ContentBody(body[i:i + step]), 1) for i in range(0, len(body), step)]
    return b"".join(parts)


def session(tail: bytes = b"") -> bytes:
    """A client's whole conversation, as it would write it without waiting for answers."""
    opening = PROTOCOL_HEADER + _frames(
        0, C.Connection.StartOk({"product": "test"}, "PLAIN", "\0guest\0guest", "en_US"),
        C.Connection.TuneOk(2047, FRAME_MAX, 0), C.Connection.Open("/"))
    setup = _frames(1, C.Channel.Open(), C.Queue.Declare(queue="q"))
    publishes = b"".join(_publish(body) for body in BODIES)
    gets = _frames(1, *[C.Basic.Get(queue="q", no_ack=True) for _ in range(len(BODIES) + 1)])
    return opening + setup + publishes + gets + tail


def run(reads: list[bytes], alarm: bool = False) -> tuple[bytes, int]:
    """What the broker wrote to the client, and the messages left in its queue."""
    broker, wire, clock = make()
    peer = AmqpPeer(wire, clock)
    written: list[bytes] = []
    peer.read = written.append  # type: ignore[method-assign]  # (the raw bytes, undecoded)
    if alarm:
        broker.set_alarm("memory", True, clock.now)
    waiting = list(reads)  # (what the listener has not read: it reads nothing during a pause)
    while waiting and wire.reading(peer.key):
        peer.send_bytes(waiting.pop(0))
    if alarm:
        assert not wire.reading(peer.key), "the alarm paused the connection at its first publish"
        broker.set_alarm("memory", False, clock.now)
        peer.pump()  # (its unblocked event resumes it: what it then applies answers in
        peer.pump()  # the next round, as in the server's loop)
        while waiting and wire.reading(peer.key):
            peer.send_bytes(waiting.pop(0))
    queue = broker.topology.queues.get("q")
    return b"".join(written), -1 if queue is None else queue.message_count


def cuts(data: bytes, rng: random.Random, largest: int) -> list[bytes]:
    out, i = [], 0
    while i < len(data):
        n = rng.randint(1, largest)
        out.append(data[i:i + n])
        i += n
    return out


def test_every_way_of_cutting_the_reads_gives_what_one_read_gives() -> None:
    data = session()
    whole = run([data])
    assert whole[0].count(b"\x00\x3c\x00\x47") == len(BODIES)  # a get-ok per message
    for largest in (1, 7, 8, 9, 100, FRAME_MAX, 3 * FRAME_MAX):
        rng = random.Random(largest)
        for _ in range(5):
            assert run(cuts(data, rng, largest)) == whole, largest


def test_a_cut_at_each_octet_of_a_multi_frame_publish_gives_what_one_read_gives() -> None:
    data = session()
    whole = run([data])
    body_at = data.index(_publish(BODIES[-1]))
    for at in range(body_at, body_at + 40):
        assert run([data[:at], data[at:]]) == whole, at
    for at in range(len(data) - 60, len(data)):
        assert run([data[:at], data[at:]]) == whole, at


def test_reads_cut_behind_an_alarm_pause_give_what_one_read_gives() -> None:
    data = session()
    whole = run([data], alarm=True)
    assert whole[0].count(b"\x00\x3c\x00\x47") == len(BODIES)
    rng = random.Random(3)
    for largest in (1, 50, 5000):
        assert run(cuts(data, rng, largest), alarm=True) == whole, largest


def test_a_bad_frame_mid_read_stops_that_read_however_the_reads_are_cut() -> None:
    bad = b"\x09\x00\x01\x00\x00\x00\x00\xce"  # frame type 9: no such frame
    after = _frames(1, C.Queue.Declare(queue="after-the-error"))
    data = session(bad + after)
    whole = run([data])
    assert b"unknown_frame" in whole[0] and b"after-the-error" not in whole[0]
    rng = random.Random(9)
    for largest in (1, 8, 64, 1000):
        assert run(cuts(data, rng, largest)) == whole, largest
