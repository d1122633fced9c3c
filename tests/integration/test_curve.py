"""The zbroker wire encrypted with ZeroMQ CURVE (``zbroker serve --curve-secret-key``):
keys from ``zbroker keygen``, clients and ``zbroker ctl`` with the broker's public key,
the password never on the wire in clear (bytes captured by a relay in the test), and
every wrong set-up failing at once with a sentence that says why."""
from __future__ import annotations

import base64
import json
import os
import re
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

import zbroker.client as zpika
from tests.support import ROOT, Broker, child_env

BODY = os.urandom(1 << 20)


def zbroker_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zbroker", *args], capture_output=True, text=True,
                          env=child_env(), cwd=ROOT, timeout=30)


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    for name in ("broker", "worker", "stranger"):
        made = zbroker_cli("keygen", "--dir", str(tmp_path), name)
        assert made.returncode == 0, made.stderr
    assert stat.S_IMODE((tmp_path / "broker.key_secret").stat().st_mode) == 0o600
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "worker.key").write_bytes((tmp_path / "worker.key").read_bytes())
    return tmp_path


def public(keys: Path, name: str) -> str:
    from zbroker.curve import load_secret_key
    return load_secret_key(keys / f"{name}.key_secret")[0].decode()


class Relay:
    """A TCP relay that keeps every byte the client sent: what a sniffer on the LAN sees."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.seen = bytearray()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, record: bool) -> None:
        try:
            while data := source.recv(65536):
                if record:
                    self.seen += data
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.server.close()


def login_through(relay: Relay, **params: object) -> None:
    conn = zpika.BlockingConnection(zpika.ConnectionParameters(
        port=relay.port, credentials=zpika.PlainCredentials("guest", "guest"), **params))
    ch = conn.channel()
    ch.queue_declare("q")
    ch.basic_publish("", "q", b"secret payload 7c1e")
    conn.close()


def test_curve_encrypts_the_wire_and_ctl_follows(keys: Path) -> None:
    broker = Broker("--curve-secret-key", str(keys / "broker.key_secret"), "--http", "127.0.0.1:0", in_memory=True)
    plain = Broker(in_memory=True)
    try:
        key = public(keys, "broker")
        conn = zpika.BlockingConnection(zpika.ConnectionParameters(port=broker.port, curve_server_key=key))
        ch = conn.channel()
        ch.queue_declare("big")
        ch.confirm_delivery()
        ch.basic_publish("", "big", BODY)
        assert ch.basic_get("big", auto_ack=True)[2] == BODY
        # What a sniffer sees: with CURVE neither the password nor the payload; without, both.
        relay, clear = Relay(broker.port), Relay(plain.port)
        login_through(relay, curve_server_key=keys / "broker.key")  # (the .key file's path works too)
        login_through(clear)
        assert b"guest" in clear.seen and b"secret payload 7c1e" in clear.seen  # the control
        assert b"guest" not in relay.seen and b"secret payload 7c1e" not in relay.seen and len(relay.seen) > 200
        relay.close(), clear.close()
        # zbroker ctl needs the key too; without it, a clear error.
        listed = zbroker_cli("ctl", "--broker", broker.endpoint, "--curve-server-key", key, "list_queues", "-q")
        assert listed.returncode == 0 and "big\t0" in listed.stdout
        blind = zbroker_cli("ctl", "--broker", broker.endpoint, "--timeout", "3", "list_queues")
        assert blind.returncode == 69 and "CURVE" in blind.stderr
        # The HTTP API reaches the broker in-process: CURVE does not stand in its way.
        http = broker.wait_for(r"HTTP API and dashboard on (http://[\d.:]+)/").group(1)
        request = urllib.request.Request(http + "/api/whoami", headers={
            "Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.load(response)["name"] == "guest"
        conn.close()
    finally:
        broker.stop(), plain.stop()


def test_wrong_or_missing_keys_fail_at_once_with_the_reason(keys: Path) -> None:
    broker = Broker("--curve-secret-key", str(keys / "broker.key_secret"), in_memory=True)
    try:
        cases = [
            # (libzmq reports the mismatch itself, or only that the broker hung up: both say CURVE)
            ({}, zpika.exceptions.AMQPConnectionError, "the broker requires CURVE|does the broker require CURVE"),
            ({"curve_server_key": public(keys, "stranger")}, zpika.exceptions.AMQPConnectionError,
             "CURVE handshake with .* failed: is curve_server_key the broker's public key"),
        ]
        for params, error, text in cases:
            started = time.monotonic()
            with pytest.raises(error, match=text):
                zpika.BlockingConnection(zpika.ConnectionParameters(port=broker.port, **params))
            assert time.monotonic() - started < 8  # not a hang until the 10 s socket timeout
        with pytest.raises(ValueError, match="ssl_options: TLS is for AMQP"):
            zpika.ConnectionParameters(port=broker.port, ssl_options={"cert": "x"})  # never ignored
        with pytest.raises(ValueError, match="is not a CURVE public key"):
            zpika.ConnectionParameters(curve_server_key="~" * 40)
        with pytest.raises(ValueError, match="cannot read the key file"):
            zpika.ConnectionParameters(curve_server_key="/nonexistent/broker.key")
    finally:
        broker.stop()


def test_only_listed_client_keys_get_in(keys: Path) -> None:
    broker = Broker("--curve-secret-key", str(keys / "broker.key_secret"),
                    "--curve-client-keys", str(keys / "allowed"), in_memory=True)
    try:
        key = public(keys, "broker")
        zpika.BlockingConnection(zpika.ConnectionParameters(
            port=broker.port, curve_server_key=key, curve_client_key_file=str(keys / "worker.key_secret"))).close()
        for client_key in (str(keys / "stranger.key_secret"), None):  # another key, or one made up per connection
            with pytest.raises(zpika.exceptions.ProbableAuthenticationError, match="refused this client's CURVE key"):
                zpika.BlockingConnection(zpika.ConnectionParameters(
                    port=broker.port, curve_server_key=key, curve_client_key_file=client_key))
        broker.wait_for(re.escape(f"CURVE client key {public(keys, 'stranger')} from 127.0.0.1 refused"))
    finally:
        broker.stop()


def test_curve_options_are_checked(keys: Path) -> None:
    lonely = zbroker_cli("serve", "--in-memory", "--curve-client-keys", str(keys / "allowed"))
    assert lonely.returncode == 2 and "--curve-client-keys needs --curve-secret-key" in lonely.stderr
    public_only = zbroker_cli("serve", "--in-memory", "--curve-secret-key", str(keys / "broker.key"))
    assert public_only.returncode == 1 and "holds no secret key" in public_only.stderr
