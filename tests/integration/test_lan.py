"""A LAN the test makes itself: two network namespaces joined by a veth pair, the broker
in one, clients in the other (real processes, ``ip netns exec``). The link is cut for
longer than the heartbeat and restored: both sides notice within two heartbeat
intervals, robust clients carry on, every confirmed persistent task is done. CURVE and
TLS connections cross the link; a client with no or wrong credentials gets nothing.

Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) and ``ip``; skipped with the reason otherwise.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path
from typing import Iterator

import pytest

from tests.support import ROOT, Broker, Process, child_env

HEARTBEAT = 2
TASKS = 300


def _namespaces_usable() -> str | None:
    """Why network namespaces cannot be made here, or None."""
    if shutil.which("ip") is None:
        return "the 'ip' command (iproute2) is not installed"
    probe = f"zbprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace ({made.stderr.strip() or 'not permitted'}); run as root"
    try:
        veth = subprocess.run(["ip", "-n", probe, "link", "add", "zbp0", "type", "veth", "peer", "name", "zbp1"],
                              capture_output=True, text=True)
        if veth.returncode != 0:
            return f"cannot create a veth pair ({veth.stderr.strip()})"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


REASON = _namespaces_usable()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"network namespaces: {REASON}")


class Lan:
    """Namespaces ``srv`` and ``cli`` joined by a veth pair (10.77.N.1 <-> 10.77.N.2)."""

    def __init__(self) -> None:
        tag = os.getpid() % 10000
        self.srv, self.cli = f"zbsrv{tag}", f"zbcli{tag}"
        subnet = f"10.77.{tag % 250}"
        self.server_ip, self.client_ip = f"{subnet}.1", f"{subnet}.2"
        self.veth_srv, self.veth_cli = f"zbs{tag}", f"zbc{tag}"
        for ns in (self.srv, self.cli):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
            self.ip("netns", "add", ns)
        self.ip("link", "add", self.veth_srv, "type", "veth", "peer", "name", self.veth_cli)
        for ns, veth, address in ((self.srv, self.veth_srv, self.server_ip), (self.cli, self.veth_cli, self.client_ip)):
            self.ip("link", "set", veth, "netns", ns)
            self.ip("-n", ns, "addr", "add", f"{address}/24", "dev", veth)
            self.ip("-n", ns, "link", "set", veth, "up")
            self.ip("-n", ns, "link", "set", "lo", "up")

    @staticmethod
    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    def cut(self) -> None:
        self.ip("-n", self.cli, "link", "set", self.veth_cli, "down")

    def restore(self) -> None:
        self.ip("-n", self.cli, "link", "set", self.veth_cli, "up")

    def in_client(self, code: str, *args: str) -> Process:
        """A Python program run in the client namespace."""
        return Process(["ip", "netns", "exec", self.cli, sys.executable, "-c", textwrap.dedent(code), *args],
                       child_env())

    def ctl(self, port: int, *args: str) -> str:
        """``zbroker ctl`` from the broker's own namespace (guest on loopback)."""
        return subprocess.run(["ip", "netns", "exec", self.srv, sys.executable, "-m", "zbroker", "ctl", "--broker",
                               f"tcp://127.0.0.1:{port}", *args], capture_output=True, text=True, env=child_env(),
                              cwd=ROOT, timeout=30, check=True).stdout

    def close(self) -> None:
        for ns in (self.srv, self.cli):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.fixture
def lan() -> Iterator[Lan]:
    network = Lan()
    yield network
    network.close()


def broker_in(lan: Lan, *extra: str, ctl_options: tuple[str, ...] = ()) -> Broker:
    broker = Broker("--heartbeat", str(HEARTBEAT), *extra, bind="tcp://0.0.0.0:0", amqp="0.0.0.0:0",
                    prefix=("ip", "netns", "exec", lan.srv), in_memory="--data-dir" not in extra)
    try:
        lan.ctl(broker.port, *ctl_options, "add_user", "lan", "pw")
        lan.ctl(broker.port, *ctl_options, "set_permissions", "lan", ".*", ".*", ".*")
    except BaseException:
        broker.kill()
        raise
    return broker


CLIENT = """
import hashlib, logging, sys, time
import zbroker.client as pika
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
role, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
params = pika.ConnectionParameters(host, port, credentials=pika.PlainCredentials("lan", "pw"), heartbeat=2)
conn = pika.RobustConnection(params, reconnect_delay=0.2, max_reconnect_delay=1.0)
ch = conn.channel()
ch.queue_declare("lan_tasks", durable=True)
if role == "producer":
    ch.confirm_delivery()
    for i in range(int(sys.argv[4])):
        ch.basic_publish("", "lan_tasks", str(i).encode(), pika.BasicProperties(delivery_mode=2))
        conn.sleep(0.02)
    print("all confirmed", flush=True)
else:
    ch.basic_qos(prefetch_count=5)
    def done(c, m, p, body):
        print("task", body.decode(), flush=True)
        c.basic_ack(m.delivery_tag)
    ch.basic_consume("lan_tasks", done)
    print("consuming", flush=True)
    ch.start_consuming()
"""


