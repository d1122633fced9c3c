"""The ``shovel`` parameter component on the pure core: RabbitMQ 3.10's validation texts,
what should run, status reports, a done shovel clearing its parameter, and the broker's
own (internal) connections."""
from __future__ import annotations

import pytest

from zbroker.core import Broker
from zbroker.core.parameters import ParameterError
from zbroker.core.shovels import parse_uri, validation_errors

GOOD = {"src-uri": "amqp://", "src-queue": "a", "dest-uri": "amqp://", "dest-queue": "b"}


def errors(value, may=lambda vhost: True, user="guest"):
    return validation_errors(value, may, user)


def test_a_good_definition_has_no_errors():
    assert errors(GOOD) == []
    assert errors({**GOOD, "ack-mode": "on-publish", "src-delete-after": "queue-length",
                   "dest-publish-properties": {"delivery_mode": 2}, "reconnect-delay": 5}) == []


def test_rabbitmq_texts_for_the_source_and_destination_rules():
    assert errors({"src-uri": "amqp://", "dest-uri": "amqp://"}) == ["Must specify 'src-exchange' or 'src-queue'"]
    assert errors({**GOOD, "src-exchange": "x"}) == ["Cannot specify 'src-exchange' and 'src-queue'"]
    assert errors({**GOOD, "dest-exchange": "x"}) == ["Cannot specify 'dest-exchange' and 'dest-queue'"]
    assert errors({**GOOD, "ack-mode": "no-ack", "src-delete-after": 5}) == [
        "Cannot specify 'no-ack' and numerical 'delete-after'"]


def test_rabbitmq_texts_for_keys_newest_first_and_unknown_keys_ahead():
    value = {"src-queue": "a", "dest-uri": "amqp://", "ack-mode": "sometimes", "reconnect-delay": "1", "nope": 1}
    assert errors(value) == [
        "Unrecognised terms [{<<\"nope\">>,1}] in shovel",
        'Key "src-uri" not found in shovel',
        "ack-mode should be one of [<<\"no-ack\">>,<<\"on-publish\">>,<<\"on-confirm\">>], actually was <<\"sometimes\">>",
        "reconnect-delay should be a number, actually was <<\"1\">>",
    ]
    assert errors({**GOOD, "src-delete-after": "soon"}) == [
        'src-delete-after should be a number greater than or equal to 0, "never" or "queue-length", '
        'actually was <<"soon">>']
    assert errors({**GOOD, "dest-publish-properties": {"priority": "high"}}) == [
        'priority should be a number, actually was <<"high">>']


def test_rabbitmq_texts_name_the_shovel():
    value = {"src-queue": "a", "dest-uri": "amqp://", "dest-queue": "b", "colour": "blue"}
    assert validation_errors(value, lambda vhost: True, "guest", "orders-out") == [
        'Unrecognised terms [{<<"colour">>,<<"blue">>}] in orders-out', 'Key "src-uri" not found in orders-out']
    broker = Broker()
    with pytest.raises(ParameterError, match='Key "src-uri" not found in my-shovel'):
        broker.parameters.set(broker.topology, "shovel", "my-shovel", {"src-queue": "a", "dest-uri": "amqp://"})


def test_uris_are_parsed_as_amqp_uri_does():
    assert errors({**GOOD, "src-uri": "http://x"}) == [
        '"http://x" not a valid URI: {{unexpected_uri_scheme,"http"},"http://x"}']
    # Past 80 columns the term is printed as Erlang's ~p prints it: one element a line.
    assert errors({**GOOD, "src-uri": "http://localhost"}) == [
        '"http://localhost" not a valid URI: {{unexpected_uri_scheme,"http"},\n'
        + " " * 37 + '"http://localhost"}']
    assert parse_uri("amqp://").host is None and parse_uri("amqp://").vhost == "/"
    assert parse_uri("amqp:///v%2F1").vhost == "v/1"
    endpoint = parse_uri("amqps://u:p@rabbit.example:5671/prod")
    assert (endpoint.host, endpoint.vhost, endpoint.tls) == ("rabbit.example", "prod", True)


def test_a_local_uri_needs_the_definers_access_to_its_vhost():
    assert errors({**GOOD, "src-uri": "amqp:///other"}, may=lambda vhost: vhost == "/", user="bob") == [
        'user "bob" may not connect to vhost "other"']
    assert errors({**GOOD, "src-uri": "amqp://remote/other", "dest-uri": "amqps://h"}, may=lambda vhost: False) == []


def test_amqp10_is_refused_as_not_implemented():
    assert "not implemented" in errors({**GOOD, "src-protocol": "amqp10"})[0]


