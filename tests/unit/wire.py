"""A fake client for driving ``zbroker.core.Broker`` with real frames and no sockets."""
from __future__ import annotations

from typing import Any

from zbroker.core import Broker
from zbroker.protocol import HEADER, Op, decode_message, encode


class FakePeer:
    """One client connection: sends commands, reads back what the broker queued for it."""

    def __init__(self, broker: Broker, name: bytes) -> None:
        self.broker = broker
        self.peer = name
        self.received: list[tuple[int, list[Any], Any]] = []

    def send(self, op: int, *fields: Any, body: bytes | None = None) -> list[tuple[int, list[Any], Any]]:
        parts = [HEADER, encode(op, *fields)]
        if body is not None:
            parts.append(body)
        return self.send_parts(parts)

    def send_parts(self, parts: list[Any]) -> list[tuple[int, list[Any], Any]]:
        self.broker.handle(self.peer, parts)
        return self.collect()

    def collect(self) -> list[tuple[int, list[Any], Any]]:
        """Take every frame queued for this peer (others' frames stay queued for them)."""
        mine = self.broker.outbox.pending.pop(self.peer, [])
        got = list(decode_message(mine, 0))
        self.received.extend(got)
        return got

    def open(self, channel: int = 1) -> "FakePeer":
        self.send(Op.HELLO, None, "/", "guest", "guest", {})
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
                exclusive: bool = False) -> list:
        return self.send(Op.BASIC_CONSUME, ch, queue, tag, auto_ack, exclusive, {})

    def qos(self, count: int, ch: int = 1, global_qos: bool = False) -> list:
        return self.send(Op.BASIC_QOS, ch, 0, count, global_qos)

    def ack(self, tag: int, ch: int = 1, multiple: bool = False) -> list:
        return self.send(Op.BASIC_ACK, ch, tag, multiple)


def bodies(frames: list[tuple[int, list[Any], Any]]) -> list[Any]:
    return [body for op, _, body in frames if op == Op.BASIC_DELIVER]


def deliveries(frames: list[tuple[int, list[Any], Any]]) -> list[list[Any]]:
    return [fields for op, fields, _ in frames if op == Op.BASIC_DELIVER]
