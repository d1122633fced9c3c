"""A fake client for driving ``zbroker.core.Broker`` through the zbroker wire adapter
with real frames, no sockets, and a fake clock."""
from __future__ import annotations

from typing import Any

from zbroker.core import Broker
from zbroker.credit import DELIVERY_COST
from zbroker.protocol import HEADER, Op, decode_message, encode
from zbroker.protocol.native_codec import pack
from zbroker.wires.native import NativeWire


class FakeClock:
    """Time for the core, moved only by the test."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def advance(self, seconds: float, broker: Broker | None = None) -> float:
        """Move time on; with ``broker``, run its timers as the server loop would."""
        self.now += seconds
        if broker is not None:
            broker.tick(self.now)
        return self.now


class FakePeer:
    """One client connection: sends commands, reads back what the broker queued for it."""

    def __init__(self, broker: Broker, name: bytes, clock: FakeClock | None = None,
                 reads: bool = True, wire: NativeWire | None = None) -> None:
        self.broker = broker
        self.wire = wire or NativeWire(broker)
        self.clock = clock or FakeClock(broker.now)
        self.peer = name
        self.received: list[tuple[int, list[Any], Any]] = []
        #: Report deliveries read, as the zbroker client does (a quarter window at a time).
        self.reads = reads
        self.unreported = 0
        self.credit_returned = 0

    def send(self, op: int, *fields: Any, body: bytes | None = None) -> list[tuple[int, list[Any], Any]]:
        parts = [HEADER, encode(op, *fields)]
        if body is not None:
            parts.append(body)
        return self.send_parts(parts)

    def send_parts(self, parts: list[Any]) -> list[tuple[int, list[Any], Any]]:
        self.wire.handle(self.peer, parts, 0, self.clock.now)
        return self.collect()

    def collect(self) -> list[tuple[int, list[Any], Any]]:
        """Take every frame queued for this peer (others' frames stay queued for them),
        publish credit returned as the server loop would."""
        self.wire.grant_credit()
        mine = [pack(p) if isinstance(p, tuple) else p for p in self.broker.outbox.pending.pop(self.peer, [])]
        got = []
        for op, fields, body in decode_message(mine, 0):
            if op == Op.PUBLISH_CREDIT:  # flow control, as the client takes it: not an event
                self.credit_returned += fields[0]
            else:
                got.append((op, fields, body))
        self.received.extend(got)
        if self.reads:
            self.unreported += sum(len(body) + DELIVERY_COST for op, _, body in got if op == Op.BASIC_DELIVER)
            if self.unreported >= self.wire.delivery_window // 4:
                n, self.unreported = self.unreported, 0
                self.wire.handle(self.peer, [HEADER, encode(Op.DELIVERY_READ, n)], 0, self.clock.now)
        return got

    def open(self, channel: int = 1, user: str = "guest", password: str = "guest") -> "FakePeer":
        self.send(Op.HELLO, None, "/", user, password, {})
        self.send(Op.CHANNEL_OPEN, channel)
        return self

    def ops(self) -> list[str]:
        return [Op(op).name for op, _, _ in self.collect()]

    # Shorthands for the commands tests use most.
    def declare(self, queue: str, ch: int = 1, **kw: Any) -> list:
        return self.send(Op.QUEUE_DECLARE, ch, queue, kw.get("passive", False), kw.get("durable", False),
                         kw.get("exclusive", False), kw.get("auto_delete", False), kw.get("arguments", {}))

    def publish(self, exchange: str, key: str, body: bytes, ch: int = 1, mandatory: bool = False,
                properties: dict | None = None) -> list:
        return self.send(Op.BASIC_PUBLISH, ch, exchange, key, mandatory, properties or {}, body=body)

    def consume(self, queue: str, tag: str, ch: int = 1, auto_ack: bool = False,
                exclusive: bool = False, arguments: dict | None = None) -> list:
        return self.send(Op.BASIC_CONSUME, ch, queue, tag, auto_ack, exclusive, arguments or {})

    def cancel(self, tag: str, ch: int = 1) -> list:
        return self.send(Op.BASIC_CANCEL, ch, tag)

    def get(self, queue: str, ch: int = 1, auto_ack: bool = True) -> list:
        return self.send(Op.BASIC_GET, ch, queue, auto_ack)

    def nack(self, tag: int, ch: int = 1, multiple: bool = False, requeue: bool = True) -> list:
        return self.send(Op.BASIC_NACK, ch, tag, multiple, requeue)

    def reject(self, tag: int, ch: int = 1, requeue: bool = True) -> list:
        return self.send(Op.BASIC_REJECT, ch, tag, requeue)

    def exchange(self, name: str, kind: str = "direct", ch: int = 1, durable: bool = False,
                 arguments: dict | None = None) -> list:
        return self.send(Op.EXCHANGE_DECLARE, ch, name, kind, False, durable, False, False, arguments or {})

    def bind(self, queue: str, exchange: str, key: str = "", ch: int = 1, arguments: dict | None = None) -> list:
        return self.send(Op.QUEUE_BIND, ch, queue, exchange, key, arguments or {})

    def drain(self, queue: str, ch: int = 1) -> list[Any]:
        """Every body ``basic_get`` (auto-ack) still finds in the queue, in order."""
        out = []
        while True:
            got = [body for op, _, body in self.get(queue, ch) if op == Op.BASIC_GET_OK]
            if not got:
                return out
            out += got

    def count(self, queue: str, ch: int = 1) -> int:
        """The message count a passive declare reports."""
        frames = self.declare(queue, ch, passive=True)
        assert frames and frames[0][0] == Op.QUEUE_DECLARE_OK, frames
        return frames[0][1][2]

    def qos(self, count: int, ch: int = 1, global_qos: bool = False) -> list:
        return self.send(Op.BASIC_QOS, ch, 0, count, global_qos)

    def ack(self, tag: int, ch: int = 1, multiple: bool = False) -> list:
        return self.send(Op.BASIC_ACK, ch, tag, multiple)


def closes(frames: list[tuple[int, list[Any], Any]]) -> list[tuple[int, str]]:
    """(code, text) of every channel or connection close among ``frames``."""
    out = []
    for op, fields, _ in frames:
        if op == Op.CHANNEL_CLOSE:
            out.append((fields[1], fields[2]))
        elif op == Op.CONNECTION_CLOSE:
            out.append((fields[0], fields[1]))
    return out


def props_of(frames: list[tuple[int, list[Any], Any]]) -> list[dict]:
    return [fields[-1] for op, fields, _ in frames if op in (Op.BASIC_DELIVER, Op.BASIC_GET_OK)]


def bodies(frames: list[tuple[int, list[Any], Any]]) -> list[Any]:
    return [body for op, _, body in frames if op == Op.BASIC_DELIVER]


def deliveries(frames: list[tuple[int, list[Any], Any]]) -> list[list[Any]]:
    return [fields for op, fields, _ in frames if op == Op.BASIC_DELIVER]
