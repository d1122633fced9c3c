"""A fake AMQP 0-9-1 client for driving the AMQP wire and the pure core with real frames
(encoded and decoded by pamqp, as a client library would), no sockets, a fake clock."""
from __future__ import annotations

from typing import Any

from pamqp import commands as C
from pamqp import frame, header
from pamqp.body import ContentBody
from pamqp.heartbeat import Heartbeat

from tests.unit.wire import FakeClock
from zbroker.protocol.amqp_codec import PROTOCOL_HEADER
from zbroker.core import Broker
from zbroker.wires.amqp import AmqpWire

CAPABILITIES = {"authentication_failure_close": True, "connection.blocked": True,
                "consumer_cancel_notify": True, "publisher_confirms": True}


#: Every fake peer, per wire (a compiled wire takes no attributes of ours; the wire is
#: kept here too, so that its id is not reused by another while its peers are listed).
_PEERS: dict[int, tuple[AmqpWire, dict[Any, "AmqpPeer"]]] = {}


def _peers_of(wire: AmqpWire) -> dict[Any, "AmqpPeer"]:
    return _PEERS.setdefault(id(wire), (wire, {}))[1]


class AmqpPeer:
    """One TCP connection's worth of client: sends frames, reads what the wire wrote."""

    def __init__(self, wire: AmqpWire, clock: FakeClock, host: str = "127.0.0.1", port: int = 40000) -> None:
        self.wire = wire
        self.clock = clock
        self.key = wire.accept(host, port, clock.now, "127.0.0.1:5672")
        self.received: list[tuple[int, Any]] = []
        self._pending = b""
        _peers_of(wire)[self.key] = self

    # -- sending ---------------------------------------------------------------------

    def send_bytes(self, data: bytes) -> None:
        self.wire.data_received(self.key, data, self.clock.now)
        self.pump()

    def send(self, channel: int, method: Any) -> None:
        self.send_bytes(frame.marshal(method, channel))

    def publish(self, channel: int, exchange: str, routing_key: str, body: bytes,
                properties: C.Basic.Properties | None = None, frame_max: int = 131072, **flags: Any) -> None:
        data = [frame.marshal(C.Basic.Publish(exchange=exchange, routing_key=routing_key, **flags), channel),
                frame.marshal(header.ContentHeader(0, len(body), properties or C.Basic.Properties()), channel)]
        step = frame_max - 8
        for start in range(0, len(body), step):
            data.append(frame.marshal(ContentBody(body[start:start + step]), channel))
        self.send_bytes(b"".join(data))

    def handshake(self, username: str = "guest", password: str = "guest", heartbeat: int = 0,
                  frame_max: int = 131072, capabilities: dict | None = None) -> None:
        self.send_bytes(PROTOCOL_HEADER)
        assert isinstance(self.take()[1], C.Connection.Start)
        props = {"product": "test", "capabilities": CAPABILITIES if capabilities is None else capabilities}
        self.send(0, C.Connection.StartOk(props, "PLAIN", f"\0{username}\0{password}", "en_US"))
        tune = self._expect(C.Connection.Tune)
        if tune is None:
            return  # refused: what came instead (if anything) stays in ``received``
        self.send(0, C.Connection.TuneOk(tune.channel_max, frame_max, heartbeat))
        if self.received:
            return  # refused at tune-ok
        self.send(0, C.Connection.Open("/"))
        self._expect(C.Connection.OpenOk)

    def _expect(self, kind: type) -> Any:
        """The next method if it is a ``kind``, else None (and it stays received)."""
        if self.received and isinstance(self.received[0][1], kind):
            return self.received.pop(0)[1]
        return None

    def open_channel(self, channel: int = 1) -> None:
        self.send(channel, C.Channel.Open())
        assert isinstance(self.take()[1], C.Channel.OpenOk)

    # -- receiving -------------------------------------------------------------------

    def pump(self) -> None:
        """Run what the server loop and the listener would after input: hand the core's
        events for the AMQP wire's connections to it (another wire's stay queued), collect
        every frame written to each fake peer and tell the wire it was all written."""
        pending = self.wire.broker.outbox.pending
        mine = {key: pending.pop(key) for key in list(pending) if type(key) is AmqpWire.CONN_ID}
        self.wire.encode(mine, self.clock.now)
        for key, buffers in self.wire.take_output("127.0.0.1:5672").items():
            peer = _peers_of(self.wire).get(key)
            if peer is not None:
                peer.read(b"".join(bytes(b) for b in buffers))
                self.wire.output_pending(key, 0)

    def read(self, data: bytes) -> None:
        data = self._pending + data
        while data:
            if data[:4] == b"AMQP":
                self.received.append((0, data[:8]))
                data = data[8:]
                continue
            try:
                used, channel, value = frame.unmarshal(data)
            except Exception:
                break  # a partial frame
            self.received.append((channel, value))
            data = data[used:]
        self._pending = data

    def take(self) -> tuple[int, Any]:
        assert self.received, "nothing received"
        return self.received.pop(0)

    def methods(self) -> list[Any]:
        """Everything received so far except content frames, then forget it."""
        got = [v for _, v in self.received if not isinstance(v, (header.ContentHeader, ContentBody, Heartbeat))]
        self.received.clear()
        return got

    @property
    def closed(self) -> bool:
        return self.wire.should_close(self.key)


def make(clock: FakeClock | None = None, **broker_args: Any) -> tuple[Broker, AmqpWire, FakeClock]:
    clock = clock or FakeClock()
    broker = Broker(now=clock.now, **broker_args)
    return broker, AmqpWire(broker), clock
