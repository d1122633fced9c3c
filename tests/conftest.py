"""Fixtures: a real broker process per test (on a free port) and client connections to it."""
from __future__ import annotations

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


@pytest.fixture
def connect(broker: Broker) -> Iterator[Callable[..., object]]:
    """Open client connections to the test's broker; all are closed afterwards."""
    import zbroker.client as pika

    opened: list[pika.BlockingConnection] = []

    def _connect(**kwargs: object) -> pika.BlockingConnection:
        conn = pika.BlockingConnection(pika.ConnectionParameters(host=broker.host, port=broker.port, **kwargs))
        opened.append(conn)
        return conn

    yield _connect
    for conn in opened:
        if conn.is_open:
            conn.close()
