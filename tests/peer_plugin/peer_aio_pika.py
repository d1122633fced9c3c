"""pytest plugin for aio-pika's own test suite (``-p peer_aio_pika``), run by
``bin/peer-suites``: their files stay untouched, the plugin replaces the Docker client
their conftest starts brokers with.

aio-pika's ``tests/conftest.py`` refuses to run without a Docker daemon
(``pytest_configure`` calls ``check_docker_available``) and starts
``mosquito/aiormq-rabbitmq`` containers through ``tests.docker_client.DockerClient``
(the session broker with ports 5672 and 5671, and a fresh broker per test in
``test_robust_recovery.py``, which also ``docker kill``s / ``docker start``s it and execs
``rabbitmqctl stop_app`` / ``start_app`` in it). When their conftest registers, this
plugin swaps that client for :class:`BrokerDocker`:

* target ``zbroker``: every "container" is a ``zbroker serve`` of its own (fresh data
  directory, fixed free ports; 5671 is zbroker's ``--amqps`` listener with a self-signed
  certificate); kill = SIGKILL, stop_app = SIGTERM (its clean shutdown), start and
  start_app = the same broker started again on the same ports and data.
* target ``external`` (``--against URL``): every container is that broker. With
  ``PEER_CONTROL=local-rabbitmq`` kill/start/stop_app/start_app drive the local RabbitMQ
  (SIGKILL of its VM, ``rabbitmq-server -detached``, ``rabbitmqctl``), and each new
  container starts with vhost ``/`` emptied of queues; without it the tests that need
  to restart the broker are skipped.
"""
from __future__ import annotations

import atexit
import itertools
import sys
from typing import Any

import pytest

from peer_brokers import Target, target_from_env, wait_for_amqp

TARGET: Target | None = None
CONTAINERS: dict[str, Any] = {}
EXECS: dict[str, int] = {}
PHASE = "setup"
_ids = itertools.count(1)


def _target() -> Target:
    global TARGET
    if TARGET is None:
        TARGET = target_from_env()
    return TARGET


