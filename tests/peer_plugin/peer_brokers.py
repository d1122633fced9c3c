"""Brokers for third-party client suites (``bin/peer-suites``), standard library only:
this module is imported both by ``tests/peer_suites.py`` (the project's Python) and by
the pytest plugins beside it, which run inside the peer suites' own virtualenv.

* :class:`Zbroker` -- a ``zbroker serve`` on fixed free loopback ports (AMQP, optionally
  AMQP over TLS) with its own data directory, which can be SIGKILLed, stopped (SIGTERM)
  and started again on the same ports and the same data, like a container.
* :class:`LocalRabbitMQ` -- the control of a RabbitMQ on this machine through
  ``rabbitmqctl`` (``stop_app``, ``start_app``, SIGKILL of its Erlang VM and a restart),
  for the tests that restart their broker.

Configuration travels in ``PEER_*`` environment variables (see :func:`target_from_env`).
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

READY = re.compile(r"ready on tcp://\S+:(\d+)")
START_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_amqp(host: str, port: int, timeout: float = 45.0) -> None:
    """Until ``host:port`` answers an AMQP protocol header with something (the broker's
    ``connection.start``)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=2) as sock:
                sock.sendall(b"AMQP\x00\x00\x09\x01")
                if sock.recv(4):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"no AMQP broker answered on {host}:{port} within {timeout:.0f} s")
        time.sleep(0.2)


class Zbroker:
    """One ``zbroker serve``; ``start()`` again after ``kill()``/``stop()`` reuses its
    ports and data directory."""

    def __init__(self, command: list[str], *, work_dir: Path, log_dir: Path, name: str,
                 tls: tuple[str, str] | None = None, in_memory: bool = False,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.command = command
        self.extra_args = list(extra_args)
        self.name = name
        self.data_dir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=work_dir))
        self.log_path = log_dir / f"{name}.log"
        self.tls = tls
        self.in_memory = in_memory
        self.host = "127.0.0.1"
        self.amqp_port = free_port()
        self.amqps_port = free_port() if tls else None
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def argv(self) -> list[str]:
        store = ["--in-memory"] if self.in_memory else ["--data-dir", str(self.data_dir)]
        argv = [*self.command, "serve", "--bind", "tcp://127.0.0.1:0", *store,
                "--amqp", f"{self.host}:{self.amqp_port}", "--log-level", "info"]
        if self.tls:
            argv += ["--amqps", f"{self.host}:{self.amqps_port}",
                     "--tls-cert", self.tls[0], "--tls-key", self.tls[1]]
        return argv + self.extra_args

    def start(self) -> None:
        if self.running():
            return
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"=== start #{self.starts}: {shlex.join(self.argv())}\n".encode())
            log.flush()
            offset = log.tell()
            # cwd: the data directory, so that ``python -m zbroker`` imports the zbroker
            # that PYTHONPATH or the install names, not one in the caller's directory.
            self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.data_dir)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            with open(self.log_path, "rb") as log:
                log.seek(offset)
                if READY.search(log.read().decode(errors="replace")):
                    break
            if self.proc.poll() is not None:
                raise RuntimeError(f"zbroker exited with {self.proc.returncode} at start; see {self.log_path}")
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"zbroker not ready within {START_TIMEOUT_S:.0f} s; see {self.log_path}")
            time.sleep(0.05)
        wait_for_amqp(self.host, self.amqp_port, START_TIMEOUT_S)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.running():
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM: the broker's clean shutdown (what ``rabbitmqctl stop_app`` is to RabbitMQ)."""
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def remove(self) -> None:
        self.kill()
        shutil.rmtree(self.data_dir, ignore_errors=True)


