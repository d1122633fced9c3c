"""``BlockingConnection``: pika's blocking connection, on one ZeroMQ DEALER socket.

How it works:
- The user's thread owns the socket. Every blocking call (a synchronous channel method,
  ``process_data_events``, ``sleep``, ``start_consuming``, ``consume``) pumps the socket:
  replies complete the call, deliveries and returns are queued as events.
- Callbacks run only inside ``process_data_events``, ``sleep``, ``start_consuming`` and
  ``consume``, never inside other calls, as in pika.
- Liveness is ZeroMQ's ZMTP heartbeat, run by libzmq's I/O thread: a callback that
  blocks the user's thread for ten minutes does not lose the connection. A socket
  monitor reports the transport dropping, which becomes ``StreamLostError`` at once.
- ``add_callback_threadsafe`` is the only method other threads may call: it queues the
  callback and wakes the socket wait of the thread that last waited on this connection
  (one wake-up a thread, not one a connection: ``wakeup.py``). When callbacks run:
  ``events.py``.
- Channels see the connection only through ``link`` (a ``ChannelLink``, ``link.py``), and
  it sees them only as ``LinkedChannel``s.
- Flow control (``zbroker/wires/flow.py``): a publish waits, pumping the socket, while the
  connection has no publish credit or an alarm blocks it (``Connection.Blocked``); the
  deliveries read are reported so the broker's delivery window stays open.
"""
from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable

import zmq

from zbroker import __version__
from zbroker.client import exceptions, frame, spec
from zbroker.client.channel import BlockingChannel
from zbroker.client.connect_errors import handshake_failure, refused
from zbroker.client.events import Events
from zbroker.client.link import Link
from zbroker.client.wakeup import Wakeup, for_this_thread
from zbroker.client.parameters import ConnectionParameters
from zbroker.credit import DELIVERY_COST, message_cost
from zbroker.curve import secure_client
from zbroker.protocol import HEADER, PROTOCOL_VERSION, Op, ProtocolError, encode
from zbroker.client.stream_deliveries import stream_deliveries
from zbroker.protocol.native_codec import DELIVERY_OVERHEAD_BYTES, MAX_COMMAND_BYTES, V1_HEADER
from zbroker.protocol.native_packed import decode_frames, pack_command
from zbroker.transport import POLLIN, recv_batch, send_parts, wait_readable

if TYPE_CHECKING:
    from zbroker.client.link import LinkedChannel

log = logging.getLogger(__name__)

