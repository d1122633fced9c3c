"""The consumer timeout end to end, on both wires: a worker that holds a delivery too long
loses its channel with RabbitMQ's 406, and the message goes to the next worker."""
from __future__ import annotations

from types import ModuleType
from typing import Iterator

import pytest

import zbroker.client as zpika
from tests.support import Broker

pika = pytest.importorskip("pika")

TEXT = ("PRECONDITION_FAILED - delivery acknowledgement on channel 1 timed out. Timeout value used: {} ms. "
        "This timeout value can be configured, see consumers doc guide to learn more")


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    started = Broker("--consumer-timeout", "1000")
    yield started
    started.stop()


def connection(broker: Broker, client: ModuleType) -> object:
    port = broker.amqp_port if client is pika else broker.port
    return client.BlockingConnection(client.ConnectionParameters("127.0.0.1", port))


@pytest.mark.parametrize("client", [zpika, pika], ids=["zbroker", "amqp"])
@pytest.mark.parametrize("where, ms", [("server", 1000), ("queue", 300), ("consumer", 200)])
def test_a_delivery_held_past_the_timeout_closes_the_channel_and_is_redelivered(
        broker: Broker, client: ModuleType, where: str, ms: int) -> None:
    queue = f"slow-{where}-{client.__name__}"
    conn = connection(broker, client)
    ch = conn.channel()
    ch.queue_declare(queue, arguments={"x-consumer-timeout": ms} if where == "queue" else None)
    ch.basic_qos(prefetch_count=1)
    ch.basic_publish("", queue, b"long task")
    held = []
    ch.basic_consume(queue, lambda c, method, props, body: held.append(body),
                     arguments={"x-consumer-timeout": ms} if where == "consumer" else None)
    with pytest.raises(client.exceptions.ChannelClosedByBroker) as closed:
        ch.start_consuming()  # never acks: the broker closes the channel
    assert held == [b"long task"]
    assert (closed.value.reply_code, closed.value.reply_text) == (406, TEXT.format(ms))
    other = conn.channel()
    method, _, body = other.basic_get(queue, auto_ack=True)
    assert body == b"long task" and method.redelivered
    broker.wait_for(f"has timed out waiting for a consumer acknowledgement of a delivery with delivery tag = 1. "
                    f"Timeout used: {ms} ms")
    conn.close()


def test_an_acking_worker_is_never_timed_out(broker: Broker) -> None:
    """Work that takes longer in total than the timeout, each delivery acked in time (with
    1.6 s to spare for each, so a stalled test process is not taken for a stuck worker)."""
    conn = connection(broker, pika)
    ch = conn.channel()
    ch.queue_declare("steady")
    ch.basic_qos(prefetch_count=1)
    for i in range(6):
        ch.basic_publish("", "steady", b"%d" % i)
    done = []

    def work(channel, method, props, body) -> None:  # noqa: ANN001
        conn.sleep(0.4)  # 6 x 0.4 s: longer than the consumer's 2 s timeout, each one in time
        channel.basic_ack(method.delivery_tag)
        done.append(body)
        if len(done) == 6:
            channel.stop_consuming()

    ch.basic_consume("steady", work, arguments={"x-consumer-timeout": 2000})
    ch.start_consuming()
    assert done == [b"%d" % i for i in range(6)] and ch.is_open
    conn.close()
