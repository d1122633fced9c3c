"""Permissions in the pure core: RabbitMQ's three regular expressions applied to every
operation (its table and texts), through the zbroker wire with a fake peer."""
from typing import Any

import pytest

from tests.unit.wire import FakePeer
from zbroker.core import Broker
from zbroker.core.access.permissions import Permission, PermissionError_
from zbroker.core.access.users import UserError
from zbroker.protocol import Op

DECLARE = {"passive": False, "durable": False, "auto_delete": False, "internal": False}


def refused(access: str, kind: str, name: str) -> str:
    return f"ACCESS_REFUSED - {access} access to {kind} '{name}' in vhost '/' refused for user 'bob'"


@pytest.fixture
def broker() -> Broker:
    """guest made ``q``, ``x`` (outside bob's names) and ``bob-q``, ``bob-x``."""
    broker = Broker()
    guest = FakePeer(broker, b"guest").open()
    for name in ("q", "bob-q"):
        guest.send(Op.QUEUE_DECLARE, 1, name, False, False, False, False, {})
    for name in ("x", "bob-x"):
        guest.send(Op.EXCHANGE_DECLARE, 1, name, "direct", False, False, False, False, {})
    broker.topology.users.add("bob", "pw")
    broker.topology.users.set_permissions("bob", "/", "^bob-", "^bob-", "^bob-")
    return broker


def bob(broker: Broker) -> FakePeer:
    return FakePeer(broker, b"bob").open(user="bob", password="pw")


def outcome(peer: FakePeer, op: Op, *fields: Any, body: bytes | None = None) -> Any:
    """The reply's op name, or the channel close's (code, text) (the channel is reopened)."""
    got = peer.send(op, 1, *fields, body=body)
    closes = [f for o, f, _ in got if o == Op.CHANNEL_CLOSE]
    if closes:
        peer.send(Op.CHANNEL_CLOSE_OK, 1)
        peer.send(Op.CHANNEL_OPEN, 1)
        return closes[0][1], closes[0][2]
    return Op(got[0][0]).name if got else None


# (operation, fields, the refusal, fields of the same operation that are allowed)
MATRIX = [
    ("exchange.declare", Op.EXCHANGE_DECLARE, ("x2", "direct", False, False, False, False, {}),
     refused("configure", "exchange", "x2"), ("bob-x2", "direct", False, False, False, False, {})),
    ("exchange.declare passive", Op.EXCHANGE_DECLARE, ("x", "direct", True, False, False, False, {}),
     refused("configure", "exchange", "x"), ("bob-x", "direct", True, False, False, False, {})),
    ("exchange.declare alternate-exchange", Op.EXCHANGE_DECLARE,
     ("bob-ae", "direct", False, False, False, False, {"alternate-exchange": "x"}),
     refused("write", "exchange", "x"),
     ("bob-ae2", "direct", False, False, False, False, {"alternate-exchange": "bob-x"})),
    ("exchange.delete", Op.EXCHANGE_DELETE, ("x", False), refused("configure", "exchange", "x"),
     ("bob-x", False)),
    ("queue.declare", Op.QUEUE_DECLARE, ("q2", False, False, False, False, {}),
     refused("configure", "queue", "q2"), ("bob-q2", False, False, False, False, {})),
    ("queue.declare passive", Op.QUEUE_DECLARE, ("q", True, False, False, False, {}),
     refused("configure", "queue", "q"), ("bob-q", True, False, False, False, {})),
    ("queue.declare x-dead-letter-exchange", Op.QUEUE_DECLARE,
     ("bob-dl", False, False, False, False, {"x-dead-letter-exchange": "x"}),
     refused("write", "exchange", "x"),
     ("bob-dl2", False, False, False, False, {"x-dead-letter-exchange": "bob-x"})),
    ("queue.delete", Op.QUEUE_DELETE, ("q", False, False), refused("configure", "queue", "q"),
     ("bob-q", False, False)),
    ("queue.purge", Op.QUEUE_PURGE, ("q",), refused("read", "queue", "q"), ("bob-q",)),
    ("queue.bind to a queue not allowed", Op.QUEUE_BIND, ("q", "bob-x", "k", {}), refused("write", "queue", "q"),
     ("bob-q", "bob-x", "k", {})),
    ("queue.bind from an exchange not allowed", Op.QUEUE_BIND, ("bob-q", "x", "k", {}),
     refused("read", "exchange", "x"), ("bob-q", "bob-x", "k2", {})),
    ("queue.unbind", Op.QUEUE_UNBIND, ("q", "bob-x", "k", {}), refused("write", "queue", "q"),
     ("bob-q", "bob-x", "k", {})),
    ("exchange.bind to an exchange not allowed", Op.EXCHANGE_BIND, ("x", "bob-x", "k", {}),
     refused("write", "exchange", "x"), ("bob-x", "bob-x", "k", {})),
    ("exchange.bind from an exchange not allowed", Op.EXCHANGE_BIND, ("bob-x", "x", "k", {}),
     refused("read", "exchange", "x"), ("bob-x", "bob-x", "k2", {})),
    ("exchange.unbind", Op.EXCHANGE_UNBIND, ("bob-x", "x", "k", {}), refused("read", "exchange", "x"),
     ("bob-x", "bob-x", "k", {})),
    ("basic.get", Op.BASIC_GET, ("q", False), refused("read", "queue", "q"), ("bob-q", False)),
    ("basic.consume", Op.BASIC_CONSUME, ("q", "", False, False, {}), refused("read", "queue", "q"),
     ("bob-q", "", False, False, {})),
]


