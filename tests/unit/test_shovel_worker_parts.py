"""The shovel worker's parts that need no broker: the definition's defaults (RabbitMQ's),
URIs to pika parameters (RabbitMQ's amqp_uri), the internal login, what a forwarded
message becomes, failure texts, coalesced writes, the stdin contract."""
from __future__ import annotations

import collections
import copy
import io
import socket
import ssl

import pytest

pika = pytest.importorskip("pika")

from pika.adapters.utils.connection_workflow import (AMQPConnectionWorkflowFailed,  # noqa: E402
                                                     AMQPConnectorSocketConnectError)

from zbroker.shovel import definition, forwarding, uris, writes  # noqa: E402
from zbroker.shovel.worker import read_config  # noqa: E402

LOCAL = {"host": "127.0.0.1", "port": 5999, "secret": "00ff10"}


def shovel(name: str = "s", **keys: object) -> definition.Shovel:
    value = {"src-uri": "amqp://", "src-queue": "in", "dest-uri": "amqp://", **keys}
    return definition.parse({"vhost": "/", "name": name, "definition": value, "local": LOCAL})


# -- the definition -------------------------------------------------------------------

def test_rabbitmq_defaults() -> None:
    s = shovel()
    assert (s.ack_mode, s.reconnect_delay_s, s.source.prefetch_count, s.source.delete_after) == (
        "on-confirm", 5.0, 1000, "never")
    assert (s.destination.queue, s.destination.exchange, s.destination.exchange_key) == (None, None, None)
    assert not (s.destination.add_forward_headers or s.destination.add_timestamp_header)
    assert s.local == definition.Local("127.0.0.1", 5999, b"\x00\xff\x10")
    assert s.cluster_name == "zbroker@localhost"
    exchange = shovel(**{"src-queue": None, "src-exchange": "x"})  # (None: as if absent)
    assert exchange.source.exchange_key == ""


def test_new_keys_win_over_the_deprecated_ones() -> None:
    old = shovel(**{"delete-after": 3, "prefetch-count": 9, "add-forward-headers": True,
                    "publish-properties": {"app_id": "old"}})
    assert (old.source.delete_after, old.source.prefetch_count, old.destination.add_forward_headers,
            old.destination.publish_properties) == (3, 9, True, {"app_id": "old"})
    both = shovel(**{"delete-after": 3, "src-delete-after": "queue-length", "prefetch-count": 9,
                     "src-prefetch-count": 2, "add-forward-headers": True, "dest-add-forward-headers": False,
                     "publish-properties": {"app_id": "old"}, "dest-publish-properties": {}})
    assert (both.source.delete_after, both.source.prefetch_count, both.destination.add_forward_headers,
            both.destination.publish_properties) == ("queue-length", 2, False, {})


def test_numeric_publish_properties_from_json_are_integers() -> None:
    properties = shovel(**{"dest-publish-properties": {"delivery_mode": 2.0, "priority": 3}}).destination
    assert properties.publish_properties == {"delivery_mode": 2, "priority": 3}
    assert type(properties.publish_properties["delivery_mode"]) is int


def test_reconnect_delay_zero_means_no_reconnect() -> None:
    assert not shovel(**{"reconnect-delay": 0}).reconnects
    assert shovel(**{"reconnect-delay": 0.5}).reconnects


@pytest.mark.parametrize("keys, text", [
    ({"src-exchange": "x"}, "Cannot specify 'src-exchange' and 'src-queue'"),
    ({"src-queue": None}, "Must specify 'src-exchange' or 'src-queue'"),
    ({"dest-queue": "q", "dest-exchange": "x"}, "Cannot specify 'dest-exchange' and 'dest-queue'"),
    ({"src-protocol": "amqp10"}, "amqp091 only"),
    ({"ack-mode": "sometimes"}, "ack-mode should be one of"),
    ({"src-delete-after": -1}, "src-delete-after should be a number greater than or equal to 0"),
    ({"dest-uri": []}, "dest-uri should be a URI or a non-empty list"),
    ({"dest-publish-properties": {"headers": {}}}, "unknown properties ['headers']"),
    ({"dest-publish-properties": {"priority": 1.5}}, "priority should be an integer"),
])
def test_what_cannot_run_is_refused_naming_the_key(keys: dict, text: str) -> None:
    with pytest.raises(definition.DefinitionError, match=None) as raised:
        shovel(**{k: v for k, v in keys.items()})
    assert text in str(raised.value)


