"""Declaring and deleting queues, exchanges and bindings through management requests, as
RabbitMQ 3.10's HTTP API does: a client's rules and texts, ``direct_request``'s refusals,
the permissions a client's method needs, and RabbitMQ's binding properties keys."""
from typing import Any

import pytest

from tests.unit.test_management_access import TOKEN, ask, login
from zbroker.core import Broker
from zbroker.core.management.binding_keys import properties_key, tokenise, unpack
from zbroker.management.http_objects import relativise
from zbroker.wires.management import ManagementWire

ADMIN = login("admin", "a")


@pytest.fixture
def wire() -> ManagementWire:
    broker = Broker()
    users = broker.topology.users
    users.add("admin", "a", ["administrator"])
    users.set_permissions("admin", "/", ".*", ".*", ".*")
    users.add("app", "p", ["management"])
    users.set_permissions("app", "/", "^app-", "^app-", "^app-")
    users.add("watcher", "w", ["monitoring"])
    broker.add_vhost("empty")
    return ManagementWire(broker, relay_token=TOKEN)


def error(wire: ManagementWire, verb: str, credentials: Any = ADMIN, **args: Any) -> tuple[int, str, str]:
    """(status, error, reason) of a refused request."""
    from zbroker.protocol.native_management import MANAGEMENT_HEADER, decode_reply, encode_request
    wire.handle(b"ctl", [MANAGEMENT_HEADER, encode_request(1, verb, args, credentials)], "127.0.0.1")
    [(_, frames)] = wire.take_replies()
    _, ok, result = decode_reply(frames[1])
    assert not ok, result
    return result["status"], result["error"], result["reason"]


def test_properties_keys_are_rabbitmqs_shape() -> None:
    assert properties_key("", {}) == "~"
    assert properties_key("a.b-c_d", {}) == "a.b-c_d"
    assert properties_key("a b/c~d", {}) == "a+b%2Fc%7Ed"
    key = properties_key("rk", {"x-match": "all", "k": 1})
    head, _, digest = key.partition("~")
    assert head == "rk" and len(digest) == 6 and key == properties_key("rk", {"k": 1, "x-match": "all"})
    assert properties_key("", {"k": 1}).startswith("~")
    assert tokenise("~") == [""] and tokenise("a~b") == ["a", "b"] and tokenise("a~") == ["a"]
    assert unpack("a+b%2Fc%7Ed") == ("a b/c~d", None) and unpack("~") == ("", None)
    assert unpack("~abc") == ("", "abc") and unpack("a~b~c") is None


def test_location_is_relative_as_rabbitmqs() -> None:
    assert relativise("/api/bindings/%2F/e/x/q/q", "/api/bindings/%2F/e/x/q/q/rk") == "q/rk"
    assert relativise("/api/bindings/%2F/e/x/q/a b", "/api/bindings/%2F/e/x/q/a+b/rk") == "a+b/rk"


def test_declares_answer_created_then_equivalent_then_refuse(wire: ManagementWire) -> None:
    assert ask(wire, "declare_queue", ADMIN, name="q", durable=True) == {"created": True}
    assert ask(wire, "declare_queue", ADMIN, name="q", durable="true") == {"created": False}
    assert error(wire, "declare_queue", name="q") == (
        400, "bad_request", "inequivalent arg 'durable' for queue 'q' in vhost '/': received 'false' but current is 'true'")
    assert error(wire, "declare_queue", name="q", durable="yes")[:2] == (400, "bad_request")
    assert error(wire, "declare_queue", vhost="nowhere", name="q") == (404, "not_found", "vhost_not_found")
    assert error(wire, "declare_queue", name="amq.q") == (401, "not_authorised", "Access refused.")
    assert ask(wire, "declare_exchange", ADMIN, name="x", type="topic") == {"created": True}
    assert ask(wire, "declare_exchange", ADMIN, name="x", type="topic") == {"created": False}
    assert error(wire, "declare_exchange", name="x")[2].startswith("inequivalent arg 'type' for exchange 'x'")
    assert ask(wire, "declare_exchange", ADMIN, name="plain") == {"created": True}  # direct, transient
    assert ask(wire, "exchange", ADMIN, name="plain")["type"] == "direct"
    assert ask(wire, "bind", ADMIN, source="x", destination="q", destination_type="queue",
               routing_key="a.*") == {"properties_key": "a.%2A"}
    assert error(wire, "delete_exchange", name="x", if_unused=True) == (
        400, "bad_request", "exchange 'x' in vhost '/' in use")
    assert error(wire, "delete_exchange", name="amq.direct") == (401, "not_authorised", "Access refused.")
    assert ask(wire, "delete_exchange", ADMIN, name="x") == {"name": "x"}
    assert error(wire, "delete_exchange", name="x") == (404, "Object Not Found", "Not Found")
    assert ask(wire, "queue_bindings", ADMIN, name="q") == [
        {"source": "", "vhost": "/", "destination": "q", "destination_type": "queue", "routing_key": "q",
         "arguments": {}, "properties_key": "q"}]


