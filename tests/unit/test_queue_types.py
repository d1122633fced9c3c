"""The queue-type interface's contract: one body of tests run against every registered
type (``QUEUE_TYPES``), driving the queues directly with a fake clock, then what each type
adds (a quorum queue's delivery count and limit, its declare rules)."""
from __future__ import annotations

from typing import Any

import pytest

from tests.unit.channels import new_channel
from zbroker.core.messaging.arguments import QueueSettings, queue_settings
from zbroker.core.messaging.consumers import Consumer
from zbroker.core.messaging.message import Message
from zbroker.core.messaging.queue_type import QueueType
from zbroker.core.messaging.queue_types import QUEUE_TYPES, queue_type
from zbroker.errors import ChannelError

NOW = 1_000.0


def make(kind: type[QueueType], **arguments: Any) -> QueueType:
    args = {"x-queue-type": kind.TYPE, **arguments}
    return kind("q", True, None, False, args, queue_settings("q", args))


def message(seq: int, body: bytes = b"x", **properties: Any) -> Message:
    ttl = int(properties["expiration"]) if "expiration" in properties else None
    return Message(seq, "", "q", properties, body, NOW, ttl, len(body))


def consumer(queue: QueueType, tag: str, prefetch: int = 0, priority: int = 0) -> Consumer:
    c = Consumer(tag, queue, new_channel(NOW), False, False, prefetch, None, priority)
    queue.add_consumer(c, NOW)
    return c


#: The types whose messages leave when consumed; a stream's log keeps them (its own tests
#: are ``test_stream_queue.py``).
CONSUMED_TYPES = sorted(name for name, cls in QUEUE_TYPES.items() if not cls.owns_log)


@pytest.fixture(params=CONSUMED_TYPES, ids=lambda name: name)
def kind(request: pytest.FixtureRequest) -> type[QueueType]:
    return queue_type(request.param)


# -- every type -----------------------------------------------------------------------

def test_messages_leave_in_publish_order_and_are_counted(kind: type[QueueType]) -> None:
    q = make(kind)
    for seq in range(1, 6):
        q.enqueue(message(seq, bytes([seq])))
    assert (q.message_count, q.ready_bytes, q.has_messages) == (5, 5, True)
    taken = [q.take(False).seq for _ in range(3)]
    assert taken == [1, 2, 3] and (q.ready, q.unacked) == (2, 3)
    q.settled(3)
    assert q.unacked == 0 and [q.take(True).seq for _ in range(2)] == [4, 5] and not q.has_messages


def test_a_requeued_message_goes_back_to_its_place_redelivered(kind: type[QueueType]) -> None:
    q = make(kind)
    for seq in range(1, 4):
        q.enqueue(message(seq))
    first, second = q.take(False), q.take(False)
    assert q.requeue([second, first]) == []
    back = [q.take(False) for _ in range(3)]
    assert [m.seq for m in back] == [1, 2, 3]
    assert [m.redelivered for m in back] == [True, True, False]


def test_priorities_lead_and_keep_order_within_a_priority(kind: type[QueueType]) -> None:
    if kind.TYPE == "quorum":  # RabbitMQ 3.x's quorum queues have no priorities: 406
        with pytest.raises(ChannelError, match="invalid arg 'x-max-priority' .* of queue type rabbit_quorum_queue"):
            make(kind, **{"x-max-priority": 5})
        return
    q = make(kind, **{"x-max-priority": 5})
    for seq, priority in ((1, 0), (2, 5), (3, 9), (4, 1), (5, 5)):
        q.enqueue(message(seq, priority=priority))
    assert [q.take(True).seq for _ in range(5)] == [2, 3, 5, 4, 1]


def test_expired_messages_leave_wherever_they_are(kind: type[QueueType]) -> None:
    q = make(kind)
    q.enqueue(message(1))
    q.enqueue(message(2, expiration="100"))
    q.enqueue(message(3))
    assert q.timed and q.next_deadline() == pytest.approx(NOW + 0.1)
    assert not q.due(NOW + 0.05) and q.expire(NOW + 0.05) == []
    assert [m.seq for m in q.expire(NOW + 0.2)] == [2]
    assert q.message_count == 2 and [q.take(True).seq for _ in range(2)] == [1, 3]


def test_drop_head_and_reject_publish_limits(kind: type[QueueType]) -> None:
    q = make(kind, **{"x-max-length": 2})
    for seq in range(1, 5):
        q.enqueue(message(seq))
    assert [m.seq for m in q.over_limit()] == [1, 2] and q.message_count == 2
    r = make(kind, **{"x-max-length": 1, "x-overflow": "reject-publish"})
    assert r.rejects and not r.would_overflow(message(1))
    r.enqueue(message(1))
    assert r.would_overflow(message(2)) and r.over_limit() == []


