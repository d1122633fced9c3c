"""The AMQP 0-9-1 wire: bytes from TCP connections <-> the core's commands and events.

Pure, as the zbroker wire is: the listener (``zbroker/listener.py``) hands it the bytes
each socket received and writes the buffers it returns; ``now`` comes with every call.
A connection is known to the core only once its handshake is done; its id is the
listener's key for the socket (an int, so it never collides with a ZeroMQ routing id).

Rules (AMQP 0-9-1 and RabbitMQ's behaviour):
1. Handshake: the 8-byte protocol header, then start/start-ok (SASL PLAIN or AMQPLAIN),
   tune/tune-ok, open/open-ok, within ``HANDSHAKE_TIMEOUT_S``. A wrong protocol header
   is answered with ours and the socket is closed. Logins are checked against the
   broker's users (``core/users.py``: ``guest`` from a loopback address only);
   a refused login is 403 ACCESS_REFUSED with RabbitMQ's text, sent (then the socket
   closed) when the client announced ``authentication_failure_close``.
2. Tune: the broker offers ``channel_max``, ``frame_max`` (128 KiB, RabbitMQ's) and its
   heartbeat; the client's tune-ok may lower the first two (``frame_max`` at least 4096,
   else 530) and sets the heartbeat (RabbitMQ takes the client's value).
3. A publish is assembled from its method, content header and body frames before the
   core sees it, so the core gets one command with the whole body. Any other frame on
   that channel in between is 505 UNEXPECTED_FRAME. A header announcing more than the
   broker's largest body closes the channel (406) and its body frames are skipped.
4. ``nowait``: the core always answers; the wire drops that answer.
5. Deliveries are held to the zbroker wire's 4 MiB delivery window (``credit.py``): the
   listener reports the window read once what it queued for the socket is written, so a
   peer that stops reading costs one window, however many publishes a loop pass applies.
6. While an alarm blocks the connection (``Connection.publish_blocked``), the wire stops
   at the next publish and reads nothing more from the socket (RabbitMQ's "blocked"
   state) until the alarm clears; its heartbeat is not held against it meanwhile.
7. Heartbeats: a heartbeat frame goes out when nothing else was sent for half the
   interval; a peer silent for two intervals is gone (its deliveries are requeued).
8. Bad bytes (``FrameError``) close the connection with the code, logged; after the
   broker's connection.close only the peer's close-ok (or close) is read, and the socket
   is closed on it or after ``CLOSE_TIMEOUT_S``.
   When the client closes, the broker answers close-ok and leaves closing the socket to
   the client, which does so once it has read close-ok (an asyncio client that meets
   end-of-file first takes the connection for lost). What it sends meanwhile is
   discarded; the socket is closed anyway after the client's heartbeat timeout, at most
   ``CLOSE_OK_WAIT_S`` (RabbitMQ's ``rabbit_reader``: the same bound).
9. ``connection.blocked``/``unblocked`` and a broker-side ``basic.cancel`` go only to
   clients that announced the capability, as RabbitMQ does.
"""
from __future__ import annotations

import logging
import platform
from dataclasses import dataclass, field
from typing import Any

from pamqp import commands as C

from zbroker import __version__, errors
from zbroker.amqp import codec, methods
from zbroker.amqp.codec import FRAME_BODY, FRAME_HEADER, FRAME_HEARTBEAT, FRAME_METHOD, FrameError
from zbroker.core import Broker
from zbroker.core.users import LOGIN_REFUSED
from zbroker.credit import DELIVERY_WINDOW
from zbroker.methods import BODY_METHODS
from zbroker.methods import Method as M

log = logging.getLogger(__name__)

#: RabbitMQ's default frame_max (128 KiB) is what the broker offers.
FRAME_MAX = 131072
#: RabbitMQ's handshake_timeout: a connection must be open within this.
HANDSHAKE_TIMEOUT_S = 10.0
#: How long the broker waits for close-ok after its connection.close.
CLOSE_TIMEOUT_S = 3.0
#: The longest the broker waits for a client to close its socket after close-ok
#: (RabbitMQ's ``CLOSING_TIMEOUT``; a shorter heartbeat timeout shortens it).
CLOSE_OK_WAIT_S = 30.0
#: How often heartbeats and timeouts are looked at (they are whole seconds).
CHECK_INTERVAL_S = 0.25
PROTOCOL = "AMQP 0-9-1"
MECHANISMS = ("PLAIN", "AMQPLAIN")
#: RabbitMQ's capabilities, each true of zbroker.
CAPABILITIES = {
    "publisher_confirms": True, "exchange_exchange_bindings": True, "basic.nack": True,
    "consumer_cancel_notify": True, "connection.blocked": True, "consumer_priorities": True,
    "authentication_failure_close": True, "per_consumer_qos": True, "direct_reply_to": True,
}

