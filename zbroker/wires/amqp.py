"""The AMQP 0-9-1 wire: bytes from TCP connections <-> the core's commands and events.

Pure, as the zbroker wire is: the listener (``zbroker/listener.py``) hands it the bytes
each socket received and writes the buffers it returns; ``now`` comes with every call.
A connection is known to the core only once its handshake is done; its id is the key
``accept`` gives the listener for the socket (an int, ``CONN_ID``: it never collides with
a ZeroMQ routing id, and the server hands this wire its connections' events by it).

Rules (AMQP 0-9-1 and RabbitMQ's behaviour):
1. Handshake (``amqp_handshake.py``): protocol header, start/start-ok, tune/tune-ok,
   open/open-ok within ``HANDSHAKE_TIMEOUT_S``, logins checked against the broker's users.
2. Each connection's state (``amqp_connection.py``: ``State``, ``TRANSITIONS``) only
   moves forward; once the core knows it (RUNNING), its channel frames become core
   commands. A move the table does not allow is a bug: logged, and that connection is
   dropped (its socket closed, the core told), as for any bug in encoding its events.
3. A publish is assembled from its method, content header and body frames before the
   core sees it, so the core gets one command with the whole body. Any other frame on
   that channel in between is 505 UNEXPECTED_FRAME. A header announcing more than the
   broker's largest body closes the channel (406) and its body frames are skipped.
4. ``nowait``: a method with its no-wait bit set goes to the core as a ``nowait``
   command, whose ``-ok`` the core leaves out (errors still close the channel).
5. Deliveries are held to the zbroker wire's 4 MiB delivery window (``credit.py``): the
   listener tells the wire (``output_pending``) how many bytes still wait for the
   socket; below ``WRITE_LOW_BYTES`` the window is reported read to the core, so a peer
   that stops reading costs one window, however many publishes a loop pass applies. While
   more than ``WRITE_HIGH_BYTES`` wait, the core stops delivering to that connection
   (``set_pipe_full``, as for a full ZeroMQ pipe); below ``WRITE_LOW_BYTES`` it resumes.
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
10. A frame is read where it lies: in the bytes the listener read, when it is whole
   there (a body is then copied once, out of them); only a frame cut by the end of a read,
   and what waits behind a pause (rule 6), are kept in ``inbuf``, and what a cut frame
   lacks is taken from the next read before the rest of it is read where it lies.
"""
from __future__ import annotations

import logging
from typing import Any, ClassVar

from pamqp import commands as C

from zbroker import errors
from zbroker.protocol import amqp_codec as codec, amqp_methods as methods
from zbroker.protocol.amqp_codec import FRAME_BODY, FRAME_HEADER, FRAME_HEARTBEAT, FRAME_METHOD, FrameError
from zbroker.core import Broker
from zbroker.methods import BODY_METHODS, FIELDS, Method as M
from zbroker.wires import amqp_handshake as handshake
from zbroker.wires.amqp_connection import (CLOSE_TIMEOUT_S, CLOSE_WAIT, CLOSED, CLOSING, HEADER, RUNNING,
                                           AmqpConnection, Content, IllegalTransition)
from zbroker.wires.amqp_handshake import HANDSHAKE_TIMEOUT_S

log = logging.getLogger(__name__)

