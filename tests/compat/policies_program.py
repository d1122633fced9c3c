"""Policies against a broker, observed through AMQP: what a policy does to queues that
exist, how it meets a queue's own x-arguments, operator policies, and validation texts.

    python tests/compat/policies_program.py AMQP_PORT "CTL COMMAND"
    # e.g. 5672 "rabbitmqctl", or 5673 "zbroker ctl --broker tcp://127.0.0.1:5680"

Real pika on both sides (zbroker's AMQP listener); policies are set with each broker's
ctl. It prints one line per check; ``bin/compare-rabbitmq`` diffs the two outputs. Not
part of the suite, which must pass without a RabbitMQ.
"""
import shlex
import subprocess
import sys
import time

import pika

port, ctl = int(sys.argv[1]), shlex.split(sys.argv[2])
conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
ch = conn.channel()
QUEUES = ["p.trim", "p.min", "p.min2", "p.dlx", "p.dl.arg", "p.dl.pol", "p.over", "p.qq.over", "p.skip.classic",
          "p.skip.qq", "p.op", "p.ttl", "p.ae.q"]


def run(*args: str) -> str:
    out = subprocess.run([*ctl, *args], capture_output=True, text=True)
    text = (out.stdout + out.stderr).strip().splitlines()
    return f"exit={out.returncode} " + " | ".join(line for line in text if not line.startswith(("Setting", "Clearing")))


def policy(name: str, pattern: str, definition: str, *options: str) -> str:
    return run("set_policy", *options, name, pattern, definition)


def publish(queue: str, n: int) -> None:
    for i in range(n):
        ch.basic_publish("", queue, b"%d" % i)


def bodies(queue: str) -> list:
    got = []
    while True:
        method, _, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            return got
        got.append(body.decode())


def count(queue: str) -> int:
    return ch.queue_declare(queue, passive=True).method.message_count


def settle() -> None:
    """Policies apply asynchronously in RabbitMQ: give them a moment, the same on both."""
    time.sleep(0.5)


for q in QUEUES:
    ch.queue_delete(q)
for name in ("trim", "min", "dl", "over", "skip", "fallback", "user", "ttl", "ae", "bad"):
    run("clear_policy", name)
run("clear_operator_policy", "cap")

# A new max-length trims a queue that exists, from the head.
ch.queue_declare("p.trim")
publish("p.trim", 10)
print("set trim:", policy("trim", r"^p\.trim$", '{"max-length": 3}', "--apply-to", "queues"))
settle()
print("trimmed:", bodies("p.trim"))

# Numeric limits: the lesser of argument and policy.
ch.queue_declare("p.min", arguments={"x-max-length": 2})
ch.queue_declare("p.min2", arguments={"x-max-length": 50})
print("set min:", policy("min", r"^p\.min", '{"max-length": 5}'))
settle()
publish("p.min", 10)
publish("p.min2", 10)
print("min:", count("p.min"), count("p.min2"))

# Dead-lettering: the argument's exchange wins over the policy's.
for exchange, queue in (("p.argdlx", "p.dl.arg"), ("p.poldlx", "p.dl.pol")):
    ch.exchange_declare(exchange, "fanout")
    ch.queue_declare(queue)
    ch.queue_bind(queue, exchange)
ch.queue_declare("p.dlx", arguments={"x-dead-letter-exchange": "p.argdlx"})
print("set dl:", policy("dl", r"^p\.dlx$", '{"dead-letter-exchange": "p.poldlx", "max-length": 1}'))
settle()
publish("p.dlx", 3)
time.sleep(0.2)
print("dead letters:", count("p.dl.arg"), count("p.dl.pol"))

# Overflow: the argument wins on a classic queue, the policy on a quorum queue.
ch.queue_declare("p.over", arguments={"x-overflow": "reject-publish"})
ch.queue_declare("p.qq.over", durable=True, arguments={"x-queue-type": "quorum", "x-overflow": "reject-publish"})
print("set over:", policy("over", r"over$", '{"overflow": "drop-head", "max-length": 1}'))
settle()
publish("p.over", 3)
publish("p.qq.over", 3)
time.sleep(0.2)
print("overflow classic:", bodies("p.over"), "quorum:", bodies("p.qq.over"))

# A policy with a key a classic queue does not take is not its policy at all.
ch.queue_declare("p.skip.classic")
ch.queue_declare("p.skip.qq", durable=True, arguments={"x-queue-type": "quorum"})
print("set skip:", policy("skip", r"^p\.skip", '{"delivery-limit": 5, "max-length": 1}', "--priority", "9"))
print("set fallback:", policy("fallback", r"^p\.skip", '{"max-length": 4}', "--priority", "1"))
settle()
publish("p.skip.classic", 10)
publish("p.skip.qq", 10)
time.sleep(0.2)
print("skip:", count("p.skip.classic"), count("p.skip.qq"))

# An operator policy caps a user policy's limit.
ch.queue_declare("p.op")
print("set user:", policy("user", r"^p\.op$", '{"max-length": 6}'))
print("set cap:", run("set_operator_policy", "cap", r"^p\.op$", '{"max-length": 2}'))
print("cap with a non-limit key:", run("set_operator_policy", "cap2", r"^p\.op$", '{"dead-letter-exchange": "x"}'))
settle()
publish("p.op", 10)
time.sleep(0.2)
print("operator:", count("p.op"))

# A message-ttl policy does not expire messages already queued (a new one would expire;
# RabbitMQ drops it only once it reaches the head, zbroker at once: not compared here).
ch.queue_declare("p.ttl")
publish("p.ttl", 2)
print("set ttl:", policy("ttl", r"^p\.ttl$", '{"message-ttl": 1}'))
settle()
time.sleep(0.2)
print("ttl:", count("p.ttl"))

# An exchange's own alternate-exchange argument wins over a policy's.
ch.exchange_declare("p.ae.target", "fanout")
ch.queue_declare("p.ae.q")
ch.queue_bind("p.ae.q", "p.ae.target")
ch.exchange_declare("p.ae.own", "direct", arguments={"alternate-exchange": "p.nowhere"})
ch.exchange_declare("p.ae.bare", "direct")
print("set ae:", policy("ae", r"^p\.ae\.", '{"alternate-exchange": "p.ae.target"}', "--apply-to", "exchanges"))
settle()
ch.basic_publish("p.ae.own", "x", b"own")
ch.basic_publish("p.ae.bare", "x", b"bare")
time.sleep(0.2)
print("alternate:", bodies("p.ae.q"))

# Validation texts.
for definition in ('{"max-length": "ten"}', '{"foo": 1, "max-length": -1}', '{"foo": "bar"}',
                   '{"ha-mode": "all"}', '{}', '{"expires": 0}', '{"overflow": "sometimes"}'):
    print("bad", definition, "->", policy("bad", ".*", definition))
print("bad apply-to ->", policy("bad", ".*", '{"max-length": 1}', "--apply-to", "everything"))
print("clear missing ->", run("clear_policy", "no-such-policy"))

for q in QUEUES:
    ch.queue_delete(q)
for name in ("trim", "min", "dl", "over", "skip", "fallback", "user", "ttl", "ae", "bad"):
    run("clear_policy", name)
run("clear_operator_policy", "cap")
conn.close()