#: _CLOSING: the broker sent connection.close and waits for close-ok; _CLOSE_WAIT: it sent
#: close-ok and waits for the client to close the socket (rule 8); _CLOSED: done.
_HEADER, _START_OK, _TUNE_OK, _OPEN, _RUNNING, _CLOSING, _CLOSE_WAIT, _CLOSED = range(8)
_PUBLISH = int(M.BASIC_PUBLISH)
_DELIVER = int(M.BASIC_DELIVER)
_BLOCKED, _UNBLOCKED = int(M.CONNECTION_BLOCKED), int(M.CONNECTION_UNBLOCKED)
_CONNECTION_CLOSE, _CONNECTION_CLOSE_OK = int(M.CONNECTION_CLOSE), int(M.CONNECTION_CLOSE_OK)
_CANCEL = int(M.BASIC_CANCEL)
_UPDATE_SECRET = int(M.CONNECTION_UPDATE_SECRET)
_PUBLISH_CREDIT = int(M.PUBLISH_CREDIT)
_CHANNEL_OPEN = int(M.CHANNEL_OPEN)


@dataclass
class Content:
    """A publish being assembled on one channel (rule 3)."""

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
        self.state = _HEADER
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
        self.paused = False  # rule 6
        self.resume = False  # unpaused by the core's events: apply what waits in ``inbuf``
        self.username = ""
        self.mechanism = ""
        self.client_properties: dict = {}
        self.capabilities: dict = {}
        self.content: dict[int, Content] = {}
        self.core: Any = None  # the core's Connection, once open

    def send(self, data: Any) -> None:
        self.out.append(data)
        self.wire.writing.add(self.key)

    def close_soon(self) -> None:
        """The listener closes the socket once what is queued for it is written."""
        self.close_now = True
        self.wire.closing.add(self.key)
        self.wire.read_version += 1

    def pause(self, paused: bool) -> None:
        self.paused = paused
        self.wire.read_version += 1


