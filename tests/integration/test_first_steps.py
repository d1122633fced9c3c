"""A newcomer's first steps, against real processes: ``zbroker ctl`` finding the broker
the client finds, the example programs ending in one line when the broker stops, what a
new store says at start-up, and bin/demo beside a RabbitMQ."""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

import zbroker.client as pika
from tests.support import ROOT, Broker, LineReader, child_env, client_program


def ctl(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zbroker", "ctl", "-t", "5", *args], capture_output=True,
                          text=True, env={**child_env(), **env}, cwd=ROOT, timeout=60)


def test_ctl_finds_the_broker_through_zbroker_host_and_port(broker: Broker) -> None:
    """ZBROKER_HOST / ZBROKER_PORT, which point zbroker.client at a broker, point ctl there
    too; --broker still wins."""
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port))
    connection.channel().queue_declare("through-env")
    connection.close()

    out = ctl("list_queues", "-q", ZBROKER_HOST="127.0.0.1", ZBROKER_PORT=str(broker.port))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["name\tmessages", "through-env\t0"]

    out = ctl("list_queues", "-q", ZBROKER_PORT=str(broker.port))  # host: loopback by default
    assert out.returncode == 0 and "through-env" in out.stdout, out.stderr

    out = ctl("--broker", broker.endpoint, "list_queues", "-q", ZBROKER_PORT="1")
    assert out.returncode == 0 and "through-env" in out.stdout, out.stderr

    out = ctl("list_queues", ZBROKER_HOST="127.0.0.1", ZBROKER_PORT="1")
    assert out.returncode == 69
    assert "tcp://127.0.0.1:1" in out.stderr and "Traceback" not in out.stderr

    out = ctl("list_queues", ZBROKER_PORT="http")
    assert out.returncode == 2 and "ZBROKER_PORT='http' is not a port number" in out.stderr


@pytest.mark.parametrize("program, args, ready, publish, handled", [
    ("receive.py", (), "Waiting for messages", ("", "hello"), "Received"),
    ("worker.py", (), "Waiting for messages", ("", "task_queue"), "Done"),
    ("receive_logs.py", (), "Waiting for logs", ("logs", ""), "probe"),
    ("receive_logs_direct.py", ("error",), "Waiting for logs", ("direct_logs", "error"), "error:probe"),
    ("receive_logs_topic.py", ("#",), "Waiting for logs", ("topic_logs", "a.b"), "a.b:probe"),
    ("rpc_server.py", (), "Awaiting RPC requests", ("", "rpc_queue"), r"fib\(3\)"),
    ("retry_worker.py", (), "Waiting for jobs", ("", "jobs"), "Done"),
])
def test_example_consumers_end_in_one_line_when_the_broker_stops(program: str, args: tuple[str, ...], ready: str,
                                                                  publish: tuple[str, str], handled: str) -> None:
    """The broker stopped (Ctrl-C, SIGTERM) while a program waits in start_consuming: it
    says so in one line, RabbitMQ's 320, with no traceback."""
    broker = Broker(in_memory=True)
    try:
        proc = client_program(program, *args, port=broker.port)
        proc.wait_for(ready)
        # A message handled shows the program is consuming (callbacks run only there).
        connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port))
        rpc = program == "rpc_server.py"
        connection.channel().basic_publish(*publish, b"3" if rpc else b"probe",
                                           pika.BasicProperties(reply_to="nobody") if rpc else None)
        connection.close()
        proc.wait_for(handled)
    finally:
        assert broker.stop() == 0
    assert proc.wait(30) == 1
    proc.output.drain()
    lines = proc.output.lines
    after = lines[max(i for i, line in enumerate(lines) if re.search(handled, line)) + 1:]
    assert len(after) == 1 and after[0].startswith("ConnectionClosedByBroker: (320)"), lines
    assert "CONNECTION_FORCED" in after[0] and "shutdown" in after[0]


def test_a_new_store_says_so_at_start_up(tmp_path) -> None:
    broker = Broker(data_dir=tmp_path / "data")
    try:
        assert broker.wait_for(r"store \S+: a new journal, nothing to recover")
    finally:
        assert broker.stop() == 0
    again = Broker(data_dir=tmp_path / "data")
    try:
        assert again.wait_for(r"store \S+: no messages to recover \(1 segment\(s\) read\)")
        assert "recovered from" not in again.log()
    finally:
        assert again.stop() == 0


