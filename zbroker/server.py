"""The broker's loop: the ZeroMQ ROUTER, the AMQP listeners and the pure core with its
wires, on one thread.

Sockets: the ROUTER is read and written here (through ``transport.py``), the AMQP
sockets by ``listener.py``, CURVE's authentication socket by ``curve.py``; this loop
polls them all. The core and the wires touch none. (The HTTP management server has its
own thread and sockets, and reaches the loop through the ROUTER's in-process endpoint.)

Clock: each pass reads it once, after the poll: ``now``, wall-clock seconds (a persistent
message's expiry must hold across a restart), goes to every call of the pass (the wires,
the listeners, the core's ``tick``, ``run_pending`` and ``commit``); the monotonic
clock, read alongside it, times the loop's own intervals (probes, resource checks). One
more monotonic reading bounds the next poll: a deadline that passed while the pass ran
makes the poll return at once, and the next pass acts on it. The listener reads the
monotonic clock only to time a pause in accepting.

Each pass of the loop: poll (timeout: the soonest deadline of the core, the wires and
the loop), drain up to ``DRAIN_BATCH`` messages into the zbroker wire and the listeners'
bytes into the AMQP wire, check memory and disk (at most every 0.1 s, ``resources.py``:
the core's alarms), ``tick`` the wires' and the core's timers, commit the store (one
fsync for every persistent message of the pass: group commit), hand each connection's
events to its own wire (``_route``: the type of a connection id says whose it is,
``CONN_ID``), send the zbroker wire's frames (one ZeroMQ message per peer per pass,
publish credit returned; first, what a full peer pipe refused before) and let the
listeners write the AMQP wire's buffers. Rules:

- ``ROUTER_MANDATORY`` is on, so ZeroMQ never drops a frame silently: a full pipe
  (EAGAIN) keeps the frames in a per-peer backlog, sent in order later, and the core
  stops delivering to that peer until it drains; an unknown peer (EHOSTUNREACH) means
  that client is gone and the core releases what it held.
- ROUTER tells nobody when a peer disconnects. The socket monitor says *that* some
  connection closed; the loop then probes every peer with an empty message, and the
  ones ZeroMQ no longer knows are gone. Probes repeat a few times after an event
  (the pipe's teardown reaches the socket a little after the event) and on a slow sweep.
- Liveness of a silent-but-open connection is ZeroMQ's own ZMTP heartbeat, run by
  libzmq's I/O thread on both sides: it needs no Python thread to be free, so a client
  busy in a ten-minute callback stays connected, and a cut network is noticed.
"""
from __future__ import annotations

import errno
import logging
import os
import resource
import secrets
import signal
import socket
import ssl
import time
from collections import deque
from typing import Any

import zmq

from zbroker.core import Broker
from zbroker.resources import Monitor, resident_bytes
from zbroker.wires.management import ManagementWire
from zbroker.listener import AmqpListener
from zbroker.wires.amqp import AmqpWire
from zbroker.wires.native import NativeWire
from zbroker.curve import ZapHandler
from zbroker.shovel_supervisor import ShovelSupervisor
from zbroker.transport import NOBLOCK, POLLIN, peer_address, poll_events, recv_batch, send_parts, wait_readable

log = logging.getLogger(__name__)

#: Messages taken from the socket per pass before sending what they produced: large
#: enough to amortise a pass, small enough that deliveries go out while a producer floods.
DRAIN_BATCH = 512
#: Seconds after a disconnect event at which peers are probed again.
PROBE_AFTER_DISCONNECT_S = (0.0, 0.02, 0.1, 0.5, 2.0)
#: Seconds between probe sweeps with no event (a safety net for missed events).
PROBE_SWEEP_S = 5.0
#: Least seconds between two probes of every peer: a mass disconnect (an event per
#: connection) must not make the loop probe thousands of peers on every pass.
PROBE_MIN_INTERVAL_S = 0.02
#: Per-peer pipe limit in messages; beyond it frames wait in the loop's backlog.
SNDHWM = 10_000
#: How long a clean shutdown waits for the goodbye frames to leave, in milliseconds.
SHUTDOWN_LINGER_MS = 500


#: Descriptors kept for everything that is not a client connection (the store's
#: segments, the data-directory lock, libzmq's own mailboxes and monitor sockets).
RESERVED_DESCRIPTORS = 256