#: The longest the broker waits for a client to close its socket after close-ok
#: (RabbitMQ's ``CLOSING_TIMEOUT``; a shorter heartbeat timeout shortens it).
CLOSE_OK_WAIT_S = 30.0
#: How often heartbeats and timeouts are looked at (they are whole seconds).
CHECK_INTERVAL_S = 0.25
#: Bytes waiting for a socket above which the core stops delivering to it (rule 5),
#: and below which it resumes and the delivery window counts as read.
WRITE_HIGH_BYTES = 4 * 1024 * 1024
WRITE_LOW_BYTES = 1024 * 1024
_PUBLISH = int(M.BASIC_PUBLISH)
_DELIVER = int(M.BASIC_DELIVER)
_BLOCKED, _UNBLOCKED = int(M.CONNECTION_BLOCKED), int(M.CONNECTION_UNBLOCKED)
_CONNECTION_CLOSE, _CONNECTION_CLOSE_OK = int(M.CONNECTION_CLOSE), int(M.CONNECTION_CLOSE_OK)
_CANCEL = int(M.BASIC_CANCEL)
_UPDATE_SECRET = int(M.CONNECTION_UPDATE_SECRET)
_CHANNEL_OPEN = int(M.CHANNEL_OPEN)
#: A channel event's channel: the first field after the method number (``methods.py``).
_CHANNEL = 1
#: basic.deliver's properties: the fields before them are ``codec.deliver_frame``'s.
_DELIVER_PROPERTIES = methods.PROPERTIES_AT[M.BASIC_DELIVER]
#: A publish command's properties (the command's fields open with the channel).
_PUBLISH_PROPERTIES = FIELDS[M.BASIC_PUBLISH].index("properties")


def _octets(buf: bytes | bytearray, start: int, end: int) -> bytes:
    """A frame's payload as bytes: one copy out of a read, two out of ``inbuf``."""
    payload = buf[start:end]
    return payload if type(payload) is bytes else bytes(payload)


