"""The zbroker wire: ZeroMQ multipart messages <-> the core's commands and events.

A message from a client holds commands and their bodies, in the split or the packed
form (``zbroker/protocol``); its connection id is the ZeroMQ routing id of the peer.
This adapter is pure (no sockets): the server hands it the frames it received and sends
the frames it returns.

Rules:
- The first command of a connection is HELLO (version, vhost, credentials); the broker
  answers HELLO_OK. Anything else from a peer the broker does not know gets
  CONNECTION_CLOSE 320 ("was it restarted?"), except a late CONNECTION_CLOSE_OK.
- A malformed frame (``ProtocolError``: bad header, undecodable or ill-typed command,
  a nested value the broker will not take) closes that connection alone, with the code
  the codec chose (502/501/540); commands before it in the batch were applied.
- Flow control (``flow.py``): publish credit and the delivery window. A publish beyond
  the credit, or a read report beyond what was delivered, closes the connection (503).
- A message with the management header (``protocol/native_management.py``) is a management
  request, whoever sends it: ``management.py`` answers it; it opens no connection.
- A connection-level event only the broker sends (HELLO_OK, CONNECTION_BLOCKED, ...)
  coming from a client closes its connection (503).
- A client whose HELLO has the capability ``stream_batches`` gets a stream consumer's
  deliveries as STREAM_DELIVER (many entries in one command); any other client gets
  one BASIC_DELIVER per message.
- Events are encoded here and nowhere else: a core event tuple is exactly a command's
  array, so encoding is one msgpack call per event. A peer of this version gets the
  packed form (``native_packed.py``: a pass's events in as few messages as its limit
  allows); a version 1 peer (its HELLO had ``V1_HEADER``) gets the split form, bodies
  untouched, for as long as it is known (``v1_peers``).
- Outbound, the wire encodes the events of its own connections, which the server hands
  it (``encode``); its connection ids are ZeroMQ routing ids (``CONN_ID``: bytes), so
  the server can tell them from another wire's.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, ClassVar

from zbroker import __version__, errors
from zbroker.core import Broker
from zbroker.core.access.users import LOGIN_REFUSED
from zbroker.methods import Method as M
from zbroker.protocol import HEADER, ProtocolError, check_header, decode_message
from zbroker.protocol.native_management import MANAGEMENT_HEADER
from zbroker.protocol.native_codec import DELIVERY_OVERHEAD_BYTES, MAX_COMMAND_BYTES, V1_HEADER, pack
from zbroker.protocol.native_packed import decode_packed, is_packed, pack_events
from zbroker.credit import DELIVERY_WINDOW, PUBLISH_CREDIT, message_cost
from zbroker.wires.flow import PublishCredit
from zbroker.wires.management import ManagementWire

log = logging.getLogger(__name__)

# Plain ints: an IntEnum member look-up costs ~90 ns on 3.11.
_HELLO, _PUBLISH, _DELIVERY_READ = int(M.HELLO), int(M.BASIC_PUBLISH), int(M.DELIVERY_READ)
_PUBLISH_CREDIT = int(M.PUBLISH_CREDIT)
#: Connection-level methods only the broker sends.
_SERVER_ONLY = frozenset({M.HELLO_OK, M.CONNECTION_BLOCKED, M.CONNECTION_UNBLOCKED, M.PUBLISH_CREDIT,
                          M.CONNECTION_UPDATE_SECRET_OK})
#: The most a packed frame to a client holds: what the client accepts.
_CLIENT_LIMIT = MAX_COMMAND_BYTES + DELIVERY_OVERHEAD_BYTES
#: Known version 1 peers past which the ones with no connection left are forgotten.
_V1_SLACK = 64


#: The HELLO capability by which a client says it takes STREAM_DELIVER
#: (``zbroker/protocol/stream_entries.py``); a client without it gets BASIC_DELIVERs.
STREAM_BATCHES = "stream_batches"


def _asks_for_batches(client_properties: dict) -> bool:
    capabilities = client_properties.get("capabilities")
    return isinstance(capabilities, dict) and capabilities.get(STREAM_BATCHES) is True


class NativeWire:
    #: The type of this wire's connection ids (ZeroMQ routing ids): how the server tells
    #: which wire a connection's events are for.
    CONN_ID: ClassVar[type] = bytes

    def __init__(self, broker: Broker, publish_credit: int = PUBLISH_CREDIT,
                 delivery_window: int = DELIVERY_WINDOW, management: ManagementWire | None = None) -> None:
        self.broker = broker
        #: Where management messages (their own header) go; None: they are refused.
        self.management = management
        #: Set by the server: the host of a received message's peer, and the
        #: address it listens on, for management's connection names.
        self.peer_address: Callable[[Any], str | None] | None = None
        self.listener = ""
        self.credit = PublishCredit(publish_credit)
        self.delivery_window = delivery_window
        #: Peers that spoke version 1 (the split form only): what they are sent is too.
        self.v1_peers: set[bytes] = set()

    def handle(self, peer: bytes, parts: list[Any], start: int, now: float, frame: Any = None) -> None:
        """Apply one message from ``peer``: ``parts[start]`` is its header frame; ``frame``,
        one of its frames as the server received it, is read (``peer_address``) when it
        opens a connection."""
        broker = self.broker
        conn = broker.connections.get(peer)
        charged = False
        credit_used, window = self.credit.used, self.credit.window
        try:
            head = parts[start]
            if is_packed(head):
                commands = decode_packed(parts, start)
            elif head == HEADER:
                commands = decode_message(parts, start + 1)
            elif head == V1_HEADER:
                self.v1_peers.add(peer)
                commands = decode_message(parts, start + 1)
            else:
                if head == MANAGEMENT_HEADER and self.management is not None:
                    self.management.handle(peer, parts[start:], self._host(frame))
                    return
                check_header(head)  # raises the right ProtocolError
                return
            for op, fields, body in commands:
                if conn is None:
                    host = self._host(frame)
                    conn = self._unknown_peer(peer, op, fields, now, host)
                    if conn is None:
                        return
                    if host is not None:
                        conn.peer = host
                        conn.listener = self.listener
                    continue
                if op == _PUBLISH:
                    if not charged:  # one charge per message that holds a publish
                        charged = True
                        used = credit_used.get(peer, 0)
                        if used < window:
                            credit_used[peer] = used + message_cost(parts, start)
                        else:
                            self._refuse(conn, f"publish beyond the publish credit window "
                                               f"({self.credit.window} bytes)")
                            return
                elif op == _DELIVERY_READ:
                    if not 0 <= fields[0] <= conn.unread:
                        self._refuse(conn, f"DELIVERY_READ of {fields[0]} bytes; {conn.unread} are unread")
                        return
                    broker.deliveries_read(peer, fields[0])
                    continue
                elif op == _HELLO:
                    self._refuse(conn, "second 'connection.open' seen")
                    return
                elif op in _SERVER_ONLY:
                    self._refuse(conn, f"{M(op).name} is not a client command")
                    return
                broker.command(conn, op, fields, body, now)
                if peer not in broker.connections:
                    return
        except ProtocolError as exc:
            log.warning("protocol error from %s: %s", peer.hex()[:12], exc.detail)
            broker.close_connection(peer, exc.code, exc.detail)
        except Exception:  # a bug reading this peer's input: it alone pays (541), as on AMQP
            log.exception("internal error reading a message from %s", peer.hex()[:12])
            broker.close_connection(peer, errors.INTERNAL_ERROR, "internal error")
        finally:
            broker.after_input()

    def _host(self, frame: Any) -> str | None:
        """The host a frame came from (None: unknown, or a local transport)."""
        return self.peer_address(frame) if frame is not None and self.peer_address else None

    def _refuse(self, conn: Any, detail: str) -> None:
        log.warning("connection %s closed: %s", conn.name, detail)
        self.broker.close_connection(conn.conn_id, errors.COMMAND_INVALID, detail)

    def _unknown_peer(self, peer: bytes, op: int, fields: list[Any], now: float, host: str | None) -> Any:
        broker = self.broker
        if op == M.HELLO:
            heartbeat, virtual_host, username, password, client_properties = fields
            if not broker.login(username, password, host, now):
                broker.close_connection(peer, errors.ACCESS_REFUSED, LOGIN_REFUSED.format("PLAIN"))
                return None
            conn = broker.open_connection(peer, now, heartbeat, virtual_host, username,
                                          client_properties, self.delivery_window, host)
            if conn is not None:
                conn.stream_batches = _asks_for_batches(client_properties)
                conn.send((M.HELLO_OK, conn.heartbeat, broker.max_body_bytes,
                           {"product": "zbroker", "version": __version__,
                            "channel_max": broker.limits.channel_max,
                            "publish_credit": self.credit.window,
                            "delivery_window": self.delivery_window}))
            return conn
        if op != M.CONNECTION_CLOSE_OK:
            log.debug("frame %s from unknown peer %s", op, peer.hex()[:12])
            broker.close_connection(peer, errors.CONNECTION_FORCED,
                                    "connection not open on this broker (was it restarted?)")
        return None

    def grant_credit(self) -> None:
        """Return the publish credit this pass used (the loop calls it after commit)."""
        outbox = self.broker.outbox
        for peer, amount in self.credit.grants(self.broker.connections):
            outbox.put(peer, (_PUBLISH_CREDIT, amount))

    def encode(self, events: dict[bytes, list[Any]]) -> dict[bytes, list[list[Any]]]:
        """The messages (each a list of frames) to send per peer for the core's events of
        this wire's connections, in the form each peer speaks."""
        v1_peers = self.v1_peers
        out = {peer: self._split(peer, parts) if v1_peers and peer in v1_peers else pack_events(parts, _CLIENT_LIMIT)
               for peer, parts in events.items()}
        if len(v1_peers) > _V1_SLACK:
            v1_peers.intersection_update(self.broker.connections)
        return out

    def _split(self, peer: bytes, parts: list[Any]) -> list[list[Any]]:
        """A version 1 peer's one message; its last if it has no connection left."""
        if peer not in self.broker.connections:
            self.v1_peers.discard(peer)
        return [[V1_HEADER, *(pack(p) if isinstance(p, tuple) else p for p in parts)]]

    def empty_message(self, peer: bytes) -> list[Any]:
        """A message with no command, in the peer's form: the server's liveness probe."""
        return [V1_HEADER if peer in self.v1_peers else HEADER]

    def take_outgoing(self) -> dict[bytes, list[list[Any]]]:
        """Where this wire is the broker's only one (tests, the fuzzer): publish credit
        returned, then every event the core queued, encoded."""
        if self.credit.used:
            self.grant_credit()
        return self.encode(self.broker.outbox.take())  # type: ignore[arg-type]  # (only this wire's ids)
