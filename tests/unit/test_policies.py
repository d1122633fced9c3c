"""Policies and operator policies through the pure core: which one applies, how it meets a
queue's own x-arguments, what it does to messages already queued, and validation with
RabbitMQ's texts."""
from __future__ import annotations

import pytest

from tests.unit.wire import FakeClock, FakePeer
from zbroker.core import Broker
from zbroker.core.management.requests import Management, ManagementError
from zbroker.core.messaging.policies import PolicyError, make


def policy(peer: FakePeer, name: str, pattern: str, definition: dict, priority: int = 0,
           apply_to: str = "all", operator: bool = False) -> None:
    peer.broker.set_policy(peer.broker.topology, name, pattern, definition, priority, apply_to, operator)


def settings(peer: FakePeer, queue: str):  # noqa: ANN201
    return peer.broker.topology.queues[queue].settings


def test_a_policy_applies_at_declare_and_to_queues_that_already_exist(peer: FakePeer) -> None:
    peer.declare("orders.old")
    policy(peer, "ttl", r"^orders\.", {"message-ttl": 5000})
    peer.declare("orders.new")
    peer.declare("other")
    assert settings(peer, "orders.old").message_ttl == settings(peer, "orders.new").message_ttl == 5000
    assert settings(peer, "other").message_ttl is None


def test_the_highest_priority_wins_and_definitions_are_not_merged(peer: FakePeer) -> None:
    policy(peer, "low", "^q", {"max-length": 5, "message-ttl": 100}, priority=1)
    policy(peer, "high", "^q", {"max-length": 10}, priority=2)
    peer.declare("q")
    assert (settings(peer, "q").max_length, settings(peer, "q").message_ttl) == (10, None)
    peer.broker.clear_policy(peer.broker.topology, "high")  # the next match takes over
    assert (settings(peer, "q").max_length, settings(peer, "q").message_ttl) == (5, 100)
    peer.broker.clear_policy(peer.broker.topology, "low")  # and then nothing does
    assert (settings(peer, "q").max_length, settings(peer, "q").message_ttl) == (None, None)


def test_apply_to_chooses_the_kind_of_entity(peer: FakePeer) -> None:
    policy(peer, "ex", ".*", {"alternate-exchange": "ae"}, apply_to="exchanges")
    policy(peer, "quorum-only", ".*", {"delivery-limit": 3}, apply_to="quorum_queues")
    peer.declare("classic")
    peer.declare("qq", durable=True, arguments={"x-queue-type": "quorum"})
    peer.exchange("x")
    assert settings(peer, "classic").delivery_limit is None and settings(peer, "qq").delivery_limit == 3
    assert peer.broker.topology.exchanges["x"].alternate == "ae"


def test_numeric_limits_take_the_lesser_of_argument_and_policy(peer: FakePeer) -> None:
    peer.declare("small", arguments={"x-max-length": 2, "x-message-ttl": 50000})
    peer.declare("large", arguments={"x-max-length": 200})
    policy(peer, "lim", ".*", {"max-length": 20, "message-ttl": 1000})
    assert (settings(peer, "small").max_length, settings(peer, "small").message_ttl) == (2, 1000)
    assert settings(peer, "large").max_length == 20


def test_the_argument_wins_for_dead_lettering_and_overflow(peer: FakePeer) -> None:
    peer.declare("own", arguments={"x-dead-letter-exchange": "mine", "x-overflow": "reject-publish"})
    peer.declare("bare")
    policy(peer, "dl", ".*", {"dead-letter-exchange": "policy-dlx", "overflow": "drop-head"})
    own, bare = settings(peer, "own"), settings(peer, "bare")
    assert (own.dead_letter_exchange, own.overflow) == ("mine", "reject-publish")
    assert (bare.dead_letter_exchange, bare.overflow) == ("policy-dlx", "drop-head")


def test_an_alternate_exchange_argument_wins_over_the_policy(peer: FakePeer) -> None:
    peer.exchange("x", arguments={"alternate-exchange": "mine"})
    policy(peer, "ae", ".*", {"alternate-exchange": "theirs"}, apply_to="exchanges")
    assert peer.broker.topology.exchanges["x"].alternate == "mine"


def test_a_lower_max_length_trims_the_queue_at_once(peer: FakePeer) -> None:
    peer.declare("q")
    for i in range(10):
        peer.publish("", "q", b"%d" % i)
    policy(peer, "lim", "^q$", {"max-length": 3})
    assert peer.drain("q") == [b"7", b"8", b"9"]


