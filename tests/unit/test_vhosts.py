"""Virtual hosts in the pure core: each its own exchanges, queues and bindings; texts
name the vhost; deleting one closes its connections and removes what it held."""
import pytest

from tests.unit.wire import FakePeer
from zbroker.core import Broker
from zbroker.core.management import definitions
from zbroker.core.durability import snapshot
from zbroker.core.management.requests import Management, ManagementError
from zbroker.core.access.users import UserError
from zbroker.protocol import Op


@pytest.fixture
def broker() -> Broker:
    broker = Broker()
    broker.add_vhost("staging", "for tests")
    broker.users.set_permissions("guest", "staging", ".*", ".*", ".*")
    return broker


def peer_in(broker: Broker, name: bytes, vhost: str) -> FakePeer:
    peer = FakePeer(broker, name)
    assert peer.send(Op.HELLO, None, vhost, "guest", "guest", {})[0][0] == Op.HELLO_OK
    peer.send(Op.CHANNEL_OPEN, 1)
    return peer


def test_each_vhost_has_its_own_queues_and_exchanges(broker: Broker) -> None:
    home, staging = peer_in(broker, b"home", "/"), peer_in(broker, b"stage", "staging")
    for peer in (home, staging):
        peer.declare("orders")
    staging.send(Op.EXCHANGE_DECLARE, 1, "events", "fanout", False, False, False, False, {})
    staging.send(Op.QUEUE_BIND, 1, "orders", "events", "", {})
    assert staging.publish("events", "", b"e") == [] and staging.publish("", "orders", b"direct") == []
    assert broker.vhosts.get("staging").queues["orders"].message_count == 2
    assert broker.topology.queues["orders"].message_count == 0
    [(op, fields, _)] = home.send(Op.EXCHANGE_DECLARE, 1, "events", "fanout", True, False, False, False, {})
    assert (op, fields[1:]) == (Op.CHANNEL_CLOSE, [404, "NOT_FOUND - no exchange 'events' in vhost '/'"])
    m = Management(broker)
    assert [(q["vhost"], q["name"]) for q in m.handle("list", {"kind": "queues"})] == [("/", "orders"),
                                                                                      ("staging", "orders")]
    assert [q["vhost"] for q in m.handle("list", {"kind": "queues", "vhost": "staging"})] == ["staging"]
    assert m.handle("queue", {"name": "orders", "vhost": "staging"})["messages"] == 2
    assert m.handle("overview", {})["object_totals"]["queues"] == 2


def test_texts_name_the_vhost_and_unknown_vhosts_are_530(broker: Broker) -> None:
    staging = peer_in(broker, b"s", "staging")
    [(op, fields, _)] = staging.send(Op.QUEUE_DECLARE, 1, "nope", True, False, False, False, {})
    assert fields[1:] == [404, "NOT_FOUND - no queue 'nope' in vhost 'staging'"]
    [(op, fields, _)] = FakePeer(broker, b"x").send(Op.HELLO, None, "prod", "guest", "guest", {})
    assert (op, fields) == (Op.CONNECTION_CLOSE, [530, "NOT_ALLOWED - vhost prod not found"])


def test_dead_letters_stay_in_their_vhost(broker: Broker) -> None:
    home, staging = peer_in(broker, b"home", "/"), peer_in(broker, b"stage", "staging")
    for peer in (home, staging):
        peer.declare("dead")
    staging.declare("work", arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dead",
                                       "x-message-ttl": 0})
    staging.publish("", "work", b"expired")
    broker.tick(broker.now + 1)
    assert broker.vhosts.get("staging").queues["dead"].message_count == 1
    assert broker.topology.queues["dead"].message_count == 0


def test_deleting_a_vhost_closes_its_connections_and_empties_it(broker: Broker) -> None:
    staging = peer_in(broker, b"s", "staging")
    peer_in(broker, b"h", "/")  # a bystander in another vhost
    staging.declare("q", durable=True)
    staging.publish("", "q", b"m", properties={"delivery_mode": 2})
    broker.users.set_vhost_limits("staging", {"max-queues": 5})
    broker.delete_vhost("staging")
    assert staging.ops() == ["CONNECTION_CLOSE"] and staging.received[-1][1] == [
        320, "CONNECTION_FORCED - vhost 'staging' is deleted"]
    assert b"s" not in broker.connections and b"h" in broker.connections
    assert broker.vhosts.get("staging") is None and broker.vhosts.counts.queues == 0
    assert broker.users.permissions.get("guest", "staging") is None and broker.users.limits.vhosts == {}
    with pytest.raises(UserError, match="cannot be deleted"):
        broker.delete_vhost("/")
    with pytest.raises(UserError, match="does not exist"):
        broker.delete_vhost("staging")
    with pytest.raises(ManagementError, match="already exists"):
        Management(broker).handle("add_vhost", {"name": "/"})