class AmqpWire:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.connections: dict[int, AmqpConnection] = {}
        #: What the listener looks at each pass, kept here so that a pass costs what the
        #: active connections cost, not all of them: connections with bytes to write, those
        #: whose socket is to be closed, and a counter bumped whenever which sockets are
        #: read changes (a pause, a close).
        self.writing: set[int] = set()
        self.closing: set[int] = set()
        self.read_version = 0
        self._next_key = 1
        self._next_check = 0.0

    # -- from the listener ---------------------------------------------------------------

    def accept(self, peer_host: str, peer_port: int, now: float, listener: str = "", tls: bool = False) -> int:
        """A TCP connection came to ``listener`` (``host:port``; over TLS when ``tls``)."""
        key = self._next_key
        self._next_key += 1
        self.connections[key] = AmqpConnection(key, peer_host, peer_port, now, self, listener, tls)
        self.read_version += 1
        return key

    def data_received(self, key: int, data: bytes, now: float) -> None:
        conn = self.connections.get(key)
        if conn is None or conn.state >= _CLOSE_WAIT:
            return
        conn.last_recv = now
        conn.inbuf += data
        if not conn.paused:
            self._process(conn, now)

    def reading(self, key: int) -> bool:
        """Whether the listener should read the socket now (rule 6)."""
        conn = self.connections.get(key)
        return conn is not None and not conn.paused and conn.state != _CLOSED

    def connection_lost(self, key: int, now: float, reason: str = "connection closed by peer") -> None:
        """The socket is gone: release what the core held for it."""
        conn = self.connections.pop(key, None)
        self.writing.discard(key)
        self.closing.discard(key)
        self.read_version += 1
        if conn is None:
            return
        if conn.state in (_RUNNING, _CLOSING) and key in self.broker.connections:
            self.broker.connection_lost(key, now, reason)
        elif conn.state < _CLOSING:
            log.info("AMQP connection from %s:%d closed during the handshake", conn.peer_host, conn.peer_port)

    def take_output(self, listener: str) -> dict[int, list[Any]]:
        """Buffers to write per connection of ``listener`` (encode the core's events first)."""
        out = {}
        connections = self.connections
        taken = []
        for key in self.writing:
            conn = connections.get(key)
            if conn is None:
                taken.append(key)
            elif conn.listener == listener:
                taken.append(key)
                if conn.out:
                    out[key] = conn.out
                    conn.out = []
        self.writing.difference_update(taken)
        return out

    def should_close(self, key: int) -> bool:
        conn = self.connections.get(key)
        return conn is None or conn.close_now

    def take_closing(self, listener: str) -> list[int]:
        """Connections of ``listener`` whose socket should close once written (asked again
        until it is)."""
        connections = self.connections
        return [key for key in self.closing if key in connections and connections[key].listener == listener]

    # -- timers ---------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Heartbeats out, silent peers and stuck handshakes or closes gone (rule 7)."""
        if now < self._next_check:
            return
        self._next_check = now + CHECK_INTERVAL_S
        for conn in list(self.connections.values()):
            if conn.state == _CLOSED:
                continue
            if conn.state == _CLOSING or conn.state == _CLOSE_WAIT:
                if now >= conn.close_by:
                    conn.state = _CLOSED
                    conn.close_soon()
                continue
            if conn.state != _RUNNING:
                if now - conn.opened_at > HANDSHAKE_TIMEOUT_S:
                    log.warning("AMQP connection from %s:%d: handshake not done in %.0f s, closed",
                                conn.peer_host, conn.peer_port, HANDSHAKE_TIMEOUT_S)
                    conn.state = _CLOSED
                    conn.close_soon()
                continue
            beat = conn.heartbeat
            if not beat:
                continue
            if now - conn.last_send >= beat / 2:
                conn.send(codec.HEARTBEAT)
                conn.last_send = now
            if not conn.paused and now - conn.last_recv > 2 * beat:
                log.warning("connection %s: missed heartbeats from client, timeout: %ds", key_name(conn), beat)
                conn.state = _CLOSED
                conn.close_soon()
                self.broker.connection_lost(conn.key, now, "missed heartbeats")

    def next_deadline(self) -> float | None:
        return self._next_check if self.connections else None

    # -- input ---------------------------------------------------------------------------

    def _process(self, conn: AmqpConnection, now: float) -> None:
        buf = conn.inbuf
        pos = 0
        try:
            if conn.state == _HEADER:
                if len(buf) < 8:
                    return
                self._protocol_header(conn, bytes(buf[:8]))
                pos = 8
            while conn.state not in (_CLOSED, _HEADER) and not conn.paused:
                cut = codec.next_frame(buf, pos, conn.frame_max)
                if cut is None:
                    break
                kind, channel, start, end = cut
                if not self._frame(conn, kind, channel, buf, start, end, now):
                    break  # paused at a publish: the frame stays in the buffer
                pos = end + 1
        except FrameError as exc:
            self._fail(conn, exc.code, exc.detail, now)
        except Exception:  # a bug: that connection goes, the broker goes on
            log.exception("internal error handling input from connection %s", key_name(conn))
            self._fail(conn, errors.INTERNAL_ERROR, "internal error", now)
        finally:
            if conn.state == _CLOSED:
                conn.inbuf = bytearray()
            elif pos:
                del buf[:pos]
            self.broker.after_input()

    def _protocol_header(self, conn: AmqpConnection, header: bytes) -> None:
        if header != codec.PROTOCOL_HEADER:
            log.warning("connection from %s:%d: bad protocol header %r", conn.peer_host, conn.peer_port, header)
            conn.send(codec.PROTOCOL_HEADER)
            conn.state = _CLOSED
            conn.close_soon()
            return
        properties = {"product": "zbroker", "version": __version__,
                      "platform": f"Python {platform.python_version()}",
                      "cluster_name": self.broker.node_name, "capabilities": CAPABILITIES,
                      "copyright": "zbroker contributors", "information": "Licensed under the MIT License"}
        self._send_method(conn, 0, C.Connection.Start, 0, 9, properties, " ".join(MECHANISMS), "en_US")
        conn.state = _START_OK

    def _frame(self, conn: AmqpConnection, kind: int, channel: int, buf: bytearray,
               start: int, end: int, now: float) -> bool:
        """Apply one frame; False when it must wait (rule 6)."""
        if kind == FRAME_METHOD:
            payload = bytes(buf[start:end])
            if channel and conn.state == _RUNNING:
                fast = methods.fast_command(channel, payload)
                if fast is not None:
                    return self._channel_command(conn, fast[0], fast[1:], None, now)
            method = codec.decode_method(payload)
            if channel == 0:
                self._connection_method(conn, method, now)
                return True
            if conn.state == _CLOSING:
                return True
            if conn.state != _RUNNING:
                raise FrameError(errors.COMMAND_INVALID, f"{method.name} before connection.open-ok")
            spec, fields = methods.to_command(channel, method)
            nowait_ok = spec.nowait_ok if spec.silent or getattr(method, "nowait", False) else None
            return self._channel_command(conn, spec.method, fields, nowait_ok, now)
        if kind == FRAME_HEARTBEAT:
            if channel != 0:
                raise FrameError(errors.UNEXPECTED_FRAME, f"type {kind}, all octets = {codec.octets(buf[start:end])}")
            return True
        if conn.state == _CLOSING:
            return True
        if conn.core is not None and conn.core.publish_blocked:
            conn.pause(True)  # rule 6: a blocked connection's content waits too
            return False
        if kind == FRAME_HEADER:
            self._content_header(conn, channel, bytes(buf[start:end]), now)
        elif kind == FRAME_BODY:
            self._content_body(conn, channel, buf, start, end, now)
        else:
            raise FrameError(errors.FRAME_ERROR, f"type {kind}, all octets = {codec.octets(buf[start:end])}: "
                                                 "unknown_frame")
        return True

    def _connection_method(self, conn: AmqpConnection, method: Any, now: float) -> None:
        state = conn.state
        if isinstance(method, C.Connection.CloseOk):
            if state == _CLOSING:
                conn.state = _CLOSED
                conn.close_soon()
            return
        if state == _CLOSING:
            if isinstance(method, C.Connection.Close):  # both sides closed at once
                self._send_method(conn, 0, C.Connection.CloseOk)
                conn.state = _CLOSED
                conn.close_soon()
            return
        if state == _START_OK and isinstance(method, C.Connection.StartOk):
            self._start_ok(conn, method, now)
        elif state == _TUNE_OK and isinstance(method, C.Connection.TuneOk):
            self._tune_ok(conn, method)
        elif state == _OPEN and isinstance(method, C.Connection.Open):
            self._open(conn, method, now)
        elif state == _RUNNING and isinstance(method, C.Connection.Close):
            self._command(conn, _CONNECTION_CLOSE, [method.reply_code, method.reply_text], None, now)
        elif state == _RUNNING and isinstance(method, C.Connection.UpdateSecret):
            secret = method.new_secret
            self._command(conn, _UPDATE_SECRET, [secret.decode(errors="replace") if isinstance(secret, bytes)
                                                 else str(secret), str(method.reason)], None, now)
        else:
            raise FrameError(errors.COMMAND_INVALID, f"unexpected {method.name} on channel 0")

    def _start_ok(self, conn: AmqpConnection, method: Any, now: float) -> None:
        conn.client_properties = codec.plain_table(method.client_properties or {}, "client_properties")
        capabilities = conn.client_properties.get("capabilities")
        conn.capabilities = capabilities if isinstance(capabilities, dict) else {}
        conn.mechanism = method.mechanism
        response = method.response
        if isinstance(response, str):
            response = response.encode()
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
        refusal = self.broker.users.login(conn.username, text, conn.peer_host, now, conn.mechanism)
        if refusal is not None:
            self._refuse_login(conn, refusal)
            return
        self._send_method(conn, 0, C.Connection.Tune, self.broker.limits.channel_max, FRAME_MAX,
                          self.broker.heartbeat)
        conn.state = _TUNE_OK

    def _refuse_login(self, conn: AmqpConnection, why: str) -> None:
        """(The core logged why.)"""
        if conn.capabilities.get("authentication_failure_close"):
            text = errors.reply_text(errors.ACCESS_REFUSED, LOGIN_REFUSED.format(conn.mechanism))
            self._send_method(conn, 0, C.Connection.Close, errors.ACCESS_REFUSED, text, 0, 0)
        conn.state = _CLOSED
        conn.close_soon()

    def _tune_ok(self, conn: AmqpConnection, method: Any) -> None:
        frame_max = method.frame_max or FRAME_MAX
        if frame_max < codec.FRAME_MIN_SIZE:
            raise FrameError(errors.NOT_ALLOWED, f"frame_max={frame_max} < {codec.FRAME_MIN_SIZE} min size")
        if frame_max > FRAME_MAX:
            raise FrameError(errors.NOT_ALLOWED, f"frame_max={frame_max} > {FRAME_MAX} max size")
        offered = self.broker.limits.channel_max
        conn.channel_max = min(method.channel_max or offered, offered)
        conn.frame_max = frame_max
        conn.heartbeat = method.heartbeat
        conn.state = _OPEN

    def _open(self, conn: AmqpConnection, method: Any, now: float) -> None:
        core = self.broker.open_connection(conn.key, now, conn.heartbeat, method.virtual_host,
                                           conn.username, None, conn.client_properties,
                                           DELIVERY_WINDOW, conn.peer_host, conn.mechanism)
        if core is None:  # refused (vhost, connection limit): the core queued the close
            conn.state = _RUNNING
            return
        core.protocol = PROTOCOL
        core.peer = conn.peer_host
        core.peer_port = conn.peer_port
        core.frame_max = conn.frame_max
        core.auth_mechanism = conn.mechanism
        conn.core = core
        core.listener = conn.listener
        core.ssl = conn.tls
        conn.state = _RUNNING
        self._send_method(conn, 0, C.Connection.OpenOk, "")

    def _channel_command(self, conn: AmqpConnection, op: int, fields: list[Any], nowait_ok: int | None,
                         now: float) -> bool:
        """A channel method, decoded; False when a publish must wait (rule 6)."""
        channel = fields[0]
        if channel in conn.content:
            raise FrameError(errors.UNEXPECTED_FRAME, "expected content header for class 60, got "
                                                      "non content header frame instead")
        if op == _PUBLISH:
            core = conn.core
            if core is not None and core.publish_blocked:
                conn.pause(True)  # rule 6: this publish waits in the buffer
                return False
            if len(fields) == 4:
                fields.append({})  # the properties, from the content header
            conn.content[channel] = Content(fields)
            return True
        if op == _CHANNEL_OPEN and channel > conn.channel_max:
            raise FrameError(errors.CHANNEL_ERROR, f"channel {channel} is above the negotiated "
                                                   f"channel_max ({conn.channel_max})")
        self._command(conn, op, fields, None, now, nowait_ok)
        return True

    def _content_header(self, conn: AmqpConnection, channel: int, payload: bytes, now: float) -> None:
        content = conn.content.get(channel)
        if content is None or content.size >= 0:
            raise FrameError(errors.UNEXPECTED_FRAME, "expected method frame, got non method frame instead")
        size, properties = codec.decode_header(payload)
        content.size = size
        content.fields[4] = properties
        if size > self.broker.max_body_bytes:
            self.broker.channel_error(conn.core, channel, errors.PRECONDITION_FAILED,
                                      f"message size {size} is larger than configured max size "
                                      f"{self.broker.max_body_bytes}")
            content.skip = True
        if size == 0:
            del conn.content[channel]
            if not content.skip:
                self._command(conn, _PUBLISH, content.fields, b"", now)

    def _content_body(self, conn: AmqpConnection, channel: int, buf: bytearray, start: int,
                      end: int, now: float) -> None:
        content = conn.content.get(channel)
        if content is None or content.size < 0:
            raise FrameError(errors.UNEXPECTED_FRAME, "expected method frame, got non method frame instead")
        content.got += end - start
        if content.got > content.size:
            raise FrameError(errors.FRAME_ERROR, f"content body of {content.got} bytes on channel {channel}, "
                                                 f"more than the {content.size} announced")
        if not content.skip:
            content.parts.append(bytes(buf[start:end]))
        if content.got == content.size:
            del conn.content[channel]
            if not content.skip:
                parts = content.parts
                body = parts[0] if len(parts) == 1 else b"".join(parts)
                self._command(conn, _PUBLISH, content.fields, body, now)

    def _command(self, conn: AmqpConnection, op: int, fields: list[Any], body: Any, now: float,
                 drop_ok: int | None = None) -> None:
        broker = self.broker
        core = broker.connections.get(conn.key)
        if core is None:
            return  # closed by the broker; its close is on the way
        if drop_ok is None:
            broker.command(core, op, fields, body, now)
        else:
            pending = broker.outbox.pending.get(conn.key)
            mark = len(pending) if pending is not None else 0
            broker.command(core, op, fields, body, now)
            _drop_first(broker.outbox.pending.get(conn.key), mark, drop_ok, fields[0])
        if conn.key not in broker.connections:  # the broker closed it: only close-ok counts now
            self._closing(conn, now)

    def _closing(self, conn: AmqpConnection, now: float) -> None:
        if conn.state < _CLOSE_WAIT:
            conn.state = _CLOSING
            conn.close_by = now + CLOSE_TIMEOUT_S
            conn.content.clear()

    def _fail(self, conn: AmqpConnection, code: int, detail: str, now: float) -> None:
        """Rule 8: the peer broke the protocol; nothing more it sent is applied."""
        conn.inbuf = bytearray()
        conn.content.clear()
        if conn.state >= _CLOSING:
            return  # its close is on the way; what it sends meanwhile is not worth a log line
        log.warning("connection %s closed: %s", key_name(conn), errors.reply_text(code, detail))
        running = conn.key in self.broker.connections
        self._closing(conn, now)
        if running:
            self.broker.close_connection(conn.key, code, detail)  # its close goes out with the events
        else:
            text = methods.reply_text(errors.reply_text(code, detail))
            self._send_method(conn, 0, C.Connection.Close, code, text, 0, 0)

    # -- output ----------------------------------------------------------------------------

    def _send_method(self, conn: AmqpConnection, channel: int, cls: type, *args: Any) -> None:
        conn.send(codec.method_frame(channel, cls, *args))

    def encode(self, pending: dict[Any, list[Any]], now: float) -> None:
        """Encode the core's events for AMQP connections into their output buffers.

        A failure to encode is a bug: logged, and that one connection is dropped."""
        resumed = []
        for key, parts in pending.items():
            conn = self.connections.get(key)
            if conn is None or conn.state >= _CLOSE_WAIT:
                continue
            try:
                self._encode(conn, parts, now)
            except Exception:
                log.exception("internal error encoding for connection %s", key_name(conn))
                conn.state = _CLOSED
                conn.close_soon()
                self.broker.connection_lost(key, now, "internal error")
                continue
            if conn.resume:
                conn.resume = False
                resumed.append(conn)
        for conn in resumed:
            self._process(conn, now)

    def _encode(self, conn: AmqpConnection, parts: list[Any], now: float) -> None:
        out = conn.out
        frame_max = conn.frame_max
        i, n = 0, len(parts)
        while i < n:
            event = parts[i]
            i += 1
            op = event[0]
            if op == _DELIVER:
                out.extend(codec.content_frames(event[1], codec.deliver_frame(*event[1:7]), event[7],
                                                parts[i], frame_max))
                i += 1
                continue
            if op in BODY_METHODS:
                body = parts[i]
                i += 1
                cls, args = methods.OUTBOUND[op]
                out.extend(codec.content_frames(event[1], codec.method_frame(event[1], cls, *args(event)),
                                                event[methods.PROPERTIES_AT[op]], body, frame_max))
                continue
            if op == _BLOCKED or op == _UNBLOCKED:
                if op == _UNBLOCKED and conn.paused:
                    conn.pause(False)
                    conn.resume = True
                if not conn.capabilities.get("connection.blocked"):
                    continue
            elif op == _CANCEL and not conn.capabilities.get("consumer_cancel_notify"):
                continue
            elif op == _PUBLISH_CREDIT:
                continue
            elif op == _CONNECTION_CLOSE:
                self._closing(conn, now)
            elif op == _CONNECTION_CLOSE_OK:  # rule 8: the client closes the socket
                conn.state = _CLOSE_WAIT
                wait = conn.heartbeat or CLOSE_OK_WAIT_S
                conn.close_by = now + min(wait, CLOSE_OK_WAIT_S)
            channel = event[1] if op >= _CHANNEL_OPEN else 0
            cls, args = methods.OUTBOUND[op]
            out.append(codec.method_frame(channel, cls, *args(event)))
        conn.last_send = now
        if out:
            self.writing.add(conn.key)


def _drop_first(parts: list[Any] | None, start: int, op: int, channel: int) -> None:
    """Remove the first ``op`` event for ``channel`` queued from ``start`` on (rule 4)."""
    if not parts:
        return
    for i in range(start, len(parts)):
        part = parts[i]
        if type(part) is tuple and part[0] == op and part[1] == channel:
            del parts[i]
            return


def key_name(conn: AmqpConnection) -> str:
    return f"{conn.peer_host}:{conn.peer_port}"
