"""The x-delayed-message exchange (RabbitMQ's delayed message plugin, ``core/messaging/delayed.py``)
through the pure core with a fake clock: declaring, routing as the delayed type, what
``x-delay`` values do, due order, mandatory and confirms, the timers (no scan), and
durability through the core's recovery path on a disk store."""
from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.support import patches_internals
from tests.unit.wire import FakeClock, FakePeer, closes, props_of
from tests.unit.test_durability import settle
from zbroker.core import Broker
from zbroker.core.management import definitions
from zbroker.core.management.definitions import DefinitionsError
from zbroker.core.management.requests import Management
from zbroker.core.messaging import delayed
from zbroker.core.messaging.delayed import MAX_DELAY_MS, DelayedHold, delay_of
from zbroker.core.messaging.exchanges import DelayedExchange
from zbroker.protocol import Op
from zbroker.storage import DiskStore

PERSISTENT = 2


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def peer(clock: FakeClock) -> FakePeer:
    """One client of a fresh broker on the fake clock."""
    return FakePeer(Broker(now=clock.now), b"p", clock).open()


def declare(peer: FakePeer, name: str = "d", kind: str = "direct", ch: int = 1, durable: bool = False,
            **arguments: Any) -> list:
    return peer.exchange(name, "x-delayed-message", ch=ch, durable=durable,
                         arguments={"x-delayed-type": kind, **arguments})


def publish(peer: FakePeer, body: bytes, delay: Any = None, key: str = "k", exchange: str = "d",
            mandatory: bool = False, **properties: Any) -> list:
    headers = {**properties.pop("headers", {}), **({} if delay is None else {"x-delay": delay})}
    return peer.publish(exchange, key, body, mandatory=mandatory,
                        properties={**properties, **({"headers": headers} if headers else {})})


def held(broker: Broker, name: str = "d") -> int:
    exchange = broker.topology.exchanges[name]
    assert isinstance(exchange, DelayedExchange)
    return exchange.hold.ready


def queue_with(peer: FakePeer, name: str = "q", exchange: str = "d", key: str = "k", **kw: Any) -> None:
    peer.declare(name, **kw)
    assert peer.bind(name, exchange, key)[0][0] == Op.QUEUE_BIND_OK


# -- declaring -------------------------------------------------------------------------

def test_the_delayed_type_is_required_and_checked_with_the_plugins_texts(peer: FakePeer) -> None:
    refusals = []
    for ch, arguments in enumerate(({}, {"x-delayed-type": 5}, {"x-delayed-type": "x-delayed-message"},
                                    {"x-delayed-type": "nope"}, {"x-delayed-type": ""}), start=2):
        peer.send(Op.CHANNEL_OPEN, ch)
        refusals += closes(peer.exchange("bad", "x-delayed-message", ch=ch, arguments=arguments))
    assert refusals == [
        (406, "PRECONDITION_FAILED - Invalid argument, 'x-delayed-type' must be an existing exchange type"),
        (406, "PRECONDITION_FAILED - Invalid argument, 'x-delayed-type' must be an existing exchange type"),
        (406, "PRECONDITION_FAILED - Invalid argument, 'x-delayed-message' can't be used for 'x-delayed-type'"),
        (406, "PRECONDITION_FAILED - unknown exchange type 'nope'"),  # as zbroker refuses the type itself
        (406, "PRECONDITION_FAILED - unknown exchange type ''"),
    ]
    assert "bad" not in peer.broker.topology.exchanges