class LocalRabbitMQ:
    """A RabbitMQ node on this machine, driven with ``rabbitmqctl``. ``kill()`` SIGKILLs its
    Erlang VM (what ``docker kill`` does to a container); ``start()`` runs ``start_command``
    (by default ``rabbitmq-server -detached``, with this process's environment, so
    ``RABBITMQ_CONFIG_FILE`` and friends carry over) and waits for the node."""

    def __init__(self, host: str, port: int, ctl: str = "rabbitmqctl",
                 start_command: str = "rabbitmq-server -detached") -> None:
        self.host, self.port = host, port
        self.ctl = shlex.split(ctl)
        self.start_command = start_command

    def run_ctl(self, *args: str, timeout: float = 60.0) -> str:
        done = subprocess.run([*self.ctl, *args], capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{shlex.join([*self.ctl, *args])} failed: {done.stderr.strip() or done.stdout.strip()}")
        return done.stdout

    def up(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1):
                return True
        except OSError:
            return False

    def stop_app(self) -> None:
        self.run_ctl("stop_app")

    def start_app(self) -> None:
        self.run_ctl("start_app")
        wait_for_amqp(self.host, self.port)

    def kill(self) -> None:
        pid = int(self.run_ctl("eval", "os:getpid().").strip().strip('"'))
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while self.up() and time.monotonic() < deadline:
            time.sleep(0.1)

    def start(self) -> None:
        if self.up():
            return
        # A node started right after a SIGKILL can die at boot with eaddrinuse on its
        # listener (the dead VM's sockets linger a moment): start it again until it stays.
        deadline = time.monotonic() + 120
        while True:
            subprocess.run(self.start_command, shell=True, timeout=60,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            launched = time.monotonic()
            while time.monotonic() - launched < 10 or self._ctl_ok("ping"):
                if self._ctl_ok("await_startup", "--timeout", "5") and self.up():
                    wait_for_amqp(self.host, self.port)
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError("RabbitMQ did not start within 120 s")
                time.sleep(0.5)
            if time.monotonic() > deadline:
                raise TimeoutError("RabbitMQ did not start within 120 s")

    def _ctl_ok(self, *args: str) -> bool:
        return subprocess.run([*self.ctl, *args], capture_output=True, timeout=60).returncode == 0

    def delete_queues(self) -> None:
        """Every queue of vhost ``/`` deleted: the nearest thing to a fresh container."""
        for name in self.run_ctl("list_queues", "-q", "--no-table-headers", "name").splitlines():
            if name.strip():
                subprocess.run([*self.ctl, "delete_queue", name.strip()], capture_output=True, timeout=60)


class Target:
    """Where a suite's broker comes from (read from the environment by the plugins)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.kind = env.get("PEER_TARGET", "zbroker")
        self.work_dir = Path(env.get("PEER_WORK_DIR") or tempfile.mkdtemp(prefix="peer-suites-"))
        self.log_dir = Path(env.get("PEER_LOG_DIR") or self.work_dir)
        if self.kind == "zbroker":
            self.command = json.loads(env["PEER_ZBROKER_CMD"])
            cert, key = env.get("PEER_TLS_CERT"), env.get("PEER_TLS_KEY")
            self.tls = (cert, key) if cert and key else None
            self.in_memory = env.get("PEER_IN_MEMORY") == "1"
        else:
            url = urlsplit(env["PEER_URL"])
            self.host = url.hostname or "127.0.0.1"
            self.port = url.port or 5672
            self.amqps_port = int(env["PEER_AMQPS_PORT"]) if env.get("PEER_AMQPS_PORT") else None
            self.control = (LocalRabbitMQ(self.host, self.port, env.get("PEER_RABBITMQCTL", "rabbitmqctl"),
                                          env.get("PEER_RABBITMQ_START", "rabbitmq-server -detached"))
                            if env.get("PEER_CONTROL") == "local-rabbitmq" else None)
        self.count = 0

    def new_zbroker(self, tls: bool) -> Zbroker:
        self.count += 1
        return Zbroker(self.command, work_dir=self.work_dir, log_dir=self.log_dir,
                       name=f"zbroker-{self.count}", tls=self.tls if tls else None, in_memory=self.in_memory)


def target_from_env() -> Target:
    return Target(dict(os.environ))
