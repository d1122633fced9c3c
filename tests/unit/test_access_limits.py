"""Per-vhost and per-user limits in the pure core (RabbitMQ's names and texts), with fake
peers on the zbroker wire."""
import pytest

from tests.unit.wire import FakePeer
from zbroker.core import Broker
from zbroker.core.management import definitions
from zbroker.core.durability import snapshot
from zbroker.core.access.access_limits import LimitError
from zbroker.core.management.requests import Management, ManagementError
from zbroker.protocol import Op


@pytest.fixture
def broker() -> Broker:
    broker = Broker()
    broker.topology.users.add("bob", "pw")
    broker.topology.users.set_permissions("bob", "/", ".*", ".*", ".*")
    return broker


def hello(broker: Broker, name: bytes, user: str = "bob", password: str = "pw") -> list:
    return FakePeer(broker, name).send(Op.HELLO, None, "/", user, password, {})


def test_vhost_connection_limit(broker: Broker) -> None:
    broker.topology.users.set_vhost_limits("/", {"max-connections": 2})
    assert hello(broker, b"a")[0][0] == Op.HELLO_OK and hello(broker, b"b", "guest", "guest")[0][0] == Op.HELLO_OK
    [(op, fields, _)] = hello(broker, b"c")
    assert (op, fields) == (Op.CONNECTION_CLOSE, [530, "NOT_ALLOWED - access to vhost '/' refused for user 'bob': "
                                                       "connection limit (2) is reached"])
    broker.topology.users.set_vhost_limits("/", {"max-connections": -1})  # negative: no limit
    assert hello(broker, b"c")[0][0] == Op.HELLO_OK


def test_user_connection_and_channel_limits(broker: Broker) -> None:
    users = broker.topology.users
    users.set_user_limits("bob", {"max-connections": 1, "max-channels": 2})
    peer = FakePeer(broker, b"a")
    assert peer.send(Op.HELLO, None, "/", "bob", "pw", {})[0][0] == Op.HELLO_OK
    [(op, fields, _)] = hello(broker, b"b")
    assert (op, fields) == (Op.CONNECTION_CLOSE, [530, "NOT_ALLOWED - connection refused for user 'bob': user "
                                                       "connection limit (1) is reached"])
    assert hello(broker, b"g", "guest", "guest")[0][0] == Op.HELLO_OK  # other users are not counted
    assert [o for o, _, _ in peer.send(Op.CHANNEL_OPEN, 1) + peer.send(Op.CHANNEL_OPEN, 2)] == [Op.CHANNEL_OPEN_OK] * 2
    [(op, fields, _)] = peer.send(Op.CHANNEL_OPEN, 3)
    assert (op, fields) == (Op.CONNECTION_CLOSE, [530, "NOT_ALLOWED - number of channels opened for user 'bob' "
                                                       "has reached the maximum allowed user limit of 2"])
    users.clear_user_limits("bob", "max-connections")
    assert users.limits.users == {"bob": {"max-channels": 2}}
    users.clear_user_limits("bob", "all")
    assert users.limits.users == {}


def test_vhost_queue_limit(broker: Broker) -> None:
    peer = FakePeer(broker, b"a").open()
    peer.declare("q1")
    broker.topology.users.set_vhost_limits("/", {"max-queues": 1})
    assert peer.declare("q1")[0][0] == Op.QUEUE_DECLARE_OK  # what exists stays, and may be redeclared
    [(op, fields, _)] = peer.declare("q2")
    assert (op, fields[1:]) == (Op.CHANNEL_CLOSE, [406, "PRECONDITION_FAILED - cannot declare queue 'q2': queue "
                                                        "limit in vhost '/' (1) is reached"])


def test_bad_limits_are_refused_whole(broker: Broker) -> None:
    users = broker.topology.users
    for bad in ({"max-connections": 1, "max-exchanges": 3}, {"max-queues": "10"}, {"max-queues": True}, {}):
        with pytest.raises(LimitError):
            users.set_vhost_limits("/", bad)
    with pytest.raises(LimitError, match="unrecognised limit 'max-queues'"):
        users.set_user_limits("bob", {"max-queues": 1})  # a user limit, not a vhost one
    assert users.limits.vhosts == {} and users.limits.users == {}
    with pytest.raises(ManagementError, match="vhost 'other' does not exist"):
        Management(broker).handle("set_vhost_limits", {"vhost": "other", "definition": {"max-queues": 1}})


def test_limits_are_durable_and_travel_in_definitions(broker: Broker) -> None:
    users = broker.topology.users
    users.set_vhost_limits("/", {"max-queues": 10})
    users.set_user_limits("bob", {"max-channels": 5})
    again = Broker()
    snapshot.restore(again.vhosts, snapshot.snapshot(broker.vhosts))
    assert again.topology.users.limits.snapshot() == {"vhosts": {"/": {"max-queues": 10}},
                                                      "users": {"bob": {"max-channels": 5}}}
    exported = definitions.export(broker)
    assert exported["parameters"] == [{"value": {"max-queues": 10}, "vhost": "/", "component": "vhost-limits",
                                       "name": "limits"}]
    assert {u["name"]: u["limits"] for u in exported["users"]}["bob"] == {"max-channels": 5}
    third = Broker()
    Management(third).handle("import_definitions", {"definitions": exported})
    assert third.topology.users.limits.snapshot() == again.topology.users.limits.snapshot()
    with pytest.raises(ManagementError, match="component federation-upstream not found"):
        Management(third).handle("import_definitions", {"definitions": {"parameters": [
            {"component": "federation-upstream", "vhost": "/", "name": "x", "value": {}}]}})
