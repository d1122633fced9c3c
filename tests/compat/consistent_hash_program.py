"""Where an ``x-consistent-hash`` exchange sends messages, with real pika, for RabbitMQ
(with rabbitmq_consistent_hash_exchange enabled) and zbroker's AMQP listener alike.

    python tests/compat/consistent_hash_program.py PORT

Each case binds queues with weights, publishes keyed messages (confirmed, so all are
queued before the queues are read) and prints per queue how many arrived and a digest of
which; then the bindings change and the same keys are published again, so the diff shows
both the assignment and how it moves. Then what each broker refuses, and its texts.
Not part of the suite, which must pass without a RabbitMQ.
"""
import hashlib
import sys
from datetime import datetime, timezone

import pika

PORT = int(sys.argv[1])
X = "chx.x"
QUEUES = [f"chx.q{n}" for n in range(1, 7)]
N = 1000


def connect() -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", PORT))


connection = connect()
channel = connection.channel()
channel.confirm_delivery()


def reset(arguments: dict | None = None) -> None:
    channel.exchange_delete(X)
    channel.exchange_delete("chx.fanout")
    for queue in QUEUES:
        channel.queue_delete(queue)
        channel.queue_declare(queue)
    channel.exchange_declare(X, "x-consistent-hash", arguments=arguments)


def publish(label: str, properties_of=lambda i: None, key_of=lambda i: f"k{i}") -> None:
    """Publish N messages (body: their number), then print each queue's share."""
    for i in range(N):
        channel.basic_publish(X, key_of(i), str(i).encode(), properties_of(i))
    print(f"== {label}")
    for queue in QUEUES:
        got = []
        while True:
            method, _, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                break
            got.append(int(body))
        if got:
            digest = hashlib.sha256(",".join(map(str, sorted(got))).encode()).hexdigest()[:16]
            print(f"{queue}: {len(got)} {digest} first {sorted(got)[:5]}")


def bind(queue: str, weight: str) -> None:
    channel.queue_bind(queue, X, weight)


# 1. Routing keys over weights 1, 2, 3, 10; then a queue leaves and one joins.
reset()
for queue, weight in zip(QUEUES, ("1", "2", "3", "10")):
    bind(queue, weight)
publish("routing key, weights 1 2 3 10")
channel.queue_unbind(QUEUES[1], X, "2")
publish("routing key, q2 unbound")
bind(QUEUES[4], "4")
publish("routing key, q5 bound with 4")
bind(QUEUES[1], "2")
publish("routing key, q2 bound again (now last)")
channel.queue_delete(QUEUES[2])
channel.queue_declare(QUEUES[2])
publish("routing key, q3 deleted")

# 2. A queue bound twice: the second weight adds nothing; unbinding either empties it.
reset()
bind(QUEUES[0], "1")
bind(QUEUES[1], "2")
bind(QUEUES[1], "5")
bind(QUEUES[2], "3")
publish("q2 bound with 2 and 5")
channel.queue_unbind(QUEUES[1], X, "5")
publish("q2's binding with 5 removed")
channel.queue_unbind(QUEUES[1], X, "2")
bind(QUEUES[1], "5")
publish("q2 bound again with 5")

# 3. Many buckets, one queue, an exchange as a destination.
reset()
bind(QUEUES[0], "100")
bind(QUEUES[1], "007")
bind(QUEUES[2], "+20")
channel.exchange_declare("chx.fanout", "fanout")
channel.exchange_bind("chx.fanout", X, "50")
channel.queue_bind(QUEUES[3], "chx.fanout", "")
publish("weights 100 7 20 and an exchange with 50")
reset()
bind(QUEUES[0], "1")
publish("one queue")
publish("keys of every length", key_of=lambda i: "é" * (i % 40) + str(i % 7))

# 4. A header: strings, integers, other types, and messages without it.
reset({"hash-header": "user"})
for queue, weight in zip(QUEUES, ("1", "2", "3", "10")):
    bind(queue, weight)
publish("hash-header, string values", lambda i: pika.BasicProperties(headers={"user": f"u{i}"}))
publish("hash-header, integer values", lambda i: pika.BasicProperties(headers={"user": i * 7919 - 3000}))
publish("hash-header, long values", lambda i: pika.BasicProperties(headers={"user": i * 2**40}))
VALUES = [True, False, b"\x00bin", None, [1, "a", [b"b"]], {"n": 1, "s": "x", "t": {}}, -5, 2**31, "",
          datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc), datetime(1999, 1, 1)]  # (pika has no floats)
publish("hash-header, other types", lambda i: pika.BasicProperties(headers={"user": VALUES[i % len(VALUES)],
                                                                             "i": i}))
publish("hash-header, missing", lambda i: pika.BasicProperties(headers={"other": i} if i % 2 else None))

# 5. Properties.
for prop in ("message_id", "correlation_id", "timestamp"):
    reset({"hash-property": prop})
    for queue, weight in zip(QUEUES, ("1", "2", "3", "10")):
        bind(queue, weight)
    value = (lambda i: 1_700_000_000 + i * 37) if prop == "timestamp" else (lambda i: f"id-{i}")
    publish(f"hash-property {prop}", lambda i: pika.BasicProperties(**{prop: value(i)}))
    publish(f"hash-property {prop}, missing", lambda i: pika.BasicProperties(app_id="a"))
channel.exchange_delete(X)

# 6. What is refused, and the texts.
CASES = [(f"bind {key!r}", lambda ch, key=key: (ch.exchange_declare(X, "x-consistent-hash"),
                                              ch.queue_bind(QUEUES[0], X, key)))
         for key in ("abc", "", "0", "-1", " 5", "1.0", "1_0", "a\"b\\c\n", "€", "é", "a\x01")]
CASES += [("exchange.bind abc", lambda ch: (ch.exchange_declare(X, "x-consistent-hash"),
                                            ch.exchange_bind("amq.fanout", X, "abc"))),
          ("unbind abc", lambda ch: ch.queue_unbind(QUEUES[0], X, "abc"))]
for args in ({"hash-property": "app_id"}, {"hash-property": "headers"},
             {"hash-header": "h", "hash-property": "message_id"}, {"hash-header": "h", "hash-property": "x"},
             {"hash-header": ""}, {"hash-header": 5}, {"hash-property": b"message_id"}):
    CASES.append((f"declare {args}", lambda ch, args=args: ch.exchange_declare("chx.y", "x-consistent-hash",
                                                                                arguments=args)))
for label, operation in CASES:
    try:
        ch = connection.channel()
        ch.exchange_delete("chx.y")
        operation(ch)
        print(f"{label} | ok")
        ch.close()
    except pika.exceptions.ChannelClosedByBroker as exc:
        print(f"{label} | channel {exc.reply_code} {exc.reply_text}")
    except pika.exceptions.ConnectionClosedByBroker as exc:
        print(f"{label} | connection {exc.reply_code} {exc.reply_text}")
        connection = connect()
channel = connection.channel()
channel.exchange_delete(X)
channel.exchange_delete("chx.y")
channel.exchange_delete("chx.fanout")
for queue in QUEUES:
    channel.queue_delete(queue)
connection.close()
