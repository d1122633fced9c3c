"""The pika-shaped client API against a real broker process: shapes, defaults, semantics."""
from __future__ import annotations

import os
import sys
import threading
import time

import pytest

import zbroker.client as pika
from zbroker.core.broker import DEFAULT_MAX_BODY_BYTES
from zbroker.client import exceptions
from tests.support import WAIT_S, pump_until


PROPERTY_FIELDS = ("content_type", "content_encoding", "headers", "delivery_mode", "priority", "correlation_id",
                   "reply_to", "expiration", "message_id", "timestamp", "type", "user_id", "app_id", "cluster_id")


def test_module_offers_pikas_names() -> None:
    assert pika.BasicProperties.FIELDS == PROPERTY_FIELDS
    for name in ("BlockingConnection", "ConnectionParameters", "URLParameters", "PlainCredentials",
                 "BasicProperties", "DeliveryMode", "spec", "frame", "exceptions", "exchange_type", "__version__"):
        assert hasattr(pika, name), name
    assert pika.BasicProperties is pika.spec.BasicProperties
    assert pika.DeliveryMode.Persistent.value == 2
    assert pika.exchange_type.ExchangeType.topic == "topic"
    from zbroker.client.adapters.blocking_connection import BlockingChannel  # noqa: F401


def test_queue_declare_returns_pika_frame(connect, pika) -> None:
    ch = connect().channel()
    ok = ch.queue_declare("shapes")
    assert isinstance(ok, pika.frame.Method)
    assert ok.channel_number == ch.channel_number == 1
    assert isinstance(ok.method, pika.spec.Queue.DeclareOk)
    assert (ok.method.queue, ok.method.message_count, ok.method.consumer_count) == ("shapes", 0, 0)
    ch.basic_publish("", "shapes", b"x")
    ch.basic_consume("shapes", lambda *a: None)
    again = ch.queue_declare("shapes", passive=True).method
    assert again.consumer_count == 1


def test_server_named_queue(connect) -> None:
    ch = connect().channel()
    name = ch.queue_declare("", exclusive=True).method.queue
    assert name.startswith("amq.gen-") and len(name) == len("amq.gen-") + 22


def test_every_property_arrives_as_sent(connect, pika) -> None:
    ch = connect().channel()
    ch.queue_declare("props")
    headers = {"str": "v", "int": 7, "float": 1.5, "bool": True, "none": None, "bytes": b"\x00\xff",
               "list": [1, "two"], "nested": {"a": {"b": 1}}, "big": 2**40}
    if pika.__name__ == "pika":
        del headers["float"]  # real pika cannot encode a float in a table (UnsupportedAMQPFieldException)
    sent = pika.BasicProperties(
        content_type="application/json", content_encoding="gzip", headers=headers,
        delivery_mode=pika.DeliveryMode.Persistent, priority=5, correlation_id="corr-1",
        reply_to="amq.gen-reply", expiration="60000", message_id="mid-1", timestamp=1_700_000_000,
        type="kind", user_id="guest", app_id="tests", cluster_id="c1")
    ch.basic_publish("", "props", b"body", properties=sent)
    method, props, body = ch.basic_get("props", auto_ack=True)
    assert body == b"body"
    for field in PROPERTY_FIELDS:
        assert getattr(props, field) == getattr(sent, field), field
    assert props.delivery_mode == 2


def test_bodies_are_binary_safe_and_str_is_utf8(connect) -> None:
    ch = connect().channel()
    ch.queue_declare("bin")
    payloads = [b"", bytes(range(256)) * 4, b"\x00" * 10, "héllo ✓".encode()]
    for p in payloads:
        ch.basic_publish("", "bin", p)
    ch.basic_publish("", "bin", "héllo ✓")
    got = [ch.basic_get("bin", auto_ack=True)[2] for _ in range(5)]
    assert got == payloads + ["héllo ✓".encode()]


def test_64_mib_body_round_trips(connect) -> None:
    ch = connect().channel()
    ch.queue_declare("big")
    body = os.urandom(1024) * (64 * 1024)
    ch.basic_publish("", "big", body)
    method, _, got = ch.basic_get("big", auto_ack=True)
    assert got == body


