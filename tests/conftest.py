"""Fixtures: a real broker process per test (on a free port) and client connections to it."""
from __future__ import annotations

from types import ModuleType
from typing import Callable, Iterator

import pytest

from tests.support import Broker


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    proc = Broker()
    yield proc
    code = proc.stop()
    proc.remove_data()
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        print("---- broker log ----\n" + proc.log())
    assert code == 0, f"broker exited with {code}:\n{proc.log()}"
    assert "Traceback" not in proc.log(), f"broker logged a traceback:\n{proc.log()}"


#: The two wires every pika-API test runs over: zbroker's own client on the zbroker wire,
#: and real pika on the AMQP 0-9-1 listener of the same broker.
WIRES = ("zbroker", "amqp")


@pytest.fixture(params=WIRES)
def wire(request: pytest.FixtureRequest) -> str:
    if request.param == "amqp":
        pytest.importorskip("pika", reason="real pika is a test dependency (pip install -e '.[test]')")
    return request.param


@pytest.fixture
def pika(wire: str) -> ModuleType:
    """The pika module of this run: ``zbroker.client`` or the real pika."""
    if wire == "amqp":
        import pika as real_pika
        return real_pika
    import zbroker.client
    return zbroker.client


def _connector(broker: Broker, module: ModuleType, port: int) -> Iterator[Callable[..., object]]:
    opened: list = []

    def _connect(**kwargs: object) -> object:
        conn = module.BlockingConnection(module.ConnectionParameters(host=broker.host, port=port, **kwargs))
        opened.append(conn)
        return conn

    yield _connect
    for conn in opened:
        if conn.is_open:
            conn.close()


@pytest.fixture
def connect(broker: Broker, pika: ModuleType, wire: str) -> Iterator[Callable[..., object]]:
    """Open connections to the test's broker over this run's wire (the test runs once per
    wire); all are closed afterwards."""
    yield from _connector(broker, pika, broker.amqp_port if wire == "amqp" else broker.port)


@pytest.fixture
def zconnect(broker: Broker) -> Iterator[Callable[..., object]]:
    """Connections of zbroker's own client only: for tests of that client itself."""
    import zbroker.client
    yield from _connector(broker, zbroker.client, broker.port)
