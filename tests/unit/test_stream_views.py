"""A stream as operations see it, from the pure core with a fake clock: its management row
(``views.queue``), ``zbroker ctl list_queues`` and the Prometheus metrics, as RabbitMQ
shows a stream (``rabbit_osiris_metrics``: messages and messages_ready what the log
holds, messages_unacknowledged 0; ``segments`` and ``rabbitmq_stream_segments``, RabbitMQ's
from 3.13.3). Classic queues keep their rows."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from tests.unit.wire import FakeClock, FakePeer, deliveries
from zbroker.core import Broker
from zbroker.core.management.requests import Management
from zbroker.management import metrics
from zbroker.management.ctl import Ctl, ctl

#: Ten 100-byte messages in 250-byte segments: two a segment, five segments.
BODY = b"x" * 100
SEGMENT_BYTES = 250
STREAM = {"x-queue-type": "stream", "x-stream-max-segment-size-bytes": SEGMENT_BYTES}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_700_000_000.0)


@pytest.fixture
def broker(clock: FakeClock) -> Broker:
    """A stream ``s`` of ten messages, three of them delivered and unacked; a classic
    queue ``c`` with one message."""
    broker = Broker(now=clock.now)
    p = FakePeer(broker, b"p", clock).open()
    p.declare("s", durable=True, arguments=STREAM)
    p.declare("c")
    for _ in range(10):
        p.publish("", "s", BODY)
    p.publish("", "c", b"m")
    p.qos(3)
    assert len(deliveries(p.consume("s", "reader", arguments={"x-stream-offset": "first"}))) == 3
    return broker


def rows(broker: Broker) -> dict[str, dict]:
    return {q["name"]: q for q in Management(broker).handle("list", {"kind": "queues"})}


def test_a_streams_row_is_rabbitmqs(broker: Broker) -> None:
    row = rows(broker)["s"]
    log = broker.topology.queues["s"].log
    assert log.segment_count == 5
    assert {k: row[k] for k in ("type", "messages", "messages_ready", "messages_unacknowledged",
                                "message_bytes", "message_bytes_ready", "segments", "consumers")} == {
        "type": "stream", "messages": 10, "messages_ready": 10, "messages_unacknowledged": 0,
        "message_bytes": 1000, "message_bytes_ready": 1000, "segments": 5, "consumers": 1}
    assert row["messages_details"] == {"rate": 0.0} and row["message_stats"]["deliver"] == 3
    # What RabbitMQ 3.10's stream rows do not have is not here either.
    for absent in ("messages_ram", "messages_ready_ram", "messages_paged_out", "memory", "idle_since",
                   "exclusive_consumer_tag", "single_active_consumer_tag", "owner_pid_details"):
        assert absent not in row
    # The deliveries out are the channel's unacked, not the stream's.
    channel = Management(broker).handle("list", {"kind": "channels"})[0]
    assert channel["messages_unacknowledged"] == 3
    # ... and the overview's totals count none for the stream either (the classic's one is ready).
    totals = broker.stats.totals()
    assert (totals["messages_ready"], totals["messages_unacknowledged"], totals["messages"]) == (11, 0, 11)


def test_a_classic_row_keeps_its_fields_and_has_no_segments(broker: Broker) -> None:
    row = rows(broker)["c"]
    assert "segments" not in row
    assert {k: row[k] for k in ("type", "messages", "messages_ram", "message_bytes", "messages_paged_out")} == {
        "type": "classic", "messages": 1, "messages_ram": 1, "message_bytes": 1, "messages_paged_out": 0}


def test_list_queues_shows_the_streams_type_messages_bytes_and_segments(broker: Broker,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    management = Management(broker)
    monkeypatch.setattr(Ctl, "ask", lambda self, verb, **arguments: management.handle(verb, arguments))
    out = CliRunner().invoke(ctl, ["list_queues", "name", "type", "messages", "messages_unacknowledged",
                                   "message_bytes", "segments", "messages_ram"])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[:2] == ["Listing queues for vhost / ...",
                         "name\ttype\tmessages\tmessages_unacknowledged\tmessage_bytes\tsegments\tmessages_ram"]
    assert sorted(line.split("\t") for line in lines[2:]) == [
        ["c", "classic", "1", "0", "1", "", "1"],  # (no segments: empty, as rabbitmqctl's '')
        ["s", "stream", "10", "0", "1000", "5", ""]]  # (no messages_ram: empty)


def exposition(broker: Broker, per_object: bool) -> dict[str, Any]:
    management = Management(broker)

    async def ask(verb: str, **arguments: Any) -> Any:
        return management.handle(verb, arguments)

    text = asyncio.run(metrics.exposition(ask, per_object)).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_per_object_metrics_show_the_stream(broker: Broker) -> None:
    families = exposition(broker, per_object=True)

    def per_queue(name: str) -> dict[str, float]:
        return {s.labels["queue"]: s.value for s in families[name].samples}

    assert per_queue("rabbitmq_stream_segments") == {"s": 5}  # a classic queue has no sample
    assert families["rabbitmq_stream_segments"].type == "gauge"
    assert per_queue("rabbitmq_queue_messages") == {"s": 10, "c": 1}
    assert per_queue("rabbitmq_queue_messages_ready") == {"s": 10, "c": 1}
    assert per_queue("rabbitmq_queue_messages_unacked") == {"s": 0, "c": 0}
    assert per_queue("rabbitmq_queue_messages_bytes") == {"s": 1000, "c": 1}
    assert per_queue("rabbitmq_queue_messages_ready_bytes") == {"s": 1000, "c": 1}
    assert per_queue("rabbitmq_queue_process_memory_bytes").keys() == {"c"}  # none measured for a stream
    assert per_queue("rabbitmq_queue_messages_paged_out") == {"c": 0}


def test_aggregated_metrics_sum_the_streams_segments(broker: Broker) -> None:
    families = exposition(broker, per_object=False)

    def value(name: str) -> float:
        [sample] = families[name].samples
        return sample.value

    assert value("rabbitmq_stream_segments") == 5
    assert value("rabbitmq_queue_messages") == 11
    assert value("rabbitmq_queue_messages_unacked") == 0
    assert value("rabbitmq_queue_messages_bytes") == 1001
