"""Property-based tests of the pure core: random operations from several peers, random
nested values, a fake clock; after every step the core's books must balance.

Invariants checked after each step:
- no internal error: no connection was ever closed with 541 (a bug escaping a handler);
- every queue's counters agree with what it holds: ``ready`` and ``ready_bytes`` with
  its live messages, ``unacked`` with the deliveries channels hold for it;
- credit: each consumer's unacked count is its deliveries, never above its prefetch;
  each channel's consumer_unacked is the sum over its consumers;
- nothing lost: for the plain queue ``plain`` (no TTL, limits or DLX) every message
  published is ready, unacked, or was settled by the model (acked, rejected without
  requeue, auto-acked).

The suite runs a short, derandomized version; ``bin/fuzz`` runs many more examples.
"""
from __future__ import annotations

import os
from typing import Any

import msgpack
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from tests.unit.wire import FakeClock, FakePeer
from zbroker.core import Broker
from zbroker.core.messaging import transactions
from zbroker.protocol import HEADER, Op

EXAMPLES = int(os.environ.get("ZBROKER_FUZZ_EXAMPLES", "40"))
STEPS = int(os.environ.get("ZBROKER_FUZZ_STEPS", "60"))

keys = st.text(min_size=0, max_size=8)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.floats(allow_nan=False),
                    st.text(max_size=10), st.binary(max_size=10))
nested = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.dictionaries(st.one_of(keys, st.binary(max_size=3), st.integers(-2**63, 2**63 - 1)), inner, max_size=3)),
    max_leaves=8)
QUEUE_ARGS = st.dictionaries(st.sampled_from([
    "x-message-ttl", "x-expires", "x-max-length", "x-max-length-bytes", "x-overflow",
    "x-dead-letter-exchange", "x-dead-letter-routing-key", "x-max-priority", "x-single-active-consumer",
    "x-queue-type", "x-delivery-limit", "x-anything"]),
    st.one_of(st.integers(-5, 300), st.sampled_from(["drop-head", "reject-publish", "reject-publish-dlx",
                                                      "", "dlq", "quorum", "classic"]), st.booleans(), nested),
    max_size=4)
PROPERTIES = st.fixed_dictionaries({}, optional={
    "delivery_mode": st.sampled_from([1, 2]), "priority": st.integers(0, 12),
    "expiration": st.sampled_from(["0", "5", "50", "1000", "-1", "x"]),
    "headers": st.dictionaries(keys, nested, max_size=3), "reply_to": st.sampled_from(["r", "amq.rabbitmq.reply-to"]),
})
QUEUES = ["plain", "a", "b", "dlq"]


class CoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.broker = Broker(now=self.clock.now)
        self.peers = [FakePeer(self.broker, b"peer-%d" % i, self.clock) for i in range(3)]
        self.open = [False] * 3
        for i in range(3):
            self._reopen(i)
        self.peers[0].declare("plain")
        self.plain_sent = 0
        self.plain_settled: set[bytes] = set()
        self.internal_errors: list[Any] = []

    # -- helpers ---------------------------------------------------------------------

    def _reopen(self, i: int) -> None:
        self.peers[i].open()
        self.peers[i].qos(3)
        self.open[i] = True

    def _cmd(self, i: int, op: int, *fields: Any, body: bytes | None = None) -> None:
        if not self.open[i]:
            self._reopen(i)
        parts = [HEADER, msgpack.packb([op, *fields], use_bin_type=True)]
        if body is not None:
            parts.append(body)
        for op_, fields_, _ in self.peers[i].send_parts(parts):
            if op_ == Op.CONNECTION_CLOSE:
                self.open[i] = False
                if fields_[0] == 541:
                    self.internal_errors.append(fields_)
            elif op_ == Op.CHANNEL_CLOSE:
                if fields_[1] == 541:
                    self.internal_errors.append(fields_)
                self.peers[i].send(Op.CHANNEL_CLOSE_OK, fields_[0])
                self.peers[i].send(Op.CHANNEL_OPEN, fields_[0])

    def _plain_pool(self) -> list[bytes]:
        """Every message of 'plain' the broker still holds: ready, unacked, held by a tx."""
        queue = self.broker.topology.queues["plain"]
        pool = [m.body for m in queue.resident()]
        for conn in self.broker.connections.values():
            for channel in conn.channels.values():
                entries = [*channel.unacked.values(), *transactions.held_deliveries(channel)]
                pool += [e.message.body for e in entries if e.queue is queue]
        return pool

    def _step(self, may_settle: bool, action: Any) -> None:
        """Run ``action``; messages of 'plain' may leave the broker only if it settles
        them, or if it delivered them (a requeue can reach an auto-ack consumer)."""
        before = set(self._plain_pool())
        seen = [len(p.received) for p in self.peers]
        action()
        pool = self._plain_pool()
        after = set(pool)
        assert len(pool) == len(after), "a message of 'plain' is held twice"
        assert not after & self.plain_settled, "a settled message came back"
        left = before - after
        if left and not may_settle:
            sent = {b for parts in self.broker.outbox.pending.values() for b in parts if type(b) is bytes}
            for peer, n in zip(self.peers, seen):
                sent |= {b for op, _, b in peer.received[n:] if op == Op.BASIC_DELIVER}
            assert left <= sent, f"messages lost: {sorted(left - sent)}"
        self.plain_settled |= left

    # -- rules -------------------------------------------------------------------------

    @rule(i=st.integers(0, 2), queue=st.sampled_from(QUEUES[1:]), args=QUEUE_ARGS,
          durable=st.booleans(), exclusive=st.booleans())
    def declare(self, i: int, queue: str, args: dict, durable: bool, exclusive: bool) -> None:
        self._step(False, lambda: self._cmd(i, Op.QUEUE_DECLARE, 1, queue, False, durable, exclusive, False, args))

    @rule(i=st.integers(0, 2), queue=st.sampled_from(QUEUES[1:]), exchange=st.sampled_from(["", "amq.fanout", "dlx"]),
          props=PROPERTIES, body=st.binary(max_size=20), mandatory=st.booleans())
    def publish(self, i: int, queue: str, exchange: str, props: dict, body: bytes, mandatory: bool) -> None:
        self._step(False, lambda: self._cmd(i, Op.BASIC_PUBLISH, 1, exchange, queue, mandatory, props, body=body))

    @rule(i=st.integers(0, 2))
    def publish_plain(self, i: int) -> None:
        self.plain_sent += 1
        body = b"plain-%d" % self.plain_sent
        self._step(True, lambda: self._cmd(i, Op.BASIC_PUBLISH, 1, "", "plain", False, {}, body=body))
        in_tx = any(isinstance(item, transactions.Publish) for conn in self.broker.connections.values()
                    for ch in conn.channels.values() for item in ch.tx or ())
        if not in_tx and body not in self._plain_pool():  # (a transaction may hold it)
            # Not held: then it went straight to an auto-ack consumer, in someone's outbox.
            sent = [p for parts in self.broker.outbox.pending.values() for p in parts]
            sent += [b for _, _, b in self.peers[i].received]
            assert body in sent, "a published message vanished"
            self.plain_settled.add(body)

    @rule(i=st.integers(0, 2), queue=st.sampled_from(QUEUES), auto_ack=st.booleans(),
          priority=st.integers(-2, 2), tag=st.sampled_from(["c1", "c2", ""]))
    def consume(self, i: int, queue: str, auto_ack: bool, priority: int, tag: str) -> None:
        self._step(auto_ack, lambda: self._cmd(i, Op.BASIC_CONSUME, 1, queue, tag, auto_ack, False,
                                                 {"x-priority": priority}))

    @rule(i=st.integers(0, 2), tag=st.integers(0, 12), multiple=st.booleans(),
          kind=st.sampled_from(["ack", "nack", "nack-requeue", "reject", "reject-requeue"]))
    def settle(self, i: int, tag: int, multiple: bool, kind: str) -> None:
        if kind == "ack":
            action = (Op.BASIC_ACK, 1, tag, multiple)
        elif kind.startswith("nack"):
            action = (Op.BASIC_NACK, 1, tag, multiple, kind.endswith("requeue"))
        else:
            action = (Op.BASIC_REJECT, 1, tag, kind.endswith("requeue"))
        # A requeue settles nothing, but it lets an auto-ack consumer take messages.
        self._step(True, lambda: self._cmd(i, *action))

    @rule(i=st.integers(0, 2), queue=st.sampled_from(QUEUES), auto_ack=st.booleans())
    def get(self, i: int, queue: str, auto_ack: bool) -> None:
        self._step(auto_ack, lambda: self._cmd(i, Op.BASIC_GET, 1, queue, auto_ack))

    @rule(i=st.integers(0, 2), tag=st.sampled_from(["c1", "c2"]))
    def cancel(self, i: int, tag: str) -> None:
        self._step(True, lambda: self._cmd(i, Op.BASIC_CANCEL, 1, tag))  # another auto-ack consumer may take over

    @rule(i=st.integers(0, 2))
    def lose_connection(self, i: int) -> None:
        self._step(True, lambda: self.broker.connection_lost(self.peers[i].peer, self.clock.now))
        self.open[i] = False

    @rule(i=st.integers(0, 2), op=st.sampled_from([Op.TX_SELECT, Op.TX_COMMIT, Op.TX_ROLLBACK, Op.CONFIRM_SELECT]))
    def mode(self, i: int, op: int) -> None:
        self._step(op == Op.TX_COMMIT, lambda: self._cmd(i, op, 1))

    @rule(i=st.integers(0, 2), queue=st.sampled_from(QUEUES[1:]), purge=st.booleans())
    def purge_or_delete(self, i: int, queue: str, purge: bool) -> None:
        op = (Op.QUEUE_PURGE, 1, queue) if purge else (Op.QUEUE_DELETE, 1, queue, False, False)
        self._step(False, lambda: self._cmd(i, *op))

    @rule(i=st.integers(0, 2), args=st.dictionaries(st.one_of(keys, st.binary(max_size=2)), nested, max_size=3))
    def bind_headers(self, i: int, args: dict) -> None:
        def action() -> None:
            self._cmd(i, Op.EXCHANGE_DECLARE, 1, "hx", "headers", False, False, False, False, {})
            self._cmd(i, Op.QUEUE_BIND, 1, "a", "hx", "", args)
            self._cmd(i, Op.BASIC_PUBLISH, 1, "hx", "", False, {"headers": {"k": 1}}, body=b"h")
        self._step(False, action)

    @rule(seconds=st.sampled_from([0.001, 0.01, 0.05, 0.5, 2.0]))
    def time_passes(self, seconds: float) -> None:
        self._step(False, lambda: self.clock.advance(seconds, self.broker))

    # -- invariants -----------------------------------------------------------------------

    @invariant()
    def no_internal_error(self) -> None:
        assert self.internal_errors == []

    @invariant()
    def queue_books_balance(self) -> None:
        held: dict[int, int] = {}
        for conn in self.broker.connections.values():
            for channel in conn.channels.values():
                entries = [*channel.unacked.values(), *transactions.held_deliveries(channel)]
                per_consumer: dict[int, int] = {}
                for entry in entries:
                    held[id(entry.queue)] = held.get(id(entry.queue), 0) + 1
                    if entry.consumer is not None:
                        per_consumer[id(entry.consumer)] = per_consumer.get(id(entry.consumer), 0) + 1
                assert channel.consumer_unacked == sum(per_consumer.values())
                for consumer in channel.consumers.values():
                    assert consumer.unacked == per_consumer.get(id(consumer), 0)
                    if consumer.prefetch and not consumer.auto_ack:
                        assert consumer.unacked <= consumer.prefetch
        for queue in self.broker.topology.queues.values():
            live = list(queue.resident())
            assert queue.ready == len(live) + queue.paged_count
            assert queue.ready_bytes == sum(m.size for m in live)
            assert queue.unacked == held.get(id(queue), 0), queue


CoreMachine.TestCase.settings = settings(
    max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None, derandomize=EXAMPLES <= 40,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
TestCore = CoreMachine.TestCase
