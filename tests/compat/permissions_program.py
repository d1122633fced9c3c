"""Permissions, the same program against RabbitMQ and zbroker (``bin/compare-rabbitmq``):
as user ``app`` (password ``pw``), whose three expressions are ``^app\\.``, every
operation on a name it may not use and then on one it may; prints each outcome. The
caller creates ``app`` with its permissions and its topic permissions on the topic
exchange ``app.logs`` (write and read ``^app\.``) on each broker.

usage: permissions_program.py PORT
"""
import sys

import pika

port = int(sys.argv[1])


def connect(user: str, password: str, vhost: str = "/") -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", port, vhost, pika.PlainCredentials(user, password)))


guest = connect("guest", "guest").channel()
for name in ("other", "app."):
    guest.exchange_declare(f"{name}x", "direct")
    guest.queue_declare(f"{name}q")
    guest.queue_bind(f"{name}q", f"{name}x", "k")
guest.connection.close()

OPERATIONS = [
    ("exchange_declare", lambda ch, p: ch.exchange_declare(f"{p}x2", "fanout")),
    ("exchange_declare passive", lambda ch, p: ch.exchange_declare(f"{p}x", passive=True)),
    ("exchange_declare alternate-exchange", lambda ch, p: ch.exchange_declare(
        "app.ae" if p == "other" else "app.ae2", arguments={"alternate-exchange": f"{p}x"})),
    ("exchange_delete", lambda ch, p: ch.exchange_delete(f"{p}x2")),
    ("queue_declare", lambda ch, p: ch.queue_declare(f"{p}q2")),
    ("queue_declare passive", lambda ch, p: ch.queue_declare(f"{p}q", passive=True)),
    ("queue_declare x-dead-letter-exchange", lambda ch, p: ch.queue_declare(
        "app.dl" if p == "other" else "app.dl2", arguments={"x-dead-letter-exchange": f"{p}x"})),
    ("queue_purge", lambda ch, p: ch.queue_purge(f"{p}q")),
    ("queue_bind", lambda ch, p: ch.queue_bind(f"{p}q", "app.x", "k2")),
    ("queue_bind from", lambda ch, p: ch.queue_bind("app.q", f"{p}x", "k3")),
    ("queue_unbind", lambda ch, p: ch.queue_unbind(f"{p}q", "app.x", "k2")),
    ("exchange_bind", lambda ch, p: ch.exchange_bind(f"{p}x", "app.x", "k")),
    ("basic_get", lambda ch, p: ch.basic_get(f"{p}q")),
    ("basic_consume", lambda ch, p: ch.basic_consume(f"{p}q", lambda *a: None)),
    ("basic_publish", lambda ch, p: (ch.confirm_delivery(), ch.basic_publish(f"{p}x", "k", b"m"))),
    ("basic_publish default exchange", lambda ch, p: (ch.confirm_delivery(), ch.basic_publish("", f"{p}q", b"m"))),
    ("queue_declare server-named", lambda ch, p: ch.queue_declare("", exclusive=True)),
    ("queue_delete", lambda ch, p: ch.queue_delete(f"{p}q2")),
    ("topic publish", lambda ch, p: (ch.exchange_declare("app.logs", "topic"), ch.confirm_delivery(),
                                     ch.basic_publish("app.logs", f"{p}.info", b"m"))),
    ("topic bind", lambda ch, p: ch.queue_bind("app.q", "app.logs", f"{p}.#")),
]

conn = connect("app", "pw")
for name, operation in OPERATIONS:
    for prefix in ("other", "app."):
        try:
            operation(conn.channel(), prefix)
            outcome = "ok"
        except pika.exceptions.ChannelClosedByBroker as exc:
            outcome = f"{exc.reply_code} {exc.reply_text}".replace("amq.gen-", "amq.gen-")
            if "amq.gen-" in outcome:  # (a fresh name each run)
                outcome = outcome.split("amq.gen-")[0] + "amq.gen-...' in vhost '/' refused for user 'app'"
        print(f"{name} on {prefix}: {outcome}")
conn.close()
for user, password, vhost in (("nobody", "x", "/"), ("app", "pw", "nowhere"), ("noperm", "pw", "/")):
    try:
        connect(user, password, vhost).close()
        print(f"login {user} to {vhost}: ok")
    except pika.exceptions.AMQPConnectionError as exc:
        print(f"login {user} to {vhost}: {type(exc).__name__} {exc.args[0] if exc.args else ''}")