def test_body_over_the_limit_closes_channel_406(connect, pika) -> None:
    conn = connect()
    limit = DEFAULT_MAX_BODY_BYTES  # the broker's default (zbroker's client learns it at connect)
    assert getattr(conn, "max_body_bytes", limit) == limit
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        # (the close may arrive while real pika is still writing the body: it raises there)
        ch.basic_publish("", "nowhere", b"x" * (limit + 1))
        ch.queue_declare("", exclusive=True)
    assert info.value.reply_code == 406 and "larger than configured max size" in info.value.reply_text


def test_basic_get_shapes_and_ack(connect, pika) -> None:
    ch = connect().channel()
    ch.queue_declare("get")
    assert ch.basic_get("get") == (None, None, None)
    ch.basic_publish("", "get", b"1")
    ch.basic_publish("", "get", b"2")
    method, props, body = ch.basic_get("get")
    assert isinstance(method, pika.spec.Basic.GetOk)
    assert (method.delivery_tag, method.redelivered, method.exchange, method.routing_key,
            method.message_count) == (1, False, "", "get", 1)
    assert isinstance(props, pika.BasicProperties) and body == b"1"
    ch.basic_nack(method.delivery_tag, requeue=True)
    method, _, body = ch.basic_get("get")
    assert body == b"1" and method.redelivered is True
    ch.basic_ack(method.delivery_tag)
    assert ch.queue_declare("get", passive=True).method.message_count == 1


def test_consume_callback_shapes(connect, pika) -> None:
    conn = connect()
    ch = conn.channel()
    ch.queue_declare("cb")
    seen = []

    def on_message(channel, method, properties, body):
        seen.append((channel, method, properties, body))
        channel.basic_ack(method.delivery_tag)
        if len(seen) == 3:
            channel.stop_consuming()

    tag = ch.basic_consume("cb", on_message)
    assert tag.startswith("ctag1.") and tag in ch.consumer_tags
    for i in range(3):
        ch.basic_publish("", "cb", b"%d" % i)
    ch.start_consuming()
    assert [s[3] for s in seen] == [b"0", b"1", b"2"]
    channel, method, properties, _ = seen[0]
    assert channel is ch
    assert isinstance(method, pika.spec.Basic.Deliver)
    assert (method.consumer_tag, method.delivery_tag, method.redelivered, method.exchange,
            method.routing_key) == (tag, 1, False, "", "cb")
    assert ch.consumer_tags == []


def test_prefetch_is_never_exceeded(connect) -> None:
    producer = connect().channel()
    producer.queue_declare("pf")
    for i in range(20):
        producer.basic_publish("", "pf", b"%d" % i)
    conn = connect()
    ch = conn.channel()
    ch.basic_qos(prefetch_count=3)
    held = []
    ch.basic_consume("pf", lambda c, m, p, b: held.append(m.delivery_tag))
    pump_until(conn, lambda: len(held) >= 3)
    conn.process_data_events(time_limit=0.2)
    assert len(held) == 3, "no delivery beyond prefetch without an ack"
    ch.basic_ack(held[-1], multiple=True)
    pump_until(conn, lambda: len(held) >= 6)
    conn.process_data_events(time_limit=0.2)
    assert len(held) == 6


def test_consume_generator_with_inactivity_timeout_and_cancel(connect) -> None:
    conn = connect()
    ch = conn.channel()
    ch.queue_declare("gen")
    for i in range(3):
        ch.basic_publish("", "gen", b"%d" % i)
    got = []
    deadline = time.monotonic() + 30
    for method, _props, body in ch.consume("gen", inactivity_timeout=0.3):
        if method is None:  # idle for 0.3 s: done once all three came (a loaded broker may be slower)
            if len(got) == 3:
                break
            assert time.monotonic() < deadline, got
            continue
        got.append(body)
        if len(got) == 1:
            ch.basic_ack(method.delivery_tag)
    assert got == [b"0", b"1", b"2"]
    assert ch.cancel() == 0
    # As in RabbitMQ, cancelling leaves yielded-but-unacked messages with the channel...
    assert ch.queue_declare("gen", passive=True).method.message_count == 0
    ch.close()
    # ...and closing the channel returns them.
    ch = conn.channel()
    assert ch.queue_declare("gen", passive=True).method.message_count == 2


