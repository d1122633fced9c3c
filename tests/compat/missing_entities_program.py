"""What a broker answers when a client names a queue, exchange or binding that is not
there, with real pika, for RabbitMQ and zbroker's AMQP listener alike.

    python tests/compat/missing_entities_program.py PORT

Each case runs on a fresh channel and prints the answer's method name (and message
count where there is one), or the channel's close code and text. ``bin/compare-rabbitmq``
diffs it between the brokers. Not part of the suite, which must pass without a RabbitMQ.
"""
import sys

import pika

PORT = int(sys.argv[1])

CASES = [
    ("queue.unbind: no such queue", lambda ch: ch.queue_unbind("me.nq", "me.x", "k")),
    ("queue.unbind: no such exchange", lambda ch: ch.queue_unbind("me.q", "me.nx", "k")),
    ("queue.unbind: no such binding", lambda ch: ch.queue_unbind("me.q", "me.x", "other")),
    ("queue.unbind: neither", lambda ch: ch.queue_unbind("me.nq", "me.nx", "k")),
    ("queue.unbind: default exchange", lambda ch: ch.queue_unbind("me.q", "", "me.q")),
    ("exchange.unbind: no such destination", lambda ch: ch.exchange_unbind("me.nx", "me.x", "k")),
    ("exchange.unbind: no such source", lambda ch: ch.exchange_unbind("me.x", "me.nx", "k")),
    ("exchange.unbind: no such binding", lambda ch: ch.exchange_unbind("me.x", "amq.direct", "k")),
    ("queue.bind: no such queue", lambda ch: ch.queue_bind("me.nq", "me.x", "k")),
    ("queue.bind: no such exchange", lambda ch: ch.queue_bind("me.q", "me.nx", "k")),
    ("queue.bind: neither", lambda ch: ch.queue_bind("me.nq", "me.nx", "k")),
    ("exchange.bind: no such destination", lambda ch: ch.exchange_bind("me.nx", "me.x", "k")),
    ("exchange.bind: no such source", lambda ch: ch.exchange_bind("me.x", "me.nx", "k")),
    ("queue.delete: no such queue", lambda ch: ch.queue_delete("me.nq")),
    ("queue.delete if-empty: no such queue", lambda ch: ch.queue_delete("me.nq", if_empty=True)),
    ("exchange.delete: no such exchange", lambda ch: ch.exchange_delete("me.nx")),
    ("exchange.delete if-unused: no such exchange", lambda ch: ch.exchange_delete("me.nx", if_unused=True)),
    ("queue.purge: no such queue", lambda ch: ch.queue_purge("me.nq")),
    ("queue.declare passive: no such queue", lambda ch: ch.queue_declare("me.nq", passive=True)),
    ("exchange.declare passive: no such exchange", lambda ch: ch.exchange_declare("me.nx", passive=True)),
    ("basic.get: no such queue", lambda ch: ch.basic_get("me.nq")),
    ("basic.consume: no such queue", lambda ch: ch.basic_consume("me.nq", lambda *a: None)),
    ("basic.publish: no such exchange", lambda ch: (ch.confirm_delivery(), ch.basic_publish("me.nx", "k", b"x"))),
]


def describe(result: object) -> str:
    method = getattr(result, "method", None)
    if method is None:
        return "ok" if result is None or isinstance(result, (str, tuple)) else type(result).__name__
    count = getattr(method, "message_count", None)
    return method.NAME + ("" if count is None else f" {count}")


connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", PORT))
setup = connection.channel()
setup.exchange_declare("me.x", "direct", auto_delete=False)
setup.queue_declare("me.q")
setup.queue_bind("me.q", "me.x", "k")
for label, operation in CASES:
    channel = connection.channel()
    try:
        print(f"{label} | {describe(operation(channel))}")
        channel.close()
    except pika.exceptions.ChannelClosedByBroker as exc:
        print(f"{label} | {exc.reply_code} {exc.reply_text}")
setup.queue_delete("me.q")
setup.exchange_delete("me.x")
connection.close()