@pytest.mark.parametrize("name,op,fields,text,allowed", MATRIX, ids=[m[0] for m in MATRIX])
def test_each_operation_needs_its_permission(broker: Broker, name: str, op: Op, fields: tuple, text: str,
                                             allowed: tuple) -> None:
    peer = bob(broker)
    before = (sorted(broker.topology.queues), sorted(broker.topology.exchanges))
    assert outcome(peer, op, *fields) == (403, text)
    assert (sorted(broker.topology.queues), sorted(broker.topology.exchanges)) == before  # nothing done
    assert b"bob" in broker.connections  # a channel error: the connection goes on
    assert outcome(peer, op, *allowed) != (403, text) and isinstance(outcome(peer, op, *allowed), str)


def test_publishing_needs_write_on_the_exchange_and_the_default_is_amq_default(broker: Broker) -> None:
    peer = bob(broker)
    assert outcome(peer, Op.BASIC_PUBLISH, "x", "k", False, {}, body=b"m") == (403, refused("write", "exchange", "x"))
    assert outcome(peer, Op.BASIC_PUBLISH, "", "bob-q", False, {}, body=b"m") == (
        403, refused("write", "exchange", "amq.default"))
    assert outcome(peer, Op.BASIC_PUBLISH, "bob-x", "k", False, {}, body=b"m") is None  # allowed: no answer
    assert broker.topology.queues["q"].message_count == broker.topology.queues["bob-q"].message_count == 0
    broker.topology.users.set_permissions("bob", "/", "^bob-", "^(bob-|amq\\.default$)", "^bob-")
    assert outcome(peer, Op.BASIC_PUBLISH, "", "bob-q", False, {}, body=b"m") is None
    assert broker.topology.queues["bob-q"].message_count == 1


def test_a_server_named_queue_is_checked_under_its_new_name(broker: Broker) -> None:
    peer = bob(broker)
    code, text = outcome(peer, Op.QUEUE_DECLARE, "", False, False, True, False, {})
    assert code == 403 and text.startswith("ACCESS_REFUSED - configure access to queue 'amq.gen-")
    broker.topology.users.set_permissions("bob", "/", "^(bob-|amq\\.gen-)", "", "")
    assert outcome(peer, Op.QUEUE_DECLARE, "", False, False, True, False, {}) == "QUEUE_DECLARE_OK"


def test_a_user_without_permissions_in_the_vhost_cannot_connect(broker: Broker) -> None:
    broker.topology.users.add("carol", "pw")
    [(op, fields, _)] = FakePeer(broker, b"carol").send(Op.HELLO, None, "/", "carol", "pw", {})
    assert (op, fields) == (Op.CONNECTION_CLOSE, [530, "NOT_ALLOWED - access to vhost '/' refused for user 'carol'"])
    assert b"carol" not in broker.connections


def test_a_change_applies_at_the_next_operation(broker: Broker) -> None:
    peer = bob(broker)
    assert outcome(peer, Op.BASIC_GET, "bob-q", False) == "BASIC_GET_EMPTY"
    broker.topology.users.set_permissions("bob", "/", "^bob-", "^bob-", "")  # empty: nothing
    assert outcome(peer, Op.BASIC_GET, "bob-q", False) == (403, refused("read", "queue", "bob-q"))
    broker.topology.users.clear_permissions("bob", "/")
    assert outcome(peer, Op.QUEUE_DECLARE, "bob-q", True, False, False, False, {}) == (
        403, refused("configure", "queue", "bob-q"))
    broker.topology.users.set_permissions("bob", "/", ".*", ".*", ".*")
    assert outcome(peer, Op.BASIC_GET, "q", False) == "BASIC_GET_EMPTY"