def test_consume_generator_cancel_requeues_what_it_did_not_yield(connect) -> None:
    conn = connect()
    ch = conn.channel()
    ch.queue_declare("gen2")
    for i in range(5):
        ch.basic_publish("", "gen2", b"%d" % i)
    for method, _, _ in ch.consume("gen2"):
        ch.basic_ack(method.delivery_tag)
        break
    pump_until(conn, lambda: ch.get_waiting_message_count() >= 4)
    conn.process_data_events(time_limit=0.2)
    assert ch.get_waiting_message_count() == 4
    ch.cancel()
    assert ch.get_waiting_message_count() == 0
    assert ch.queue_declare("gen2", passive=True).method.message_count == 4


def test_basic_cancel_returns_like_pika(connect, pika) -> None:
    conn = connect()
    ch = conn.channel()
    ch.queue_declare("cancel")
    for i in range(5):
        ch.basic_publish("", "cancel", b"%d" % i)
    manual = ch.basic_consume("cancel", lambda *a: None)
    ch.queue_declare("cancel", passive=True)  # deliveries arrive and wait for dispatch
    assert ch.basic_cancel(manual) == []
    assert ch.queue_declare("cancel", passive=True).method.message_count == 5
    auto = ch.basic_consume("cancel", lambda *a: None, auto_ack=True)
    ch.queue_declare("cancel", passive=True)
    pending = ch.basic_cancel(auto)
    assert [body for _, _, body in pending] == [b"0", b"1", b"2", b"3", b"4"]
    assert isinstance(pending[0][0], pika.spec.Basic.Deliver)
    assert ch.basic_cancel("unknown-tag") == []


def test_duplicate_consumer_tag(connect, pika) -> None:
    ch = connect().channel()
    ch.queue_declare("dup")
    ch.basic_consume("dup", lambda *a: None, consumer_tag="mine")
    with pytest.raises(pika.exceptions.DuplicateConsumerTag):
        ch.basic_consume("dup", lambda *a: None, consumer_tag="mine")


def test_headers_exchange(connect, pika) -> None:
    ch = connect().channel()
    ch.exchange_declare("hx", pika.exchange_type.ExchangeType.headers)
    all_q = ch.queue_declare("", exclusive=True).method.queue
    any_q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(all_q, "hx", arguments={"x-match": "all", "format": "pdf", "type": "report"})
    ch.queue_bind(any_q, "hx", arguments={"x-match": "any", "format": "pdf", "type": "log"})
    ch.basic_publish("hx", "", b"both", pika.BasicProperties(headers={"format": "pdf", "type": "report"}))
    ch.basic_publish("hx", "", b"any-only", pika.BasicProperties(headers={"type": "log"}))
    assert [ch.basic_get(all_q, auto_ack=True)[2] for _ in range(2)] == [b"both", None]
    assert [ch.basic_get(any_q, auto_ack=True)[2] for _ in range(3)] == [b"both", b"any-only", None]


def test_exchange_to_exchange_binding_and_unbind(connect, pika) -> None:
    ch = connect().channel()
    ch.exchange_declare("src", "topic")
    ch.exchange_declare("dst", "fanout")
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, "dst")
    assert isinstance(ch.exchange_bind("dst", "src", "a.#").method, pika.spec.Exchange.BindOk)
    ch.basic_publish("src", "a.b", b"routed")
    ch.basic_publish("src", "b.a", b"dropped")
    assert ch.basic_get(q, auto_ack=True)[2] == b"routed"
    assert ch.basic_get(q, auto_ack=True)[0] is None
    ch.exchange_unbind("dst", "src", "a.#")
    ch.basic_publish("src", "a.b", b"after")
    assert ch.basic_get(q, auto_ack=True)[0] is None


def test_queue_bind_defaults_routing_key_to_queue_name_and_unbind(connect, pika) -> None:
    ch = connect().channel()
    q = ch.queue_declare("named").method.queue
    ch.queue_bind(q, "amq.direct")
    ch.basic_publish("amq.direct", "named", b"x")
    assert ch.basic_get(q, auto_ack=True)[2] == b"x"
    assert isinstance(ch.queue_unbind(q, "amq.direct").method, pika.spec.Queue.UnbindOk)
    ch.basic_publish("amq.direct", "named", b"y")
    assert ch.basic_get(q, auto_ack=True)[0] is None


def test_purge_and_delete_counts(connect, pika) -> None:
    ch = connect().channel()
    ch.queue_declare("pd")
    for _ in range(4):
        ch.basic_publish("", "pd", b"x")
    assert ch.queue_purge("pd").method.message_count == 4
    ch.basic_publish("", "pd", b"x")
    assert ch.queue_delete("pd").method.message_count == 1
    assert isinstance(ch.exchange_delete("nonexistent").method, pika.spec.Exchange.DeleteOk)