def test_the_delayed_types_own_checks_apply_to_arguments_and_bindings(peer: FakePeer) -> None:
    plain, delayed_peer = FakePeer(peer.broker, b"plain").open(), FakePeer(peer.broker, b"delayed").open()
    assert closes(declare(delayed_peer, "ch-bad", "x-consistent-hash", **{"hash-header": 5})) == \
        closes(plain.exchange("ch-plain", "x-consistent-hash", arguments={"hash-header": 5})) == \
        [(541, "INTERNAL_ERROR")]  # (RabbitMQ 3.10's plugin crashes: 541, as through the delayed exchange)
    assert declare(peer, "ring", "x-consistent-hash")[0][0] == Op.EXCHANGE_DECLARE_OK
    assert declare(peer, "h", "headers")[0][0] == Op.EXCHANGE_DECLARE_OK
    peer.declare("q")
    assert closes(peer.bind("q", "ring", "not a weight")) == [
        (406, 'PRECONDITION_FAILED - The binding key must be an integer: <<"not a weight">>')]
    peer.send(Op.CHANNEL_OPEN, 3)
    assert closes(peer.bind("q", "h", ch=3, arguments={"x-match": "bogus"})) == [
        (406, "PRECONDITION_FAILED - Invalid x-match field value 'bogus'; expected all, any, all-with-x, "
              "or any-with-x")]


def test_a_redeclaration_compares_what_any_exchanges_does(peer: FakePeer) -> None:
    """As RabbitMQ's: the delayed type is not compared (the plugin asks the type, which
    compares only alternate-exchange); the exchange type is."""
    declare(peer)
    assert declare(peer, kind="fanout")[0][0] == Op.EXCHANGE_DECLARE_OK
    assert peer.broker.topology.exchanges["d"].arguments["x-delayed-type"] == "direct"
    assert closes(peer.exchange("d", "direct")) == [
        (406, "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'd' in vhost '/': received 'direct' "
              "but current is 'x-delayed-message'")]


# -- routing as the delayed type ----------------------------------------------------------

@pytest.mark.parametrize("kind,key,bind_key,arguments,properties", [
    ("direct", "k", "k", {}, {}),
    ("fanout", "anything", "", {}, {}),
    ("topic", "a.b.c", "a.#", {}, {}),
    ("headers", "", "", {"x-match": "any", "colour": "red"}, {"headers": {"colour": "red"}}),
    ("x-consistent-hash", "some key", "1", {}, {}),
])
def test_routes_as_its_delayed_type_at_once_or_when_due(peer: FakePeer, clock: FakeClock, kind: str, key: str,
                                                       bind_key: str, arguments: dict, properties: dict) -> None:
    declare(peer, kind=kind)
    peer.declare("q")
    peer.bind("q", "d", bind_key, arguments=arguments)
    peer.declare("other")
    if kind not in ("fanout", "x-consistent-hash"):  # (those route every key to their queue)
        peer.bind("other", "d", "nope" if kind != "headers" else "", arguments={"colour": "blue"})
    publish(peer, b"now", key=key, **properties)
    publish(peer, b"later", 1000, key=key, **properties)
    assert peer.drain("q") == [b"now"]
    clock.advance(1, peer.broker)
    assert peer.drain("q") == [b"later"]
    assert peer.drain("other") == []


def test_messages_are_released_in_due_order_then_publish_order(peer: FakePeer, clock: FakeClock) -> None:
    declare(peer)
    queue_with(peer)
    for body, delay in ((b"c", 300), (b"a1", 100), (b"b", 200), (b"a2", 100), (b"d", 3000)):
        publish(peer, body, delay)
    assert peer.broker.next_deadline() == pytest.approx(clock.now + 0.1)
    clock.advance(0.099, peer.broker)
    assert peer.drain("q") == []
    clock.advance(0.001, peer.broker)
    assert peer.drain("q") == [b"a1", b"a2"]
    clock.advance(0.5, peer.broker)
    assert peer.drain("q") == [b"b", b"c"]
    assert held(peer.broker) == 1 and peer.broker.next_deadline() == pytest.approx(clock.now + 2.4)
    clock.advance(2.4, peer.broker)
    assert peer.drain("q") == [b"d"]


def test_a_released_message_is_routed_by_the_bindings_of_its_time(peer: FakePeer, clock: FakeClock) -> None:
    declare(peer)
    peer.declare("early")
    peer.bind("early", "d", "k")
    publish(peer, b"m", 1000)
    peer.send(Op.QUEUE_UNBIND, 1, "early", "d", "k", {})
    queue_with(peer, "late")
    clock.advance(1, peer.broker)
    assert (peer.drain("early"), peer.drain("late")) == ([], [b"m"])


# -- x-delay values ----------------------------------------------------------------------

