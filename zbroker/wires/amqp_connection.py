"""One AMQP 0-9-1 TCP connection as the wire sees it: where it is in its life, what it
has buffered each way, and a publish being assembled.

Rules:
- ``state`` (a ``State``) moves forward only: HEADER -> START_OK -> TUNE_OK -> OPEN (the
  handshake, ``amqp_handshake.py``) -> RUNNING, then CLOSING (the broker sent
  connection.close and waits for close-ok) or CLOSE_WAIT (it sent close-ok and waits for
  the client to close the socket), then CLOSED. ``TRANSITIONS`` says which state may
  follow which, and every change goes through ``move``, which checks it: an illegal
  transition is a bug in the wire (``IllegalTransition``), and the wire drops that one
  connection for it. Comparisons such as ``state >= CLOSE_WAIT`` rely on the order.
- What is to be written goes through ``send``, which also tells the wire the connection
  has output; ``close_soon`` and ``pause`` tell it which sockets to close or stop reading.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from zbroker.protocol import amqp_codec as codec

if TYPE_CHECKING:
    from zbroker.wires.amqp import AmqpWire



class State(IntEnum):
    """Where a connection is in its life, in the order it goes through them."""

    HEADER = 0  # waiting for the 8-byte protocol header
    START_OK = 1  # connection.start sent
    TUNE_OK = 2  # connection.tune sent (the login was accepted)
    OPEN = 3  # waiting for connection.open
    RUNNING = 4  # open: the core knows it (or is closing it: its close is on the way)
    CLOSING = 5  # the broker sent connection.close: only close-ok (or close) is read
    CLOSE_WAIT = 6  # the broker sent close-ok: the client closes the socket
    CLOSED = 7  # the socket is closed once what is queued for it is written


HEADER, START_OK, TUNE_OK, OPEN, RUNNING, CLOSING, CLOSE_WAIT, CLOSED = State

#: Which states may follow each one. Every state may end in CLOSED (a bad protocol
#: header, a refused login, a timeout, missed heartbeats, a bug); a handshake step may
#: also end in CLOSING (the broker's connection.close for bad input, or a refused login
#: told to a client that asked for ``authentication_failure_close``).
TRANSITIONS: dict[State, frozenset[State]] = {
    HEADER: frozenset({START_OK, CLOSING, CLOSED}),
    START_OK: frozenset({TUNE_OK, CLOSING, CLOSED}),
    TUNE_OK: frozenset({OPEN, CLOSING, CLOSED}),
    OPEN: frozenset({RUNNING, CLOSING, CLOSED}),
    RUNNING: frozenset({CLOSING, CLOSE_WAIT, CLOSED}),
    CLOSING: frozenset({CLOSE_WAIT, CLOSED}),
    CLOSE_WAIT: frozenset({CLOSED}),
    CLOSED: frozenset(),
}
assert set(TRANSITIONS) == set(State)
assert all(new > old for old, news in TRANSITIONS.items() for new in news)  # forward only


class IllegalTransition(Exception):
    """The wire moved a connection to a state that may not follow its own: a bug."""

    def __init__(self, conn: "AmqpConnection", new: State) -> None:
        super().__init__(f"connection {conn.name}: {conn.state.name} -> {new.name} is not a legal transition")

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
        self.state: State = HEADER
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
        self.write_full = False  # the wire's rule 5: the core was told its pipe is full
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

    def move(self, new: State) -> None:
        """Go to state ``new`` (staying is not a move); raises ``IllegalTransition`` if
        ``TRANSITIONS`` does not allow it, the state unchanged."""
        if new is not self.state:
            if new not in TRANSITIONS[self.state]:
                raise IllegalTransition(self, new)
            self.state = new

    def send(self, data: Any) -> None:
        self.out.append(data)
        self.wire.writing.add(self.key)

    def send_method(self, channel: int, cls: type, *args: Any) -> None:
        self.send(codec.method_frame(channel, cls, *args))

    def close_soon(self) -> None:
        """CLOSED: the listener closes the socket once what is queued for it is written."""
        self.move(CLOSED)
        self.close_now = True
        self.wire.closing.add(self.key)
        self.wire.read_version += 1

    def pause(self, paused: bool) -> None:
        self.paused = paused
        self.wire.read_version += 1