def test_import_definitions_says_what_it_applied(broker: Broker, tmp_path) -> None:
    """Every kind the file carries is counted in the line ctl prints, not only topology."""
    from zbroker.core.access.passwords import hash_password
    definitions = {
        "vhosts": [{"name": "/"}, {"name": "staging"}],
        "users": [{"name": "app", "password_hash": hash_password("pw"), "tags": [],
                   "limits": {"max-connections": 5}},
                  {"name": "ops", "password_hash": hash_password("pw"), "tags": ["administrator"]}],
        "permissions": [{"user": "app", "vhost": "staging", "configure": ".*", "write": ".*", "read": ".*"},
                        {"user": "ops", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}],
        "topic_permissions": [{"user": "app", "vhost": "staging", "exchange": "logs", "write": "^app\\.",
                               "read": ".*"}],
        "parameters": [{"vhost": "staging", "component": "vhost-limits", "name": "limits",
                        "value": {"max-queues": 10}}],
        "exchanges": [{"name": "logs", "vhost": "staging", "type": "topic"}],
        "queues": [{"name": "a", "vhost": "staging"}, {"name": "b", "vhost": "staging"}],
        "bindings": [{"source": "logs", "vhost": "staging", "destination": "a", "destination_type": "queue",
                      "routing_key": "#"}],
    }
    path = tmp_path / "defs.json"
    path.write_text(json.dumps(definitions))
    out = ctl("--broker", broker.endpoint, "import_definitions", str(path))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        f'Importing definitions in JSON from a file at "{path}" ...',
        "Imported 2 vhosts, 2 users, 2 permissions, 1 topic permission, limits of 1 user and 1 vhost, "
        "0 policies, 1 exchange, 2 queues and 1 binding"]
    listed = ctl("--broker", broker.endpoint, "list_vhost_limits", "-q")
    assert listed.stdout.splitlines()[1:] == ['staging\t{"max-queues": 10}']


def test_export_definitions_help_names_everything_it_writes() -> None:
    out = ctl("export_definitions", "--help")
    assert out.returncode == 0
    text = " ".join(out.stdout.split())
    for kind in ("vhosts", "users", "permissions", "topic permissions", "vhost limits", "exchanges", "queues",
                 "bindings"):
        assert kind in text, kind


DEMO = ROOT / "bin" / "demo"
DEMO_DONE = "Ctrl-C stops the demo"


def _demo(**env: str) -> tuple[subprocess.Popen, LineReader]:
    """bin/demo in a process group of its own, as a terminal runs it (SIGINT not ignored,
    whatever this test runner inherited)."""
    environ = {k: v for k, v in child_env().items()
               if k not in ("ZBROKER_HOST", "ZBROKER_PORT", "ZBROKER_AMQP", "ZBROKER_HTTP")}
    proc = subprocess.Popen([str(DEMO)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**environ, **env}, cwd=ROOT, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout is not None
    return proc, LineReader(proc.stdout)


@contextlib.contextmanager
def listening(*ports: int) -> Iterator[list[int]]:
    """Listeners on 127.0.0.1 at ``ports`` (0: a free one), as another program's; a port
    something else holds already is left to it. Yields the ports."""
    held: list[socket.socket] = []
    taken = []
    try:
        for port in ports:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
                s.listen()
            except OSError:
                s.close()  # in use already: taken all the same
                taken.append(port)
                continue
            held.append(s)
            taken.append(s.getsockname()[1])
        yield taken
    finally:
        for s in held:
            s.close()


def test_demo_beside_a_rabbitmq_and_ctrl_c() -> None:
    """Every default port taken (a RabbitMQ on 5672, another broker on 5680 and its
    dashboard): the demo takes free ones and says where everything is; Ctrl-C (SIGINT to
    its process group) stops the programs, then the broker, removes its data directory,
    and nothing prints a traceback."""
    with listening(5680, 5672, 15680):
        proc, out = _demo()
        try:
            out.wait_for(DEMO_DONE, timeout=120)
            wire = out.wait_for(r"^  zbroker wire +tcp://127\.0\.0\.1:(\d+) ").group(1)
            amqp = out.wait_for(r"^  AMQP 0-9-1 +amqp://guest:guest@127\.0\.0\.1:(\d+)/ ").group(1)
            http = out.wait_for(r"^  dashboard +http://127\.0\.0\.1:(\d+)/ +log in as guest / guest").group(1)
            data = Path(out.wait_for(r"^  data +(\S+) +removed on exit").group(1))
            assert {wire, amqp, http}.isdisjoint({"5680", "5672", "15680"})
            assert data.is_dir()
            out.wait_for(r"127\.0\.0\.1:5672 is in use by another program \(a RabbitMQ\?\); the AMQP listener "
                         r"takes a free port instead \(ZBROKER_AMQP=PORT chooses one\)")
            out.wait_for(rf"^  ZBROKER_PORT={wire} \.venv/bin/python clients/worker\.py")
        finally:
            os.killpg(proc.pid, signal.SIGINT)
            code = proc.wait(60)
    out.drain()
    text = "\n".join(out.lines)
    assert code == 0, text
    assert "Traceback" not in text and "ConnectionClosedByBroker" not in text, text
    assert out.count(r"--- stopping ---") == 1
    assert out.count(r"zbroker\.server: zbroker stopped") == 1, text
    assert not data.exists()


def test_demo_stops_when_a_chosen_port_is_taken() -> None:
    with listening(0) as (port,):
        proc, out = _demo(ZBROKER_AMQP=str(port))
        code = proc.wait(60)
    out.drain()
    assert code == 1, out.lines
    assert out.lines[-1] == (f"demo: ZBROKER_AMQP={port}, but 127.0.0.1:{port} is in use by another program: "
                             "choose a free port for the AMQP listener, or unset ZBROKER_AMQP and the demo "
                             "picks one"), out.lines
    assert "Traceback" not in "\n".join(out.lines)