@pytest.mark.parametrize("value,delay", [
    (1500, 1500), (1, 1), (MAX_DELAY_MS, MAX_DELAY_MS), ("1500", 1500), ("+1500", 1500), ("007", 7),
    (str(MAX_DELAY_MS), MAX_DELAY_MS), ("0" * 30 + "5", 5), (str(MAX_DELAY_MS + 1), None), ("9" * 10_000, None),
    ("-" + "9" * 10_000, None),
    (1500.9, 1500), (1.5, 1),
    (0, None), (-5, None), ("-5", None), (0.5, None), (-1.5, None), (MAX_DELAY_MS + 1, None), (2**70, None),
    (math.inf, None), (-math.inf, None), (math.nan, None), (True, None), (False, None), (b"1500", None),
    (None, None), (datetime(2030, 1, 1), None), ([1500], None), ({"ms": 1500}, None),
])
def test_x_delay_values_as_the_plugin_reads_them(value: Any, delay: int | None) -> None:
    assert delay_of(value) == delay


@pytest.mark.parametrize("value", [" 100", "100 ", "1_000", "1.5", "", "abc", "١٢"])
def test_a_string_that_is_not_an_integer_closes_the_connection_as_rabbitmqs_crash_does(
        peer: FakePeer, value: str) -> None:
    declare(peer)
    assert closes(publish(peer, b"m", value)) == [
        (541, f"INTERNAL_ERROR - the x-delay header '{value}' is not an integer")]


def test_no_usable_delay_routes_at_once_and_headers_travel_as_published(peer: FakePeer, clock: FakeClock) -> None:
    declare(peer)
    queue_with(peer)
    for value in (0, -5, True, b"9", MAX_DELAY_MS + 1):
        publish(peer, b"at once", value)
    publish(peer, b"no header")
    assert peer.drain("q") == [b"at once"] * 5 + [b"no header"]
    publish(peer, b"held", "250", headers={"app": 1})
    clock.advance(0.25, peer.broker)
    frames = peer.get("q")
    assert props_of(frames) == [{"headers": {"app": 1, "x-delay": "250"}}]


def test_a_messages_ttl_counts_from_its_release(peer: FakePeer, clock: FakeClock) -> None:
    declare(peer)
    queue_with(peer)
    publish(peer, b"m", 2000, expiration="1000")
    clock.advance(2, peer.broker)
    assert peer.count("q") == 1
    clock.advance(0.9, peer.broker)
    assert peer.count("q") == 1
    clock.advance(0.1, peer.broker)
    assert peer.count("q") == 0


# -- however a message reaches the exchange ----------------------------------------------

def test_exchange_to_exchange_routing_holds_once_and_keeps_the_publish_exchange(
        peer: FakePeer, clock: FakeClock) -> None:
    """A direct exchange routes to a queue and to a delayed exchange, which routes to
    another delayed exchange: the message waits once (routing sees x-delay negated)."""
    peer.exchange("a", "direct")
    declare(peer, "d1")
    declare(peer, "d2", "fanout")
    queue_with(peer, "direct-q", "a")
    peer.send(Op.EXCHANGE_BIND, 1, "d1", "a", "k", {})
    peer.send(Op.EXCHANGE_BIND, 1, "d2", "d1", "k", {})
    queue_with(peer, "end", "d2", "")
    frames = publish(peer, b"m", 500, exchange="a", mandatory=True)
    assert [op for op, _, _ in frames] == []  # a queue took it: nothing comes back
    assert peer.drain("direct-q") == [b"m"] and held(peer.broker, "d1") == 1
    clock.advance(0.5, peer.broker)
    assert held(peer.broker, "d2") == 0
    got = [(fields[3], body) for op, fields, body in peer.get("end") if op == Op.BASIC_GET_OK]
    assert got == [("a", b"m")]  # with the exchange it was published to


