"""The shovel supervisor: one worker process per dynamic shovel, run beside the broker's
loop (RabbitMQ's ``rabbit_shovel_dyn_worker_sup_sup``).

Rules of this module:
- What should run is the core's (``core/shovels.py``: ``wanted``, with a ``version`` that
  moves on each change); each loop pass with a new version starts, restarts (a changed
  definition) and stops workers to match. Nothing here decides what a shovel means.
- A worker is ``python -m zbroker.shovel.worker`` (``zbroker/shovel/worker.py``), given
  its config as one JSON line on stdin; its stdin stays open and its end (our close, or
  our death, even by SIGKILL) tells it to go. Its status lines on stdout are read in the
  loop (the pipe is polled beside the sockets) and handed to the core
  (``Broker.shovel_report``). Its log goes to the broker's stderr.
- Why a process and not a thread: a shovel moves every message through Python twice
  (a consume and a publish); in a thread it would share the broker's interpreter lock
  and take the loop's time from every other client. A process costs one interpreter
  (~30 MB) per shovel and gives the loop its core back (the note of the change that
  chose this has the figures).
- ``amqp://`` (no host) is this broker: the worker connects to a loopback AMQP listener
  the server opens for it (``local``) and logs in with the server's internal secret
  (``users.py``), never a user's password.
- A worker that dies without being asked to is reported (``terminated``, with its exit
  status) and started again after ``RESTART_DELAY_S``, while its shovel is still wanted.
- A worker asked to stop gets its stdin closed, then SIGTERM after ``STOP_GRACE_S``,
  then SIGKILL; the loop never waits for it.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

from zbroker.core import Broker

log = logging.getLogger(__name__)

POLLIN = 1  # zmq_poll's POLLIN, for plain descriptors
#: Seconds before a worker that died on its own is started again.
RESTART_DELAY_S = 5.0
#: Seconds a stopped worker has to leave before SIGTERM, and again before SIGKILL.
STOP_GRACE_S = 5.0
#: Bytes read from a worker's stdout per pass.
READ_BYTES = 64 * 1024


@dataclass
class Worker:
    vhost: str
    name: str
    definition: dict
    restarts: int
    process: subprocess.Popen
    fd: int
    buffer: bytearray = field(default_factory=bytearray)
    #: Monotonic time at which a stopping worker gets its next signal (None: running).
    stop_at: float | None = None
    signals: list[int] = field(default_factory=lambda: [signal.SIGTERM, signal.SIGKILL])


class ShovelSupervisor:
    def __init__(self, broker: Broker, local: Callable[[], tuple[str, int]], secret: bytes) -> None:
        """``local``: opens (once) and gives the loopback AMQP listener's host and port."""
        self.broker = broker
        self._local = local
        self._secret = secret
        self._version = 0  # (the core starts at 0: nothing wanted yet)
        self.workers: dict[tuple[str, str], Worker] = {}
        #: Workers asked to stop, until they have gone.
        self.stopping: list[Worker] = []
        #: Shovels whose worker died: monotonic time of the next start.
        self.restart_at: dict[tuple[str, str], float] = {}

    # -- the loop's view ---------------------------------------------------------------

    @property
    def behind(self) -> bool:
        """The core's wanted shovels changed since the last ``sync``."""
        return self._version != self.broker.shovels.version

    def poll_items(self) -> list[tuple[int, int]]:
        return [(w.fd, POLLIN) for w in self.workers.values()] + [(w.fd, POLLIN) for w in self.stopping]

    def next_deadline(self) -> float | None:
        """The soonest monotonic time something is due (a restart, a signal)."""
        due = [*self.restart_at.values(), *(w.stop_at for w in self.stopping if w.stop_at is not None)]
        return min(due) if due else None

    def handle(self, ready: list[tuple[Any, int]], now: float, mono: float) -> None:
        """One loop pass: read the workers that spoke, reap the ones that left, act on due
        restarts and signals, and follow the core's wanted set."""
        if ready:
            fds = {fd for fd, _ in ready if isinstance(fd, int)}
            for worker in [w for w in self.workers.values() if w.fd in fds]:
                self._read(worker, now, mono)
            for worker in [w for w in self.stopping if w.fd in fds]:
                self._drain_stopping(worker)
        self._signal_stopping(mono)
        if self.behind:
            self.sync(now, mono)
        for key, when in list(self.restart_at.items()):
            if when <= mono:
                del self.restart_at[key]
                definition = self.broker.shovels.wanted.get(key)
                if definition is not None and key not in self.workers:
                    self._start(key, definition)

    def sync(self, now: float, mono: float) -> None:
        """Start, restart and stop workers to match the core's wanted shovels."""
        self._version = self.broker.shovels.version
        wanted, restarts = self.broker.shovels.wanted, self.broker.shovels.restarts
        for key, worker in list(self.workers.items()):
            if wanted.get(key) != worker.definition or restarts.get(key, 0) != worker.restarts:
                self._stop(key, mono)
        for key in [key for key in self.restart_at if key not in wanted]:
            del self.restart_at[key]
        for key, definition in wanted.items():
            if key not in self.workers and key not in self.restart_at:
                self._start(key, definition)

    # -- workers -----------------------------------------------------------------------

    def _start(self, key: tuple[str, str], definition: dict) -> None:
        vhost, name = key
        try:
            host, port = self._local()
        except OSError as exc:
            self.broker.shovel_report(vhost, name, {"state": "terminated",
                                                    "error": f"no loopback AMQP listener for amqp://: {exc}"},
                                      self.broker.now)
            return
        config = {"vhost": vhost, "name": name, "definition": definition,
                  "local": {"host": host, "port": port, "secret": self._secret.hex()}}
        process = subprocess.Popen([sys.executable, "-m", "zbroker.shovel.worker"], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, close_fds=True)
        assert process.stdin is not None and process.stdout is not None  # (PIPE given; not peer input)
        process.stdin.write(json.dumps(config).encode() + b"\n")
        process.stdin.flush()
        fd = process.stdout.fileno()
        os.set_blocking(fd, False)
        self.workers[key] = Worker(vhost, name, definition, self.broker.shovels.restarts.get(key, 0), process, fd)
        log.info("shovel '%s' in vhost '%s': worker %d started", name, vhost, process.pid)

    def _read(self, worker: Worker, now: float, mono: float) -> None:
        try:
            chunk = os.read(worker.fd, READ_BYTES)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._exited(worker, now, mono)
            return
        worker.buffer += chunk
        *lines, rest = worker.buffer.split(b"\n")
        worker.buffer = bytearray(rest)
        for line in lines:
            try:
                report = json.loads(line)
            except ValueError:
                log.warning("shovel '%s': unreadable status line %r", worker.name, line[:200])
                continue
            if isinstance(report, dict):
                self.broker.shovel_report(worker.vhost, worker.name, report, now)

    def _exited(self, worker: Worker, now: float, mono: float) -> None:
        """A running worker's stdout closed: it left without being asked."""
        key = (worker.vhost, worker.name)
        self.workers.pop(key, None)
        code = worker.process.wait()
        self._close_pipes(worker)
        if key in self.broker.shovels.wanted:
            log.warning("shovel '%s' in vhost '%s': worker exited (%s); restarting in %.0f s",
                        worker.name, worker.vhost, code, RESTART_DELAY_S)
            self.broker.shovel_report(worker.vhost, worker.name,
                                      {"state": "terminated", "error": f"worker exited with status {code}"}, now)
            self.restart_at[key] = mono + RESTART_DELAY_S

    def _stop(self, key: tuple[str, str], mono: float) -> None:
        worker = self.workers.pop(key)
        log.info("shovel '%s' in vhost '%s': stopping worker %d", worker.name, worker.vhost, worker.process.pid)
        self._close_stdin(worker)
        worker.stop_at = mono + STOP_GRACE_S
        self.stopping.append(worker)

    def _drain_stopping(self, worker: Worker) -> None:
        try:
            if os.read(worker.fd, READ_BYTES):
                return  # (what a stopping worker still says is of no use)
        except BlockingIOError:
            return
        except OSError:
            pass
        worker.process.wait()
        self._close_pipes(worker)
        self.stopping.remove(worker)

    def _signal_stopping(self, mono: float) -> None:
        for worker in list(self.stopping):
            if worker.process.poll() is not None:
                self._close_pipes(worker)
                self.stopping.remove(worker)
            elif worker.stop_at is not None and worker.stop_at <= mono:
                sig = worker.signals.pop(0) if worker.signals else signal.SIGKILL
                log.warning("shovel '%s': worker %d still running; sending %s", worker.name, worker.process.pid,
                            signal.Signals(sig).name)
                worker.process.send_signal(sig)
                worker.stop_at = mono + STOP_GRACE_S

    def close(self) -> None:
        """The server stops: every worker is told (stdin closed), then waited for briefly."""
        workers = list(self.workers.values()) + self.stopping
        for worker in workers:
            self._close_stdin(worker)
        for worker in workers:
            try:
                worker.process.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
            self._close_pipes(worker)
        self.workers.clear()
        self.stopping.clear()

    @staticmethod
    def _close_stdin(worker: Worker) -> None:
        try:
            if worker.process.stdin is not None:
                worker.process.stdin.close()
        except OSError:
            pass

    def _close_pipes(self, worker: Worker) -> None:
        self._close_stdin(worker)
        if worker.process.stdout is not None:
            worker.process.stdout.close()