def test_a_declared_queue_gets_its_policy(wire: ManagementWire) -> None:
    ask(wire, "set_policy", ADMIN, name="cap", pattern="^capped", definition={"max-length": 1})
    ask(wire, "declare_queue", ADMIN, name="capped")
    assert ask(wire, "queue", ADMIN, name="capped")["policy"] == "cap"


def test_bindings_by_properties_key(wire: ManagementWire) -> None:
    ask(wire, "declare_queue", ADMIN, name="q")
    ask(wire, "declare_exchange", ADMIN, name="h", type="headers")
    ends = {"source": "h", "destination": "q", "destination_type": "queue"}
    key = ask(wire, "bind", ADMIN, **ends, routing_key="", arguments={"x-match": "any", "k": "v"})["properties_key"]
    ask(wire, "bind", ADMIN, **ends, routing_key="")
    listed = ask(wire, "bindings_between", ADMIN, **ends)
    assert [b["properties_key"] for b in listed] == ["~", key]
    assert ask(wire, "binding", ADMIN, **ends, properties_key=key)["arguments"] == {"x-match": "any", "k": "v"}
    assert error(wire, "binding", **ends, properties_key="~nohash") == (404, "Object Not Found", "Not Found")
    assert ask(wire, "unbind", ADMIN, **ends, properties_key=key) == {"properties_key": key}
    assert error(wire, "unbind", **ends, properties_key=key) == (404, "Object Not Found", "Not Found")
    assert [b["properties_key"] for b in ask(wire, "bindings_between", ADMIN, **ends)] == ["~"]
    assert error(wire, "bind", source="nox", destination="q", destination_type="queue") == (
        404, "not_found", "no exchange 'nox' in vhost '/'")
    assert error(wire, "bindings_between", vhost="nowhere", **ends) == (404, "Object Not Found", "Not Found")


def test_permissions_are_a_clients(wire: ManagementWire) -> None:
    app = login("app", "p")
    assert ask(wire, "declare_queue", app, name="app-q") == {"created": True}
    assert error(wire, "declare_queue", app, name="other") == (401, "not_authorised", "Access refused.")
    # A dead-letter exchange needs write on it, as a client's declare does.
    assert error(wire, "declare_queue", app, name="app-dl", arguments={"x-dead-letter-exchange": "amq.fanout"}) == (
        401, "not_authorised", "Access refused.")
    assert error(wire, "declare_exchange", app, name="app-x", arguments={"alternate-exchange": "amq.fanout"}) == (
        401, "not_authorised", "Access refused.")
    assert ask(wire, "declare_exchange", app, name="app-x") == {"created": True}
    ends = {"source": "app-x", "destination": "app-q", "destination_type": "queue"}
    assert ask(wire, "bind", app, **ends) == {"properties_key": "~"}
    assert error(wire, "bind", app, source="amq.direct", destination="app-q", destination_type="queue") == (
        401, "not_authorised", "Access refused.")
    # Without permissions in the vhost: refused first, administrators included for the method.
    assert error(wire, "declare_queue", login("watcher", "w"), name="q") == (
        401, "not_authorised", "User not authorised to access virtual host")
    assert error(wire, "bindings_between", login("watcher", "w"), **ends)[2] == (
        "User not authorised to access virtual host")
    assert error(wire, "declare_queue", vhost="empty", name="q") == (401, "not_authorised", "Access refused.")


def test_aliveness_test_needs_a_clients_permissions(wire: ManagementWire) -> None:
    assert ask(wire, "aliveness_test", ADMIN) == {"status": "ok"}
    assert ask(wire, "queue", ADMIN, name="aliveness-test")["messages"] == 0
    assert error(wire, "aliveness_test", login("app", "p")) == (
        401, "not_authorised", "ACCESS_REFUSED - configure access to queue 'aliveness-test' in vhost '/' "
                               "refused for user 'app'")