def stamp(line: str) -> float:
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def test_a_cut_link_is_noticed_on_both_sides_and_robust_clients_carry_on(lan: Lan, tmp_path: Path) -> None:
    broker = broker_in(lan, "--data-dir", str(tmp_path))
    worker = lan.in_client(CLIENT, "worker", lan.server_ip, str(broker.port))
    producer = None
    try:
        worker.wait_for("consuming", 20)
        producer = lan.in_client(CLIENT, "producer", lan.server_ip, str(broker.port), str(TASKS))
        worker.wait_for(r"task 20\b", 20)
        cut_at = time.time()
        lan.cut()
        time.sleep(4 * HEARTBEAT)  # well past the heartbeat timeout: both sides must give up on the other
        lan.restore()
        producer.wait_for("all confirmed", 60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            worker.output.drain()
            done = {int(m.group(1)) for line in worker.output.lines if (m := re.match(r"task (\d+)$", line))}
            if len(done) >= TASKS:
                break
            time.sleep(0.2)
        assert done == set(range(TASKS))  # every confirmed persistent task, at least once
        # Each side noticed the silent peer within two heartbeat intervals (+ scheduling slack:
        # libzmq pings every half interval, and three processes share two loaded cores).
        noticed = {}
        for name, process, pattern in (("worker", worker, "lost \\("), ("producer", producer, "lost \\("),
                                       ("broker", broker, "connection .* lost")):
            process.wait_for(pattern, 30)  # (logged when noticed: its time stamp is what counts)
            lines = [line for line in process.output.lines if re.search(pattern, line) and stamp(line) >= cut_at]
            assert lines, f"{name} never noticed the cut"
            noticed[name] = stamp(lines[0]) - cut_at
        assert all(delay <= 3 * HEARTBEAT for delay in noticed.values()), noticed
        print("noticed the cut after (s):", {k: round(v, 2) for k, v in noticed.items()})
    finally:
        for process in (worker, producer):
            if process is not None:
                process.stop()
        broker.stop()


def test_curve_and_tls_cross_the_link_and_strangers_get_nothing(lan: Lan, tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server = ca.issue_cert(lan.server_ip)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    server.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    server.cert_chain_pems[0].write_to_path(str(tmp_path / "server.pem"))
    subprocess.run([sys.executable, "-m", "zbroker", "keygen", "--dir", str(tmp_path), "broker"], check=True,
                   capture_output=True, env=child_env(), cwd=ROOT)
    broker = broker_in(lan, "--curve-secret-key", str(tmp_path / "broker.key_secret"), "--amqps", "0.0.0.0:0",
                       "--tls-cert", str(tmp_path / "server.pem"), "--tls-key", str(tmp_path / "server.key"),
                       ctl_options=("--curve-server-key", str(tmp_path / "broker.key")))
    code = """
    import ssl, sys
    import pika
    import zbroker.client as zpika
    host, port, amqps, key, ca = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    def outcome(call):
        try:
            call()
            return "ok"
        except Exception as exc:
            return type(exc).__name__
    def curve(user, password, server_key=key):
        conn = zpika.BlockingConnection(zpika.ConnectionParameters(
            host, port, credentials=zpika.PlainCredentials(user, password), curve_server_key=server_key))
        ch = conn.channel()
        ch.queue_declare("crossed")
        ch.confirm_delivery()
        ch.basic_publish("", "crossed", b"over curve")
        assert ch.basic_get("crossed", auto_ack=True)[2] == b"over curve"
        conn.close()
    def tls(user, password):
        context = ssl.create_default_context(cafile=ca)
        conn = pika.BlockingConnection(pika.ConnectionParameters(
            host, amqps, credentials=pika.PlainCredentials(user, password),
            ssl_options=pika.SSLOptions(context, host)))
        ch = conn.channel()
        ch.queue_declare("crossed")
        conn.close()
    print("curve", outcome(lambda: curve("lan", "pw")), flush=True)
    print("tls", outcome(lambda: tls("lan", "pw")), flush=True)
    print("curve-guest", outcome(lambda: curve("guest", "guest")), flush=True)
    print("curve-wrong-password", outcome(lambda: curve("lan", "nope")), flush=True)
    print("tls-wrong-password", outcome(lambda: tls("lan", "nope")), flush=True)
    print("curve-no-key", outcome(lambda: curve("lan", "pw", None)), flush=True)
    """
    client = lan.in_client(code, lan.server_ip, str(broker.port), str(broker.amqps_port),
                           str(tmp_path / "broker.key"), str(tmp_path / "ca.pem"))
    try:
        assert client.wait() == 0, client.output.lines  # (and its whole output is in)
        assert client.output.lines[:5] == [
            "curve ok", "tls ok", "curve-guest ProbableAuthenticationError",
            "curve-wrong-password ProbableAuthenticationError", "tls-wrong-password ProbableAuthenticationError"]
        # (libzmq reports the mechanism mismatch itself, or only that the broker hung up)
        assert client.output.lines[5] in ("curve-no-key AMQPConnectionError",
                                          "curve-no-key IncompatibleProtocolError"), client.output.lines
        broker.wait_for("user 'guest' can only connect via localhost")
    finally:
        client.stop()
        broker.stop()
