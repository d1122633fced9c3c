"""Helpers for tests that run real processes: a broker on a free port, client programs.

Readiness is always waited for by reading what a process prints, with a deadline;
no test sleeps to wait for start-up.
"""
from __future__ import annotations

import atexit
import contextlib
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Callable, Iterator

import msgpack
import pytest
import zmq

from zbroker import build as zbuild
from zbroker.client import exceptions as zexceptions
from zbroker.protocol import HEADER, Op
from zbroker.protocol.native_packed import decode_frames

#: This process runs the compiled build (``zbroker/build.py``; ``bin/test`` runs the
#: suite once compiled and once pure Python).
COMPILED = bool(zbuild.compiled_modules())
#: A test that patches a module's or a class's insides to watch or break them (a
#: compiled module's functions, globals and classes cannot be patched): it runs in the
#: pure-Python run of the suite, which checks the same source.
patches_internals = pytest.mark.skipif(COMPILED, reason="patches the insides of a compiled module; "
                                                        "the pure-Python run checks it")

try:  # real pika, for the tests that run over AMQP 0-9-1 too
    import pika as _real_pika
    #: ChannelClosedByBroker of zbroker's client and of real pika, to catch either.
    CHANNEL_CLOSED: tuple[type, ...] = (zexceptions.ChannelClosedByBroker,
                                        _real_pika.exceptions.ChannelClosedByBroker)
except ImportError:
    CHANNEL_CLOSED = (zexceptions.ChannelClosedByBroker,)

ROOT = Path(__file__).resolve().parent.parent
_DATA_ROOT: Path | None = None


def _data_root() -> Path:
    """One temporary directory for every test broker's data directory in this process,
    removed when the process exits: a broker restarted on a killed one's data directory
    still finds it, and no run leaves directories behind."""
    global _DATA_ROOT
    if _DATA_ROOT is None:
        _DATA_ROOT = Path(tempfile.mkdtemp(prefix="zbroker-test-"))
        atexit.register(shutil.rmtree, _DATA_ROOT, True)
    return _DATA_ROOT
CLIENTS = ROOT / "clients"
READY = re.compile(r"ready on (tcp://\S+):(\d+)")
AMQP_READY = re.compile(r"AMQP 0-9-1 listener on (\S+):(\d+)")
AMQPS_READY = re.compile(r"AMQP 0-9-1 TLS listener on (\S+):(\d+)")
START_TIMEOUT_S = 20.0
#: How long ``wait_for`` waits for a line unless told: generous, since a wait ends as soon
#: as its line comes, and a loaded machine can take seconds to start a client process.
WAIT_S = 30.0


def child_env(port: int | None = None) -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    if port is not None:
        env["ZBROKER_PORT"] = str(port)
    return env


