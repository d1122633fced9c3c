"""The practical limit on this machine: raw pyzmq between processes, no broker logic."""
from __future__ import annotations

import time
from typing import Any

import zmq

from zbroker.bench.roles import BODY_100


def pull(endpoint: str, count: int, report: Any) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PULL)
    sock.bind(endpoint)
    report.put(("ready", None))
    sock.recv()
    started = time.perf_counter()
    for _ in range(count - 1):
        sock.recv()
    report.put(("received", time.perf_counter() - started))
    sock.close(0)
    ctx.term()


def push(endpoint: str, count: int) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    sock.connect(endpoint)
    for _ in range(count):
        sock.send(BODY_100)
    sock.close()
    ctx.term()
