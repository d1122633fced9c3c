"""pika behaviours a program relies on, against a real broker: closing inside a callback,
return callbacks with confirms, None timeouts, transactions, channel.flow, and the
exception after a lost connection."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Callable

import pytest

import zbroker.client as pika
from tests.support import Broker, pump_until
from zbroker.client import exceptions


def test_closing_the_connection_in_a_callback_ends_start_consuming(connect: Callable) -> None:
    """pika's "handle one message and quit" pattern."""
    conn = connect()
    ch = conn.channel()
    ch.queue_declare("once")
    ch.basic_publish("", "once", b"only one")
    seen = []

    def on_message(channel, method, properties, body) -> None:  # noqa: ANN001
        seen.append(body)
        channel.basic_ack(method.delivery_tag)
        conn.close()

    ch.basic_consume("once", on_message)
    ch.start_consuming()  # returns, no exception
    assert seen == [b"only one"] and conn.is_closed


def test_return_callbacks_run_with_confirms_and_the_publish_raises(connect: Callable, pika) -> None:
    conn = connect()
    ch = conn.channel()
    ch.confirm_delivery()
    returned = []
    ch.add_on_return_callback(lambda c, method, props, body: returned.append((method.reply_code, body)))
    with pytest.raises(pika.exceptions.UnroutableError):
        ch.basic_publish("", "no-such-queue", b"lost", mandatory=True)
    conn.process_data_events(0)
    assert returned == [(312, b"lost")]


def test_none_timeouts_mean_no_timeout(broker: Broker) -> None:
    params = pika.ConnectionParameters(port=broker.port, socket_timeout=None, stack_timeout=None)
    conn = pika.BlockingConnection(params)
    assert conn.is_open
    conn.close()


def test_transactions(connect: Callable, pika) -> None:
    conn = connect()
    ch = conn.channel()
    ch.queue_declare("tx")
    assert ch.tx_select().method.NAME == "Tx.SelectOk"
    ch.basic_publish("", "tx", b"rolled back")
    ch.tx_rollback()
    ch.basic_publish("", "tx", b"committed")
    assert ch.queue_declare("tx", passive=True).method.message_count == 0
    assert ch.tx_commit().method.NAME == "Tx.CommitOk"
    assert ch.queue_declare("tx", passive=True).method.message_count == 1
    method, _, body = ch.basic_get("tx")
    ch.basic_ack(method.delivery_tag)
    ch.tx_rollback()  # the ack is undone: still unacked, so closing requeues it
    ch.close()
    ch = conn.channel()
    assert ch.queue_declare("tx", passive=True).method.message_count == 1
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.tx_commit()
    assert (info.value.reply_code, info.value.reply_text) == (406, "PRECONDITION_FAILED - channel is not transactional")


def test_channel_flow_true_answers_true(connect: Callable) -> None:
    ch = connect().channel()
    assert ch.flow(True) is True


def test_update_secret_is_answered_and_the_connection_goes_on(broker: Broker, connect: Callable, pika) -> None:
    """As RabbitMQ's internal user database: update-secret-ok, the same user, logged with
    the reason (never the secret); on both wires, with pika's method and exceptions."""
    conn = connect()
    ch = conn.channel()
    assert conn.update_secret("n3w-t0ken", "rotation") is None
    ch.queue_declare("after-secret")
    assert ch.queue_declare("after-secret", passive=True).method.queue == "after-secret"
    broker.wait_for("user 'guest' updated secret, reason: rotation")
    assert "n3w-t0ken" not in broker.log()
    conn.close()
    with pytest.raises(pika.exceptions.ConnectionWrongStateError):
        conn.update_secret("again", "closed")


def test_after_a_lost_connection_later_calls_raise_wrong_state() -> None:
    broker = Broker()
    try:
        conn = pika.BlockingConnection(pika.ConnectionParameters(port=broker.port))
        ch = conn.channel()
        broker.kill()
        with pytest.raises(exceptions.StreamLostError):
            pump_until(conn, lambda: False)  # until the close arrives (or WAIT_S goes by)
        with pytest.raises(exceptions.ConnectionWrongStateError):
            conn.process_data_events(0)
        with pytest.raises(exceptions.ChannelWrongStateError):
            ch.basic_publish("", "q", b"x")
    finally:
        broker.kill()
        broker.remove_data()