def test_setting_and_clearing_a_shovel_tells_what_should_run():
    broker = Broker()
    version = broker.shovels.version
    broker.parameters.set(broker.topology, "shovel", "s1", GOOD, "guest")
    assert broker.shovels.wanted == {("/", "s1"): GOOD} and broker.shovels.version > version
    assert [row["state"] for row in broker.shovels.rows()] == ["starting"]
    with pytest.raises(ParameterError, match="Must specify"):
        broker.parameters.set(broker.topology, "shovel", "s2", {"src-uri": "amqp://", "dest-uri": "amqp://"})
    assert broker.parameters.clear(broker.topology, "shovel", "s1")
    assert broker.shovels.wanted == {} and broker.shovels.rows() == []


def test_reports_make_the_status_and_done_clears_the_parameter():
    broker = Broker()
    broker.parameters.set(broker.topology, "shovel", "s1", GOOD, "guest")
    broker.shovel_report("/", "s1", {"state": "running", "info": {"src_uri": "amqp://", "src_queue": "a"}}, 10.0)
    row = broker.shovels.rows("/")[0]
    assert (row["state"], row["src_queue"], row["type"]) == ("running", "a", "dynamic")
    broker.shovel_report("/", "s1", {"state": "starting", "error": "could not connect to destination"}, 11.0)
    row = broker.shovels.rows()[0]
    assert "reason" not in row and row["error"] == "could not connect to destination"  # (RabbitMQ: no reason)
    closed = "one of its connections closed with code 404, reason: NOT_FOUND - no queue 'a' in vhost '/'"
    broker.shovel_report("/", "s1", {"state": "terminated", "error": closed}, 11.5)
    row = broker.shovels.rows()[0]
    assert (row["reason"], row["error"], row["node"]) == ('"needed a restart"', closed, "zbroker@localhost")
    broker.shovel_report("/", "s1", {"state": "terminated", "done": True}, 12.0)
    assert ("shovel", "s1") not in broker.topology.parameters and broker.shovels.wanted == {}


def test_the_broker_own_connections_log_in_with_the_secret_and_may_do_anything():
    broker = Broker()
    assert not broker.login_internal(b"x")  # no secret set: nobody gets in
    broker.users.internal_secret = b"s" * 32
    assert not broker.login_internal(b"t" * 32) and broker.login_internal(b"s" * 32)
    broker.add_vhost("other")
    conn = broker.open_connection("c1", 0.0, 0, "other", "", {})
    assert conn is not None and conn.user == "none"
    assert all(row[0] for row in broker.users.permissions.rows())  # never listed


def test_who_may_publish_another_users_user_id():
    """RabbitMQ's check_user_id_header: the internal user and ``impersonator``s may."""
    broker = Broker()
    broker.users.add("relay", "pw", ["impersonator"])
    broker.users.permissions.set("relay", "/", ".*", ".*", ".*")
    assert broker.open_connection("c1", 0.0, 0, "/", "", {}).impersonator
    assert broker.open_connection("c2", 0.0, 0, "/", "relay", {}).impersonator
    assert not broker.open_connection("c3", 0.0, 0, "/", "guest", {}).impersonator


def test_status_rows_as_rabbitmqctl_shows_them():
    from zbroker.management.ctl_shovels import row
    running = {"node": "n", "timestamp": "2026-01-02 3:04:05", "name": "s", "vhost": "/", "type": "dynamic",
               "state": "running", "src_uri": "amqp://", "src_protocol": "amqp091", "dest_protocol": "amqp091",
               "dest_uri": "amqp://h", "src_exchange": "x", "src_exchange_key": "", "dest_queue": "q", "moved": 3}
    assert row(running) == {
        "destination": "amqp://h", "destination_protocol": "amqp091", "destination_queue": "q",
        "last_changed": "2026-01-02 03:04:05", "name": "s", "source": "amqp://", "source_exchange": "x",
        "source_exchange_key": "", "source_protocol": "amqp091", "state": "running", "termination_reason": "",
        "type": "dynamic", "vhost": "/"}
    terminated = {"timestamp": "2026-01-02 13:04:05", "name": "t", "vhost": "v", "type": "dynamic",
                  "state": "terminated", "reason": '"needed a restart"', "error": "..."}
    assert list(row(terminated).items()) == [
        ("destination", ""), ("last_changed", "2026-01-02 13:04:05"), ("name", "t"), ("source", ""),
        ("state", "terminated"), ("termination_reason", '"needed a restart"'), ("type", "dynamic"), ("vhost", "v")]
