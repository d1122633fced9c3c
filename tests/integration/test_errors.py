"""Every error a pika user branches on, raised as pika raises it, from a real broker."""
from __future__ import annotations

import time

import pytest

import zbroker.client as pika
from tests.support import CHANNEL_CLOSED
from zbroker.client import exceptions


def closed_by_broker(call) -> exceptions.ChannelClosedByBroker:
    with pytest.raises(CHANNEL_CLOSED) as info:
        call()
    return info.value


def test_passive_declares_are_404(connect) -> None:
    conn = connect()
    e = closed_by_broker(lambda: conn.channel().queue_declare("missing", passive=True))
    assert (e.reply_code, e.reply_text) == (404, "NOT_FOUND - no queue 'missing' in vhost '/'")
    e = closed_by_broker(lambda: conn.channel().exchange_declare("missing", passive=True))
    assert (e.reply_code, e.reply_text) == (404, "NOT_FOUND - no exchange 'missing' in vhost '/'")
    assert repr(e) == "ChannelClosedByBroker: (404) \"NOT_FOUND - no exchange 'missing' in vhost '/'\""


def test_redeclare_with_other_attributes_is_406(connect) -> None:
    conn = connect()
    conn.channel().queue_declare("q406")
    e = closed_by_broker(lambda: conn.channel().queue_declare("q406", durable=True))
    assert e.reply_code == 406 and "inequivalent arg 'durable'" in e.reply_text
    conn.channel().exchange_declare("x406", "fanout")
    e = closed_by_broker(lambda: conn.channel().exchange_declare("x406", "topic"))
    assert e.reply_code == 406 and "inequivalent arg 'type'" in e.reply_text


def test_exclusive_queue_from_another_connection_is_405(connect) -> None:
    owner = connect().channel()
    owner.queue_declare("owned", exclusive=True)
    other = connect()
    for call in (lambda ch: ch.queue_declare("owned"), lambda ch: ch.basic_consume("owned", print),
                 lambda ch: ch.queue_purge("owned"), lambda ch: ch.basic_get("owned")):
        e = closed_by_broker(lambda call=call: call(other.channel()))
        assert e.reply_code == 405 and e.reply_text.startswith("RESOURCE_LOCKED - cannot obtain exclusive access")


def test_publish_to_missing_exchange_closes_channel_404(connect, pika) -> None:
    conn = connect()
    ch = conn.channel()
    ch.basic_publish("no-such-exchange", "k", b"x")  # asynchronous, as in pika
    e = closed_by_broker(lambda: ch.queue_declare("", exclusive=True))
    assert (e.reply_code, e.reply_text) == (404, "NOT_FOUND - no exchange 'no-such-exchange' in vhost '/'")
    with pytest.raises(pika.exceptions.ChannelWrongStateError, match="Channel is closed."):
        ch.basic_publish("", "k", b"x")
    assert conn.is_open and conn.channel().is_open


def test_unknown_delivery_tag_is_406(connect) -> None:
    ch = connect().channel()
    ch.basic_ack(7)
    e = closed_by_broker(lambda: ch.queue_declare("", exclusive=True))
    assert (e.reply_code, e.reply_text) == (406, "PRECONDITION_FAILED - unknown delivery tag 7")


def test_exclusive_consumer_is_403(connect) -> None:
    conn = connect()
    ch = conn.channel()
    ch.queue_declare("xc")
    ch.basic_consume("xc", print, exclusive=True)
    e = closed_by_broker(lambda: connect().channel().basic_consume("xc", print))
    assert (e.reply_code, e.reply_text) == (403, "ACCESS_REFUSED - queue 'xc' in vhost '/' in exclusive use")


def test_broker_closed_channel_surfaces_in_start_consuming(connect) -> None:
    conn = connect()
    ch = conn.channel()
    ch.queue_declare("sc")
    ch.basic_consume("sc", lambda c, m, p, b: c.basic_ack(999))
    ch.basic_publish("", "sc", b"x")
    e = closed_by_broker(ch.start_consuming)
    assert e.reply_code == 406


def test_operations_on_closed_channel_and_connection(connect, pika) -> None:
    conn = connect()
    ch = conn.channel()
    ch.close()
    with pytest.raises(pika.exceptions.ChannelWrongStateError):
        ch.queue_declare("x")
    with pytest.raises(pika.exceptions.ChannelWrongStateError):
        ch.close()
    conn.close()
    with pytest.raises(pika.exceptions.ConnectionWrongStateError):
        conn.channel()


def test_process_data_events_after_close_is_wrong_state(zconnect) -> None:
    """zbroker's client only: real pika 1.4 raises ValueError('Timeout closed before call')
    here, from its timer heap, which no program would branch on."""
    conn = zconnect()
    conn.close()
    with pytest.raises(exceptions.ConnectionWrongStateError):
        conn.process_data_events()


def test_bad_arguments_raise_before_anything_is_sent(zconnect) -> None:
    """The client's own checks (real pika raises AttributeError for a non-bytes body)."""
    ch = zconnect().channel()
    with pytest.raises(exceptions.ShortStringTooLong):
        ch.queue_declare("q" * 256)
    with pytest.raises(exceptions.ShortStringTooLong):
        ch.basic_publish("", "k" * 256, b"")
    with pytest.raises(TypeError):
        ch.basic_publish("", "k", 12345)
    with pytest.raises(ValueError):
        ch.basic_consume("q", None)
    with pytest.raises(ValueError):
        ch.basic_qos(prefetch_count=-1)
    assert ch.is_open


def test_broker_not_running_fails_fast(broker) -> None:
    params = pika.ConnectionParameters(port=1)  # nothing listens there
    started = time.monotonic()
    with pytest.raises(exceptions.AMQPConnectionError):
        pika.BlockingConnection(params)
    assert time.monotonic() - started < 8  # at once, not at the 10 s socket timeout


def test_retries_follow_connection_attempts(broker) -> None:
    params = pika.ConnectionParameters(port=1, connection_attempts=3, retry_delay=0.1)
    started = time.monotonic()
    with pytest.raises(exceptions.AMQPConnectionError):
        pika.BlockingConnection(params)
    assert 0.2 <= time.monotonic() - started < 8  # two retry delays, not three socket timeouts


def test_unknown_vhost_is_access_denied(broker) -> None:
    with pytest.raises(exceptions.ProbableAccessDeniedError, match="vhost nope not found"):
        pika.BlockingConnection(pika.ConnectionParameters(port=broker.port, virtual_host="nope"))


def test_recover_without_requeue_closes_connection_540(connect, pika) -> None:
    conn = connect()
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
        conn.channel().basic_recover(requeue=False)
    assert (info.value.reply_code, info.value.reply_text) == (540, "NOT_IMPLEMENTED - requeue=false")
    assert conn.is_closed


def test_errors_leave_other_clients_served(connect) -> None:
    healthy = connect().channel()
    healthy.queue_declare("healthy")
    bad = connect()
    for _ in range(3):
        closed_by_broker(lambda: bad.channel().queue_declare("nope", passive=True))
    healthy.basic_publish("", "healthy", b"fine")
    assert healthy.basic_get("healthy", auto_ack=True)[2] == b"fine"
