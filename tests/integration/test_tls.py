"""AMQP 0-9-1 over TLS (``zbroker serve --amqps``) with real pika: certificates from a test
CA made by trustme; the server's certificate checked by the client, the client's (when
asked for) by the broker; a client that fails the handshake is refused in one log line
and nobody else notices."""
from __future__ import annotations

import json
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import Broker, child_env

pika = pytest.importorskip("pika")
trustme = pytest.importorskip("trustme")

BODY = bytes(range(256)) * 4096  # 1 MiB: many TLS records


@pytest.fixture
def certs(tmp_path: Path) -> dict:
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    client = ca.issue_cert("client.test")
    paths = {"ca": tmp_path / "ca.pem", "cert": tmp_path / "server.pem", "key": tmp_path / "server.key"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server.private_key_pem.write_to_path(str(paths["key"]))
    for i, blob in enumerate(server.cert_chain_pems):
        blob.write_to_path(str(paths["cert"]), append=i > 0)
    return {"paths": paths, "ca": ca, "client": client}


def client_context(certs: dict, with_client_cert: bool = False, trust: bool = True) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if trust:
        certs["ca"].configure_trust(context)
    if with_client_cert:
        certs["client"].configure_cert(context)
    return context


def tls_broker(certs: dict, *extra: str) -> Broker:
    paths = certs["paths"]
    return Broker("--amqps", "127.0.0.1:0", "--tls-cert", str(paths["cert"]), "--tls-key", str(paths["key"]),
                  *extra, in_memory=True)


def connect(broker: Broker, context: ssl.SSLContext | None) -> "pika.BlockingConnection":
    options = pika.SSLOptions(context, "localhost") if context is not None else None
    return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.amqps_port, ssl_options=options))


def test_pika_over_tls_beside_plain_amqp_and_the_connections_show_ssl(certs: dict) -> None:
    broker = tls_broker(certs)
    try:
        conn = connect(broker, client_context(certs))
        plain = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.amqp_port)).channel()
        ch = conn.channel()
        ch.queue_declare("tls")
        plain.basic_publish("", "tls", b"plain first")  # both listeners busy at once
        assert plain.queue_declare("tls", passive=True).method.message_count == 1
        assert ch.basic_get("tls", auto_ack=True)[2] == b"plain first"
        ch.confirm_delivery()
        ch.basic_publish("", "tls", BODY, pika.BasicProperties(headers={"n": 1}))
        ch.basic_publish("", "tls", b"small")
        got = [ch.basic_get("tls", auto_ack=True) for _ in range(2)]
        assert [body for _, _, body in got] == [BODY, b"small"] and got[0][1].headers == {"n": 1}
        out = subprocess.run([sys.executable, "-m", "zbroker", "ctl", "--broker", broker.endpoint,
                              "list_connections", "name", "protocol", "ssl", "--formatter", "json"],
                             capture_output=True, text=True, env=child_env(), timeout=30)
        rows = {r["ssl"]: r for r in json.loads(out.stdout)}
        assert sorted(rows) == [False, True] and {r["protocol"] for r in rows.values()} == {"AMQP 0-9-1"}
        assert rows[True]["name"].endswith(f"-> 127.0.0.1:{broker.amqps_port}")
        assert rows[False]["name"].endswith(f"-> 127.0.0.1:{broker.amqp_port}")
        plain.connection.close()
        conn.close()
    finally:
        assert broker.stop() == 0
    assert "Traceback" not in broker.log()


def test_a_client_certificate_is_required_when_asked_for(certs: dict) -> None:
    broker = tls_broker(certs, "--tls-ca", str(certs["paths"]["ca"]), "--tls-require-client-cert")
    try:
        with pytest.raises(pika.exceptions.AMQPConnectionError):
            connect(broker, client_context(certs))
        broker.wait_for("AMQP TLS connection from 127.0.0.1:\\d+: handshake failed")
        conn = connect(broker, client_context(certs, with_client_cert=True))
        conn.channel().queue_declare("with-cert")
        conn.close()
    finally:
        assert broker.stop() == 0
    assert "Traceback" not in broker.log()


def test_plain_amqp_and_an_untrusting_client_fail_and_a_tls_client_beside_them_goes_on(certs: dict) -> None:
    broker = tls_broker(certs)
    try:
        good = connect(broker, client_context(certs)).channel()
        good.queue_declare("beside")
        with pytest.raises(pika.exceptions.AMQPConnectionError):
            connect(broker, None)  # plain AMQP to the TLS port
        with pytest.raises(ssl.SSLCertVerificationError):  # (pika raises it as it is)
            connect(broker, client_context(certs, trust=False))  # does not trust the broker's CA
        good.basic_publish("", "beside", b"still here")
        assert good.basic_get("beside", auto_ack=True)[2] == b"still here"
        good.connection.close()
    finally:
        assert broker.stop() == 0
    assert "Traceback" not in broker.log()


def test_tls_options_without_amqps_are_refused_not_ignored() -> None:
    out = subprocess.run([sys.executable, "-m", "zbroker", "serve", "--in-memory", "--tls-require-client-cert"],
                         capture_output=True, text=True, env=child_env(), timeout=30)
    assert out.returncode == 2 and "are for --amqps" in out.stderr
    out = subprocess.run([sys.executable, "-m", "zbroker", "serve", "--in-memory", "--amqps"],
                         capture_output=True, text=True, env=child_env(), timeout=30)
    assert out.returncode == 2 and "--amqps needs --tls-cert and --tls-key" in out.stderr
