"""Length limits and overflow modes through the pure core, with publisher confirms that
nack one refused message among acked ones."""
from __future__ import annotations


from tests.unit.wire import FakePeer
from zbroker.protocol import HEADER, Op, encode




def confirms(frames: list) -> list[tuple[str, int, bool]]:
    return [(Op(op).name, f[1], f[2]) for op, f, _ in frames if op in (Op.BASIC_ACK, Op.BASIC_NACK)]


def test_max_length_drop_head_keeps_the_newest(peer: FakePeer) -> None:
    peer.declare("q", arguments={"x-max-length": 3})
    for i in range(6):
        peer.publish("", "q", b"%d" % i)
    assert peer.drain("q") == [b"3", b"4", b"5"]


def test_max_length_bytes_counts_ready_bodies(peer: FakePeer) -> None:
    peer.declare("q", arguments={"x-max-length-bytes": 10})
    for body in (b"aaaa", b"bbbb", b"cccc"):  # 12 bytes: the oldest goes
        peer.publish("", "q", body)
    assert peer.drain("q") == [b"bbbb", b"cccc"]


def test_limits_count_ready_messages_only(peer: FakePeer) -> None:
    peer.declare("q", arguments={"x-max-length": 1})
    peer.consume("q", "c")  # unacked deliveries do not count
    for i in range(3):
        peer.publish("", "q", b"%d" % i)
    assert peer.broker.topology.queues["q"].unacked == 3


def test_reject_publish_nacks_only_the_refused_message(peer: FakePeer) -> None:
    peer.declare("q", arguments={"x-max-length": 2, "x-overflow": "reject-publish"})
    peer.send(Op.CONFIRM_SELECT, 1)
    parts = [HEADER]
    for i in range(4):  # one batch: answered together
        parts += [encode(Op.BASIC_PUBLISH, 1, "", "q", False, {}), b"%d" % i]
    assert confirms(peer.send_parts(parts)) == [("BASIC_ACK", 2, True), ("BASIC_NACK", 3, False),
                                                ("BASIC_NACK", 4, False)]
    assert peer.drain("q") == [b"0", b"1"]
    assert confirms(peer.publish("", "q", b"room again")) == [("BASIC_ACK", 5, True)]


def test_a_refused_message_still_reaches_the_other_queues(peer: FakePeer) -> None:
    peer.exchange("fan", "fanout")
    peer.declare("full", arguments={"x-max-length": 0, "x-overflow": "reject-publish"})
    peer.declare("open")
    peer.bind("full", "fan")
    peer.bind("open", "fan")
    peer.send(Op.CONFIRM_SELECT, 1)
    peer.publish("fan", "", b"x")
    peer.broker.commit()
    assert confirms(peer.received) == [("BASIC_NACK", 1, False)]
    assert peer.drain("open") == [b"x"] and peer.drain("full") == []


def test_reject_publish_dlx_dead_letters_the_refused_message(peer: FakePeer) -> None:
    peer.declare("dead")
    peer.declare("q", arguments={"x-max-length": 1, "x-overflow": "reject-publish-dlx",
                                 "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dead"})
    peer.publish("", "q", b"kept")
    peer.publish("", "q", b"refused")
    assert peer.drain("q") == [b"kept"] and peer.drain("dead") == [b"refused"]


def test_a_waiting_consumer_takes_the_message_before_the_limit_is_applied(peer: FakePeer) -> None:
    peer.declare("q", arguments={"x-max-length": 0})
    peer.consume("q", "c", auto_ack=True)
    got = peer.publish("", "q", b"straight through")
    assert [b for op, _, b in got if op == Op.BASIC_DELIVER] == [b"straight through"]
