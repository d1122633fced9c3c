"""The AMQP 0-9-1 listener's sockets: a TCP server socket and its connections, all
non-blocking and polled by the server's loop beside the ROUTER (``zmq_poll`` takes plain
descriptors), so the core stays on one thread. With ``server.py`` the only broker module
that touches sockets; what the bytes mean is ``wires/amqp.py``'s business.

Rules:
- Each pass reads at most ``RECV_BYTES`` from each readable socket: a publisher that
  floods waits in its kernel buffers (TCP is its flow control), and every connection
  gets its turn.
- Writes are gathered (``sendmsg``) from the wire's buffers, bodies by reference. What
  the kernel does not take waits here, and the socket is polled for POLLOUT. While more
  than ``WRITE_HIGH_BYTES`` wait, the core stops delivering to that connection
  (``set_pipe_full``, as for a full ZeroMQ pipe); below ``WRITE_LOW_BYTES`` it resumes.
- Deliveries to a connection are charged to its delivery window by the core; once what
  waits here is below ``WRITE_LOW_BYTES`` the window is reported read, so a loop pass can
  queue at most one window of deliveries for a socket, however many publishes it applies.
- A socket is read only while the wire wants it (an alarm holds a publisher).
- Out of descriptors (EMFILE), accepting pauses for ``ACCEPT_RETRY_S``, logged once:
  the connections already open keep working.
"""
from __future__ import annotations

import errno
import logging
import socket
import time
from collections import deque
from typing import Any

import zmq

from zbroker.core import Broker
from zbroker.wires.amqp import AmqpWire

log = logging.getLogger(__name__)

POLLIN, POLLOUT = int(zmq.POLLIN), int(zmq.POLLOUT)  # zmq_poll's flags, for plain descriptors too
#: Bytes read from one socket per pass.
RECV_BYTES = 256 * 1024
#: Connections accepted per pass.
ACCEPT_BATCH = 64
#: Buffers handed to one sendmsg call (Linux's IOV_MAX is 1024).
IOV_BATCH = 512
WRITE_HIGH_BYTES = 4 * 1024 * 1024
WRITE_LOW_BYTES = 1024 * 1024
ACCEPT_RETRY_S = 0.5
BACKLOG = 1024


def parse_address(address: str) -> tuple[str, int]:
    """``tcp://host:port`` or ``host:port`` (IPv6 in brackets) -> (host, port)."""
    rest = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected HOST:PORT or tcp://HOST:PORT, got {address!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


class _Peer:
    __slots__ = ("sock", "fd", "out", "pending", "full")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.out: deque[Any] = deque()
        self.pending = 0  # bytes waiting in ``out``
        self.full = False