def test_a_dead_letter_to_a_delayed_exchange_waits(peer: FakePeer, clock: FakeClock) -> None:
    declare(peer)
    queue_with(peer)
    peer.declare("ttl", arguments={"x-message-ttl": 10, "x-dead-letter-exchange": "d",
                                   "x-dead-letter-routing-key": "k"})
    publish(peer, b"m", 300, exchange="", key="ttl")
    clock.advance(0.01, peer.broker)
    assert held(peer.broker) == 1 and peer.count("q") == 0
    clock.advance(0.3, peer.broker)
    assert peer.drain("q") == [b"m"]


def test_cc_keys_route_the_released_message(peer: FakePeer, clock: FakeClock) -> None:
    declare(peer)
    queue_with(peer)
    queue_with(peer, "cc", key="cc")
    publish(peer, b"m", 100, headers={"CC": ["cc"]})
    clock.advance(0.1, peer.broker)
    assert (peer.drain("q"), peer.drain("cc")) == ([b"m"], [b"m"])


def test_alternate_exchange_only_when_the_released_message_is_unroutable(peer: FakePeer, clock: FakeClock) -> None:
    """Not at publish as well (the plugin's issue #36 sends every delayed message there at once)."""
    peer.exchange("ae", "fanout")
    queue_with(peer, "ae-q", "ae", "")
    declare(peer, **{"alternate-exchange": "ae"})
    queue_with(peer)
    publish(peer, b"routed", 100)
    publish(peer, b"unroutable", 100, key="nobody")
    assert peer.drain("ae-q") == []
    clock.advance(0.1, peer.broker)
    assert (peer.drain("q"), peer.drain("ae-q")) == ([b"routed"], [b"unroutable"])


def test_a_transaction_holds_at_commit_and_not_after_a_rollback(peer: FakePeer, clock: FakeClock) -> None:
    declare(peer)
    queue_with(peer)
    peer.send(Op.TX_SELECT, 1)
    publish(peer, b"rolled back", 100)
    peer.send(Op.TX_ROLLBACK, 1)
    publish(peer, b"committed", 100)
    assert held(peer.broker) == 0
    peer.send(Op.TX_COMMIT, 1)
    assert held(peer.broker) == 1
    clock.advance(0.1, peer.broker)
    assert peer.drain("q") == [b"committed"]


# -- mandatory, confirms, management ------------------------------------------------------

def test_mandatory_comes_back_at_once_yet_is_delivered_after_its_delay(peer: FakePeer, clock: FakeClock) -> None:
    """RabbitMQ's plugin does not support mandatory: basic.return (312) at once, and the
    confirm; the message still arrives when due."""
    declare(peer)
    queue_with(peer)
    peer.send(Op.CONFIRM_SELECT, 1)
    frames = publish(peer, b"m", 200, mandatory=True)
    peer.broker.commit()
    frames += peer.collect()
    assert [(op, f[1:3] if op == Op.BASIC_RETURN else f[1]) for op, f, _ in frames] == [
        (Op.BASIC_RETURN, [312, "NO_ROUTE"]), (Op.BASIC_ACK, 1)]
    assert [op for op, _, _ in publish(peer, b"at once", 0, mandatory=True)] == [Op.BASIC_ACK]  # (routed)
    clock.advance(0.2, peer.broker)
    assert peer.drain("q") == [b"at once", b"m"]


def test_a_persistent_message_is_confirmed_once_on_disk(tmp_path: Path, clock: FakeClock) -> None:
    broker = Broker(store=DiskStore(tmp_path), now=clock.now)
    p = FakePeer(broker, b"p", clock).open()
    declare(p, durable=True)
    p.send(Op.CONFIRM_SELECT, 1)
    assert publish(p, b"m", 5000, delivery_mode=PERSISTENT) == []
    broker.after_input()  # the loop's early answer: not while a write waits for the disk
    assert p.collect() == []
    broker.commit()
    assert [op for op, _, _ in p.collect()] == [Op.BASIC_ACK]
    broker.close()


def test_management_shows_the_type_its_arguments_and_messages_delayed(peer: FakePeer) -> None:
    declare(peer)
    publish(peer, b"m", 1000)
    publish(peer, b"n", 1000)
    view = Management(peer.broker).handle("exchange", {"name": "d"})
    assert (view["type"], view["arguments"], view["messages_delayed"]) == (
        "x-delayed-message", {"x-delayed-type": "direct"}, 2)
    overview = Management(peer.broker).handle("overview", {})
    assert {"name": "x-delayed-message", "description": "Delayed Message Exchange.", "enabled": True} in \
        overview["exchange_types"]
    assert peer.broker.publish("d", "k", {"headers": {"x-delay": 50}}, b"op") is False  # RabbitMQ: routed false
    assert held(peer.broker) == 3


