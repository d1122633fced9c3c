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


def test_a_policy_with_a_key_the_type_does_not_take_skips_that_type(peer: FakePeer) -> None:
    """RabbitMQ's ``is_applicable``: the whole policy is off a classic queue, the next one
    applies instead; a quorum queue takes it."""
    policy(peer, "quorum-ish", ".*", {"delivery-limit": 5, "max-length": 1}, priority=9)
    policy(peer, "fallback", ".*", {"max-length": 7}, priority=1)
    peer.declare("classic")
    peer.declare("qq", durable=True, arguments={"x-queue-type": "quorum"})
    assert settings(peer, "classic").max_length == 7
    assert (settings(peer, "qq").max_length, settings(peer, "qq").delivery_limit) == (1, 5)


def test_a_quorum_queue_lets_the_policy_win_for_overflow_and_expires(peer: FakePeer) -> None:
    args = {"x-queue-type": "quorum", "x-overflow": "reject-publish", "x-expires": 1000, "x-max-length": 5}
    peer.declare("qq", durable=True, arguments=args)
    policy(peer, "p", ".*", {"overflow": "drop-head", "expires": 60000, "max-length": 50})
    s = settings(peer, "qq")
    assert (s.overflow, s.expires, s.max_length) == ("drop-head", 60000, 5)
    policy(peer, "p", ".*", {"overflow": "reject-publish-dlx"})  # a quorum queue falls back to drop-head
    assert settings(peer, "qq").overflow == "drop-head"


@pytest.mark.parametrize("definition, text", [
    ({"zzz": 1, "max-length": "x"}, '<<"x">> is not a valid maximum length'),  # values first, then keys
    ({"b-key": 1, "a-key": 2}, '[{<<"a-key">>,2},{<<"b-key">>,1}] are not recognised policy settings'),
    ({"ha-mode": "all"}, '[{<<"ha-mode">>,<<"all">>}] are not recognised policy settings'),  # as 4.x
    ({}, "no policy provided"),
    ({"dead-letter-strategy": "at-least-once"}, "dead-letter-strategy: not supported by zbroker"),
    ({"max-age": "1x"}, '<<"1x">> is not a valid max age'),
    ({"max-age": 5}, "5 is not a valid max age"),
    ({"stream-max-segment-size-bytes": 3_000_000_001}, "3000000001 is not a valid segment size"),
    ({"initial-cluster-size": -1}, "-1 is not a valid cluster size"),
])
def test_validation_order_and_refusals(definition: dict, text: str) -> None:
    with pytest.raises(PolicyError) as err:
        make("/", "p", ".*", definition)
    assert str(err.value) == text


def test_pattern_apply_to_and_priority_texts() -> None:
    with pytest.raises(PolicyError, match=r"^pattern should be regular expression but is invalid: \{"):
        make("/", "p", "(unclosed", {"max-length": 1})
    with pytest.raises(PolicyError) as err:
        make("/", "p", ".*", {"max-length": 1}, apply_to="everything")
    assert str(err.value) == ("apply-to 'everything' unrecognised; should be one of: 'queues', 'classic_queues',  "
                              "'quorum_queues', 'streams', 'exchanges', or 'all'")
    with pytest.raises(PolicyError) as err:
        make("/", "p", ".*", {"max-length": 1}, priority="5")
    assert str(err.value) == 'priority should be a number, actually was <<"5">>'


def test_views_name_the_policies_as_rabbitmq_does(peer: FakePeer) -> None:
    from zbroker.core.management import views
    peer.declare("q")
    peer.exchange("x")
    broker = peer.broker
    queue, exchange = broker.topology.queues["q"], broker.topology.exchanges["x"]
    assert views.queue(broker, queue)["policy"] is None
    assert views.queue(broker, queue)["effective_policy_definition"] == {}
    assert "policy" not in views.exchange(broker, exchange, "/")  # omitted when none applies
    policy(peer, "p", ".*", {"max-length": 9})
    policy(peer, "cap", ".*", {"max-length": 4}, operator=True)
    view = views.queue(broker, queue)
    assert (view["policy"], view["operator_policy"], view["effective_policy_definition"]) == (
        "p", "cap", {"max-length": 4})
    assert views.exchange(broker, exchange, "/")["policy"] == "p"


def test_a_policy_change_over_many_queues_is_applied_a_batch_per_loop_pass(peer: FakePeer, monkeypatch) -> None:  # noqa: ANN001
    from zbroker.core import broker as broker_module
    monkeypatch.setattr(broker_module, "POLICY_BATCH", 2)
    for i in range(5):
        peer.declare(f"q{i}")
    broker = peer.broker
    policy(peer, "lim", "^q", {"max-length": 1})
    limited = lambda: sum(q.settings.max_length == 1 for q in broker.topology.queues.values())  # noqa: E731
    assert limited() == 2 and broker.has_pending_work
    peer.declare("q-new")  # declared meanwhile: it gets the policy at once
    assert settings(peer, "q-new").max_length == 1
    broker.run_pending()
    broker.run_pending()
    assert limited() == 6 and not broker.has_pending_work
