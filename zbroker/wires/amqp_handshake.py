"""The AMQP 0-9-1 handshake, up to connection.open-ok (the wire's rules 1 and 2).

Rules:
1. The 8-byte protocol header, then start/start-ok (SASL PLAIN or AMQPLAIN), tune/tune-ok,
   open/open-ok, within ``HANDSHAKE_TIMEOUT_S``. A wrong protocol header is answered
   with ours and the socket is closed.
2. Logins are checked against the broker's users (``core/access/users.py``: ``guest`` from a
   loopback address only), or, with the unoffered ``INTERNAL_MECHANISM``, against the
   server's internal secret (the broker's own connections: a shovel's local side); a refused login is 403 ACCESS_REFUSED with RabbitMQ's text,
   sent when the client announced ``authentication_failure_close`` (the socket is closed
   on its close-ok, or after ``CLOSE_TIMEOUT_S``, as RabbitMQ waits for it); other clients
   just lose the socket. The password is not kept past start-ok.
3. Tune: the broker offers ``channel_max``, ``frame_max`` (128 KiB, RabbitMQ's) and its
   heartbeat; the client's tune-ok may lower the first two (``frame_max`` at least 4096,
   else 530) and sets the heartbeat (RabbitMQ takes the client's value).
4. At open the core takes the connection (``Broker.open_connection``), which may refuse
   it (an unknown vhost, a limit): its close is then on the way.
5. ``STEPS`` says which method each handshake state waits for, and who applies it; any
   other method on channel 0 before the connection runs is 503 COMMAND_INVALID.
"""
from __future__ import annotations

import logging
import platform
from typing import Any, Callable

from pamqp import commands as C

from zbroker import __version__, errors
from zbroker.protocol import amqp_codec as codec
from zbroker.protocol.amqp_codec import FrameError
from zbroker.core import Broker
from zbroker.core.access.users import INTERNAL_KEY, LOGIN_REFUSED
from zbroker.credit import DELIVERY_WINDOW
from zbroker.wires.amqp_connection import (CLOSE_TIMEOUT_S, CLOSING, FRAME_MAX, OPEN, RUNNING, START_OK, TUNE_OK,
                                           AmqpConnection, State)

log = logging.getLogger(__name__)

#: RabbitMQ's handshake_timeout: a connection must be open within this.
HANDSHAKE_TIMEOUT_S = 10.0
PROTOCOL = "AMQP 0-9-1"
MECHANISMS = ("PLAIN", "AMQPLAIN")
#: The mechanism of the broker's own connections (a shovel's side on this broker): its
#: response is the server's internal secret (``users.py``). Not offered in start.
INTERNAL_MECHANISM = "ZBROKER-INTERNAL"
#: RabbitMQ's capabilities, each true of zbroker.
CAPABILITIES = {
    "publisher_confirms": True, "exchange_exchange_bindings": True, "basic.nack": True,
    "consumer_cancel_notify": True, "connection.blocked": True, "consumer_priorities": True,
    "authentication_failure_close": True, "per_consumer_qos": True, "direct_reply_to": True,
}


def protocol_header(broker: Broker, conn: AmqpConnection, header: bytes) -> None:
    if header != codec.PROTOCOL_HEADER:
        log.warning("connection from %s: bad protocol header %r", conn.name, header)
        conn.send(codec.PROTOCOL_HEADER)
        conn.close_soon()
        return
    properties = {"product": "zbroker", "version": __version__,
                  "platform": f"Python {platform.python_version()}",
                  "cluster_name": broker.parameters.cluster_name, "capabilities": CAPABILITIES,
                  "copyright": "zbroker contributors", "information": "Licensed under the MIT License"}
    conn.send_method(0, C.Connection.Start, 0, 9, properties, " ".join(MECHANISMS), "en_US")
    conn.move(START_OK)


