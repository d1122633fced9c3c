"""One AMQP 0-9-1 TCP connection as the wire sees it: where it is in its life, what it
has buffered each way, and a publish being assembled.

Rules:
- ``state`` moves forward only: HEADER -> START_OK -> TUNE_OK -> OPEN (the handshake,
  ``amqp_handshake.py``) -> RUNNING, then CLOSING (the broker sent connection.close and
  waits for close-ok) or CLOSE_WAIT (it sent close-ok and waits for the client to close
  the socket), then CLOSED. Comparisons such as ``state >= CLOSE_WAIT`` rely on the order.
- What is to be written goes through ``send``, which also tells the wire the connection
  has output; ``close_soon`` and ``pause`` tell it which sockets to close or stop reading.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from zbroker.protocol import amqp_codec as codec

if TYPE_CHECKING:
    from zbroker.wires.amqp import AmqpWire

HEADER, START_OK, TUNE_OK, OPEN, RUNNING, CLOSING, CLOSE_WAIT, CLOSED = range(8)
#: RabbitMQ's default frame_max (128 KiB) is what the broker offers.
FRAME_MAX = 131072
#: How long the broker waits for close-ok after its connection.close.
CLOSE_TIMEOUT_S = 3.0


@dataclass
class Content:
    """A publish being assembled on one channel (the wire's rule 3)."""

    fields: list[Any]
    size: int = -1  # -1: the content header has not come yet
    properties: dict = field(default_factory=dict)
    parts: list[bytes] = field(default_factory=list)
    got: int = 0
    skip: bool = False  # refused at its header: its body frames are dropped


class AmqpConnection:
    """One TCP connection as the wire sees it."""

    def __init__(self, key: int, peer_host: str, peer_port: int, now: float, wire: "AmqpWire",
                 listener: str, tls: bool) -> None:
        self.key = key
        self.wire = wire
        self.listener = listener  # "host:port" it connected to
        self.tls = tls
        self.peer_host = peer_host
        self.peer_port = peer_port
        self.state = HEADER
        self.inbuf = bytearray()
        self.out: list[Any] = []
        self.frame_max = FRAME_MAX
        self.channel_max = 0
        self.heartbeat = 0
        self.opened_at = now
        self.last_recv = now
        self.last_send = now
        self.close_by = 0.0  # while closing: when the socket goes anyway
        self.close_now = False  # the listener closes the socket once ``out`` is written
        self.paused = False  # the wire's rule 6
        self.resume = False  # unpaused by the core's events: apply what waits in ``inbuf``
        self.username = ""
        self.mechanism = ""
        self.client_properties: dict = {}
        self.capabilities: dict = {}
        self.content: dict[int, Content] = {}
        self.core: Any = None  # the core's Connection, once open

    @property
    def name(self) -> str:
        return f"{self.peer_host}:{self.peer_port}"

    def send(self, data: Any) -> None:
        self.out.append(data)
        self.wire.writing.add(self.key)

    def send_method(self, channel: int, cls: type, *args: Any) -> None:
        self.send(codec.method_frame(channel, cls, *args))

    def close_soon(self) -> None:
        """The listener closes the socket once what is queued for it is written."""
        self.close_now = True
        self.wire.closing.add(self.key)
        self.wire.read_version += 1

    def pause(self, paused: bool) -> None:
        self.paused = paused
        self.wire.read_version += 1