def test_mandatory_return_callback(connect, pika) -> None:
    conn = connect()
    ch = conn.channel()
    returned = []
    ch.add_on_return_callback(lambda c, m, p, b: returned.append((m, p, b)))
    ch.basic_publish("", "no-such-queue", b"lost", pika.BasicProperties(message_id="m1"), mandatory=True)
    ch.basic_publish("", "no-such-queue", b"silently dropped")
    conn.process_data_events(time_limit=1)
    [(method, props, body)] = returned
    assert isinstance(method, pika.spec.Basic.Return)
    assert (method.reply_code, method.reply_text, method.routing_key) == (312, "NO_ROUTE", "no-such-queue")
    assert props.message_id == "m1" and body == b"lost"


def test_confirms_unroutable_error(connect, pika) -> None:
    ch = connect().channel()
    ch.confirm_delivery()
    ch.queue_declare("conf")
    assert ch.basic_publish("", "conf", b"ok") is None
    with pytest.raises(pika.exceptions.UnroutableError) as info:
        ch.basic_publish("", "nowhere", b"x", mandatory=True)
    [msg] = info.value.messages
    assert msg.method.reply_code == 312 and msg.body == b"x"
    assert ch.basic_publish("", "nowhere", b"not mandatory") is None
    assert ch.queue_declare("conf", passive=True).method.message_count == 1


def test_timers_threadsafe_callbacks_and_sleep(connect) -> None:
    conn = connect()
    fired = []
    conn.call_later(0.05, lambda: fired.append("timer"))
    removed = conn.call_later(0.05, lambda: fired.append("removed"))
    conn.remove_timeout(removed)
    adder = threading.Thread(target=lambda: conn.add_callback_threadsafe(lambda: fired.append("thread")))
    adder.start()
    adder.join(10)  # added before the sleep: the sleep must run it
    started = time.monotonic()
    conn.sleep(0.3)
    assert time.monotonic() - started >= 0.3
    assert sorted(fired) == ["thread", "timer"]


COUNT_DESCRIPTORS = """
import os, sys
import {module} as client
params = client.ConnectionParameters(host="127.0.0.1", port=int(sys.argv[1]))
held = [client.BlockingConnection(params)]  # (the ZeroMQ context and this thread's wake-up exist now)
before = len(os.listdir("/proc/self/fd"))
held += [client.BlockingConnection(params) for _ in range(20)]
print((len(os.listdir("/proc/self/fd")) - before) / 20)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="counts /proc/self/fd")
def test_a_connection_takes_four_descriptors_as_pika_does(broker, wire) -> None:
    """Its TCP socket, its socket's mailbox, and the monitor's two sockets; the wake-up for
    add_callback_threadsafe is the thread's. pika 1.4's BlockingConnection takes four too:
    its socket, a socketpair, an epoll. (In a process of its own: closing the connections
    of earlier tests in this one frees descriptors on libzmq's threads, at their pace.)"""
    import subprocess
    from tests.support import child_env
    module, port = ("pika", broker.amqp_port) if wire == "amqp" else ("zbroker.client", broker.port)
    out = subprocess.run([sys.executable, "-c", COUNT_DESCRIPTORS.format(module=module), str(port)],
                         capture_output=True, text=True, timeout=60, env=child_env())
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) == 4.0


def test_a_threadsafe_callback_wakes_whichever_thread_waits_and_none_is_lost(connect, monkeypatch) -> None:
    import zbroker.client.connection as connection_module
    monkeypatch.setattr(connection_module, "MAX_WAIT_S", 3600.0)  # a lost wake-up would hang
    mine, other = connect(), connect()  # two connections of one thread share its wake-up
    fired: list[str] = []
    adder = threading.Thread(target=lambda: other.add_callback_threadsafe(lambda: fired.append("other")))
    adder.start()
    adder.join(10)
    mine.process_data_events(0)  # may take the thread's wake-up meant for the other ...
    other.process_data_events(time_limit=None)  # ... which still finds its callback
    assert fired == ["other"]
    waiting = threading.Event()

    def wait_in_a_worker() -> None:  # the connection made here, waited on there
        waiting.set()
        while "worker" not in fired:
            mine.process_data_events(time_limit=None)

    worker = threading.Thread(target=wait_in_a_worker)
    worker.start()
    waiting.wait(10)  # (whether the worker is in its wait yet or not, the callback must reach it)
    mine.add_callback_threadsafe(lambda: fired.append("worker"))
    worker.join(20)
    assert not worker.is_alive() and fired == ["other", "worker"]