def test_deleting_a_user_drops_its_permissions(broker: Broker) -> None:
    broker.topology.users.delete("bob")
    broker.topology.users.add("bob", "pw")  # a new bob has none of the old one's
    assert broker.topology.users.permissions.get("bob", "/") is None


def test_expressions_are_unanchored_and_empty_allows_nothing() -> None:
    p = Permission("app", "^app\\.", "")
    assert p.allows("configure", "my-app-queue") and not p.allows("configure", "other")
    assert p.allows("write", "app.x") and not p.allows("write", "x.app.y")
    assert not p.allows("read", "") and not p.allows("read", "anything")
    with pytest.raises(PermissionError_, match="invalid regular expression"):
        Permission("(", ".*", ".*")


def test_permissions_need_a_known_user_and_vhost(broker: Broker) -> None:
    users = broker.topology.users
    with pytest.raises(UserError, match="user 'nobody' does not exist"):
        users.set_permissions("nobody", "/", ".*", ".*", ".*")
    with pytest.raises(UserError, match="vhost 'other' does not exist"):
        users.set_permissions("bob", "other", ".*", ".*", ".*")


def test_topic_permissions_on_publish_and_bind(broker: Broker) -> None:
    """RabbitMQ's topic permissions: routing keys on topic exchanges only."""
    guest = FakePeer(broker, b"g2").open()
    guest.send(Op.EXCHANGE_DECLARE, 1, "bob-logs", "topic", False, False, False, False, {})
    guest.send(Op.EXCHANGE_DECLARE, 1, "bob-direct", "direct", False, False, False, False, {})
    broker.users.set_topic_permissions("bob", "/", "bob-logs", "^{username}\\.", "^(public|{username})\\.")
    peer = bob(broker)

    def topic_refused(access: str, key: str) -> tuple[int, str]:
        return 403, (f"ACCESS_REFUSED - {access} access to topic '{key}' in exchange 'bob-logs' in vhost '/' "
                     "refused for user 'bob'")

    assert outcome(peer, Op.BASIC_PUBLISH, "bob-logs", "bob.info", False, {}, body=b"m") is None
    assert outcome(peer, Op.BASIC_PUBLISH, "bob-logs", "eve.info", False, {}, body=b"m") == topic_refused(
        "write", "eve.info")
    assert outcome(peer, Op.BASIC_PUBLISH, "bob-logs", "bob.info", False, {"headers": {"CC": ["eve.x"]}},
                   body=b"m") == topic_refused("write", "eve.x")  # every routing key counts
    assert outcome(peer, Op.BASIC_PUBLISH, "bob-direct", "eve.info", False, {}, body=b"m") is None  # not topic
    assert outcome(peer, Op.QUEUE_BIND, "bob-q", "bob-logs", "public.#", {}) == "QUEUE_BIND_OK"
    assert outcome(peer, Op.QUEUE_BIND, "bob-q", "bob-logs", "eve.#", {}) == topic_refused("read", "eve.#")
    assert outcome(peer, Op.QUEUE_BIND, "bob-q", "amq.topic", "eve.#", {})[0] == 403  # (read on amq.topic itself)
    broker.users.set_permissions("bob", "/", "^bob-", "^(bob-|amq\\.topic$)", "^(bob-|amq\\.topic$)")
    assert outcome(peer, Op.QUEUE_BIND, "bob-q", "amq.topic", "eve.#", {}) == "QUEUE_BIND_OK"  # no entry: allowed
    broker.users.clear_topic_permissions("bob", "/")
    assert outcome(peer, Op.BASIC_PUBLISH, "bob-logs", "eve.info", False, {}, body=b"m") is None


def test_topic_permissions_are_durable_and_travel_in_definitions(broker: Broker) -> None:
    from zbroker.core.management import definitions
    from zbroker.core.durability import snapshot
    from zbroker.core.management.requests import Management
    broker.users.set_topic_permissions("bob", "/", "amq.topic", "^a", "^b")
    again = Broker()
    snapshot.restore(again.vhosts, snapshot.snapshot(broker.vhosts))
    assert again.users.permissions.topic_rows() == [["bob", "/", "amq.topic", "^a", "^b"]]
    exported = definitions.export(broker)
    assert exported["topic_permissions"] == [{"user": "bob", "vhost": "/", "exchange": "amq.topic", "write": "^a",
                                              "read": "^b"}]
    third = Broker()
    third.users.add("bob", "x")
    assert Management(third).handle("import_definitions", {"definitions": exported})["topic_permissions"] == 1
    assert third.users.permissions.topic_rows() == again.users.permissions.topic_rows()
    broker.users.delete("bob")
    assert broker.users.permissions.topic_rows() == []