class AmqpWire:
    #: The type of this wire's connection ids (the listener's keys for its sockets): how
    #: the server tells which wire a connection's events are for.
    CONN_ID: ClassVar[type] = int

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
        """Bytes read from ``key``'s socket (rule 10: frames are read from them where they
        lie; only a frame cut by the end of a read waits in ``inbuf``)."""
        conn = self.connections.get(key)
        if conn is None or conn.state >= CLOSE_WAIT:
            return
        conn.last_recv = now
        if conn.paused or conn.state == HEADER:
            conn.inbuf += data
            if not conn.paused:
                self._process(conn, now)
            return
        start = 0
        if conn.inbuf:  # the end of the frame the last read cut, then the rest as it lies
            start = codec.missing_octets(conn.inbuf, data)
            conn.inbuf += data[:start] if start < len(data) else data
            if not self._process(conn, now):
                return  # rule 8: nothing more of this read is applied
            if conn.inbuf or conn.paused or conn.state == CLOSED:
                if start < len(data) and conn.state != CLOSED:
                    conn.inbuf += data[start:]  # it waits behind a pause
                return
        if start < len(data):
            self._process(conn, now, data, start)

    def reading(self, key: int) -> bool:
        """Whether the listener should read the socket now (rule 6)."""
        conn = self.connections.get(key)
        return conn is not None and not conn.paused and conn.state != CLOSED

    def connection_lost(self, key: int, now: float, reason: str = "connection closed by peer") -> None:
        """The socket is gone: release what the core held for it."""
        conn = self.connections.pop(key, None)
        self.writing.discard(key)
        self.closing.discard(key)
        self.read_version += 1
        if conn is None:
            return
        if conn.state in (RUNNING, CLOSING) and key in self.broker.connections:
            self.broker.connection_lost(key, now, reason)
        elif conn.state < CLOSING:
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
            try:
                self._check(conn, now)
            except IllegalTransition:
                log.exception("internal error timing connection %s", conn.name)
                self._drop(conn, now)

    def _check(self, conn: AmqpConnection, now: float) -> None:
        """One connection's timers (rule 7, and the handshake's and close's bounds)."""
        state = conn.state
        if state == CLOSED:
            return
        if state == CLOSING or state == CLOSE_WAIT:
            if now >= conn.close_by:
                conn.close_soon()
            return
        if state != RUNNING:
            if now - conn.opened_at > HANDSHAKE_TIMEOUT_S:
                log.warning("AMQP connection from %s:%d: handshake not done in %.0f s, closed",
                            conn.peer_host, conn.peer_port, HANDSHAKE_TIMEOUT_S)
                conn.close_soon()
            return
        beat = conn.heartbeat
        if not beat:
            return
        if now - conn.last_send >= beat / 2:
            conn.send(codec.HEARTBEAT)
            conn.last_send = now
        if not conn.paused and now - conn.last_recv > 2 * beat:
            log.warning("connection %s: missed heartbeats from client, timeout: %ds", conn.name, beat)
            conn.close_soon()
            self.broker.connection_lost(conn.key, now, "missed heartbeats")

    def next_deadline(self) -> float | None:
        return self._next_check if self.connections else None

    # -- input ---------------------------------------------------------------------------

    def _process(self, conn: AmqpConnection, now: float, data: bytes | None = None, pos: int = 0) -> bool:
        """Apply the frames of ``conn.inbuf``, or of ``data`` from ``pos`` (a read whose
        frames need no copy into ``inbuf``: rule 10); whether the input was good."""
        buf: bytes | bytearray = conn.inbuf if data is None else data
        good = False
        try:
            if conn.state == HEADER:
                if len(buf) < 8:
                    return True
                handshake.protocol_header(self.broker, conn, bytes(buf[:8]))
                pos = 8
            while conn.state not in (CLOSED, HEADER) and not conn.paused:
                cut = codec.next_frame(buf, pos, conn.frame_max)
                if cut is None:
                    break
                kind, channel, start, end = cut
                if not self._frame(conn, kind, channel, buf, start, end, now):
                    break  # paused at a publish: the frame stays in the buffer
                pos = end + 1
            good = True
        except FrameError as exc:
            self._fail(conn, exc.code, exc.detail, now)
        except IllegalTransition:  # a bug in the wire's state machine: that connection goes
            log.exception("internal error handling input from connection %s", conn.name)
            self._drop(conn, now)
        except Exception:  # a bug: that connection goes, the broker goes on
            log.exception("internal error handling input from connection %s", conn.name)
            self._fail(conn, errors.INTERNAL_ERROR, "internal error", now)
        finally:
            if conn.state == CLOSED:
                conn.inbuf = bytearray()
            elif data is None:
                if pos and buf is conn.inbuf:  # (a failure has put a new, empty one in its place)
                    del conn.inbuf[:pos]
            elif good and pos < len(buf):
                conn.inbuf += buf[pos:]  # a cut frame, or what waits behind a pause
            self.broker.after_input()
        return good

    def _frame(self, conn: AmqpConnection, kind: int, channel: int, buf: bytes | bytearray,
               start: int, end: int, now: float) -> bool:
        """Apply one frame; False when it must wait (rule 6)."""
        if kind == FRAME_METHOD:
            payload = _octets(buf, start, end)
            if channel and conn.state == RUNNING:
                fast = methods.fast_command(channel, payload)
                if fast is not None:
                    return self._channel_command(conn, fast[0], fast[1:], False, now)
            method = codec.decode_method(payload)
            if channel == 0:
                self._connection_method(conn, method, now)
                return True
            if conn.state == CLOSING:
                return True
            if conn.state != RUNNING:
                raise FrameError(errors.COMMAND_INVALID, f"{method.name} before connection.open-ok")
            spec, fields, nowait = methods.to_command(channel, method)
            return self._channel_command(conn, spec.method, fields, nowait, now)
        if kind == FRAME_HEARTBEAT:
            if channel != 0:
                raise FrameError(errors.UNEXPECTED_FRAME, f"type {kind}, all octets = {codec.octets(buf[start:end])}")
            return True
        if conn.state == CLOSING:
            return True
        if conn.core is not None and conn.core.publish_blocked:
            conn.pause(True)  # rule 6: a blocked connection's content waits too
            return False
        if kind == FRAME_HEADER:
            self._content_header(conn, channel, _octets(buf, start, end), now)
        elif kind == FRAME_BODY:
            self._content_body(conn, channel, buf, start, end, now)
        else:
            raise FrameError(errors.FRAME_ERROR, f"type {kind}, all octets = {codec.octets(buf[start:end])}: "
                                                 "unknown_frame")
        return True

    def _connection_method(self, conn: AmqpConnection, method: Any, now: float) -> None:
        state = conn.state
        if isinstance(method, C.Connection.CloseOk):
            if state == CLOSING:
                conn.close_soon()
            return
        if state == CLOSING:
            if isinstance(method, C.Connection.Close):  # both sides closed at once
                conn.send_method(0, C.Connection.CloseOk)
                conn.close_soon()
            return
        step = handshake.STEPS.get(state)
        if step is not None and isinstance(method, step[0]):
            step[1](self.broker, conn, method, now)
        elif state == RUNNING and isinstance(method, C.Connection.Close):
            self._command(conn, _CONNECTION_CLOSE, [method.reply_code, method.reply_text], None, now)
        elif state == RUNNING and isinstance(method, C.Connection.UpdateSecret):
            secret = method.new_secret
            self._command(conn, _UPDATE_SECRET, [secret.decode(errors="replace") if isinstance(secret, bytes)
                                                 else str(secret), str(method.reason)], None, now)
        else:
            raise FrameError(errors.COMMAND_INVALID, f"unexpected {method.name} on channel 0")

    def _channel_command(self, conn: AmqpConnection, op: int, fields: list[Any], nowait: bool,
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
            conn.content[channel] = Content(fields)  # its properties come with the content header
            return True
        if op == _CHANNEL_OPEN and channel > conn.channel_max:
            raise FrameError(errors.CHANNEL_ERROR, f"channel {channel} is above the negotiated "
                                                   f"channel_max ({conn.channel_max})")
        self._command(conn, op, fields, None, now, nowait)
        return True

    def _content_header(self, conn: AmqpConnection, channel: int, payload: bytes, now: float) -> None:
        content = conn.content.get(channel)
        if content is None or content.size >= 0:
            raise FrameError(errors.UNEXPECTED_FRAME, "expected method frame, got non method frame instead")
        size, properties = codec.decode_header(payload)
        content.size = size
        content.fields[_PUBLISH_PROPERTIES] = properties
        if size > self.broker.max_body_bytes:
            self.broker.channel_error(conn.core, channel, errors.PRECONDITION_FAILED,
                                      f"message size {size} is larger than configured max size "
                                      f"{self.broker.max_body_bytes}")
            content.skip = True
        if size == 0:
            del conn.content[channel]
            if not content.skip:
                self._command(conn, _PUBLISH, content.fields, b"", now)

    def _content_body(self, conn: AmqpConnection, channel: int, buf: bytes | bytearray, start: int,
                      end: int, now: float) -> None:
        content = conn.content.get(channel)
        if content is None or content.size < 0:
            raise FrameError(errors.UNEXPECTED_FRAME, "expected method frame, got non method frame instead")
        content.got += end - start
        if content.got > content.size:
            raise FrameError(errors.FRAME_ERROR, f"content body of {content.got} bytes on channel {channel}, "
                                                 f"more than the {content.size} announced")
        if not content.skip:
            content.parts.append(_octets(buf, start, end))
        if content.got == content.size:
            del conn.content[channel]
            if not content.skip:
                parts = content.parts
                body = parts[0] if len(parts) == 1 else b"".join(parts)
                self._command(conn, _PUBLISH, content.fields, body, now)

    def _command(self, conn: AmqpConnection, op: int, fields: list[Any], body: Any, now: float,
                 nowait: bool = False) -> None:
        broker = self.broker
        core = broker.connections.get(conn.key)
        if core is None:
            return  # closed by the broker; its close is on the way
        broker.command(core, op, fields, body, now, nowait)
        if conn.key not in broker.connections:  # the broker closed it: only close-ok counts now
            self._closing(conn, now)

    def _closing(self, conn: AmqpConnection, now: float) -> None:
        if conn.state < CLOSE_WAIT:
            conn.move(CLOSING)
            conn.close_by = now + CLOSE_TIMEOUT_S
            conn.content.clear()

    def _fail(self, conn: AmqpConnection, code: int, detail: str, now: float) -> None:
        """Rule 8: the peer broke the protocol; nothing more it sent is applied."""
        conn.inbuf = bytearray()
        conn.content.clear()
        if conn.state >= CLOSING:
            return  # its close is on the way; what it sends meanwhile is not worth a log line
        log.warning("connection %s closed: %s", conn.name, errors.reply_text(code, detail))
        running = conn.key in self.broker.connections
        self._closing(conn, now)
        if running:
            self.broker.close_connection(conn.key, code, detail)  # its close goes out with the events
        else:
            text = methods.reply_text(errors.reply_text(code, detail))
            conn.send_method(0, C.Connection.Close, code, text, 0, 0)

    def _drop(self, conn: AmqpConnection, now: float, reason: str = "internal error") -> None:
        """A bug in the wire for this connection (logged by the caller): it goes at once,
        its socket closed and the core told; every other connection goes on."""
        conn.inbuf = bytearray()
        conn.content.clear()
        conn.close_soon()  # (CLOSED may follow any state)
        if conn.key in self.broker.connections:
            self.broker.connection_lost(conn.key, now, reason)

    # -- output ----------------------------------------------------------------------------

    def encode(self, pending: dict[Any, list[Any]], now: float) -> None:
        """Encode the core's events for this wire's connections (the server hands each
        wire its own) into their output buffers.

        A failure to encode is a bug: logged, and that one connection is dropped."""
        resumed = []
        for key, parts in pending.items():
            conn = self.connections.get(key)
            if conn is None or conn.state >= CLOSE_WAIT:
                continue
            try:
                self._encode(conn, parts, now)
            except Exception:
                log.exception("internal error encoding for connection %s", conn.name)
                self._drop(conn, now)
                continue
            if conn.resume:
                conn.resume = False
                resumed.append(conn)
        for conn in resumed:
            self._process(conn, now)

    def _encode(self, conn: AmqpConnection, parts: list[Any], now: float) -> None:
        out = conn.out
        frame_max = conn.frame_max
        ch, props = _CHANNEL, _DELIVER_PROPERTIES  # (locals: the per-delivery path)
        i, n = 0, len(parts)
        while i < n:
            event = parts[i]
            i += 1
            op = event[0]
            if op == _DELIVER:
                out.extend(codec.content_frames(event[ch], codec.deliver_frame(*event[ch:props]), event[props],
                                                parts[i], frame_max))
                i += 1
                continue
            if op in BODY_METHODS:
                body = parts[i]
                i += 1
                cls, args = methods.OUTBOUND[op]
                out.extend(codec.content_frames(event[ch], codec.method_frame(event[ch], cls, *args(event)),
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
            elif op == _CONNECTION_CLOSE:
                self._closing(conn, now)
            elif op == _CONNECTION_CLOSE_OK:  # rule 8: the client closes the socket
                conn.move(CLOSE_WAIT)
                wait = conn.heartbeat or CLOSE_OK_WAIT_S
                conn.close_by = now + min(wait, CLOSE_OK_WAIT_S)
            channel = event[ch] if op >= _CHANNEL_OPEN else 0
            cls, args = methods.OUTBOUND[op]
            out.append(codec.method_frame(channel, cls, *args(event)))
        conn.last_send = now
        if out:
            self.writing.add(conn.key)

    def output_pending(self, key: int, nbytes: int) -> None:
        """The listener wrote what the socket took of ``key``'s output: ``nbytes`` still
        wait. Rule 5: what the core may deliver to it next."""
        conn = self.connections.get(key)
        if conn is None:
            return
        broker = self.broker
        if nbytes < WRITE_LOW_BYTES:
            core = broker.connections.get(key)
            if core is not None and core.unread:
                broker.deliveries_read(key, core.unread)  # its delivery window is written
            if conn.write_full:
                conn.write_full = False
                broker.set_pipe_full(key, False)
        elif nbytes > WRITE_HIGH_BYTES and not conn.write_full:
            conn.write_full = True
            broker.set_pipe_full(key, True)