def test_the_local_secret_is_hex() -> None:
    with pytest.raises(definition.DefinitionError, match="hex"):
        definition.parse({"name": "s", "definition": {"src-uri": "amqp://", "src-queue": "q", "dest-uri": "amqp://"},
                          "local": {**LOCAL, "secret": "not hex"}})


# -- URIs -------------------------------------------------------------------------------

LOCAL_BROKER = definition.Local("127.0.0.1", 5999, b"s3cret")


def resolve(uri: str) -> uris.Target:
    return uris.resolve(uri, LOCAL_BROKER, "Shovel s")


@pytest.mark.parametrize("uri, vhost", [("amqp://", "/"), ("amqp:///", ""), ("amqp:///%2F", "/"),
                                        ("amqp:///a%2Fb", "a/b"), ("amqp:///v?heartbeat=3", "v")])
def test_no_host_is_this_broker_with_the_internal_login(uri: str, vhost: str) -> None:
    target = resolve(uri)
    params = target.parameters
    assert target.local and (params.host, params.port, params.virtual_host, params.ssl_options) == (
        "127.0.0.1", 5999, vhost, None)
    assert isinstance(params.credentials, uris.InternalCredentials)
    assert params.credentials.response_for(pika.spec.Connection.Start(mechanisms=b"PLAIN AMQPLAIN")) == (
        "ZBROKER-INTERNAL", b"s3cret")  # sent though not offered: the broker does not offer it
    params.credentials.erase_credentials()
    assert params.credentials.secret == b"s3cret"  # kept for the next reconnect
    assert params.client_properties["connection_name"] == "Shovel s"


def test_internal_credentials_survive_pikas_copy() -> None:
    params = pika.ConnectionParameters(credentials=uris.InternalCredentials(b"x"))
    assert copy.deepcopy(params).credentials.response_for(None) == ("ZBROKER-INTERNAL", b"x")


def test_a_remote_uri_with_rabbitmqs_defaults() -> None:
    params = resolve("amqp://h.example").parameters
    assert (params.host, params.port, params.virtual_host, params.heartbeat, params.channel_max) == (
        "h.example", 5672, "/", 10, 2047)
    assert (params.credentials.username, params.credentials.password) == ("guest", "guest")
    assert params.socket_timeout == params.stack_timeout == 60.0


def test_a_remote_uri_with_everything() -> None:
    params = resolve("amqp://us%40er:p%3Ass@h:1234/v%2Fh?heartbeat=7&connection_timeout=2500&channel_max=9"
                     "&frame_max=8192&unknown=ignored").parameters
    assert (params.port, params.virtual_host, params.heartbeat, params.channel_max, params.frame_max) == (
        1234, "v/h", 7, 9, 8192)
    assert (params.credentials.username, params.credentials.password) == ("us@er", "p:ss")
    assert params.socket_timeout == 2.5
    assert resolve("amqp://u:p@h?password=other").parameters.credentials.password == "other"  # as amqp_uri


def test_auth_mechanisms_in_order_of_those_pika_has() -> None:
    assert isinstance(resolve("amqp://h?auth_mechanism=external").parameters.credentials,
                      pika.credentials.ExternalCredentials)
    creds = resolve("amqp://h?auth_mechanism=amqplain&auth_mechanism=plain").parameters.credentials
    assert type(creds) is pika.PlainCredentials
    with pytest.raises(uris.UnsupportedUri, match="amqplain.*pika"):
        resolve("amqp://h?auth_mechanism=amqplain")