def test_x_death_time_is_a_utc_datetime_as_in_pika(connect: Callable, pika) -> None:
    """zbroker's client gives naive UTC datetimes, as pika 1.3 does; pika 1.4 gives aware
    UTC ones. Either way the time is UTC and a naive datetime goes out as UTC."""
    ch = connect().channel()
    ch.queue_declare("dead")
    ch.queue_declare("work", arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dead"})
    stamp = datetime(2024, 5, 6, 7, 8, 9)
    ch.basic_publish("", "work", b"x", pika.BasicProperties(headers={"sent": stamp}))
    method, _, _ = ch.basic_get("work")
    ch.basic_reject(method.delivery_tag, requeue=False)
    _, props, _ = ch.basic_get("dead", auto_ack=True)
    death = props.headers["x-death"][0]
    assert isinstance(death["time"], datetime)
    assert death["time"].tzinfo is None or death["time"].utcoffset() == timedelta(0)
    sent = props.headers["sent"]
    assert sent.replace(tzinfo=None) == stamp and sent.tzinfo in (None, timezone.utc)


@pytest.mark.parametrize("properties, text", [
    (pika.BasicProperties(expiration=60000), "property 'expiration' must be a string, got int"),
    (pika.BasicProperties(priority=300), "property 'priority' must be an integer from 0 to 255, got 300"),
    (pika.BasicProperties(headers={1: "x"}), "headers has a key of type int"),
])
def test_a_bad_property_is_refused_before_it_leaves(zconnect: Callable, properties, text: str) -> None:  # noqa: ANN001
    ch = zconnect().channel()
    with pytest.raises(ValueError, match=text):
        ch.basic_publish("", "q", b"x", properties)
    assert ch.is_open  # nothing was sent: the connection and channel go on
    ch.queue_declare("q")


def test_bytes_keys_are_strings_as_in_pika_and_other_clients_publish_on(connect: Callable, pika) -> None:
    """A headers binding written with a bytes key is the string key, as pika sends it;
    (a raw peer sending a bytes key gets a 502 alone: tests/unit/test_bad_input.py)."""
    a, b = connect().channel(), connect().channel()
    a.exchange_declare("hx", "headers")
    a.queue_declare("matched")
    a.queue_bind("matched", "hx", arguments={b"k": "v", "x-match": "all"})
    b.basic_publish("hx", "", b"routed", pika.BasicProperties(headers={b"k": "v"}))
    b.basic_publish("hx", "", b"not routed", pika.BasicProperties(headers={"k": "other"}))
    b.queue_declare("matched", passive=True)  # a round trip on b: its publishes are applied
    method, props, body = a.basic_get("matched", auto_ack=True)
    assert body == b"routed" and props.headers == {"k": "v"}
    assert a.basic_get("matched")[0] is None


def test_a_non_string_key_is_refused_before_it_leaves(zconnect: Callable) -> None:
    with pytest.raises(ValueError, match="keys must be strings"):
        zconnect().channel().queue_declare("q", arguments={1: "int key"})


def test_headers_up_to_frame_max_travel(connect: Callable, pika) -> None:
    ch = connect().channel()
    ch.queue_declare("big-headers")
    big = {"blob": "x" * 120_000}
    ch.basic_publish("", "big-headers", b"m", pika.BasicProperties(headers=big))
    _, props, body = ch.basic_get("big-headers", auto_ack=True)
    assert body == b"m" and props.headers == big


def test_headers_over_frame_max_are_refused_before_sending(zconnect: Callable) -> None:
    """zbroker's client checks; real pika sends the frame and the broker closes the
    connection with 501 (tests/integration/test_amqp.py)."""
    ch = zconnect().channel()
    with pytest.raises(ValueError, match="frame_max is 131072"):
        ch.basic_publish("", "big-headers", b"m", pika.BasicProperties(headers={"blob": "x" * 200_000}))
    assert ch.is_open