def test_process_data_events_none_returns_after_a_callback(connect) -> None:
    conn = connect()
    ch = conn.channel()
    ch.queue_declare("pde")
    got = []
    ch.basic_consume("pde", lambda c, m, p, b: got.append(b), auto_ack=True)
    threading.Timer(0.2, lambda: conn.add_callback_threadsafe(lambda: ch.basic_publish("", "pde", b"x"))).start()
    conn.process_data_events(time_limit=None)  # runs the thread's callback
    while not got:
        conn.process_data_events(time_limit=None)
    assert got == [b"x"]


def test_start_consuming_in_a_callback_is_reentrancy_error(connect, pika) -> None:
    conn = connect()
    ch = conn.channel()
    ch.queue_declare("re")
    errors = []

    def cb(c, m, p, b):
        try:
            c.start_consuming()
        except pika.exceptions.ReentrancyError as exc:
            errors.append(exc)
        c.stop_consuming()

    ch.basic_consume("re", cb, auto_ack=True)
    ch.basic_publish("", "re", b"x")
    ch.start_consuming()
    assert len(errors) == 1


def test_context_managers_close(broker) -> None:
    with pika.BlockingConnection(pika.ConnectionParameters(port=broker.port)) as conn:
        with conn.channel() as ch:
            ch.queue_declare("", exclusive=True)
        assert ch.is_closed and conn.is_open
    assert conn.is_closed
    with pytest.raises(exceptions.ConnectionWrongStateError):
        conn.close()


def test_several_channels_and_url_parameters(broker) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(f"zbroker://guest:guest@127.0.0.1:{broker.port}/%2F?heartbeat=5"))
    a, b = conn.channel(), conn.channel()
    assert (a.channel_number, b.channel_number) == (1, 2)
    a.queue_declare("multi")
    b.basic_publish("", "multi", b"from b")
    assert a.basic_get("multi", auto_ack=True)[2] == b"from b"
    a.close()
    with pytest.raises(exceptions.ChannelWrongStateError):
        a.basic_publish("", "multi", b"x")
    assert b.is_open
    conn.close()


def test_connection_list_of_parameters_tries_in_order(broker) -> None:
    dead = pika.ConnectionParameters(port=1)  # nothing listens on port 1
    live = pika.ConnectionParameters(port=broker.port)
    conn = pika.BlockingConnection([dead, live])
    assert conn.is_open
    conn.close()


def test_pika_0x_style_calls_still_work(zconnect) -> None:
    """An extension of zbroker's client (pika 1.x refuses the old names)."""
    ch = zconnect().channel()
    ch.queue_declare("old")
    got = []
    with pytest.warns(DeprecationWarning):
        ch.basic_consume(lambda c, m, p, b: (got.append(b), c.stop_consuming()), queue="old", no_ack=True)
    ch.basic_publish("", "old", b"x")
    ch.start_consuming()
    assert got == [b"x"]
    with pytest.warns(DeprecationWarning):
        pika.ConnectionParameters(heartbeat_interval=5)


def test_ordering_of_10000_messages_from_one_producer(connect) -> None:
    conn = connect()
    ch = conn.channel()
    ch.queue_declare("order")
    n = 10_000
    for i in range(n):
        ch.basic_publish("", "order", str(i))
    received = []

    def cb(c, m, p, b):
        received.append(int(b))
        if len(received) == n:
            c.stop_consuming()

    ch.basic_qos(prefetch_count=500)
    ch.basic_consume("order", lambda c, m, p, b: (cb(c, m, p, b), c.basic_ack(m.delivery_tag)))
    ch.start_consuming()
    assert received == list(range(n))


def test_the_client_keeps_to_the_broker_s_channel_max() -> None:
    """``zbroker serve --channel-max 3``: the client negotiates 3, as pika does with
    RabbitMQ's channel_max, and a fourth channel is NoFreeChannels."""
    from tests.support import Broker as BrokerProcess
    broker = BrokerProcess("--channel-max", "3")
    try:
        conn = pika.BlockingConnection(pika.ConnectionParameters(port=broker.port))
        assert conn.channel_max == 3
        channels = [conn.channel() for _ in range(3)]
        with pytest.raises(pika.exceptions.NoFreeChannels):
            conn.channel()
        assert all(ch.is_open for ch in channels)
        conn.close()
    finally:
        assert broker.stop() == 0
        broker.remove_data()


