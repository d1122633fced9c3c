"""pytest plugin for pika's own acceptance tests (``-p peer_pika``), run by
``bin/peer-suites --pika-repo PATH``: their files stay untouched.

pika's acceptance tests connect to a RabbitMQ at ``localhost:5672`` (``localhost:5671``
with ``--use-tls``): ``DEFAULT_URL`` in ``blocking_adapter_test.py`` and
``AsyncTestCase._new_plaintext_connection_params`` name the port, and the
``ForwardServer`` tests forward to ``DEFAULT_PARAMS.port``. Every one of those goes
through ``pika.connection.Parameters.port``'s setter, so this plugin wraps the setter:
5672 becomes ``PEER_PORT`` and 5671 ``PEER_AMQPS_PORT``; any other port (the tests that
connect to a closed port on purpose) is left alone. ``PEER_HOST`` replaces the loopback
names when the broker is elsewhere. The plugin is imported before their test modules,
so ``DEFAULT_PARAMS`` (made at import time) sees the rewrite too.
"""
from __future__ import annotations

import os
from typing import Any

LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def _install() -> None:
    import pika.connection

    ports = {5672: int(os.environ["PEER_PORT"])}
    if os.environ.get("PEER_AMQPS_PORT"):
        ports[5671] = int(os.environ["PEER_AMQPS_PORT"])
    host = os.environ.get("PEER_HOST", "127.0.0.1")
    params = pika.connection.Parameters
    port_prop, host_prop = params.port, params.host

    def set_port(self: Any, value: Any) -> None:
        try:
            value = ports.get(int(value), value)
        except (TypeError, ValueError):
            pass
        port_prop.fset(self, value)

    def set_host(self: Any, value: Any) -> None:
        if host not in LOOPBACK and value in LOOPBACK:
            value = host
        host_prop.fset(self, value)

    params.port = property(port_prop.fget, set_port, doc=port_prop.__doc__)
    params.host = property(host_prop.fget, set_host, doc=host_prop.__doc__)


def pytest_configure(config: Any) -> None:
    _install()


def pytest_report_header(config: Any) -> str:
    return (f"peer-suites: localhost:5672 -> {os.environ.get('PEER_HOST', '127.0.0.1')}:{os.environ['PEER_PORT']}"
            + (f", :5671 -> :{os.environ['PEER_AMQPS_PORT']}" if os.environ.get("PEER_AMQPS_PORT") else ""))