def test_a_policy_dead_letter_exchange_receives_what_the_limit_drops(peer: FakePeer) -> None:
    peer.declare("dead")
    peer.bind("dead", "amq.fanout")
    peer.declare("q")
    for i in range(4):
        peer.publish("", "q", b"%d" % i)
    policy(peer, "dl", "^q$", {"max-length": 1, "dead-letter-exchange": "amq.fanout"})
    assert peer.drain("dead") == [b"0", b"1", b"2"] and peer.drain("q") == [b"3"]


def test_a_policy_expires_unused_queues() -> None:
    clock = FakeClock()
    broker = Broker(now=clock.now)
    peer = FakePeer(broker, b"p", clock).open()
    peer.declare("temp")
    broker.set_policy(broker.topology, "exp", "^temp$", {"expires": 1000})
    clock.advance(2, broker)
    assert "temp" not in broker.topology.queues


def test_an_operator_policy_caps_the_user_policy(peer: FakePeer) -> None:
    policy(peer, "user", ".*", {"max-length": 100, "message-ttl": 10, "dead-letter-exchange": "dlx"})
    policy(peer, "cap", ".*", {"max-length": 50, "message-ttl": 60000}, operator=True)
    peer.declare("q")
    s = settings(peer, "q")
    assert (s.max_length, s.message_ttl, s.dead_letter_exchange) == (50, 10, "dlx")
    with pytest.raises(PolicyError, match="are not recognised policy settings"):
        policy(peer, "bad", ".*", {"dead-letter-exchange": "x"}, operator=True)


@pytest.mark.parametrize("definition, text", [
    ({"max-length": "ten"}, '<<"ten">> is not a valid maximum length'),
    ({"max-length": -1}, "-1 is not a valid maximum length"),
    ({"expires": 0}, "0 is not a valid queue expiry"),
    ({"overflow": "sometimes"}, '<<"sometimes">> is not a valid overflow value'),
    ({"foo": "bar"}, '[{<<"foo">>,<<"bar">>}] are not recognised policy settings'),
])
def test_validation_says_what_rabbitmq_says(definition: dict, text: str) -> None:
    with pytest.raises(PolicyError) as err:
        make("/", "p", ".*", definition)
    assert str(err.value) == text


def test_a_bad_pattern_or_apply_to_is_refused_and_nothing_changes(peer: FakePeer) -> None:
    for pattern, apply_to in (("(unclosed", "all"), ("ok", "everything")):
        with pytest.raises(PolicyError):
            policy(peer, "p", pattern, {"max-length": 1}, apply_to=apply_to)
    assert not peer.broker.topology.policies


def test_management_answers_with_rabbitmqs_shapes(peer: FakePeer) -> None:
    m = Management(peer.broker)
    m.handle("set_policy", {"name": "lim", "pattern": "^q", "definition": {"max-length": 1}, "priority": 3,
                            "apply_to": "queues"})
    assert m.handle("list", {"kind": "policies"}) == [
        {"vhost": "/", "name": "lim", "pattern": "^q", "apply-to": "queues", "definition": {"max-length": 1},
         "priority": 3}]
    with pytest.raises(ManagementError) as err:
        m.handle("set_policy", {"name": "bad", "pattern": "^q", "definition": {"max-length": "x"}})
    assert (err.value.status, err.value.reason) == (
        400, 'Validation failed\n\n<<"x">> is not a valid maximum length\n')
    with pytest.raises(ManagementError) as err:
        m.handle("clear_policy", {"name": "none"})
    assert err.value.status == 404
    m.handle("clear_policy", {"name": "lim"})
    assert m.handle("list", {"kind": "policies"}) == []


def test_policies_survive_a_restart(tmp_path) -> None:  # noqa: ANN001
    from zbroker.storage.disk import DiskStore
    broker = Broker(store=DiskStore(tmp_path))
    broker.set_policy(broker.topology, "lim", "^durable$", {"max-length": 2}, 1, "queues")
    broker.set_policy(broker.topology, "cap", ".*", {"message-ttl": 9000}, 0, "all", operator=True)
    peer = FakePeer(broker, b"p").open()
    peer.declare("durable", durable=True)
    broker.close()
    again = Broker(store=DiskStore(tmp_path))
    queue = again.topology.queues["durable"]
    assert (queue.settings.max_length, queue.settings.message_ttl) == (2, 9000)
    assert [p.view()["priority"] for p in again.topology.policies.user.values()] == [1]