#: Heartbeat used for the transport when the program leaves it to the broker
#: (RabbitMQ's default; the broker's own pings also keep the connection checked).
DEFAULT_HEARTBEAT_S = 60
#: How long ``close()`` waits for the broker's goodbye before giving up on it.
CLOSE_TIMEOUT_S = 5.0
#: Largest pause in one socket wait; bounds how late a timer or stop flag is noticed.
MAX_WAIT_S = 1.0
#: Messages read per pump before callbacks get a turn: a flood cannot starve them.
READ_BATCH = 64
#: Broker messages libzmq may hold for this connection before the program reads them.
#: Past it libzmq stops reading the socket, the broker's pipe to us fills, and the broker
#: stops delivering to this connection (its "blocked peer" rule) until we catch up: a
#: program busy in a callback, or an auto-ack consumer of a long queue, holds a bounded
#: number of deliveries, not the queue.
RCVHWM = 32
#: Commands read per pump at most (a broker message may hold hundreds): with READ_BATCH
#: and RCVHWM, what a connection holds unread is a few broker messages, not the queue.
READ_COMMANDS = 1024
#: Publish credit when the broker keeps none: more than any program sends.
NO_CREDIT_LIMIT = 1 << 62
#: Undispatched events past which the client stops reporting deliveries read: a program
#: that does not keep up gets no more deliveries (the broker's delivery window closes).
HELD_EVENTS = 1024
_DELIVER = int(Op.BASIC_DELIVER)
_STREAM_DELIVER = int(Op.STREAM_DELIVER)
#: Methods numbered below this are connection-level (``zbroker/methods.py``).
_FIRST_CHANNEL_OP = int(Op.CHANNEL_OPEN)
_TRANSPORT_LOST = zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED
_HANDSHAKE_FAILED = (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
                     | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
_MONITORED = zmq.EVENT_CONNECTED | zmq.EVENT_CONNECT_RETRIED | _TRANSPORT_LOST | _HANDSHAKE_FAILED


#: Connection refusals that another attempt would only repeat.
PERMANENT = (exceptions.ProbableAuthenticationError, exceptions.ProbableAccessDeniedError,
             exceptions.IncompatibleProtocolError)


def _context() -> zmq.Context:
    # Context.instance() makes a new context in a forked child, so this is fork-safe.
    return zmq.Context.instance()


class BlockingConnection:
    def __init__(self, parameters: ConnectionParameters | Iterable[ConnectionParameters] | None = None,
                 _impl_class: Any = None) -> None:
        if parameters is None:
            candidates = [ConnectionParameters()]
        elif isinstance(parameters, ConnectionParameters):
            candidates = [parameters]
        else:
            candidates = list(parameters)
            if not candidates or not all(isinstance(p, ConnectionParameters) for p in candidates):
                raise TypeError("parameters must be a ConnectionParameters or a sequence of them")
        #: Where to connect, in order (kept: a robust connection connects again).
        self._candidates = candidates
        self._channels: dict[int, LinkedChannel] = {}
        self._events = Events()
        #: The wake-up of the thread that last waited on this connection (``wakeup.py``).
        self._wakeup: Wakeup | None = None
        self._lock = threading.Lock()
        self._closed_reason: exceptions.AMQPConnectionError | None = None
        #: Set once the reason was raised to the program: later calls get
        #: ConnectionWrongStateError, as in pika.
        self._reason_raised = False
        self._close_ok = False
        self._secret_ok = False
        self._sock: zmq.Socket | None = None
        self._monitor: zmq.Socket | None = None
        self._poll_items: list[tuple[Any, int]] = []
        #: ``_poll_items`` and the waiting thread's wake-up.
        self._waited: list[tuple[Any, int]] = []
        self._curve = False
        self._blocked_callbacks: list[Callable[..., None]] = []
        self._unblocked_callbacks: list[Callable[..., None]] = []
        #: Flow control (``zbroker/wires/flow.py``): publish bytes we may still send
        #: (NO_CREDIT_LIMIT: the broker keeps none), delivery bytes taken in, not reported.
        self._credit = NO_CREDIT_LIMIT
        self._unreported = 0
        self._report_step = 0
        #: Set while the broker holds our publishing (an alarm); when it times out.
        self._blocked = False
        self._blocked_deadline: float | None = None
        self._open(candidates)

    # -- opening ---------------------------------------------------------------------

    def _open(self, candidates: list[ConnectionParameters]) -> None:
        last_error: Exception | None = None
        for params in candidates:
            for attempt in range(params.connection_attempts):
                if attempt:
                    time.sleep(params.retry_delay)
                last_error = self._attempt(params)
                if last_error is None:
                    return
        raise last_error or exceptions.AMQPConnectionError("no connection parameters")

    def _attempt(self, params: ConnectionParameters) -> exceptions.AMQPConnectionError | None:
        """Connect with ``params``: None, or why not when another try may do better; a
        refusal another try would only repeat (``PERMANENT``) is raised."""
        try:
            self._connect(params)
            self.params = params
            return None
        except PERMANENT:
            self._teardown()
            raise
        except exceptions.AMQPConnectionError as exc:
            self._teardown()
            return exc

    def _connect(self, params: ConnectionParameters) -> None:
        sock = _context().socket(zmq.DEALER)
        sock.setsockopt(zmq.ROUTING_ID, b"zb" + os.urandom(14))
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.RCVHWM, RCVHWM)
        hb = params.heartbeat if isinstance(params.heartbeat, int) else DEFAULT_HEARTBEAT_S
        if hb > 0:
            sock.setsockopt(zmq.HEARTBEAT_IVL, hb * 500)
            sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, hb * 1000)
            sock.setsockopt(zmq.HEARTBEAT_TTL, min(hb * 1000, 6_553_500))
        self._curve = params.curve_server_key is not None
        if self._curve:
            secure_client(sock, params.curve_server_key, params.curve_client_keys)
        self._monitor = sock.get_monitor_socket(_MONITORED)
        self._sock = sock
        self._poll_items = [(sock, POLLIN), (self._monitor, POLLIN)]
        self._wakeup = None  # (the items to wait on are made anew)
        self._closed_reason = None
        self._close_ok = False
        self._hello = None
        self._endpoint = params.endpoint
        sock.connect(params.endpoint)
        creds = params.credentials
        properties = {"product": "zbroker.client", "version": __version__, **(params.client_properties or {})}
        # (a stream's deliveries may come many to a command: STREAM_DELIVER, handled here)
        properties["capabilities"] = {**(properties.get("capabilities") or {}), "stream_batches": True}
        # (in the split form, which a broker of any version reads: ``native_codec``)
        self._sock.send_multipart([HEADER, encode(Op.HELLO, params.heartbeat if isinstance(params.heartbeat, int)
                                                  else None, params.virtual_host, creds.username, creds.password,
                                                  properties)])
        limits = [t for t in (params.stack_timeout, params.socket_timeout) if t is not None]
        deadline = time.monotonic() + max(limits) if limits else None  # None: no timeout
        while self._hello is None:
            remaining = MAX_WAIT_S if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                raise exceptions.AMQPConnectionError(f"timed out connecting to {params.endpoint}")
            self._pump(min(remaining, MAX_WAIT_S), connecting=True)
            reason = self._closed_reason
            if reason is not None:
                if isinstance(reason, exceptions.ConnectionClosedByBroker):
                    if reason.reply_code == 530:
                        raise exceptions.ProbableAccessDeniedError(repr(reason))
                    if reason.reply_code == 403:  # pika's word for a refused login
                        raise exceptions.ProbableAuthenticationError(repr(reason))
                    if reason.reply_code == 540:
                        raise exceptions.IncompatibleProtocolError(reason.reply_code, reason.reply_text)
                if type(reason) in (exceptions.AMQPConnectionError, exceptions.ProbableAuthenticationError,
                                    exceptions.IncompatibleProtocolError):
                    raise reason
                raise exceptions.AMQPConnectionError(f"cannot connect to {params.endpoint}: {reason!r}")
        heartbeat, self.max_body_bytes, self.server_properties = self._hello
        # The lower of ours and the broker's, as AMQP's tune negotiates it (0: no limit).
        offered = self.server_properties.get("channel_max") or 0
        self.channel_max = min(params.channel_max, offered) if offered else params.channel_max
        # No figure from the broker: it keeps no credit (an older zbroker), so neither do we.
        self._credit = self.server_properties.get("publish_credit") or NO_CREDIT_LIMIT
        window = self.server_properties.get("delivery_window") or 0
        self._report_step = max(1, window // 4) if window else 0
        self.heartbeat = params.heartbeat(self, heartbeat) if callable(params.heartbeat) else heartbeat
        if creds.erase_on_connect:
            creds.username = creds.password = ""
        log.debug("connected to %s (heartbeat %s)", params.endpoint, self.heartbeat)

    def _teardown(self) -> None:
        if self._sock is not None:
            try:
                self._sock.disable_monitor()
            except zmq.ZMQError:
                pass
            self._sock.close(0)
            self._sock = None
        if self._monitor is not None:
            self._monitor.close(0)
            self._monitor = None

    # -- sending and receiving -------------------------------------------------------

    def _send(self, parts: list[Any]) -> None:
        """Send one command (``parts``: its encoded array, then its body if it has one)."""
        self._raise_if_lost()
        assert self._sock is not None  # set while open; _raise_if_lost covers closed
        send_parts(self._sock, pack_command(*parts))

    def _publish(self, command: bytes, body: Any) -> None:
        """Send a publish: only with publish credit and not blocked."""
        if self._credit <= 0 or self._blocked:
            self._wait_until(self._may_publish)
        sock = self._sock
        if sock is None or self._closed_reason is not None:
            self._raise_if_lost()
        assert sock is not None
        frames = pack_command(command, body)
        self._credit -= message_cost(frames)
        send_parts(sock, frames)

    def _may_publish(self) -> bool:
        return not self._blocked and self._credit > 0

    def _report_read(self) -> None:
        """Tell the broker the deliveries we took in, unless the program is behind."""
        if self._unreported >= self._report_step > 0 and len(self._events.queue) < HELD_EVENTS:
            n, self._unreported = self._unreported, 0
            self._send([encode(Op.DELIVERY_READ, n)])

    def _raise_if_lost(self) -> None:
        """Raise why the connection ended: the broker's or transport's reason, or, once
        the program itself closed it, ``ConnectionWrongStateError``."""
        if self._closed_reason is None and self._sock is not None:
            return
        if self._close_ok or self._closed_reason is None or self._reason_raised:
            raise exceptions.ConnectionWrongStateError("Connection is closed.")
        self._reason_raised = True
        raise self._closed_reason

    def _pump(self, timeout: float | None, connecting: bool = False) -> None:
        """Wait up to ``timeout`` seconds (None: forever) for input, then take all of it."""
        if self._sock is None:
            return
        ms = -1 if timeout is None else max(0, int(timeout * 1000))
        wakeup = for_this_thread()
        if wakeup is not self._wakeup:  # (the rules in wakeup.py)
            self._wakeup = wakeup
            self._waited = [*self._poll_items, (wakeup.fd, POLLIN)]
            if self._events.has_threadsafe():
                ms = 0  # queued while another thread's wake-up was this connection's
        try:
            ready = wait_readable(self._waited, ms)
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EINTR:
                return
            raise
        if wakeup.fd in ready:
            wakeup.clear()
        if self._sock in ready:
            self._read_all()
        if self._monitor in ready:
            self._read_monitor(connecting)
        if self._blocked_deadline is not None and time.monotonic() >= self._blocked_deadline:
            self._blocked_deadline = None
            log.warning("connection blocked for longer than blocked_connection_timeout")
            self._lose(exceptions.ConnectionBlockedTimeout("Blocked connection timeout expired."))

    def _read_all(self) -> None:
        sock = self._sock
        if sock is None:
            return
        taken = 0
        for parts in recv_batch(sock, READ_BATCH):
            if parts[0] == V1_HEADER:  # (it refuses our HELLO: say why, not what it says)
                self._lose(exceptions.IncompatibleProtocolError(
                    540, f"the broker speaks version 1 of the zbroker wire, this client version "
                         f"{PROTOCOL_VERSION}: upgrade the broker"))
                return
            try:
                for op, fields, body in decode_frames(parts, 0, MAX_COMMAND_BYTES + DELIVERY_OVERHEAD_BYTES):
                    self._on_command(op, fields, body)
                    taken += 1
            except ProtocolError as exc:
                log.error("broker sent an invalid message: %s", exc)
                self._lose(exceptions.StreamLostError(f"invalid message from broker: {exc}"))
                return
            if self._sock is None:  # a command closed the connection
                return
            if taken >= READ_COMMANDS:
                break  # the rest waits in libzmq (RCVHWM) until the program catches up
        if self._unreported:
            self._report_read()

    def _read_monitor(self, connecting: bool) -> None:
        from zmq.utils.monitor import recv_monitor_message
        while self._monitor is not None:
            try:
                message = recv_monitor_message(self._monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            event = message["event"]
            if event & _HANDSHAKE_FAILED:  # (before the disconnect that follows it)
                self._lose(handshake_failure(event, message["value"], self._endpoint, self._curve))
            elif connecting and event & (zmq.EVENT_CONNECT_RETRIED | _TRANSPORT_LOST):
                self._lose(refused(self._endpoint))
            elif event & _TRANSPORT_LOST and not self._close_ok:
                self._lose(exceptions.StreamLostError("Transport indicated EOF"))

    def _lose(self, reason: exceptions.AMQPConnectionError) -> None:
        """The connection is over: remember why, close every channel, drop the socket."""
        if self._closed_reason is None:
            self._closed_reason = reason
        for channel in list(self._channels.values()):
            channel.connection_lost(self._closed_reason)
        self._teardown()

    def _on_command(self, op: int, fields: list[Any], body: Any) -> None:
        if op < _FIRST_CHANNEL_OP:
            self._on_connection_command(op, fields)
            return
        if op == _DELIVER:
            self._unreported += len(body) + DELIVERY_COST
        elif op == _STREAM_DELIVER:  # (each entry to its channel as one basic.deliver)
            self._unreported += len(body) + DELIVERY_COST * len(fields[3])
            channel = self._channels.get(fields[0])
            if channel is not None:
                for deliver, payload in stream_deliveries(fields, body):
                    channel.handle_command(_DELIVER, deliver, payload)
            return
        channel = self._channels.get(fields[0])
        if channel is not None:
            channel.handle_command(op, fields, body)
        elif op == _DELIVER:
            log.debug("delivery for unknown channel %s dropped (broker requeues it)", fields[0])

    def _on_connection_command(self, op: int, fields: list[Any]) -> None:
        if op == Op.PUBLISH_CREDIT:
            self._credit += fields[0]
        elif op == Op.CONNECTION_BLOCKED or op == Op.CONNECTION_UNBLOCKED:
            self._on_blocked(op == Op.CONNECTION_BLOCKED, fields)
        elif op == Op.HELLO_OK:
            self._hello = fields
        elif op == Op.CONNECTION_CLOSE:
            try:
                self._send([encode(Op.CONNECTION_CLOSE_OK)])
            except exceptions.AMQPConnectionError:
                pass
            log.info("connection closed by broker: (%s) %s", fields[0], fields[1])
            self._lose(exceptions.ConnectionClosedByBroker(fields[0], fields[1]))
        elif op == Op.CONNECTION_CLOSE_OK:
            self._close_ok = True
        elif op == Op.CONNECTION_UPDATE_SECRET_OK:
            self._secret_ok = True

    def _on_blocked(self, blocked: bool, fields: list[Any]) -> None:
        """The broker holds (or releases) our publishing: pika's Connection.Blocked."""
        if blocked:
            method: Any = spec.Connection.Blocked(reason=fields[0])
            log.warning("connection blocked by the broker: %s", fields[0])
            self._blocked = True
            timeout = self.params.blocked_connection_timeout
            if timeout is not None and self._blocked_deadline is None:
                self._blocked_deadline = time.monotonic() + timeout
        else:
            method = spec.Connection.Unblocked()
            log.info("connection unblocked by the broker")
            self._blocked = False
            self._blocked_deadline = None
        callbacks = self._blocked_callbacks if blocked else self._unblocked_callbacks
        for callback in callbacks:
            self._events.put_call(callback, self, frame.Method(0, method))

    # -- channels and callbacks ------------------------------------------------------

    @property
    def link(self) -> Link:
        """Internal to zbroker's client: this connection as a channel sees it (a
        ``ChannelLink``). A new small object each time, so that a connection holds no
        reference to itself (channels keep theirs)."""
        return Link(self, self._channels, self._events, send=self._send, publish=self._publish,
                    wait_until=self._wait_until)

    def _dispatch(self) -> int:
        """Run one round of callbacks (``events.py``); returns how many ran."""
        ran = self._events.dispatch()
        if self._unreported and self._sock is not None:
            self._report_read()
        return ran

    def _wait_until(self, done: Callable[[], bool], timeout: float | None = None) -> bool:
        """Pump the socket until ``done()`` or the timeout; no callbacks run."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not done():
            self._raise_if_lost()
            wait = MAX_WAIT_S if deadline is None else min(MAX_WAIT_S, deadline - time.monotonic())
            if wait < 0:
                return False
            self._pump(wait)
        return True

    # -- public API ------------------------------------------------------------------

    def _new_channel(self, channel_number: int) -> BlockingChannel:
        return BlockingChannel(self, channel_number)

    def channel(self, channel_number: int | None = None) -> BlockingChannel:
        self._raise_if_lost()
        if channel_number is None:
            channel_number = next(n for n in itertools.count(1) if n not in self._channels)
            if channel_number > self.channel_max:
                raise exceptions.NoFreeChannels()
        elif not isinstance(channel_number, int) or not 1 <= channel_number <= self.channel_max:
            raise exceptions.InvalidChannelNumber(channel_number)
        elif channel_number in self._channels:
            raise exceptions.InvalidChannelNumber(channel_number)
        channel = self._new_channel(channel_number)
        channel.open_on_broker()  # registers it through the link
        return channel

    def process_data_events(self, time_limit: float | None = 0) -> None:
        """Process I/O and run due callbacks.

        ``time_limit`` is how long to wait for something to do: 0 returns after one
        pass; ``None`` waits until at least one callback has run. As in pika, it
        returns once the events that arrived have been dispatched.
        """
        self._raise_if_lost()
        deadline = None if time_limit is None else time.monotonic() + time_limit
        while True:
            if not self._events.has_ready():
                wait = MAX_WAIT_S if deadline is None else max(0.0, deadline - time.monotonic())
                timer_in = self._events.next_timer_in()
                if timer_in is not None:
                    wait = min(wait, timer_in)
                self._pump(min(wait, MAX_WAIT_S))
            else:
                self._pump(0)
            ran = self._dispatch()
            if self._close_ok:
                return  # the program closed it in a callback: pika returns normally
            self._raise_if_lost()
            if ran or (deadline is not None and time.monotonic() >= deadline):
                return

    def sleep(self, duration: float) -> None:
        """Sleep while processing I/O and callbacks (use it instead of time.sleep)."""
        if duration < 0:
            raise ValueError(f"duration must be >= 0, got {duration}")
        deadline = time.monotonic() + duration
        while True:
            remaining = deadline - time.monotonic()
            self.process_data_events(time_limit=max(0.0, remaining))
            if remaining <= 0:
                return

    def call_later(self, delay: float, callback: Callable[[], None]) -> int:
        if not callable(callback):
            raise TypeError("callback must be callable")
        return self._events.call_later(delay, callback)

    def remove_timeout(self, timeout_id: int) -> None:
        self._events.remove_timeout(timeout_id)

    def add_callback_threadsafe(self, callback: Callable[[], None]) -> None:
        """The only thread-safe method: run ``callback`` in the connection's thread."""
        if not callable(callback):
            raise TypeError("callback must be callable")
        if self.is_closed:
            raise exceptions.ConnectionWrongStateError("BlockingConnection.add_callback_threadsafe() "
                                                       "called on closed or closing connection.")
        self._events.add_threadsafe(callback)
        wakeup = self._wakeup  # (read after the append: the rules in wakeup.py)
        if wakeup is not None:
            wakeup.wake()

    def update_secret(self, new_secret: str, reason: str) -> None:
        """pika's connection.update-secret (RabbitMQ's extension, for expiring credentials
        such as OAuth 2 tokens); returns once the broker's update-secret-ok came. zbroker's
        users, like RabbitMQ's internal ones, never expire: the broker answers ok and the
        connection keeps its user."""
        if not self.is_open:
            raise exceptions.ConnectionWrongStateError(f"Secret update requires an open connection: {self}")
        if not isinstance(new_secret, str) or not isinstance(reason, str):
            raise TypeError("new_secret and reason must be str")
        self._secret_ok = False
        self._send([encode(Op.CONNECTION_UPDATE_SECRET, new_secret, reason)])
        self._wait_until(lambda: self._secret_ok)

    def add_on_connection_blocked_callback(self, callback: Callable[..., None]) -> None:
        self._blocked_callbacks.append(callback)

    def add_on_connection_unblocked_callback(self, callback: Callable[..., None]) -> None:
        self._unblocked_callbacks.append(callback)

    def close(self, reply_code: int = 200, reply_text: str = "Normal shutdown") -> None:
        if self.is_closed:
            raise exceptions.ConnectionWrongStateError(
                f"BlockingConnection.close({reply_code}, {reply_text!r}) called on closed connection.")
        for channel in list(self._channels.values()):
            channel.connection_closing()
        try:
            self._send([encode(Op.CONNECTION_CLOSE, reply_code, reply_text)])
            self._wait_until(lambda: self._close_ok, CLOSE_TIMEOUT_S)
        except exceptions.AMQPConnectionError:
            pass
        self._close_ok = True
        self._lose(exceptions.ConnectionClosedByClient(reply_code, reply_text))
        self._wakeup = None

    @property
    def is_open(self) -> bool:
        return self._sock is not None and self._closed_reason is None

    @property
    def is_closed(self) -> bool:
        return not self.is_open

    @property
    def basic_nack_supported(self) -> bool:
        return True

    @property
    def consumer_cancel_notify_supported(self) -> bool:
        return True

    @property
    def exchange_exchange_bindings_supported(self) -> bool:
        return True

    @property
    def publisher_confirms_supported(self) -> bool:
        return True

    # pika's older names
    basic_nack = basic_nack_supported
    consumer_cancel_notify = consumer_cancel_notify_supported
    exchange_exchange_bindings = exchange_exchange_bindings_supported
    publisher_confirms = publisher_confirms_supported

    def __enter__(self) -> "BlockingConnection":
        return self

    def __exit__(self, exc_type: Any, value: Any, traceback: Any) -> None:
        if self.is_open:
            self.close()

    def __del__(self) -> None:
        try:
            self._teardown()
        except Exception:
            pass
