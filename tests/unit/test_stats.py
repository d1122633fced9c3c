"""Statistics and management in the pure core, with a fake clock: counters, rates from
samples, totals that outlive channels, listings, operator actions, definitions."""
from __future__ import annotations

import pytest

from tests.unit.wire import FakeClock, FakePeer, deliveries
from zbroker.core import Broker
from zbroker.core.management.requests import Management, ManagementError
from zbroker.protocol.native_management import MANAGEMENT_HEADER, decode_reply, encode_request
from zbroker.wires.management import ManagementWire
from zbroker.wires.native import NativeWire


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_700_000_000.0)


@pytest.fixture
def broker(clock: FakeClock) -> Broker:
    return Broker(now=clock.now)


def peer(broker: Broker, clock: FakeClock, name: bytes = b"p") -> FakePeer:
    return FakePeer(broker, name, clock).open()


def test_counters_follow_what_happens(broker: Broker, clock: FakeClock) -> None:
    p = peer(broker, clock)
    p.declare("q")
    for _ in range(4):
        p.publish("", "q", b"m")
    p.publish("", "nowhere", b"x")
    p.publish("", "nowhere", b"x", mandatory=True)
    p.get("q", auto_ack=True)
    p.get("q", auto_ack=False)
    tag = p.received[-1][1][1]
    p.ack(tag)
    frames = p.consume("q", "c", auto_ack=False)
    assert len(deliveries(frames)) == 2
    m = Management(broker)
    queue = m.handle("queue", {"name": "q"})
    assert queue["message_stats"]["publish"] == 4
    assert {k: queue["message_stats"][k] for k in ("get_no_ack", "get", "deliver", "ack", "deliver_get")} == {
        "get_no_ack": 1, "get": 1, "deliver": 2, "ack": 1, "deliver_get": 4}
    assert queue["incoming"] == [{"exchange": {"name": "", "vhost": "/"}, "stats": {"publish": 4}}]
    overview = m.handle("overview", {})
    stats = overview["message_stats"]
    assert (stats["publish"], stats["drop_unroutable"], stats["return_unroutable"]) == (6, 1, 1)
    assert overview["queue_totals"]["messages_unacknowledged"] == 2


def test_totals_outlive_the_channel_and_rates_come_from_samples(broker: Broker, clock: FakeClock) -> None:
    m = Management(broker)
    m.handle("overview", {})  # somebody looks: per-object samples are kept
    p = peer(broker, clock)
    p.declare("q")
    broker.tick(clock.now)
    for _ in range(50):
        p.publish("", "q", b"m")
    clock.advance(5.0, broker)
    queue = m.handle("queue", {"name": "q"})
    assert queue["message_stats"]["publish_details"]["rate"] == 10.0  # 50 in 5 s
    assert queue["messages_details"]["rate"] == 10.0
    assert m.handle("overview", {})["message_stats"]["publish_details"]["rate"] == 10.0
    clock.advance(5.0, broker)
    assert m.handle("queue", {"name": "q"})["message_stats"]["publish_details"]["rate"] == 0.0
    p.send(12, 1, 200, "bye", 0, 0)  # CHANNEL_CLOSE
    assert m.handle("overview", {})["message_stats"]["publish"] == 50  # kept after the channel went


def test_per_object_samples_only_while_watched(broker: Broker, clock: FakeClock) -> None:
    m = Management(broker)
    p = peer(broker, clock)
    p.declare("q")
    clock.advance(5.0, broker)
    assert broker.stats._objects == []  # nobody looked: no per-object sample
    m.handle("overview", {})
    broker.tick(clock.now)
    assert broker.stats._objects
    clock.advance(61.0, broker)
    clock.advance(5.0, broker)
    assert broker.stats._objects == []


def test_listing_pages_filters_and_columns(broker: Broker, clock: FakeClock) -> None:
    p = peer(broker, clock)
    for name in ("b", "a", "c", "ab"):
        p.declare(name)
    m = Management(broker)
    page = m.handle("list", {"kind": "queues", "page": 2, "page_size": 3, "columns": ["name"]})
    assert page == {"filtered_count": 4, "item_count": 1, "page": 2, "page_count": 2, "page_size": 3,
                    "total_count": 4, "items": [{"name": "c"}]}
    assert [q["name"] for q in m.handle("list", {"kind": "queues", "name": "a"})] == ["a", "ab"]
    assert [q["name"] for q in m.handle("list", {"kind": "queues", "name": "^a$", "use_regex": True})] == ["a"]
    nested = m.handle("list", {"kind": "queues", "columns": ["name", "message_stats.publish"], "name": "c"})
    assert nested == [{"name": "c", "message_stats": {"publish": 0}}]
    for bad in ({"kind": "queues", "page": 0}, {"kind": "queues", "page": 9}, {"kind": "nope"},
                {"kind": "queues", "name": "(", "use_regex": True}, {"kind": 3}):
        with pytest.raises(ManagementError) as err:
            m.handle("list", bad)
        assert err.value.status == 400