def test_purge_empties_the_queue_and_says_how_many(kind: type[QueueType]) -> None:
    q = make(kind)
    for seq in range(1, 4):
        q.enqueue(message(seq))
    q.take(False)
    assert q.purge() == 2 and q.message_count == 0 and q.unacked == 1
    assert list(q.stored()) == []


def test_dispatch_serves_consumers_in_turn_under_their_credit(kind: type[QueueType]) -> None:
    q = make(kind)
    a, b = consumer(q, "a", prefetch=1), consumer(q, "b", prefetch=2)
    for seq in range(1, 6):
        q.enqueue(message(seq, bytes([seq])))
    assert q.dispatch(100) is False
    assert (a.unacked, b.unacked, q.message_count) == (1, 2, 2)
    q.remove_consumer(b)
    assert q.consumers == [a] and q.had_consumer


def test_dispatch_stops_at_its_limit_with_more_to_do(kind: type[QueueType]) -> None:
    q = make(kind)
    consumer(q, "a")
    for seq in range(1, 6):
        q.enqueue(message(seq))
    assert q.dispatch(3) is True and q.message_count == 2
    assert q.dispatch(3) is False and q.message_count == 0


def test_priority_consumers_and_single_active_consumer(kind: type[QueueType]) -> None:
    q = make(kind)
    low, high = consumer(q, "low"), consumer(q, "high", priority=5)
    assert q.consumers == [high, low]
    sac = make(kind, **{"x-single-active-consumer": True})
    first, second = consumer(sac, "first"), consumer(sac, "second")
    assert sac.active is first
    sac.remove_consumer(first)
    assert sac.active is second


def test_settings_changed_at_run_time_apply_from_then_on(kind: type[QueueType]) -> None:
    q = make(kind)
    for seq in range(1, 5):
        q.enqueue(message(seq))
    assert not q.careful and q.over_limit() == []
    q.apply_settings(QueueSettings(queue_type=kind.TYPE, max_length=1, message_ttl=50))
    assert q.careful and [m.seq for m in q.over_limit()] == [1, 2, 3]
    q.enqueue(message(5))
    assert q.next_deadline() == pytest.approx(NOW + 0.05)
    with pytest.raises(ValueError):
        q.apply_settings(QueueSettings(queue_type=kind.TYPE, max_priority=3))


def test_the_type_names_itself_for_rabbitmq_texts(kind: type[QueueType]) -> None:
    assert kind.MODULE == f"rabbit_{kind.TYPE}_queue"
    assert make(kind).settings.queue_type == kind.TYPE


# -- what each type adds --------------------------------------------------------------

def test_only_a_quorum_queue_keeps_every_message_and_counts_returns() -> None:
    assert {name: (cls.keeps_every_message, cls.counts_returns, cls.owns_log)
            for name, cls in QUEUE_TYPES.items()} == {
        "classic": (False, False, False), "quorum": (True, True, False), "stream": (False, False, True)}


def test_a_quorum_queue_counts_returns_up_to_its_delivery_limit() -> None:
    q = make(queue_type("quorum"), **{"x-delivery-limit": 1})
    q.enqueue(message(1))
    assert q.requeue([q.take(False)]) == []
    again = q.take(False)
    assert again.properties["headers"]["x-delivery-count"] == 1
    over = q.requeue([again])
    assert [m.seq for m in over] == [1] and over[0].returns == 2 and q.message_count == 0


def test_a_classic_queue_never_counts_returns() -> None:
    q = make(queue_type("classic"))
    q.enqueue(message(1))
    for _ in range(5):
        assert q.requeue([q.take(False)]) == []
    m = q.take(False)
    assert m.returns == 0 and "headers" not in m.properties


@pytest.mark.parametrize("durable, exclusive, auto_delete, bad", [
    (False, False, False, "non-durable"), (True, True, False, "exclusive-owner"), (True, False, True, "auto-delete")])
def test_a_quorum_queue_is_durable_shared_and_kept(durable: bool, exclusive: bool, auto_delete: bool, bad: str) -> None:
    with pytest.raises(ChannelError) as err:
        queue_type("quorum").check_declare("q", "/", durable, exclusive, auto_delete, QueueSettings())
    assert err.value.text.endswith(f"invalid property '{bad}' for queue 'q' in vhost '/'")
    queue_type("classic").check_declare("q", "/", durable, exclusive, auto_delete, QueueSettings())  # anything goes