def raise_descriptor_limit() -> int:
    """Take every file descriptor the system allows (soft limit up to the hard one), as
    a server should: each client connection costs one, and a desktop's default soft
    limit (1024) would otherwise cap the broker near a thousand connections. Returns how
    many client connections fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, exc)
    return max(1, soft - RESERVED_DESCRIPTORS)


class Server:
    def __init__(self, broker: Broker, bind: str, context: zmq.Context | None = None,
                 monitor: Monitor | None = None, amqp: str | None = None, amqps: str | None = None,
                 tls: ssl.SSLContext | None = None, curve: tuple[bytes, set[bytes] | None] | None = None) -> None:
        """``curve``: (the broker's secret key, the client keys allowed or None for any):
        the zbroker wire is encrypted (``curve.py``)."""
        self.broker = broker
        #: The AMQP 0-9-1 listeners (``listener.py``; one wire, ``wires/amqp.py``): plain
        #: where ``amqp`` names an address, TLS where ``amqps`` does (with ``tls``).
        self.amqp_wire = AmqpWire(broker)
        self.amqp = AmqpListener(self.amqp_wire, amqp) if amqp else None
        self.amqps = AmqpListener(self.amqp_wire, amqps, tls) if amqps else None
        self.listeners = [listener for listener in (self.amqp, self.amqps) if listener is not None]
        self.monitor = monitor
        self.curve = curve
        self._zap: ZapHandler | None = None
        #: What the in-process HTTP server proves itself with (``core/access/management_access.py``).
        self.relay_token = secrets.token_bytes(32)
        self.management = ManagementWire(broker, self.facts, self.relay_token)
        #: What the broker's own connections (shovels' local sides) log in with (``users.py``).
        broker.users.internal_secret = secrets.token_bytes(32)
        #: The loopback AMQP listener those connections use, opened when a shovel first needs it.
        self._loopback: AmqpListener | None = None
        self.shovels = ShovelSupervisor(broker, self._loopback_address, broker.users.internal_secret)
        self.wire = NativeWire(broker, management=self.management)
        self.wire.peer_address = peer_address
        #: Whose a connection is, by the type of its id: each wire's ids are its own.
        self._routes: dict[type, Any] = {NativeWire.CONN_ID: self.wire, AmqpWire.CONN_ID: self.amqp_wire}
        assert len(self._routes) == 2  # the wires' id types differ (not peer input)
        self.bind = bind
        self.endpoint = bind
        #: In-process endpoint of the same ROUTER, for the HTTP server's thread.
        self.inproc = f"inproc://zbroker-{id(self):x}"
        #: Set by whoever runs the server: what ``status``/``overview`` report of it.
        self.data_dir: str | None = None
        self.http_endpoint: str | None = None
        broker.node_name = f"zbroker@{socket.gethostname()}"
        self.should_exit = False
        self._ctx = context or zmq.Context.instance()
        self._router: zmq.Socket | None = None
        self._monitor: zmq.Socket | None = None
        self._backlog: dict[bytes, deque[list[Any]]] = {}
        self._probes: list[float] = []
        self._next_sweep = 0.0
        self._last_probe = 0.0
        self._wakeup_r: int | None = None

    @property
    def context(self) -> zmq.Context:
        return self._ctx

    # -- set-up ------------------------------------------------------------------------

    def open(self) -> str:
        """Bind the ROUTER; returns the endpoint actually bound (port 0 picks one)."""
        router = self._ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        router.setsockopt(zmq.SNDHWM, SNDHWM)
        router.setsockopt(zmq.RCVHWM, SNDHWM)
        router.setsockopt(zmq.LINGER, SHUTDOWN_LINGER_MS)
        # A frame larger than any legal body plus headroom is cut by libzmq itself.
        router.setsockopt(zmq.MAXMSGSIZE, self.broker.max_body_bytes + 1024 * 1024)
        if self.broker.heartbeat > 0:
            router.setsockopt(zmq.HEARTBEAT_IVL, self.broker.heartbeat * 500)
            router.setsockopt(zmq.HEARTBEAT_TIMEOUT, self.broker.heartbeat * 1000)
        if self.curve is not None:
            router.curve_server = True
            router.curve_secretkey = self.curve[0]
            self._zap = ZapHandler(self._ctx, self.curve[1])
        try:
            router.bind(self.bind)
            self.endpoint = router.getsockopt_string(zmq.LAST_ENDPOINT)
            for listener in self.listeners:
                listener.open()
        except (OSError, ValueError, zmq.ZMQError) as exc:
            for listener in self.listeners:
                listener.close(time.time())
            router.close(0)
            if self._zap is not None:
                self._zap.close()
            if isinstance(exc, zmq.ZMQError):
                raise OSError(f"cannot bind {self.bind}: {exc}") from None
            raise
        router.bind(self.inproc)
        self.wire.listener = self.endpoint.split("://", 1)[-1]
        self._monitor = self._open_monitor(router)
        self._router = router
        return self.endpoint

    def _open_monitor(self, router: zmq.Socket) -> zmq.Socket:
        """The ROUTER's disconnect events, on a pipe with no high-water mark.

        libzmq's I/O thread sends monitor events with a blocking send while holding the
        socket's monitor lock; on a bounded pipe (pyzmq's ``get_monitor_socket``: 1,000
        events) a mass disconnect fills it while the loop is busy, and the loop's next
        call on the ROUTER waits for that lock: a deadlock (seen with 2,000 connections
        closing at once). With RCVHWM 0 on our end the inproc pipe is unbounded; an
        event is a few dozen bytes.
        """
        address = f"inproc://zbroker-monitor-{id(router):x}"
        router.monitor(address, zmq.EVENT_DISCONNECTED)
        monitor = self._ctx.socket(zmq.PAIR)
        monitor.setsockopt(zmq.RCVHWM, 0)
        monitor.connect(address)
        return monitor

    def _loopback_address(self) -> tuple[str, int]:
        """The loopback AMQP listener for shovels' ``amqp://`` (opened on first use, on a
        port the kernel picks): (host, port)."""
        if self._loopback is None:
            listener = AmqpListener(self.amqp_wire, "127.0.0.1:0")
            listener.open()
            self._loopback = listener
            self.listeners.append(listener)
            log.info("loopback AMQP listener for shovels on %s", listener.endpoint)
        host, _, port = self._loopback.endpoint.rpartition(":")
        return host.split("://", 1)[-1], int(port)

    def install_signal_handlers(self) -> None:
        def stop(signum: int, _frame: Any) -> None:
            log.info("received %s, shutting down", signal.Signals(signum).name)
            self.should_exit = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        # A signal writes a byte here, which wakes the loop's poll at once (zmq_poll
        # retries itself after EINTR, so the flag alone would wait for its timeout).
        self._wakeup_r, wakeup_w = os.pipe()
        os.set_blocking(self._wakeup_r, False)
        os.set_blocking(wakeup_w, False)
        signal.set_wakeup_fd(wakeup_w)

    # -- the loop ----------------------------------------------------------------------

    def serve_forever(self) -> None:
        if self._router is None:
            self.open()
        router, monitor = self._router, self._monitor
        assert router is not None and monitor is not None  # set by open(); not peer input
        items: list[tuple[Any, int]] = [(router, POLLIN), (monitor, POLLIN)]
        if self._wakeup_r is not None:
            items.append((self._wakeup_r, POLLIN))
        zap = self._zap.socket if self._zap is not None else None
        if zap is not None:
            items.append((zap, POLLIN))
        listeners, shovels = self.listeners, self.shovels
        ready: list[tuple[Any, int]] = []
        now, mono = time.time(), time.monotonic()
        self._next_sweep = mono + PROBE_SWEEP_S
        try:
            while not self.should_exit:
                try:
                    if not listeners and not shovels.workers and not shovels.stopping:
                        events = wait_readable(items, self._poll_timeout_ms(now, mono))
                    else:
                        polled = items + [item for listener in listeners for item in listener.poll_items()]
                        polled += shovels.poll_items()
                        ready = poll_events(polled, self._poll_timeout_ms(now, mono))
                        events = [item for item, _ in ready]
                except zmq.ZMQError as exc:
                    if exc.errno == errno.EINTR:
                        continue
                    raise
                now, mono = time.time(), time.monotonic()  # this pass's clock (the module's rules)
                self._pass(events, ready, now, mono)
        finally:
            self.close()

    def _pass(self, events: list[Any], ready: list[tuple[Any, int]], now: float, mono: float) -> None:
        """One pass after a poll: input, timers, commit, output, all at ``now``."""
        router, monitor = self._router, self._monitor
        assert router is not None and monitor is not None  # (open() made them; not peer input)
        if router in events:
            self._drain(router, now)
        if monitor in events:
            self._read_monitor(monitor, mono)
        if self._zap is not None and self._zap.socket in events:
            self._zap.handle()
        if ready:
            for listener in self.listeners:
                listener.handle(ready, now)
        self._run_probes(mono, now)
        if self.monitor is not None:
            self._check_resources(mono, now)
        if self.listeners:
            self.amqp_wire.tick(now)
        shovels = self.shovels
        if shovels.workers or shovels.stopping or shovels.restart_at or shovels.behind:
            shovels.handle(ready, now, mono)
        broker = self.broker
        broker.tick(now)
        if broker.has_pending_work:
            broker.run_pending(now)
        broker.commit(now)  # durable before anything of this pass is sent
        self._flush(now)

    def _check_resources(self, mono: float, now: float) -> None:
        monitor = self.monitor
        assert monitor is not None
        if not monitor.due(mono):
            return
        for name, (active, figures) in monitor.check(mono).items():
            if active != (name in self.broker.alarms.active):
                if active:
                    log.warning("%s alarm set (%s): publishing connections are blocked", name, figures)
                else:
                    log.warning("%s alarm cleared (%s)", name, figures)
                self.broker.set_alarm(name, active, now)

    def _poll_timeout_ms(self, now: float, mono: float) -> int:
        """How long the next poll may wait: until the soonest deadline, counted from the
        last pass's clock (``now``, ``mono``) less the time that pass took, so that a
        deadline that came while it ran is acted on by the next pass at once."""
        if self.broker.has_pending_work or self.shovels.behind:
            return 0
        if self._backlog:
            return 5
        due = max(min([self._next_sweep, *self._probes]), self._last_probe + PROBE_MIN_INTERVAL_S)
        if self.monitor is not None and self.broker.alarms.active:
            due = min(due, self.monitor.next_check)  # input may never come: see it clear
        shovel_due = self.shovels.next_deadline()
        if shovel_due is not None:
            due = min(due, shovel_due)
        wait = due - mono
        deadline = self.broker.next_deadline()
        if self.listeners:
            wire_deadline = self.amqp_wire.next_deadline()
            if wire_deadline is not None:
                deadline = wire_deadline if deadline is None else min(deadline, wire_deadline)
        if deadline is not None:
            wait = min(wait, deadline - now)
        wait -= time.monotonic() - mono
        return 0 if wait <= 0 else int(wait * 1000) + 1

    def _drain(self, router: zmq.Socket, now: float) -> None:
        handle = self.wire.handle
        for frame, parts in recv_batch(router, DRAIN_BATCH, keep_large=True, with_frame=True, routed=True):
            if len(parts) < 2:
                log.warning("dropping a message with no header from %s", parts[0].hex()[:12])
                continue
            handle(parts[0], parts, 1, now, frame)

    def _flush(self, now: float) -> None:
        router = self._router
        assert router is not None
        if self._backlog:
            self._retry_backlog(router, now)
        if self.management.replies:
            self._send_replies(router)
        listeners = self.listeners
        while True:
            frames = self._route(now)
            if frames:
                self._send(router, frames, now)  # a gone peer's messages may go to others: again
            elif not listeners:
                return
            elif not self.broker.outbox.pending:
                # Writing may resume deliveries or lose a peer (its messages requeued to
                # others): whatever that queued goes out in this pass too.
                for listener in listeners:
                    listener.flush(now)
                if not self.broker.outbox.pending:
                    return

    def _route(self, now: float) -> dict[bytes, list[list[Any]]]:
        """Hand each connection's events to its own wire: the AMQP wire encodes its into
        its connections' buffers (the listeners write them); the zbroker wire's frames,
        publish credit returned first, are returned for the ROUTER."""
        native = self.wire
        if native.credit.used:
            native.grant_credit()  # (a dict of the peers that published since their last grant)
        events = self.broker.outbox.take()
        if not events:
            return {}
        mine: dict[Any, list[Any]] = {}  # (this wire's ids: bytes)
        theirs: dict[Any, dict[Any, list[Any]]] = {}
        routes = self._routes
        for conn_id, parts in events.items():
            wire = routes.get(type(conn_id))
            if wire is native:
                mine[conn_id] = parts
            elif wire is not None:
                theirs.setdefault(wire, {})[conn_id] = parts
            else:
                log.error("events for connection %r, which no wire has, dropped", conn_id)
        for wire, its_events in theirs.items():
            wire.encode(its_events, now)
        return native.encode(mine)

    def _send(self, router: zmq.Socket, pending: dict[bytes, list[list[Any]]], now: float) -> None:
        backlog = self._backlog
        for peer, messages in pending.items():
            if peer in backlog:
                backlog[peer].extend(messages)
                continue
            for i, frames in enumerate(messages):
                try:
                    send_parts(router, [peer, *frames], NOBLOCK)
                except zmq.Again:
                    backlog[peer] = deque(messages[i:])
                    self.broker.set_pipe_full(peer, True)
                    break
                except zmq.ZMQError as exc:
                    if exc.errno != zmq.EHOSTUNREACH:
                        raise
                    # Releasing a gone peer may requeue messages to others: the caller loops.
                    self.broker.connection_lost(peer, now, "peer unreachable")
                    break

    def _send_replies(self, router: zmq.Socket) -> None:
        """Management answers; one that cannot go (its asker is gone or not reading) is
        dropped with a log line: the asker times out, nobody else waits for it."""
        for peer, parts in self.management.take_replies():
            try:
                send_parts(router, [peer, *parts], NOBLOCK)
            except zmq.ZMQError as exc:
                log.warning("management reply to %s not sent: %s", peer.hex()[:12], exc.strerror)

    def facts(self) -> dict[str, Any]:
        """What management reports that only the server knows (``ManagementWire``)."""
        host, _, port = self.endpoint.split("://", 1)[-1].rpartition(":")
        listeners = [{"node": self.broker.node_name, "protocol": "zbroker", "ip_address": host,
                      "port": int(port) if port.isdigit() else port}]
        for listener in self.listeners:
            amqp_host, _, amqp_port = listener.endpoint.rpartition(":")
            listeners.append({"node": self.broker.node_name, "protocol": "amqp/ssl" if listener.tls else "amqp",
                              "ip_address": amqp_host.strip("[]"), "port": int(amqp_port)})
        contexts = []
        if self.http_endpoint:
            http_host, _, http_port = self.http_endpoint.rpartition(":")
            listeners.append({"node": self.broker.node_name, "protocol": "http",
                              "ip_address": http_host, "port": int(http_port)})
            contexts.append({"node": self.broker.node_name, "description": "zbroker management",
                             "path": "/", "port": http_port})
        facts: dict[str, Any] = {"listeners": listeners, "contexts": contexts, "data_directory": self.data_dir,
                                 "pid": os.getpid(), "memory": {"resident": resident_bytes()}}
        if self.monitor is not None:
            facts["memory"]["limit"] = self.monitor.memory_limit
            if self.monitor.disk_path is not None:
                facts["disk"] = {"free": self.monitor.disk_free(), "limit": self.monitor.disk_free_limit}
        return facts

    def _retry_backlog(self, router: zmq.Socket, now: float) -> None:
        for peer in list(self._backlog):
            queue = self._backlog[peer]
            while queue:
                try:
                    send_parts(router, [peer, *queue[0]], NOBLOCK)
                except zmq.Again:
                    break
                except zmq.ZMQError as exc:
                    if exc.errno != zmq.EHOSTUNREACH:
                        raise
                    queue.clear()
                    self.broker.connection_lost(peer, now, "peer unreachable")
                    break
                queue.popleft()
            if not queue:
                del self._backlog[peer]
                self.broker.set_pipe_full(peer, False)

    # -- finding dead peers ------------------------------------------------------------

    def _read_monitor(self, monitor: zmq.Socket, mono: float) -> None:
        while True:
            try:
                monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
        self._probes = sorted({*self._probes, *(mono + d for d in PROBE_AFTER_DISCONNECT_S)})

    def _run_probes(self, mono: float, now: float) -> None:
        if mono - self._last_probe < PROBE_MIN_INTERVAL_S:
            return  # what is due stays due: probed on a pass a moment later
        due = False
        while self._probes and self._probes[0] <= mono:
            self._probes.pop(0)
            due = True
        if mono >= self._next_sweep:
            self._next_sweep = mono + PROBE_SWEEP_S
            due = True
        if due:
            self._last_probe = mono
            self._probe_all(now)

    def _probe_all(self, now: float) -> None:
        router = self._router
        assert router is not None
        native, routes = self.wire, self._routes
        for peer in self.broker.conn_ids():
            if routes.get(type(peer)) is not native:
                continue  # another wire's connection (AMQP's sockets tell of their own end)
            if peer in self._backlog:
                continue  # a full pipe means a live, slow reader
            try:
                send_parts(router, [peer, *native.empty_message(peer)], NOBLOCK)
            except zmq.Again:
                pass
            except zmq.ZMQError as exc:
                if exc.errno != zmq.EHOSTUNREACH:
                    raise
                self.broker.connection_lost(peer, now, "peer disconnected")

    # -- shutdown ----------------------------------------------------------------------

    def close(self) -> None:
        if self._router is None:
            return
        self.shovels.close()
        self.broker.shutdown()
        try:
            self.broker.close()
        except OSError as exc:
            log.error("closing the store failed: %s", exc)
        now = time.time()
        try:
            self._flush(now)
        except zmq.ZMQError:
            pass
        for listener in self.listeners:
            listener.close(now)
        if self._monitor is not None:
            self._router.disable_monitor()
            self._monitor.close(0)
        self._router.close()
        self._router = None
        if self._zap is not None:
            self._zap.close()
        log.info("zbroker stopped")