AUTO_ACK_DRAIN = r'''
import sys, time
import zbroker.client as pika
from zbroker.core.broker import DEFAULT_MAX_BODY_BYTES
count = int(sys.argv[1])
def rss():
    return int([l for l in open("/proc/self/status") if l.startswith("VmRSS")][0].split()[1]) // 1024
ch = pika.BlockingConnection(pika.ConnectionParameters()).channel()
queue = f"backlog-{count}"
ch.queue_declare(queue)
ch.confirm_delivery()
for _ in range(count // 1000):
    for _ in range(1000):
        ch.publish_nowait("", queue, b"x" * 2048)
    ch.wait_for_confirms()
peak, n = 0, 0
for method, _, _ in ch.consume(queue, auto_ack=True, inactivity_timeout=30):
    if method is None:
        break
    n += 1
    if n < 2000:
        time.sleep(0.001)  # busy at first, while the broker keeps sending
    if n % 1000 == 0:
        peak = max(peak, rss())
    if n == count:
        break
print("consumed", n, "peak", peak, flush=True)
'''


def test_an_auto_ack_consumer_holds_a_bounded_number_of_deliveries(broker) -> None:  # noqa: ANN001
    """Draining a backlog with consume(auto_ack=True), a client holds what a few broker
    messages carry, not the queue: its peak memory is the same for a backlog of
    100,000 x 2 KiB as for 200,000 (it grew with the backlog before: 596 and 895 MiB)."""
    from tests.support import python_snippet
    peaks = {}
    for count in (100_000, 200_000):
        proc = python_snippet(AUTO_ACK_DRAIN.replace("sys.argv[1]", str(count)), broker.port)
        m = proc.wait_for(r"consumed (\d+) peak (\d+)", timeout=120)
        assert int(m.group(1)) == count
        peaks[count] = int(m.group(2))
        assert proc.wait(30) == 0
    print("client peak RSS (MiB) by backlog:", peaks)
    assert peaks[200_000] < peaks[100_000] * 1.5, peaks  # does not grow with the backlog
    assert peaks[200_000] < 300, peaks  # the backlog itself is 400 MB


def test_direct_reply_to_round_trip(connect, pika) -> None:
    """RabbitMQ's direct reply-to: consume amq.rabbitmq.reply-to with auto_ack, publish
    with reply_to set to it; the server's answer comes straight back."""
    server, client = connect().channel(), connect().channel()
    server.queue_declare("rpc-direct")
    received = []
    client.basic_consume("amq.rabbitmq.reply-to", lambda c, m, p, b: received.append((b, p.correlation_id)),
                         auto_ack=True)
    client.basic_publish("", "rpc-direct", b"2", pika.BasicProperties(reply_to="amq.rabbitmq.reply-to",
                                                                       correlation_id="c1"))
    props = None
    deadline = time.monotonic() + WAIT_S
    while props is None and time.monotonic() < deadline:
        _, props, _ = server.basic_get("rpc-direct", auto_ack=True)
    assert props.reply_to.startswith("amq.rabbitmq.reply-to.")
    server.basic_publish("", props.reply_to, b"4", pika.BasicProperties(correlation_id=props.correlation_id))
    pump_until(client.connection, lambda: bool(received))
    assert received == [(b"4", "c1")]


def test_global_and_per_consumer_prefetch(connect) -> None:
    """RabbitMQ's meaning: global_qos=False limits each consumer, True the channel."""
    conn = connect()
    ch = conn.channel()
    ch.queue_declare("qa")
    ch.queue_declare("qb")
    for _ in range(10):
        ch.basic_publish("", "qa", b"a")
        ch.basic_publish("", "qb", b"b")
    ch.basic_qos(prefetch_count=4, global_qos=True)  # the channel: 4 in all
    ch.basic_qos(prefetch_count=2)  # each consumer from now on: 2
    held = []
    ch.basic_consume("qa", lambda c, m, p, b: held.append(b))
    ch.basic_consume("qb", lambda c, m, p, b: held.append(b))
    pump_until(conn, lambda: len(held) >= 4)
    conn.process_data_events(time_limit=0.2)  # and no more
    assert sorted(held) == [b"a", b"a", b"b", b"b"]