def test_amqps_options(tmp_path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert = ca.issue_cert("client")
    cert_file, key_file = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    params = resolve(f"amqps://h.example?cacertfile={ca_file}&certfile={cert_file}&keyfile={key_file}"
                     "&verify=verify_peer").parameters
    assert params.port == 5671
    context = params.ssl_options.context
    assert (context.verify_mode, context.check_hostname, params.ssl_options.server_hostname) == (
        ssl.CERT_REQUIRED, True, "h.example")
    no_sni = resolve("amqps://h.example?verify=verify_peer&server_name_indication=disable").parameters.ssl_options
    assert (no_sni.context.check_hostname, no_sni.server_hostname) == (False, None)
    other = resolve("amqps://10.0.0.1?server_name_indication=broker.example").parameters.ssl_options
    assert (other.context.verify_mode, other.server_hostname) == (ssl.CERT_NONE, "broker.example")  # no verify
    assert resolve("amqps://10.0.0.1").parameters.ssl_options.server_hostname == "10.0.0.1"  # (ssl sends no SNI)


@pytest.mark.parametrize("uri, error, text", [
    ("amqp://:5672", uris.UriError, "port_requires_host"),
    ("amqp://h/a/b", uris.UriError, 'invalid_vhost,"a/b"'),
    ("http://h", uris.UriError, "unexpected_uri_scheme"),
    ("amqp://h?heartbeat=soon", uris.UriError, "not_an_integer"),
    ("amqp://h?host=other", uris.UriError, "parameter_unconfigurable_in_query,host"),
    ("amqps://", uris.UnsupportedUri, "plain AMQP"),
    ("amqps://h?depth=2", uris.UnsupportedUri, "depth"),
    ("amqps://h?fail_if_no_peer_cert=true", uris.UnsupportedUri, "server's option"),
    ("amqps://h?verify=verify_maybe", uris.UnsupportedUri, "verify_peer or verify_none"),
])
def test_uris_refused(uri: str, error: type, text: str) -> None:
    with pytest.raises(error) as raised:
        resolve(uri)
    assert text in str(raised.value)


def test_no_host_without_local_is_refused() -> None:
    with pytest.raises(uris.UnsupportedUri, match="not told how to reach it"):
        uris.resolve("amqp:///v", None, "n")


@pytest.mark.parametrize("uri, shown", [
    ("amqp://u:p@h:5/%2F?heartbeat=1", "amqp://h:5/%2F"), ("amqp://", "amqp://"), ("amqps://u@h", "amqps://h"),
    ("amqp:///v", "amqp:///v")])
def test_remove_credentials_as_amqp_uri(uri: str, shown: str) -> None:
    assert uris.remove_credentials(uri) == shown


def test_connection_errors_in_rabbitmqs_words() -> None:
    refused = pika.exceptions.AMQPConnectionError(AMQPConnectionWorkflowFailed(
        [AMQPConnectorSocketConnectError(ConnectionRefusedError(111, "Connection refused"))]))
    assert uris.connection_error_text(refused) == "connection to target host was refused (ECONNREFUSED)"
    unknown = AMQPConnectionWorkflowFailed([socket.gaierror(-2, "Name or service not known")])
    assert uris.connection_error_text(unknown) == "target hostname cannot be resolved (NXDOMAIN)"
    login = pika.exceptions.ProbableAuthenticationError(
        "ConnectionClosedByBroker: (403) 'ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN.'")
    assert uris.connection_error_text(login) == "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN."
    eof = pika.exceptions.StreamLostError("Transport indicated EOF")
    assert uris.connection_error_text(eof) == "socket_closed_unexpectedly"
    reset = pika.exceptions.StreamLostError("Stream connection lost: ConnectionResetError(104, 'reset')")
    assert uris.connection_error_text(reset) == "connection to target host was reset by peer (ECONNRESET)"
    vhost = pika.exceptions.ConnectionClosedByBroker(530, "NOT_ALLOWED - vhost x not found")
    assert uris.connection_error_text(vhost) == "access to target virtual host was refused"


# -- forwarding -----------------------------------------------------------------------

def test_routing_rules() -> None:
    to_queue = forwarding.Forwarder(shovel(**{"dest-queue": "q"}), "s", "d")
    assert to_queue.route("x", "k") == ("", "q")
    keep = forwarding.Forwarder(shovel(), "s", "d")
    assert keep.route("x", "k") == ("x", "k")
    exchange = forwarding.Forwarder(shovel(**{"dest-exchange": "e"}), "s", "d")
    assert exchange.route("x", "k") == ("e", "k")
    keyed = forwarding.Forwarder(shovel(**{"dest-exchange": "e", "dest-exchange-key": "r"}), "s", "d")
    assert keyed.route("x", "k") == ("e", "r")


def test_unchanged_properties_are_published_as_delivered() -> None:
    props = pika.BasicProperties(headers={"a": 1})
    assert forwarding.Forwarder(shovel(), "s", "d").properties(props) is props


def test_overrides_then_forward_headers_then_timestamp() -> None:
    s = shovel("n", **{"src-queue": None, "src-exchange": "x", "src-exchange-key": "k", "dest-exchange": "e",
                       "dest-publish-properties": {"priority": 9, "app_id": "a"}, "dest-add-forward-headers": True,
                       "dest-add-timestamp-header": True})
    delivered = pika.BasicProperties(priority=1, headers={"x-shovelled": "not an array", "h": 1})
    props = forwarding.Forwarder(s, "amqp://src", "amqp://dst", clock=lambda: 1234.9).properties(delivered)
    assert delivered.headers == {"x-shovelled": "not an array", "h": 1}  # (the delivered object is not changed)
    assert (props.priority, props.app_id) == (9, "a")
    table = props.headers["x-shovelled"][0]
    assert list(table.items()) == [
        ("shovelled-by", "zbroker@localhost"), ("shovel-type", "dynamic"), ("shovel-name", "n"),
        ("shovel-vhost", "/"), ("src-uri", "amqp://src"), ("dest-uri", "amqp://dst"), ("src-exchange", "x"),
        ("src-exchange-key", "k"), ("dest-exchange", "e")]
    assert props.headers["x-invalid-headers"] == {"x-shovelled": ["not an array"]}
    assert (props.headers["x-shovelled-timestamp"], props.headers["h"]) == (1234, 1)


def test_forward_headers_accumulate_newest_first() -> None:
    headers: dict = {}
    forwarding.prepend_table(headers, "x-shovelled", {"n": 1})
    forwarding.prepend_table(headers, "x-shovelled", {"n": 2})
    assert headers == {"x-shovelled": [{"n": 2}, {"n": 1}]}


# -- writes, stdin ----------------------------------------------------------------------

def test_pending_frames_go_out_in_one_write_up_to_a_bound() -> None:
    sent: list[bytes] = []

    class Transport:
        def __init__(self) -> None:
            self._tx_buffers: collections.deque[bytes] = collections.deque()

        def _produce(self) -> None:
            while self._tx_buffers:
                sent.append(self._tx_buffers.popleft())

    class Connection:
        _transport = Transport()

    connection = Connection()
    assert writes.coalesce_writes(connection)
    big = b"x" * writes.COALESCE_BYTES
    connection._transport._tx_buffers.extend([b"a", b"b", b"c", big, b"d"])
    connection._transport._produce()
    assert sent == [b"abc" + big, b"d"]
    assert not writes.coalesce_writes(object())  # not a pika connection we know: left alone


def test_the_config_is_one_json_object_possibly_over_lines() -> None:
    assert read_config(io.StringIO('{"a":\n 1}\n{"b": 2}\n')) == {"a": 1}
    assert read_config(io.StringIO("")) is None
