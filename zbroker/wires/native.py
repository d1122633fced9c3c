"""The zbroker wire: ZeroMQ multipart messages <-> the core's commands and events.

A message from a client is ``[header, command, (body), command, (body), ...]``
(``zbroker/protocol``); its connection id is the ZeroMQ routing id of the peer. This
adapter is pure (no sockets): the server hands it the frames it received and sends the
frames it returns.

Rules:
- The first command of a connection is HELLO (version, vhost, credentials); the broker
  answers HELLO_OK. Anything else from a peer the broker does not know gets
  CONNECTION_CLOSE 320 ("was it restarted?"), except a late CONNECTION_CLOSE_OK.
- A malformed frame (``ProtocolError``: bad header, undecodable or ill-typed command,
  a nested value the broker will not take) closes that connection alone, with the code
  the codec chose (502/501/540); commands before it in the batch were applied.
- Events are encoded here and nowhere else: a core event tuple is exactly a command
  frame's array, so encoding is one msgpack call per event; bodies pass untouched.
"""
from __future__ import annotations

import logging
from typing import Any

from zbroker import __version__, errors
from zbroker.core import Broker
from zbroker.methods import Method as M
from zbroker.protocol import ProtocolError, check_header, decode_message
from zbroker.protocol.codec import pack

log = logging.getLogger(__name__)

_HELLO = int(M.HELLO)  # a plain int: an IntEnum member look-up costs ~90 ns on 3.11


class NativeWire:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def handle(self, peer: bytes, parts: list[Any], start: int, now: float) -> None:
        """Apply one message from ``peer``: ``parts[start]`` is its header frame."""
        broker = self.broker
        conn = broker.connections.get(peer)
        try:
            check_header(parts[start])
            for op, fields, body in decode_message(parts, start + 1):
                if conn is None:
                    conn = self._unknown_peer(peer, op, fields, now)
                    if conn is None:
                        return
                    continue
                if op == _HELLO:
                    log.warning("connection %s closed: second HELLO", conn.name)
                    broker.close_connection(peer, errors.COMMAND_INVALID, "second 'connection.open' seen")
                    return
                broker.command(conn, op, fields, body, now)
                if peer not in broker.connections:
                    return
        except ProtocolError as exc:
            log.warning("protocol error from %s: %s", peer.hex()[:12], exc.detail)
            broker.close_connection(peer, exc.code, exc.detail)
        finally:
            broker.after_input()

    def _unknown_peer(self, peer: bytes, op: int, fields: list[Any], now: float) -> Any:
        broker = self.broker
        if op == M.HELLO:
            heartbeat, virtual_host, username, password, client_properties = fields
            conn = broker.open_connection(peer, now, heartbeat, virtual_host, username, password,
                                          client_properties)
            if conn is not None:
                conn.send((M.HELLO_OK, conn.heartbeat, broker.max_body_bytes,
                           {"product": "zbroker", "version": __version__,
                            "channel_max": broker.limits.channel_max}))
            return conn
        if op != M.CONNECTION_CLOSE_OK:
            log.debug("frame %s from unknown peer %s", op, peer.hex()[:12])
            broker.close_connection(peer, errors.CONNECTION_FORCED,
                                    "connection not open on this broker (was it restarted?)")
        return None

    def take_outgoing(self) -> dict[Any, list[Any]]:
        """Frames to send, per peer: each event encoded, bodies as they are."""
        out = {}
        for peer, parts in self.broker.outbox.take().items():
            out[peer] = [pack(p) if type(p) is tuple else p for p in parts]
        return out
