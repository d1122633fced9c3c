"""The AMQP 0-9-1 listener's sockets: a TCP server socket and its connections, all
non-blocking, all in one epoll set whose descriptor the server's loop polls beside the
ROUTER (``zmq_poll`` takes plain descriptors), so the core stays on one thread and idle
connections cost a loop pass nothing. With ``server.py`` (the ROUTER) the broker's
modules that touch sockets; what the bytes mean is ``wires/amqp.py``'s business, and the
listener talks to that wire only, never to the core.

Rules:
- Each pass reads at most ``RECV_BYTES`` from each readable socket: a publisher that
  floods waits in its kernel buffers (TCP is its flow control), and every connection
  gets its turn.
- Writes are gathered (``sendmsg``) from the wire's buffers, bodies by reference. What
  the kernel does not take waits here, and the socket is polled for POLLOUT. After each
  write the wire hears how many bytes still wait (``AmqpWire.output_pending``): it
  decides what that means for deliveries (its rule 5: the delivery window, a full pipe).
- A socket is read only while the wire wants it (an alarm holds a publisher).
- Time: each call gets the loop pass's ``now``; the listener reads the (monotonic) clock
  itself only to time a pause in accepting.
- Out of descriptors (EMFILE), accepting pauses for ``ACCEPT_RETRY_S``, logged once:
  the connections already open keep working.
- TLS (``amqps``, the standard library's ``ssl``): the handshake runs non-blocking after
  accept; a client that fails it (no or a wrong certificate, or plain AMQP) is logged in
  one line and closed before the wire sees a byte. Reads drain what the TLS layer has
  already decrypted (epoll cannot see it); writes are joined into one buffer per send,
  since TLS encrypts them anyway (``sendmsg`` is plain TCP's).
"""
from __future__ import annotations

import errno
import logging
import select
import socket
import ssl
import time
from collections import deque
from typing import Any

import zmq

from zbroker.wires.amqp import AmqpWire

log = logging.getLogger(__name__)

POLLIN = int(zmq.POLLIN)  # zmq_poll's flag, for plain descriptors too
#: Bytes read from one socket per pass. A read first allocates all of them and then
#: shrinks to what came: at 256 KiB that was glibc's mmap, mremap and munmap for every
#: read, however small (18 against 2.4 us per small read in a socketpair loop; 230 against
#: 223 us of broker CPU per pika RPC call).
RECV_BYTES = 64 * 1024
#: Connections accepted per pass.
ACCEPT_BATCH = 64
#: Buffers handed to one sendmsg call (Linux's IOV_MAX is 1024).
IOV_BATCH = 512
ACCEPT_RETRY_S = 0.5
BACKLOG = 1024


def parse_address(address: str) -> tuple[str, int]:
    """``tcp://host:port`` or ``host:port`` (IPv6 in brackets) -> (host, port)."""
    rest = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected HOST:PORT or tcp://HOST:PORT, got {address!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


#: Bytes joined into one TLS send.
TLS_SEND_BYTES = 256 * 1024


class _Peer:
    __slots__ = ("sock", "fd", "out", "pending", "mask", "handshaking", "wants")

    def __init__(self, sock: Any, handshaking: bool = False) -> None:
        """``sock``: a ``socket.socket``, or an ``ssl.SSLSocket`` on a TLS listener."""
        self.handshaking = handshaking  # a TLS handshake is under way...
        self.wants = select.EPOLLIN  # ...and waits for this
        self.sock = sock
        self.fd = sock.fileno()
        self.mask = -1  # the epoll events asked for; -1: not registered yet
        self.out: deque[Any] = deque()
        self.pending = 0  # bytes waiting in ``out``