class External:
    """The external broker as one "container"."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.control = target.control

    def need_control(self, what: str) -> None:
        if self.control is None:
            pytest.skip(f"{what} needs control of the broker under test (bin/peer-suites --against-local-rabbitmq)")


def _kill_all() -> None:
    for container in list(CONTAINERS.values()):
        if not isinstance(container, External):
            container.remove()
    CONTAINERS.clear()


atexit.register(_kill_all)


def make_docker_client(real_module: Any) -> type:
    """A subclass of their ``DockerClient`` (so ``_parse_ports`` and the rest stay theirs)
    whose containers are brokers of the target."""
    base = real_module.DockerClient
    container_info = real_module.ContainerInfo

    class BrokerDocker(base):  # type: ignore[misc, valid-type]
        def __init__(self, docker_host_info: Any = None) -> None:
            self.docker_host_info = real_module.DockerHostInfo(is_tcp=False, socket_path="(no docker: peer-suites)")

        # -- the container API their tests and fixtures use ---------------------------
        def run(self, image: str, ports: list[str], environment: dict[str, str] | None = None) -> Any:
            target = _target()
            container_id = f"peer-{next(_ids)}"
            if target.kind == "zbroker":
                broker = target.new_zbroker(tls="5671/tcp" in ports)
                CONTAINERS[container_id] = broker
                broker.start()
            else:
                broker = External(target)
                CONTAINERS[container_id] = broker
                if broker.control is not None:
                    broker.control.start()
                    broker.control.delete_queues()
            info = self.inspect(container_id)
            return container_info(id=container_id, ports=self._parse_ports(info), host="127.0.0.1")

        def inspect(self, container_id: str) -> dict:
            broker = CONTAINERS[container_id]
            if isinstance(broker, External):
                ports = {"5672/tcp": broker.target.port, "5671/tcp": broker.target.amqps_port}
            else:
                ports = {"5672/tcp": broker.amqp_port, "5671/tcp": broker.amqps_port}
            return {"Id": container_id, "NetworkSettings": {"Ports": {
                name: [{"HostIp": "127.0.0.1", "HostPort": str(port)}] for name, port in ports.items() if port}}}

        def start(self, container_id: str) -> None:
            broker = CONTAINERS[container_id]
            if isinstance(broker, External):
                broker.need_control("docker start")
                broker.control.start()
            else:
                broker.start()

        def kill(self, container_id: str) -> None:
            broker = CONTAINERS.get(container_id)
            if broker is None:
                return
            if isinstance(broker, External):
                if PHASE == "teardown":
                    return  # a fixture letting its "container" go: the external broker stays
                broker.need_control("docker kill")
                broker.control.kill()
            else:
                broker.kill()

        def stop(self, container_id: str, timeout: int = 10) -> None:
            broker = CONTAINERS[container_id]
            if isinstance(broker, External):
                if PHASE == "teardown":
                    return
                broker.need_control("docker stop")
                broker.control.stop_app()
            else:
                broker.stop(timeout)

        def remove(self, container_id: str) -> None:
            broker = CONTAINERS.pop(container_id, None)
            if broker is None:
                return
            if isinstance(broker, External):
                if broker.control is not None and not broker.control.up():
                    broker.control.start()
            else:
                broker.remove()

        def pull(self, image: str) -> None:
            pass

        # -- ``docker exec <id> rabbitmqctl stop_app|start_app`` through the raw API ----
        def _request(self, method: str, path: str, body: dict | None = None) -> Any:
            parts = path.strip("/").split("/")
            if method == "POST" and len(parts) == 3 and parts[0] == "containers" and parts[2] == "exec":
                exec_id = f"exec-{next(_ids)}"
                EXECS[exec_id] = self._exec(parts[1], list((body or {}).get("Cmd") or []))
                return {"Id": exec_id}
            if method == "POST" and len(parts) == 3 and parts[0] == "exec" and parts[2] == "start":
                return None
            if method == "GET" and len(parts) == 3 and parts[0] == "exec" and parts[2] == "json":
                return {"Running": False, "ExitCode": EXECS.pop(parts[1], 0)}
            raise RuntimeError(f"peer-suites: Docker API call {method} {path} is not emulated")

        def _request_stream(self, method: str, path: str) -> None:
            pass

        def _exec(self, container_id: str, cmd: list[str]) -> int:
            broker = CONTAINERS[container_id]
            if cmd[:1] != ["rabbitmqctl"] or cmd[1:] not in (["stop_app"], ["start_app"]):
                raise RuntimeError(f"peer-suites: exec {cmd} is not emulated")
            action = cmd[1]
            if isinstance(broker, External):
                broker.need_control(f"rabbitmqctl {action}")
                broker.control.stop_app() if action == "stop_app" else broker.control.start_app()
            elif action == "stop_app":
                broker.stop()
            else:
                broker.start()
                wait_for_amqp(broker.host, broker.amqp_port)
            return 0

    return BrokerDocker


def _patch(conftest: Any) -> None:
    real = sys.modules[conftest.DockerClient.__module__]  # their tests.docker_client
    fake = make_docker_client(real)
    host_info = real.DockerHostInfo(is_tcp=False, socket_path="(no docker: peer-suites)")
    real.DockerClient = fake                      # test modules import it from here later
    real.check_docker_available = lambda: host_info
    conftest.DockerClient = fake                  # their ``docker`` fixture builds one
    conftest.check_docker_available = lambda: host_info  # their pytest_configure


def pytest_plugin_registered(plugin: Any, manager: Any) -> None:
    name = getattr(plugin, "__name__", "")
    if name.endswith("conftest") and hasattr(plugin, "check_docker_available") and hasattr(plugin, "DockerClient"):
        _patch(plugin)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: Any) -> None:
    global PHASE
    PHASE = "setup"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: Any) -> None:
    global PHASE
    PHASE = "call"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: Any, nextitem: Any) -> None:
    global PHASE
    PHASE = "teardown"


def pytest_collection_modifyitems(config: Any, items: list) -> None:
    target = _target()
    if target.kind == "external" and target.amqps_port is None:
        skip = pytest.mark.skip(reason="needs the broker's TLS port (bin/peer-suites --against-amqps-port)")
        for item in items:
            if "TestCaseAMQPS" in item.nodeid:
                item.add_marker(skip)


def pytest_unconfigure(config: Any) -> None:
    _kill_all()


def pytest_report_header(config: Any) -> str:
    target = _target()
    if target.kind == "zbroker":
        return f"peer-suites: brokers are zbroker ({' '.join(target.command)}), logs in {target.log_dir}"
    control = "controlled through rabbitmqctl" if target.control else "without control"
    return f"peer-suites: broker is {target.host}:{target.port} (TLS port {target.amqps_port}), {control}"
