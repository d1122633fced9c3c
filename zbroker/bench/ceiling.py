"""The practical limit on this machine, in the same process layouts as the workloads.

``relay`` is a bare pyzmq ROUTER in its own process that forwards what producers send to
consumers: round robin, to all, to nobody (counting), or request/reply. No routing tables,
no queues, no acks, no properties: what is left is the cost of Python moving ZeroMQ
frames between processes, with the same fast send/receive calls zbroker uses. ``push``/``pull`` is rawer still: two processes, no relay.
"""
from __future__ import annotations

import itertools
import time
from typing import Any

import zmq

from zbroker.bench.roles import BODY_100
from zbroker.transport import recv_parts, send_parts

HELLO, OK, DATA, CALL, REPLY = b"hello", b"ok", b"data", b"call", b"reply"


def relay(endpoint: str, mode: str, expect: int, report: Any) -> None:
    """Forward until killed. ``mode``: ``rr``, ``fanout``, ``sink`` (count to ``expect``), ``rpc``."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.bind(endpoint)
    report.put(("relay", None))
    consumers: list[bytes] = []
    servers: list[bytes] = []
    turn = itertools.count()
    count = 0
    while True:
        peer, kind, *rest = recv_parts(sock, routed=True)
        if kind == DATA:
            if mode == "rr":
                send_parts(sock, [consumers[next(turn) % len(consumers)], DATA, rest[0]])
            elif mode == "fanout":
                for c in consumers:
                    send_parts(sock, [c, DATA, rest[0]])
            else:
                count += 1
                if count == expect:
                    report.put(("end", time.time()))
        elif kind == CALL:
            send_parts(sock, [servers[0], peer, rest[0]])
        elif kind == REPLY:
            send_parts(sock, [rest[0], REPLY, rest[1]])
        elif kind == HELLO:
            (servers if rest[0] == b"server" else consumers if rest[0] == b"consumer" else []).append(peer)
            send_parts(sock, [peer, OK])


def _dealer(endpoint: str, role: bytes) -> tuple[Any, Any]:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.connect(endpoint)
    send_parts(sock, [HELLO, role])
    recv_parts(sock)
    return ctx, sock


def relay_producer(endpoint: str, count: int, report: Any, go: Any) -> None:
    ctx, sock = _dealer(endpoint, b"producer")
    report.put(("ready", None))
    go.wait()
    for _ in range(count):
        send_parts(sock, [DATA, BODY_100])
    sock.close()  # linger: everything queued is still sent
    ctx.term()
    report.put(("sent", count))


def relay_consumer(endpoint: str, expect: int, report: Any, go: Any) -> None:
    ctx, sock = _dealer(endpoint, b"consumer")
    report.put(("ready", None))
    go.wait()
    for _ in range(expect):
        recv_parts(sock)
    report.put(("done", (expect, time.time())))
    sock.close(0)
    ctx.term()


def relay_server(endpoint: str, report: Any, go: Any) -> None:
    ctx, sock = _dealer(endpoint, b"server")
    report.put(("ready", None))
    while True:
        client, body = recv_parts(sock)
        send_parts(sock, [REPLY, client, body])


def relay_client(endpoint: str, calls: int, report: Any, go: Any) -> None:
    ctx, sock = _dealer(endpoint, b"client")
    report.put(("ready", None))
    go.wait()
    latencies = []
    for _ in range(calls):
        started = time.perf_counter()
        send_parts(sock, [CALL, BODY_100])
        recv_parts(sock)
        latencies.append(time.perf_counter() - started)
    report.put(("latencies", latencies))
    sock.close(0)
    ctx.term()


def pull(endpoint: str, count: int, report: Any, go: Any) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PULL)
    sock.bind(endpoint)
    report.put(("ready", None))
    sock.recv()
    started = time.perf_counter()
    for _ in range(count - 1):
        sock.recv()
    report.put(("elapsed", time.perf_counter() - started))
    sock.close(0)
    ctx.term()


def push(endpoint: str, count: int, report: Any, go: Any) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    sock.connect(endpoint)
    report.put(("ready", None))
    go.wait()
    for _ in range(count):
        sock.send(BODY_100)
    sock.close()
    ctx.term()