class AmqpListener:
    def __init__(self, wire: AmqpWire, address: str, tls: ssl.SSLContext | None = None) -> None:
        self.wire = wire
        self.address = address
        self.tls = tls
        self.endpoint = ""
        self._server: socket.socket | None = None
        self._peers: dict[int, _Peer] = {}
        self._by_fd: dict[int, int] = {}
        self._accept_after = 0.0
        #: Every socket is in one epoll set, itself polled by the loop: the wire's
        #: ``read_version`` the set's read interests were last brought up to.
        self._epoll = select.epoll()
        self._items = [(self._epoll.fileno(), POLLIN)]
        self._read_version = -1
        self._accept_paused = False
        #: Connections whose bytes the kernel did not all take: polled for POLLOUT.
        self._blocked_writes: set[int] = set()

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
        self._epoll.register(server.fileno(), select.EPOLLIN)
        bound_host, bound_port = server.getsockname()[:2]
        self.endpoint = f"[{bound_host}]:{bound_port}" if family == socket.AF_INET6 else f"{bound_host}:{bound_port}"
        return self.endpoint

    # -- polling ---------------------------------------------------------------------------

    def poll_items(self) -> list[tuple[int, int]]:
        """One descriptor for them all: an epoll set holding the server socket and every
        connection, so a loop pass costs what the active connections cost (with 1,000 idle
        connections a round trip took 658 us when each socket was polled, 180 us alone)."""
        self._sync_interest()
        return self._items

    def _sync_interest(self) -> None:
        wire = self.wire
        if self._read_version != wire.read_version:  # a connection came, went, paused or resumed
            self._read_version = wire.read_version
            reading, writes = wire.reading, self._blocked_writes
            for key, peer in self._peers.items():
                if peer.handshaking:
                    self._interest(peer, peer.wants)
                else:
                    self._interest(peer, (select.EPOLLIN if reading(key) else 0) |
                                   (select.EPOLLOUT if key in writes else 0))
        if self._accept_paused and time.monotonic() >= self._accept_after:
            assert self._server is not None
            self._epoll.register(self._server.fileno(), select.EPOLLIN)
            self._accept_paused = False

    def _interest(self, peer: "_Peer", mask: int) -> None:
        if mask == peer.mask:
            return
        if peer.mask < 0:
            self._epoll.register(peer.fd, mask)
        else:
            self._epoll.modify(peer.fd, mask)
        peer.mask = mask

    def handle(self, ready: list[tuple[Any, int]], now: float) -> None:
        """Act on the epoll set's events when ``zmq_poll`` says it has some."""
        epoll_fd = self._items[0][0]
        if not any(fd == epoll_fd for fd, _ in ready):
            return
        server_fd = self._server.fileno() if self._server is not None else -1
        for fd, events in self._epoll.poll(0):
            if fd == server_fd:
                self._accept(now)
                continue
            key = self._by_fd.get(fd)
            if key is None:
                continue
            if self._peers[key].handshaking:
                self._handshake(key, now)
                continue
            if events & select.EPOLLOUT:
                self._write(key, now)
            if events & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR) and key in self._peers:
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
                    self._epoll.unregister(self._server.fileno())
                    self._accept_paused = True
                    return
                log.warning("AMQP listener: accept failed: %s", exc)
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            key = self.wire.accept(address[0], address[1], now, self.endpoint, self.tls is not None)
            peer = _Peer(sock, handshaking=self.tls is not None)
            self._peers[key] = peer
            self._by_fd[peer.fd] = key
            if peer.handshaking:
                self._handshake(key, now)

    def _handshake(self, key: int, now: float) -> None:
        """Advance a TLS handshake; the wire hears the client only once it is done."""
        peer = self._peers[key]
        try:
            peer.sock.do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError) as exc:
            peer.wants = select.EPOLLIN if isinstance(exc, ssl.SSLWantReadError) else select.EPOLLOUT
            if peer.mask >= 0:  # (a new peer is registered at the next pass, with ``wants``)
                self._interest(peer, peer.wants)
            return
        except (ssl.SSLError, OSError) as exc:
            host, port = peer.sock.getpeername()[:2] if _connected(peer.sock) else ("?", 0)
            log.warning("AMQP TLS connection from %s:%s: handshake failed: %s", host, port,
                        getattr(exc, "reason", None) or exc)
            self._lost(key, now, "TLS handshake failed")
            return
        peer.handshaking = False
        self._read_version = -1  # back to the wire's read and write interests
        # The client's first bytes may have come with its last handshake message and sit
        # decrypted in the TLS layer already, where epoll cannot see them.
        self._read(key, now)

    def _read(self, key: int, now: float) -> None:
        peer = self._peers[key]
        try:
            data = peer.sock.recv(RECV_BYTES) if self.tls is None else _tls_recv(peer.sock, RECV_BYTES)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
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
        for key, buffers in self.wire.take_output(self.endpoint).items():
            peer = self._peers.get(key)
            if peer is None:
                continue
            peer.out.extend(buffers)
            peer.pending += sum(map(len, buffers))
            self._write(key, now)
        for key in self.wire.take_closing(self.endpoint):
            peer = self._peers.get(key)
            if peer is None:
                self.wire.connection_lost(key, now)
            elif not peer.out:
                self._close(key)
                self.wire.connection_lost(key, now)

    def _write(self, key: int, now: float) -> None:
        peer = self._peers[key]
        out = peer.out
        if peer.handshaking:
            return  # written once the handshake is done
        tls = self.tls is not None
        while out:
            try:
                if tls:
                    sent = peer.sock.send(_joined(out, TLS_SEND_BYTES))
                else:
                    sent = peer.sock.sendmsg([out[i] for i in range(min(len(out), IOV_BATCH))])
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                break
            except OSError as exc:
                out.clear()
                peer.pending = 0
                self._lost(key, now, f"socket error: {exc.strerror}")
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
        if out:
            self._blocked_writes.add(key)
            if peer.mask >= 0:
                self._interest(peer, peer.mask | select.EPOLLOUT)
        elif key in self._blocked_writes:
            self._blocked_writes.discard(key)
            self._interest(peer, peer.mask & ~select.EPOLLOUT)
        self.wire.output_pending(key, peer.pending)

    # -- closing ---------------------------------------------------------------------------

    def _lost(self, key: int, now: float, reason: str) -> None:
        self._close(key)
        self.wire.connection_lost(key, now, reason)

    def _close(self, key: int) -> None:
        peer = self._peers.pop(key, None)
        if peer is None:
            return
        self._by_fd.pop(peer.fd, None)
        self._blocked_writes.discard(key)
        if peer.mask >= 0:
            self._epoll.unregister(peer.fd)
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
        self._epoll.close()