def test_vhosts_are_durable_and_travel_in_definitions(broker: Broker) -> None:
    staging = peer_in(broker, b"s", "staging")
    staging.declare("q", durable=True)
    again = Broker()
    snapshot.restore(again.vhosts, snapshot.snapshot(broker.vhosts))
    assert sorted(again.vhosts.topologies) == ["/", "staging"] and "q" in again.vhosts.get("staging").queues
    assert again.vhosts.info["staging"].description == "for tests"
    exported = definitions.export(broker)
    assert {v["name"] for v in exported["vhosts"]} == {"/", "staging"}
    assert [(q["vhost"], q["name"]) for q in exported["queues"]] == [("staging", "q")]
    third = Broker()
    assert Management(third).handle("import_definitions", {"definitions": exported})["vhosts"] == 2
    assert "q" in third.vhosts.get("staging").queues and third.users.permissions.get("guest", "staging")
    rabbitmq_311 = {"vhosts": [{"name": "prod", "metadata": {"description": "production", "tags": ["eu"]}}]}
    Management(third).handle("import_definitions", {"definitions": rabbitmq_311})
    assert (third.vhosts.info["prod"].description, third.vhosts.info["prod"].tags) == ("production", ["eu"])
    with pytest.raises(ManagementError, match="are not its 'vhost-limits' parameter's"):
        Management(third).handle("import_definitions", {"definitions": {
            "vhosts": [{"name": "capped", "limits": [{"max-queues": 1}]}]}})
    assert third.vhosts.get("capped") is None
    with pytest.raises(ManagementError, match="vhost 'nowhere', which neither exists nor is in the file"):
        Management(third).handle("import_definitions", {"definitions": {
            "queues": [{"name": "q", "vhost": "nowhere"}]}})


def test_direct_reply_names_belong_to_their_vhost(broker: Broker) -> None:
    client = peer_in(broker, b"client", "/")
    client.send(Op.BASIC_CONSUME, 1, "amq.rabbitmq.reply-to", "replies", True, False, {})
    client.send(Op.QUEUE_DECLARE, 1, "rpc", False, False, False, False, {})
    client.publish("", "rpc", b"ask", properties={"reply_to": "amq.rabbitmq.reply-to"})
    name = broker.topology.queues["rpc"].take(True).properties["reply_to"]
    stranger = peer_in(broker, b"stranger", "staging")  # knows the name, but is in another vhost
    [(op, fields, _)] = stranger.send(Op.BASIC_PUBLISH, 1, "", name, True, {}, body=b"forged")
    assert op == Op.BASIC_RETURN and fields[1] == 312  # unroutable there
    [(op, fields, _)] = stranger.send(Op.QUEUE_DECLARE, 1, name, True, False, False, False, {})
    assert fields[1:] == [404, f"NOT_FOUND - no queue '{name}' in vhost 'staging'"]
    assert [o for o, _, _ in client.collect() if o == Op.BASIC_DELIVER] == []
    server = peer_in(broker, b"server", "/")
    server.publish("", name, b"answer")
    assert [body for o, _, body in client.collect() if o == Op.BASIC_DELIVER] == [b"answer"]


def test_a_vhost_view_counts_its_messages() -> None:
    from tests.unit.wire import FakePeer
    from zbroker.core import Broker
    broker = Broker()
    peer = FakePeer(broker, b"p").open()
    peer.declare("q")
    for _ in range(3):
        peer.publish("", "q", b"m")
    peer.get("q", auto_ack=False)  # one taken, not yet acked
    [view] = [v for v in broker.vhosts.views() if v["name"] == "/"]
    assert (view["messages"], view["messages_ready"], view["messages_unacknowledged"]) == (3, 2, 1)


def test_deleting_a_vhost_with_durable_queues_is_saved(tmp_path) -> None:
    """The broker saves a snapshot when the count of durable changes moved. That count once
    summed the vhosts' own counts, so deleting a vhost took all its changes back out of the
    sum: with two durable queues, what the deletion added (deleting the vhost and its
    queues) was as much as what left with the vhost's count, the sum stayed where it was,
    no snapshot was saved, and the vhost came back after a crash."""
    from zbroker.storage import DiskStore
    broker = Broker(store=DiskStore(tmp_path))
    broker.add_vhost("staging")
    broker.users.set_permissions("guest", "staging", ".*", ".*", ".*")
    staging = peer_in(broker, b"stage", "staging")
    for name in ("a", "b"):
        staging.declare(name, durable=True)
    broker.commit()
    broker.delete_vhost("staging")
    broker.commit()
    broker.store._lock.release()  # as after SIGKILL: nothing more is written
    again = Broker(store=DiskStore(tmp_path))
    assert again.vhosts.get("staging") is None
    again.close()
