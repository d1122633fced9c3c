"""Streams on disk: the broker hands each stream its log under the store's directory, syncs it before a confirm leaves, saves the
stream in the snapshot and finds its log again after a restart or a crash."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
from pamqp import commands as C

from tests.unit.amqp_peer import AmqpPeer
from tests.unit.wire import FakeClock
from zbroker.core import Broker
from zbroker.storage import DiskStore
from zbroker.wires.amqp import AmqpWire


class Node:
    """A broker on a data directory, restarted cleanly or as after SIGKILL."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.clock = FakeClock()
        self.broker, self.peer = self._start()

    def _start(self) -> tuple[Broker, AmqpPeer]:
        broker = Broker(store=DiskStore(self.directory, segment_bytes=64 * 1024), now=self.clock.now)
        peer = AmqpPeer(AmqpWire(broker), self.clock)
        peer.handshake()
        peer.open_channel()
        return broker, peer

    def restart(self, crash: bool = False) -> AmqpPeer:
        if crash:
            self.broker.store._lock.release()  # what the kernel does for a killed process
        else:
            self.broker.close()
        self.broker, self.peer = self._start()
        return self.peer


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    node = Node(tmp_path)
    yield node
    node.broker.close()


def declare(peer: AmqpPeer, name: str = "s", **arguments: Any) -> None:
    peer.send(1, C.Queue.Declare(queue=name, durable=True, arguments={"x-queue-type": "stream", **arguments}))
    assert [type(m) for m in peer.methods()] == [C.Queue.DeclareOk]


def read_all(peer: AmqpPeer, name: str = "s") -> list[tuple[int, bytes, Any]]:
    """(x-stream-offset, body, app_id) of everything from the first offset."""
    peer.send(1, C.Basic.Qos(prefetch_count=100))
    peer.send(1, C.Basic.Consume(queue=name, consumer_tag="reader", arguments={"x-stream-offset": "first"}))
    out, props = [], None
    for _, value in peer.received:
        if hasattr(value, "properties") and hasattr(value, "body_size"):
            props = value.properties
        elif hasattr(value, "value") and isinstance(value.value, bytes) and props is not None:
            out.append((props.headers["x-stream-offset"], value.value, props.app_id))
    peer.received.clear()
    return out


def test_a_confirm_waits_for_the_logs_sync_and_the_stream_survives_a_restart(node: Node) -> None:
    peer = node.peer
    declare(peer, **{"x-max-age": "7D"})
    peer.send(1, C.Confirm.Select())
    peer.methods()
    for n in range(3):
        peer.publish(1, "", "s", b"m%d" % n, properties=C.Basic.Properties(app_id="app%d" % n))
    node.broker.after_input()
    peer.pump()
    assert peer.methods() == []  # written, not yet synced: no confirm
    assert node.broker.durability.logs_need_sync
    node.broker.commit()
    peer.pump()
    acks = peer.methods()
    assert acks and acks[-1].delivery_tag == 3 and not node.broker.durability.logs_need_sync
    assert (node.directory / "streams").is_dir()
    peer = node.restart()
    assert read_all(peer) == [(0, b"m0", "app0"), (1, b"m1", "app1"), (2, b"m2", "app2")]
    queue = node.broker.topology.queues["s"]
    assert queue.message_count == 3 and queue.arguments["x-max-age"] == "7D"


def test_a_crash_keeps_what_was_committed(node: Node) -> None:
    declare(node.peer)
    node.peer.publish(1, "", "s", b"kept")
    node.broker.commit()
    peer = node.restart(crash=True)
    assert [body for _, body, _ in read_all(peer)] == [b"kept"]


def test_a_deleted_stream_takes_its_log_and_a_new_one_starts_empty(node: Node) -> None:
    declare(node.peer)
    node.peer.publish(1, "", "s", b"old")
    store_id = node.broker.topology.queues["s"].store_id
    node.peer.send(1, C.Queue.Delete(queue="s"))
    node.peer.methods()
    assert not (node.directory / "streams" / str(store_id)).exists()
    peer = node.restart()
    peer.send(1, C.Queue.Declare(queue="s", durable=True, passive=True))
    assert [m.reply_code for m in peer.methods() if isinstance(m, C.Channel.Close)] == [404]
    peer.send(1, C.Channel.CloseOk())
    peer.open_channel()
    declare(peer)
    assert read_all(peer) == []


def test_a_new_stream_never_inherits_what_a_crash_left_under_its_id(node: Node) -> None:
    """A stream written to, then the broker killed before its snapshot: the next stream
    may get the same store id, and starts empty."""
    declare(node.peer)
    node.peer.publish(1, "", "s", b"orphan")
    store_id = node.broker.topology.queues["s"].store_id
    node.broker.store._lock.release()  # killed before any commit: no snapshot has "s"
    node.broker.durability.close_logs()
    node.broker, node.peer = node._start()
    declare(node.peer, "t")
    assert node.broker.topology.queues["t"].store_id == store_id
    assert read_all(node.peer, "t") == []


def test_logs_of_streams_the_broker_no_longer_has_are_removed_at_start(node: Node) -> None:
    """A stream deleted just before a crash (its snapshot gone, its directory not): the
    next start removes that directory and keeps every stream it has."""
    declare(node.peer)
    node.peer.publish(1, "", "s", b"kept")
    node.broker.commit()
    kept = node.directory / "streams" / str(node.broker.topology.queues["s"].store_id)
    stale = node.directory / "streams" / "987654"
    stale.mkdir()
    (stale / "00000000000000000000.segment").write_bytes(b"left by a crash")
    peer = node.restart(crash=True)
    assert kept.is_dir() and not stale.exists()
    assert [body for _, body, _ in read_all(peer)] == [b"kept"]


def test_a_commit_syncs_the_logs_written_in_its_pass_only(node: Node) -> None:
    for name in ("s", "t", "u"):
        declare(node.peer, name)
    node.broker.commit()
    counts = node.broker.vhosts.counts
    assert counts.written_logs == set()
    node.peer.publish(1, "", "t", b"m")
    t_log = node.broker.topology.queues["t"].log
    assert counts.written_logs == {t_log} and t_log.needs_sync
    node.broker.commit()
    assert counts.written_logs == set() and not t_log.needs_sync
    node.peer.publish(1, "", "u", b"m")
    node.peer.send(1, C.Queue.Delete(queue="u"))  # written, then deleted in the same pass
    node.peer.methods()
    assert counts.written_logs == set()
    node.broker.commit()  # (nothing left to sync: no error from the deleted log)
    assert [body for _, body, _ in read_all(node.peer, "t")] == [b"m"]