def server_context(cert: str, key: str, ca: str | None = None, require_client_cert: bool = False) -> ssl.SSLContext:
    """The TLS context of an ``amqps`` listener: TLS 1.2 or later, the system's ciphers;
    with ``ca``, client certificates are asked for and checked against it (required with
    ``require_client_cert``, as RabbitMQ's ``verify_peer`` + ``fail_if_no_peer_cert``)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    if ca is not None:
        context.load_verify_locations(ca)
        context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    return context


def _tls_recv(sock: ssl.SSLSocket, limit: int) -> bytes:
    """Up to ``limit`` decrypted bytes. A TLS read returns one record at a time (a client
    writes a record per message), so this reads on until the socket has no more; what the
    TLS layer has decrypted already must be taken now, since epoll cannot see it. Raises
    SSLWantReadError only when nothing at all was there."""
    chunks: list[bytes] = []
    total = 0
    while total < limit:
        try:
            chunk = sock.recv(limit - total)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            if chunks:
                break
            raise
        if not chunk:
            break  # the end of the stream: returned as it is when it is all there is
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def _joined(out: deque[Any], limit: int) -> bytes:
    """The first buffers of ``out`` as one, up to about ``limit`` bytes."""
    parts, size = [], 0
    for buffer in out:
        parts.append(buffer)
        size += len(buffer)
        if size >= limit:
            break
    return b"".join(parts)


def _connected(sock: socket.socket) -> bool:
    try:
        sock.getpeername()
        return True
    except OSError:
        return False
