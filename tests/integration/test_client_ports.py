"""zbroker.client pointed at the wrong kind of port (a pika program's AMQP URL or port,
kept): the error says what it reached and what to use instead."""
from __future__ import annotations

import pytest

import zbroker.client as pika
from tests.support import Broker


def test_an_amqp_url_says_it_reached_an_amqp_port(broker: Broker) -> None:
    """Pointed at an AMQP listener (a pika program's URL, kept), the client says what it
    reached and what to do, as an AMQPConnectionError (pika's family for failed opens)."""
    with pytest.raises(pika.exceptions.AMQPConnectionError) as err:
        pika.BlockingConnection(pika.URLParameters(f"amqp://127.0.0.1:{broker.amqp_port}/"))
    assert isinstance(err.value, pika.exceptions.IncompatibleProtocolError)  # another try would not help
    text = str(err.value)
    assert f"tcp://127.0.0.1:{broker.amqp_port} is an AMQP 0-9-1 server" in text
    assert "zbroker://127.0.0.1:5680/" in text and "zbroker serve --amqp" in text
    assert "CURVE" not in text


def test_amqps_url_is_refused_with_what_to_use() -> None:
    with pytest.raises(ValueError, match=r"amqps:// is AMQP over TLS.*zbroker://host:5680/"):
        pika.URLParameters("amqps://127.0.0.1:5671/")


def test_a_failure_on_an_amqp_port_hints_at_the_zbroker_port() -> None:
    """AMQP's TLS port: refused (nothing listens), or a handshake that fails (a TLS
    listener): either way the error names the zbroker port."""
    with pytest.raises(pika.exceptions.AMQPConnectionError) as err:
        pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", 5671))
    text = str(err.value)
    assert "5671 is AMQP's port" in text or "is an AMQP 0-9-1 server" in text, text
    assert "5680" in text
