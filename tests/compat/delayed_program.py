"""What an ``x-delayed-message`` exchange does, with real pika, for RabbitMQ (with the
rabbitmq_delayed_message_exchange plugin for 3.10 enabled) and zbroker's AMQP listener alike.

    python tests/compat/delayed_program.py PORT

Prints the declare refusals, the order in which delayed messages arrive and the headers
they arrive with, what a mandatory publish gets back, exchange-to-exchange and
dead-letter routing into a delayed exchange, and what a string x-delay that is not an
integer does. Left out, as the README says how zbroker differs there: an unknown
x-delayed-type (RabbitMQ 3.10: 503 closing the connection; zbroker: 406, as for any
unknown type), the alternate exchange (RabbitMQ's plugin also sends every delayed
message there at once), a transaction rolled back (RabbitMQ holds it anyway) and the
header of a dead-lettered delayed message. Not part of the suite, which must pass without
a RabbitMQ.

RabbitMQ does not ship the plugin. Offline, it builds from its source (github
rabbitmq/rabbitmq-delayed-message-exchange, commit d00dba6, its last for 3.10/3.11) with the
headers and beams RabbitMQ installs, and a hand-written .app file (erlang.mk writes one)::

    P=/usr/lib/rabbitmq/lib/rabbitmq_server-3.10.8/plugins
    D=$P/rabbitmq_delayed_message_exchange-3.10.2; mkdir -p $D/ebin
    erlc -I $P -pa $P/rabbit_common-3.10.8/ebin -pa $P/rabbit-3.10.8/ebin -o $D/ebin src/*.erl
    # $D/ebin/rabbitmq_delayed_message_exchange.app: {application, ..., [{vsn, "3.10.2"},
    #   {modules, [...the five...]}, {registered, [rabbit_delayed_message_sup]},
    #   {applications, [kernel, stdlib, rabbit_common, rabbit]},
    #   {mod, {rabbit_delayed_message_app, []}}, {broker_version_requirements, ["3.10.0"]}]}.
    rabbitmq-plugins enable rabbitmq_delayed_message_exchange
"""
import sys
import time

import pika

PORT = int(sys.argv[1])
#: How long to wait for what should arrive (s).
WAIT_S = 10


def connect() -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", PORT))


connection = connect()
channel = connection.channel()


def reset() -> None:
    for exchange in ("dx.d", "dx.a", "dx.h"):
        channel.exchange_delete(exchange)
    for queue in ("dx.q", "dx.direct", "dx.ttl"):
        channel.queue_delete(queue)
    channel.exchange_declare("dx.d", "x-delayed-message", arguments={"x-delayed-type": "direct"})
    channel.queue_declare("dx.q")
    channel.queue_bind("dx.q", "dx.d", "k")


def arrivals(queue: str, count: int) -> list:
    """(body, exchange, x-delay header) of the first ``count`` messages, in arrival order."""
    got: list = []
    deadline = time.monotonic() + WAIT_S
    while len(got) < count and time.monotonic() < deadline:
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            connection.process_data_events(0.02)
            continue
        got.append((body.decode(), method.exchange, (properties.headers or {}).get("x-delay", "-")))
    return got


print("== declare refusals")
for arguments in ({}, {"x-delayed-type": 5}, {"x-delayed-type": "x-delayed-message"}):
    ch = connection.channel()
    try:
        ch.exchange_declare("dx.bad", "x-delayed-message", arguments=arguments)
        print(arguments, "declared")
    except pika.exceptions.ChannelClosedByBroker as exc:
        print(arguments, exc.reply_code, exc.reply_text)

print("== arrival order and headers")
reset()
for body, delay in (("c", 600), ("a1", 200), ("b", 400), ("a2", 200), ("now-0", 0), ("now-negative", -5),
                    ("string-300", "300"), ("now-bool", True), ("now-bytes", b"100"), ("too-long", 2**32)):
    channel.basic_publish("dx.d", "k", body.encode(), pika.BasicProperties(headers={"x-delay": delay}))
for row in arrivals("dx.q", 10):
    print(*row)

print("== mandatory, in confirm mode")
reset()
confirming = connection.channel()
confirming.confirm_delivery()
returned = []
confirming.add_on_return_callback(lambda c, m, p, b: returned.append((m.reply_code, m.reply_text, b)))
for body, delay in (("held", 300), ("at-once", 0)):
    try:
        confirming.basic_publish("dx.d", "k", body.encode(), pika.BasicProperties(headers={"x-delay": delay}),
                                 mandatory=True)
        print(body, "confirmed")
    except pika.exceptions.UnroutableError:
        print(body, "confirmed, returned")
connection.process_data_events(0.1)
print("returns:", returned)
for row in arrivals("dx.q", 2):
    print(*row)

print("== through an exchange-to-exchange binding, and a dead letter")
reset()
channel.exchange_declare("dx.a", "direct")
channel.exchange_bind("dx.d", "dx.a", "k")
channel.queue_declare("dx.direct")
channel.queue_bind("dx.direct", "dx.a", "k")
channel.queue_declare("dx.ttl", arguments={"x-message-ttl": 10, "x-dead-letter-exchange": "dx.d",
                                           "x-dead-letter-routing-key": "k"})
channel.basic_publish("dx.a", "k", b"e2e", pika.BasicProperties(headers={"x-delay": 300}), mandatory=True)
channel.basic_publish("", "dx.ttl", b"dead-letter", pika.BasicProperties(headers={"x-delay": 500}))
print("at once:", arrivals("dx.direct", 1), arrivals("dx.q", 0))
print("later:", [(body, exchange) for body, exchange, _ in arrivals("dx.q", 2)])

print("== bindings are the delayed type's")
channel.exchange_declare("dx.h", "x-delayed-message", arguments={"x-delayed-type": "x-consistent-hash"})
try:
    connection.channel().queue_bind("dx.q", "dx.h", "not-a-weight")
except pika.exceptions.ChannelClosedByBroker as exc:
    print(exc.reply_code, exc.reply_text)

print("== a string x-delay that is not an integer")
try:
    channel.basic_publish("dx.d", "k", b"bad", pika.BasicProperties(headers={"x-delay": "1_000"}))
    channel.queue_declare("dx.q", passive=True)
except pika.exceptions.ConnectionClosedByBroker as exc:
    print("connection closed:", exc.reply_code)
channel = connect().channel()
for exchange in ("dx.d", "dx.a", "dx.h"):
    channel.exchange_delete(exchange)
for queue in ("dx.q", "dx.direct", "dx.ttl"):
    channel.queue_delete(queue)
