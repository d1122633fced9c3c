"""A pytest plugin: a real zbroker for your tests. ``pip install zbroker`` registers it
(the ``pytest11`` entry point), so these fixtures exist in every project that has it:

- ``zbroker``: one broker for the whole test session (``zbroker serve --in-memory`` on a
  free port, a real process), emptied before each test that uses it: every queue and
  every exchange a client declared is deleted.
- ``zbroker_channel``: a ``BlockingConnection`` channel to it, closed after the test.
- ``zbroker_factory``: brokers of the test's own (``zbroker_factory(durable=True)`` keeps
  a temporary data directory; ``.restart()`` and ``.kill()`` -- SIGKILL -- to test what
  survives), all stopped after the test.

Each of them (``zbroker``, and what ``zbroker_factory`` returns) is a ``BrokerProcess``.
To connect to it:

- ``parameters(**options)``: ``zbroker.client.ConnectionParameters`` for it, e.g.
  ``BlockingConnection(broker.parameters(heartbeat=5))``;
- ``url``: the same as a URL, ``zbroker://guest:guest@127.0.0.1:PORT/%2F``, for code that
  takes one (``zbroker.client.URLParameters(broker.url)``);
- ``host``, ``port`` and ``endpoint`` (``tcp://127.0.0.1:PORT``), for code that takes a
  host and port (or set ``ZBROKER_HOST``/``ZBROKER_PORT`` for a program under test);
- ``amqp_port`` and ``amqp_url`` (``amqp://guest:guest@127.0.0.1:PORT/%2F``): every broker
  also speaks AMQP 0-9-1 on a free port, for code written against real pika, kombu,
  Celery or aio-pika;
- ``management(verb, **arguments)``: what ``zbroker ctl`` asks (``management("list",
  kind="queues")``).
"""
from __future__ import annotations

import re
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

READY = re.compile(r"ready on (tcp://\S+)")
AMQP_READY = re.compile(r"AMQP 0-9-1 listener on \S+:(\d+)")
START_TIMEOUT_S = 30.0


class BrokerProcess:
    """A ``zbroker serve`` process on a free port."""

    def __init__(self, data_dir: Path | None = None, extra_args: tuple[str, ...] = ()) -> None:
        self.data_dir = data_dir
        self.extra_args = extra_args
        self.endpoint = ""
        self.port = 0
        self.amqp_port = 0
        self.host = "127.0.0.1"
        self.process: subprocess.Popen | None = None
        self.log: list[str] = []

    def start(self) -> "BrokerProcess":
        bind = f"tcp://127.0.0.1:{self.port}"
        store = ["--data-dir", str(self.data_dir)] if self.data_dir else ["--in-memory"]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "zbroker", "serve", "--bind", bind, *store, "--log-level", "warning",
             "--amqp", f"127.0.0.1:{self.amqp_port}", *self.extra_args],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        found = threading.Event()
        threading.Thread(target=self._read_log, args=(found,), daemon=True).start()
        if not found.wait(START_TIMEOUT_S) or not self.endpoint:
            self.kill()
            raise RuntimeError("zbroker did not start:\n" + "".join(self.log[-20:]))
        self.port = int(self.endpoint.rsplit(":", 1)[1])  # kept across restarts
        return self

    def _read_log(self, found: threading.Event) -> None:
        assert self.process is not None and self.process.stderr is not None  # set by start()
        for line in self.process.stderr:
            self.log.append(line)
            listener = AMQP_READY.search(line)
            if listener:
                self.amqp_port = int(listener.group(1))  # kept across restarts, as the port
            match = READY.search(line)
            if match:
                self.endpoint = match.group(1)
                found.set()
        found.set()  # the process ended

    def parameters(self, **options: Any) -> Any:
        from zbroker.client import ConnectionParameters
        return ConnectionParameters(self.host, self.port, **options)

    @property
    def url(self) -> str:
        """Where ``zbroker.client`` connects, as a URL (RabbitMQ's default user, from loopback)."""
        return f"zbroker://guest:guest@{self.host}:{self.port}/%2F"

    @property
    def amqp_url(self) -> str:
        """Where unmodified AMQP clients connect (RabbitMQ's default user, from loopback)."""
        return f"amqp://guest:guest@{self.host}:{self.amqp_port}/%2F"

    def management(self, verb: str, **arguments: Any) -> Any:
        from zbroker.management.client import ManagementClient
        with ManagementClient(self.endpoint) as client:
            return client.request(verb, **arguments)

    def stop(self) -> None:
        """SIGTERM, as an operator stops it: it commits and says goodbye to its clients."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """SIGKILL: the broker dies mid-flight, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self) -> "BrokerProcess":
        self.stop()
        return self.start()


@pytest.fixture(scope="session")
def _zbroker_session() -> Iterator[BrokerProcess]:
    broker = BrokerProcess().start()
    yield broker
    broker.stop()


@pytest.fixture
def zbroker(_zbroker_session: BrokerProcess) -> BrokerProcess:
    """The session's broker, emptied of queues and exchanges first."""
    if _zbroker_session.process is None or _zbroker_session.process.poll() is not None:
        _zbroker_session.start()  # a test killed it
    _zbroker_session.management("reset")
    return _zbroker_session


@pytest.fixture
def zbroker_channel(zbroker: BrokerProcess) -> Iterator[Any]:
    from zbroker.client import BlockingConnection
    connection = BlockingConnection(zbroker.parameters())
    yield connection.channel()
    if connection.is_open:
        connection.close()


@pytest.fixture
def zbroker_factory() -> Iterator[Callable[..., BrokerProcess]]:
    started: list[BrokerProcess] = []
    directories: list[tempfile.TemporaryDirectory] = []

    def start(durable: bool = False, *extra_args: str) -> BrokerProcess:
        data_dir = None
        if durable:
            directories.append(tempfile.TemporaryDirectory(prefix="zbroker-test-"))
            data_dir = Path(directories[-1].name)
        broker = BrokerProcess(data_dir, extra_args).start()
        started.append(broker)
        return broker

    yield start
    for broker in started:
        broker.stop()
    for directory in directories:
        directory.cleanup()


__all__ = ["BrokerProcess", "zbroker", "zbroker_channel", "zbroker_factory"]