def test_operator_actions(broker: Broker, clock: FakeClock) -> None:
    p = peer(broker, clock)
    p.declare("q")
    p.publish("", "q", b"one")
    p.publish("", "q", b"two")
    m = Management(broker)
    got = m.handle("get_messages", {"name": "q", "count": 1, "ackmode": "ack_requeue_true"})
    assert got[0]["payload"] == "one" and got[0]["message_count"] == 1
    got = m.handle("get_messages", {"name": "q", "count": 5, "ackmode": "ack_requeue_false", "encoding": "base64"})
    assert [g["payload"] for g in got] == ["b25l", "dHdv"] and got[0]["redelivered"] is True
    assert broker.topology.queues["q"].ready == 0
    assert m.handle("publish", {"exchange": "", "routing_key": "q", "payload": "aGk=",
                                "payload_encoding": "base64", "properties": {}}) == {"routed": True}
    assert m.handle("purge_queue", {"name": "q"}) == {"message_count": 1}
    p.consume("q", "c")
    with pytest.raises(ManagementError):
        m.handle("delete_queue", {"name": "q", "if_unused": True})
    assert m.handle("delete_queue", {"name": "q"}) == {"message_count": 0}
    assert p.ops()[-1] == "BASIC_CANCEL"
    name = m.handle("list", {"kind": "connections"})[0]["name"]
    m.handle("close_connection", {"name": name, "reason": "bye"})
    assert p.ops()[-1] == "CONNECTION_CLOSE" and p.received[-1][1][0] == 320
    assert broker.connections == {}
    with pytest.raises(ManagementError) as err:
        m.handle("queue", {"name": "q"})
    assert err.value.as_dict() == {"error": "Object Not Found", "reason": "Not Found"}


def test_definitions_are_checked_before_anything_is_declared(broker: Broker) -> None:
    m = Management(broker)
    bad = {"queues": [{"name": "ok", "arguments": {}}, {"name": "bad", "arguments": {"x-max-priority": "high"}}]}
    with pytest.raises(ManagementError) as err:
        m.handle("import_definitions", {"definitions": bad})
    assert "queue 'bad'" in err.value.reason and "ok" not in broker.topology.queues
    dangling = {"bindings": [{"source": "nowhere", "destination": "q", "destination_type": "queue"}]}
    with pytest.raises(ManagementError):
        m.handle("import_definitions", {"definitions": dangling})
    good = {"exchanges": [{"name": "x", "type": "topic"}], "queues": [{"name": "q"}],
            "bindings": [{"source": "x", "destination": "q", "destination_type": "queue", "routing_key": "a.*"}]}
    assert m.handle("import_definitions", {"definitions": good}) == {
        "vhosts": 0, "users": 0, "permissions": 0, "topic_permissions": 0, "policies": 0, "global_parameters": 0,
        "operator_policies": 0, "vhost_limits": 0, "parameters": 0, "exchanges": 1, "queues": 1, "bindings": 1}
    assert m.handle("definitions", {})["bindings"][0]["routing_key"] == "a.*"
    typed = {"queues": [{"name": "qq", "type": "quorum", "durable": True, "arguments": {}}]}
    m.handle("import_definitions", {"definitions": typed})  # RabbitMQ 3.13+'s queue "type" field
    assert broker.topology.queues["qq"].TYPE == "quorum"
    # rabbitmqctl's export names every queue's type; a classic one keeps the arguments it
    # came with (no x-queue-type added), so it exports as it was imported.
    plain = {"name": "plain", "vhost": "/", "type": "classic", "durable": True, "auto_delete": False,
             "arguments": {"x-message-ttl": 5}}
    m.handle("import_definitions", {"definitions": {"queues": [plain]}})
    assert [q for q in m.handle("definitions", {})["queues"] if q["name"] == "plain"] == [plain]
    assert m.handle("definitions", {})["vhosts"][0]["metadata"] == {"description": "Default virtual host",
                                                                     "tags": []}
    with pytest.raises(ManagementError) as err:
        m.handle("import_definitions", {"definitions": {"queues": [
            {"name": "q2", "type": "quorum", "arguments": {"x-queue-type": "classic"}}]}})
    assert "x-queue-type 'classic'" in err.value.reason
    assert m.handle("reset", {}) == {"queues": 3, "exchanges": 1}
    assert "q" not in broker.topology.queues and "x" not in broker.topology.exchanges


GUEST = {"user": "guest", "password": "guest"}


def test_management_frames_need_no_connection_and_bad_ones_hurt_nobody(broker: Broker, clock: FakeClock) -> None:
    mwire = ManagementWire(broker)
    wire = NativeWire(broker, management=mwire)
    p = FakePeer(broker, b"client", clock, wire=wire).open()
    p.declare("q")
    wire.handle(b"ctl", [MANAGEMENT_HEADER, encode_request(7, "list", {"kind": "queues"}, GUEST)], 0, clock.now)
    wire.handle(b"ctl", [MANAGEMENT_HEADER, b"\xc1garbage"], 0, clock.now)
    wire.handle(b"ctl", [MANAGEMENT_HEADER, encode_request(8, "publish", {
        "exchange": "", "routing_key": "q", "payload": "x", "properties": {"priority": 300}}, GUEST)], 0, clock.now)
    wire.handle(b"ctl", [MANAGEMENT_HEADER, encode_request(9, "nope", {}, GUEST)], 0, clock.now)
    replies = [decode_reply(frames[1]) for peer, frames in mwire.take_replies()]
    assert replies[0][:2] == (7, True) and replies[0][2][0]["name"] == "q"
    assert [r[1] for r in replies[1:]] == [False, False, False]
    assert [r[2]["status"] for r in replies[1:]] == [400, 400, 400]
    assert b"ctl" not in broker.connections
    assert p.publish("", "q", b"still fine") == [] and broker.topology.queues["q"].ready == 1