def test_definitions_carry_it_and_a_bad_one_is_refused_before_anything(peer: FakePeer, clock: FakeClock) -> None:
    declare(peer, durable=True, **{"alternate-exchange": "ae"})
    exported = definitions.export(peer.broker)
    entry = [e for e in exported["exchanges"] if e["name"] == "d"]
    assert entry == [{"name": "d", "vhost": "/", "type": "x-delayed-message", "durable": True, "auto_delete": False,
                      "internal": False, "arguments": {"x-delayed-type": "direct", "alternate-exchange": "ae"}}]
    other = Broker(now=clock.now)
    definitions.apply(other, {"exchanges": entry})
    assert isinstance(other.topology.exchanges["d"], DelayedExchange)
    bad = {"queues": [{"name": "q", "vhost": "/"}],
           "exchanges": [{"name": "x", "vhost": "/", "type": "x-delayed-message", "arguments": {}}]}
    with pytest.raises(DefinitionsError, match="exchange 'x': PRECONDITION_FAILED - Invalid argument, "
                                               "'x-delayed-type' must be an existing exchange type"):
        definitions.apply(other, bad)
    assert "q" not in other.topology.queues


# -- deleting ------------------------------------------------------------------------------

def test_deleting_the_exchange_drops_what_it_holds(peer: FakePeer, clock: FakeClock) -> None:
    declare(peer)
    queue_with(peer)
    publish(peer, b"m", 100)
    hold = peer.broker.topology.exchanges["d"].hold
    assert peer.send(Op.EXCHANGE_DELETE, 1, "d", False)[0][0] == Op.EXCHANGE_DELETE_OK
    assert hold.deleted and hold.ready == 0
    declare(peer)  # the same name again: a new exchange, holding nothing
    queue_with(peer)
    clock.advance(0.1, peer.broker)
    assert peer.drain("q") == [] and peer.broker.next_deadline() == peer.broker.stats.next_sample


# -- the timers: nothing scans -------------------------------------------------------------