class AmqpListener:
    def __init__(self, broker: Broker, wire: AmqpWire, address: str) -> None:
        self.broker = broker
        self.wire = wire
        self.address = address
        self.endpoint = ""
        self._server: socket.socket | None = None
        self._peers: dict[int, _Peer] = {}
        self._by_fd: dict[int, int] = {}
        self._accept_after = 0.0

    def open(self) -> str:
        """Bind and listen; returns ``host:port`` as bound (port 0 picks one)."""
        host, port = parse_address(self.address)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server = socket.socket(family, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            server.bind((host, port))
        except OSError as exc:
            server.close()
            raise OSError(f"cannot bind the AMQP listener to {host}:{port}: {exc.strerror}") from None
        server.listen(BACKLOG)
        server.setblocking(False)
        self._server = server
        bound_host, bound_port = server.getsockname()[:2]
        self.endpoint = f"[{bound_host}]:{bound_port}" if family == socket.AF_INET6 else f"{bound_host}:{bound_port}"
        self.wire.listener = self.endpoint
        return self.endpoint

    # -- polling ---------------------------------------------------------------------------

    def poll_items(self) -> list[tuple[int, int]]:
        items = []
        if self._server is not None and time.monotonic() >= self._accept_after:
            items.append((self._server.fileno(), POLLIN))
        reading = self.wire.reading
        for key, peer in self._peers.items():
            flags = POLLIN if reading(key) else 0
            if peer.out:
                flags |= POLLOUT
            if flags:
                items.append((peer.fd, flags))
        return items

    def handle(self, ready: list[tuple[Any, int]], now: float) -> None:
        """Act on what ``zmq_poll`` reported for our descriptors."""
        server_fd = self._server.fileno() if self._server is not None else -1
        for fd, events in ready:
            if type(fd) is not int:
                continue  # a ZeroMQ socket: the server's
            if fd == server_fd:
                self._accept(now)
                continue
            key = self._by_fd.get(fd)
            if key is None:
                continue
            if events & POLLOUT:
                self._write(key)
            if events & POLLIN and key in self._peers:
                self._read(key, now)

    def _accept(self, now: float) -> None:
        assert self._server is not None
        for _ in range(ACCEPT_BATCH):
            try:
                sock, address = self._server.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("AMQP listener cannot accept: %s; retrying in %.1f s", exc.strerror, ACCEPT_RETRY_S)
                    self._accept_after = time.monotonic() + ACCEPT_RETRY_S
                    return
                log.warning("AMQP listener: accept failed: %s", exc)
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            key = self.wire.accept(address[0], address[1], now)
            peer = _Peer(sock)
            self._peers[key] = peer
            self._by_fd[peer.fd] = key

    def _read(self, key: int, now: float) -> None:
        peer = self._peers[key]
        try:
            data = peer.sock.recv(RECV_BYTES)
        except BlockingIOError:
            return
        except OSError as exc:
            self._lost(key, now, f"socket error: {exc.strerror}")
            return
        if not data:
            self._lost(key, now, "connection closed by peer")
            return
        self.wire.data_received(key, data, now)

    # -- writing ---------------------------------------------------------------------------

    def flush(self, now: float) -> None:
        """Write what the wire produced; close the sockets it is done with."""
        for key, buffers in self.wire.take_output().items():
            peer = self._peers.get(key)
            if peer is None:
                continue
            peer.out.extend(buffers)
            peer.pending += sum(map(len, buffers))
            self._write(key)
        for key in [k for k in self._peers if self.wire.should_close(k)]:
            peer = self._peers[key]
            if not peer.out:
                self._close(key)
                self.wire.connection_lost(key, now)

    def _write(self, key: int) -> None:
        peer = self._peers[key]
        out = peer.out
        while out:
            batch = [out[i] for i in range(min(len(out), IOV_BATCH))]
            try:
                sent = peer.sock.sendmsg(batch)
            except BlockingIOError:
                break
            except OSError as exc:
                out.clear()
                peer.pending = 0
                self._lost(key, time.time(), f"socket error: {exc.strerror}")
                return
            peer.pending -= sent
            while sent:
                head = out[0]
                size = len(head)
                if sent >= size:
                    out.popleft()
                    sent -= size
                else:
                    out[0] = memoryview(head)[sent:]
                    sent = 0
        self._set_full(key, peer)

    def _set_full(self, key: int, peer: _Peer) -> None:
        if peer.pending < WRITE_LOW_BYTES:
            core = self.broker.connections.get(key)
            if core is not None and core.unread:
                self.broker.deliveries_read(key, core.unread)  # its delivery window is written
        if not peer.full and peer.pending > WRITE_HIGH_BYTES:
            peer.full = True
            self.broker.set_pipe_full(key, True)
        elif peer.full and peer.pending < WRITE_LOW_BYTES:
            peer.full = False
            self.broker.set_pipe_full(key, False)

    # -- closing ---------------------------------------------------------------------------

    def _lost(self, key: int, now: float, reason: str) -> None:
        self._close(key)
        self.wire.connection_lost(key, now, reason)

    def _close(self, key: int) -> None:
        peer = self._peers.pop(key, None)
        if peer is None:
            return
        self._by_fd.pop(peer.fd, None)
        try:
            peer.sock.close()
        except OSError:
            pass

    def close(self, now: float) -> None:
        """Send what is queued (the broker's goodbyes) as far as the kernel takes it, close all."""
        self.flush(now)
        for key in list(self._peers):
            self._close(key)
        if self._server is not None:
            self._server.close()
            self._server = None