def start_ok(broker: Broker, conn: AmqpConnection, method: Any, now: float) -> None:
    conn.client_properties = codec.plain_table(method.client_properties or {}, "client_properties")
    capabilities = conn.client_properties.get("capabilities")
    conn.capabilities = capabilities if isinstance(capabilities, dict) else {}
    conn.mechanism = method.mechanism
    response = method.response
    if isinstance(response, str):
        response = response.encode()
    if method.mechanism == INTERNAL_MECHANISM:
        if not broker.login_internal(bytes(response)):
            _refuse_login(conn, now)
            return
        conn.username = INTERNAL_KEY
        _tune(broker, conn)
        return
    if method.mechanism == "PLAIN":
        parts = bytes(response).split(b"\x00")
        if len(parts) != 3:
            raise FrameError(errors.ACCESS_REFUSED, LOGIN_REFUSED.format("PLAIN"))
        user, password = parts[1], parts[2]
    elif method.mechanism == "AMQPLAIN":
        table = codec.decode_table_bytes(bytes(response), "the AMQPLAIN response")
        user, password = table.get("LOGIN", b""), table.get("PASSWORD", b"")
    else:
        raise FrameError(errors.COMMAND_INVALID, f"unknown authentication mechanism '{method.mechanism}'")
    conn.username = user.decode(errors="replace") if isinstance(user, bytes) else str(user)
    text = password.decode(errors="replace") if isinstance(password, bytes) else str(password)
    if not broker.login(conn.username, text, conn.peer_host, now, conn.mechanism):
        _refuse_login(conn, now)  # (the core logged why)
        return
    _tune(broker, conn)


def _tune(broker: Broker, conn: AmqpConnection) -> None:
    conn.send_method(0, C.Connection.Tune, broker.limits.channel_max, FRAME_MAX, broker.heartbeat)
    conn.move(TUNE_OK)


def _refuse_login(conn: AmqpConnection, now: float) -> None:
    if conn.capabilities.get("authentication_failure_close"):
        text = errors.reply_text(errors.ACCESS_REFUSED, LOGIN_REFUSED.format(conn.mechanism))
        conn.send_method(0, C.Connection.Close, errors.ACCESS_REFUSED, text, 0, 0)
        conn.move(CLOSING)
        conn.close_by = now + CLOSE_TIMEOUT_S
        return
    conn.close_soon()


def tune_ok(broker: Broker, conn: AmqpConnection, method: Any, now: float) -> None:
    frame_max = method.frame_max or FRAME_MAX
    if frame_max < codec.FRAME_MIN_SIZE:
        raise FrameError(errors.NOT_ALLOWED, f"frame_max={frame_max} < {codec.FRAME_MIN_SIZE} min size")
    if frame_max > FRAME_MAX:
        raise FrameError(errors.NOT_ALLOWED, f"frame_max={frame_max} > {FRAME_MAX} max size")
    offered = broker.limits.channel_max
    conn.channel_max = min(method.channel_max or offered, offered)
    conn.frame_max = frame_max
    conn.heartbeat = method.heartbeat
    conn.move(OPEN)


def open_(broker: Broker, conn: AmqpConnection, method: Any, now: float) -> None:
    core = broker.open_connection(conn.key, now, conn.heartbeat, method.virtual_host,
                                  conn.username, conn.client_properties,
                                  DELIVERY_WINDOW, conn.peer_host)
    conn.move(RUNNING)
    if core is None:  # refused (vhost, connection limit): the core queued the close
        return
    core.protocol = PROTOCOL
    core.peer = conn.peer_host
    core.peer_port = conn.peer_port
    core.frame_max = conn.frame_max
    core.auth_mechanism = conn.mechanism
    core.listener = conn.listener
    core.ssl = conn.tls
    conn.core = core
    conn.send_method(0, C.Connection.OpenOk, "")


#: Handshake state -> the method it waits for and the step that applies it.
STEPS: dict[State, tuple[type, Callable[[Broker, AmqpConnection, Any, float], None]]] = {
    START_OK: (C.Connection.StartOk, start_ok),
    TUNE_OK: (C.Connection.TuneOk, tune_ok),
    OPEN: (C.Connection.Open, open_),
}