@patches_internals
def test_a_tick_costs_what_it_releases_not_what_is_held(peer: FakePeer, clock: FakeClock,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """20,000 messages held in 100 exchanges for an hour and one due: a tick looks at the
    one hold whose message is due, and takes that message only."""
    start = clock.now
    for i in range(100):
        declare(peer, f"d{i}")
        for j in range(200):
            publish(peer, b"x", 3_600_000, exchange=f"d{i}")
    declare(peer)
    queue_with(peer)
    publish(peer, b"due", 10)
    taken, released = [], []
    take_due, release = DelayedHold.take_due, delayed.Delays.release
    monkeypatch.setattr(DelayedHold, "take_due", lambda hold, now: taken.append(hold) or take_due(hold, now))
    monkeypatch.setattr(delayed.Delays, "release",
                        lambda self, hold, now: released.append(hold) or release(self, hold, now))
    for _ in range(50):
        clock.advance(0.001, peer.broker)
    assert peer.drain("q") == [b"due"]
    hold = peer.broker.topology.exchanges["d"].hold
    assert released == [hold] and taken == [hold, hold]  # the message, then "none due"
    assert peer.broker.delays.next_deadline() == pytest.approx(start + 3600)


# -- durability ------------------------------------------------------------------------------

class Node:
    """A broker on a data directory with a fake clock, restarted as after SIGKILL."""

    def __init__(self, directory: Path, clock: FakeClock) -> None:
        self.directory, self.clock = directory, clock
        self.broker = Broker(store=DiskStore(directory, segment_bytes=64 * 1024), now=clock.now)

    def peer(self) -> FakePeer:
        return FakePeer(self.broker, b"p", self.clock).open()

    def crash_and_restart(self, after_s: float) -> FakePeer:
        self.broker.store._lock.release()  # what the kernel does for a killed process
        self.clock.advance(after_s)
        self.broker = Broker(store=DiskStore(self.directory, segment_bytes=64 * 1024), now=self.clock.now)
        return self.peer()


@pytest.fixture
def node(tmp_path: Path, clock: FakeClock) -> Iterator[Node]:
    node = Node(tmp_path, clock)
    yield node
    node.broker.store.close()


def test_persistent_delays_survive_a_crash_transient_ones_do_not(node: Node) -> None:
    p = node.peer()
    declare(p, durable=True)
    declare(p, "transient-x")
    queue_with(p, durable=True)
    publish(p, b"persistent", 5000, delivery_mode=PERSISTENT)
    publish(p, b"transient", 5000)
    publish(p, b"in a transient exchange", 5000, exchange="transient-x", delivery_mode=PERSISTENT)
    node.broker.commit()
    p = node.crash_and_restart(2)
    assert held(node.broker) == 1 and "transient-x" not in node.broker.topology.exchanges
    assert node.broker.next_deadline() == pytest.approx(node.clock.now + 3)
    node.clock.advance(2.9, node.broker)
    assert p.count("q") == 0
    node.clock.advance(0.1, node.broker)
    assert p.drain("q") == [b"persistent"]


def test_a_delay_that_ended_while_down_is_released_at_once_and_only_once(node: Node) -> None:
    p = node.peer()
    declare(p, durable=True)
    queue_with(p, durable=True)
    publish(p, b"first", 1000, delivery_mode=PERSISTENT)
    publish(p, b"second", 2000, delivery_mode=PERSISTENT)
    node.broker.commit()
    p = node.crash_and_restart(60)
    assert node.broker.next_deadline() <= node.clock.now
    node.broker.tick(node.clock.now)
    node.broker.commit()
    assert p.count("q") == 2 and held(node.broker) == 0
    p = node.crash_and_restart(1)  # released and committed: in the queue, not held again
    assert held(node.broker) == 0
    assert p.drain("q") == [b"first", b"second"]


def test_a_crash_before_the_release_is_committed_keeps_it_held(node: Node) -> None:
    p = node.peer()
    declare(p, durable=True)
    queue_with(p, durable=True)
    publish(p, b"m", 1000, delivery_mode=PERSISTENT)
    node.broker.commit()
    node.clock.advance(1, node.broker)  # released, not committed
    p = node.crash_and_restart(0)
    assert (held(node.broker), p.count("q")) == (1, 0)
    node.broker.tick(node.clock.now)
    assert p.drain("q") == [b"m"]


def test_a_deleted_exchange_stays_deleted_with_what_it_held(node: Node) -> None:
    p = node.peer()
    declare(p, durable=True)
    publish(p, b"m", 1000, delivery_mode=PERSISTENT)
    node.broker.commit()
    p.send(Op.EXCHANGE_DELETE, 1, "d", False)
    node.broker.commit()
    p = node.crash_and_restart(0)
    declare(p, durable=True)  # the same name again
    queue_with(p)
    node.clock.advance(2, node.broker)
    assert "d" in node.broker.topology.exchanges and held(node.broker) == 0 and p.count("q") == 0


def test_held_messages_do_not_pin_the_journal(node: Node) -> None:
    """One message held for an hour while thousands flow past: compaction copies it
    forward, the old segments go, and after a crash it is still held."""
    p = node.peer()
    declare(p, durable=True)
    queue_with(p, durable=True)
    publish(p, b"the held one", 3_600_000, delivery_mode=PERSISTENT)
    node.broker.commit()
    p.declare("flow", durable=True)
    p.consume("flow", "worker", auto_ack=True)
    for _ in range(40):
        for i in range(50):
            p.publish("", "flow", b"%04d" % i * 25, properties={"delivery_mode": PERSISTENT})
        node.broker.commit()
        p.collect()
    settle(node)
    assert not (node.directory / "journal" / "00000001.seg").exists()
    p = node.crash_and_restart(3600)
    node.broker.tick(node.clock.now)
    assert p.drain("q") == [b"the held one"]