class LineReader:
    """Collects a process's output lines on a thread so tests can wait for one."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = WAIT_S) -> re.Match[str]:
        """Wait for a line matching ``pattern`` (a regex), among lines seen so far or new ones."""
        rx = re.compile(pattern)
        for line in self.lines:
            m = rx.search(line)
            if m:
                return m
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line matching {pattern!r} within {timeout}s; got: {self.lines[-20:]}")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"process ended before a line matching {pattern!r}; got: {self.lines[-20:]}")
            self.lines.append(line)
            m = rx.search(line)
            if m:
                return m

    def wait_closed(self, timeout: float = 10.0) -> None:
        """Wait (up to ``timeout``) for the stream to end, then take in every line it gave:
        once its process has exited, ``lines`` is then the whole output."""
        self._thread.join(timeout)
        self.drain()

    def count(self, pattern: str) -> int:
        """How many lines matching ``pattern`` arrived so far (no waiting: wait for a line
        first when it is what makes the count meaningful)."""
        self.drain()
        rx = re.compile(pattern)
        return sum(1 for line in self.lines if rx.search(line))

    def drain(self) -> None:
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                return
            if line is not None:
                self.lines.append(line)


class Process:
    """A child process with its merged output read line by line."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path = ROOT) -> None:
        self.args = args
        self.popen = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      env=env, cwd=cwd)
        assert self.popen.stdout is not None
        self.output = LineReader(self.popen.stdout)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_for(self, pattern: str, timeout: float = WAIT_S) -> re.Match[str]:
        return self.output.wait_for(pattern, timeout)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)
        self.output.wait_closed()

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM (SIGKILL after ``timeout``); returns the exit code once the process and
        its output have ended, so what it printed last is in ``output.lines``."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)
        self.output.wait_closed()
        return self.popen.returncode

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for the process to exit and for its output to end; returns the exit code."""
        code = self.popen.wait(timeout)
        self.output.wait_closed()
        return code


class Broker(Process):
    """A real ``zbroker serve`` on a free loopback port, with its own data directory
    (a fresh temporary one unless ``data_dir`` names one to restart from, none with
    ``in_memory``); ``prefix``
    runs it under another command (``prlimit …``)."""

    def __init__(self, *extra: str, data_dir: Path | None = None, bind: str = "tcp://127.0.0.1:0",
                 prefix: tuple[str, ...] = (), in_memory: bool = False, amqp: str | None = "127.0.0.1:0") -> None:
        self.data_dir = data_dir if data_dir is not None else Path(tempfile.mkdtemp(prefix="broker-", dir=_data_root()))
        self._own_dir = data_dir is None
        store = ["--in-memory"] if in_memory else ["--data-dir", str(self.data_dir)]
        listen = ["--amqp", amqp] if amqp else []
        super().__init__([*prefix, sys.executable, "-m", "zbroker", "serve", "--bind", bind,
                          *store, *listen, "--log-level", "debug", *extra], child_env())
        #: The AMQP 0-9-1 listener's port (every test broker has one unless ``amqp=None``).
        self.amqp_port = int(self.wait_for(AMQP_READY.pattern, START_TIMEOUT_S).group(2)) if amqp else None
        #: The AMQP-over-TLS port when ``--amqps`` is among ``extra``.
        self.amqps_port = (int(self.wait_for(AMQPS_READY.pattern, START_TIMEOUT_S).group(2))
                           if "--amqps" in extra else None)
        m = self.wait_for(READY.pattern, START_TIMEOUT_S)
        self.host = "127.0.0.1"
        self.port = int(m.group(2))
        self.endpoint = f"tcp://127.0.0.1:{self.port}"

    def log(self) -> str:
        """The broker's output so far, without waiting: to check that a line was logged,
        ``wait_for`` it (a later line may still be on its way here)."""
        self.output.drain()
        return "\n".join(self.output.lines)

    def remove_data(self) -> None:
        """Delete the data directory if this broker made it (call once it has stopped)."""
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def pump_until(connection: object, done: Callable[[], bool], timeout: float = WAIT_S) -> None:
    """Run a blocking connection's I/O (its callbacks) until ``done()``: an event, waited
    for with a deadline, never a fixed sleep."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"not done within {timeout} s"
        connection.process_data_events(0.05)  # type: ignore[attr-defined]


def client_program(name: str, *args: str, port: int) -> Process:
    return Process([sys.executable, str(CLIENTS / name), *args], child_env(port))


def python_snippet(code: str, port: int) -> Process:
    return Process([sys.executable, "-c", code], child_env(port))


@contextlib.contextmanager
def hello_many(port: int, n: int) -> Iterator[dict[str, int]]:
    """``n`` raw connections, each saying HELLO, held open for the block; yields how the
    broker answered them, closes them all afterwards."""
    ctx = zmq.Context()
    ctx.set(zmq.MAX_SOCKETS, n + 64)  # a context option (setsockopt would set socket defaults)
    socks, answers = [], {"ok": 0, "refused": 0, "silent": 0}
    for _ in range(n):
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(f"tcp://127.0.0.1:{port}")
        sock.send_multipart([HEADER, msgpack.packb([Op.HELLO, None, "/", "guest", "guest", {}])])
        socks.append(sock)
    deadline = time.monotonic() + WAIT_S  # for all of them: each is counted as soon as it answers
    for sock in socks:
        reply = None
        while reply is None and sock.poll(max(0, int((deadline - time.monotonic()) * 1000))):
            parts = sock.recv_multipart()
            if parts != [HEADER]:  # a bare header is the broker's liveness probe
                reply = next(decode_frames(parts, 0))[0]
        if reply is None:
            answers["silent"] += 1
        else:
            answers["ok" if reply == Op.HELLO_OK else "refused"] += 1
    try:
        yield answers
    finally:
        for sock in socks:
            sock.close(0)
        ctx.term()


class FakeBroker(threading.Thread):
    """A ROUTER on a port of its own, in a thread, standing in for a broker whose replies
    a test scripts (``answer``: one received message, its routing id first)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            if self.sock.poll(50):
                self.answer(self.sock.recv_multipart())

    def answer(self, message: list[bytes]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.stop.set()
        self.join(5)
        self.sock.close(0)
        self.ctx.term()
