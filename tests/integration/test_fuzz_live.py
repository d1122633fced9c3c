"""The frame fuzzer against a live broker over real sockets, while a well-behaved client
publishes and consumes beside the bad peers: the broker never crashes or logs a bug, the
good client sees no error and loses nothing. ``bin/fuzz live N`` is the long run."""
from __future__ import annotations

import os

from tests.fuzz import run_live
from tests.support import Broker, python_snippet

GOOD_CLIENT = """
import zbroker.client as pika
conn = pika.BlockingConnection(pika.ConnectionParameters(port={port}))
ch = conn.channel()
ch.queue_declare("good-only")
ch.confirm_delivery()
cons = pika.BlockingConnection(pika.ConnectionParameters(port={port})).channel()
cons.basic_qos(prefetch_count=50)
print("ready", flush=True)
expect = 0
for i in range({count}):
    ch.basic_publish("", "good-only", b"%06d" % i)
    if i % 100 == 99:
        for method, _, body in cons.consume("good-only", inactivity_timeout=10):
            assert method is not None, "the good client stalled"
            assert int(body) == expect, (body, expect)
            cons.basic_ack(method.delivery_tag)
            expect += 1
            if expect == i + 1:
                break
cons.cancel()
print("ok", expect, flush=True)
"""


def test_fuzzed_peers_beside_a_good_client(broker: Broker) -> None:
    count = int(os.environ.get("ZBROKER_FUZZ_LIVE", "20000"))
    good_count = max(3000, count // 700 * 100)  # the good client works throughout
    good = python_snippet(GOOD_CLIENT.format(port=broker.port, count=good_count), broker.port)
    good.wait_for("ready", 20)
    answers = run_live(broker.endpoint, count, seed=int(os.environ.get("ZBROKER_FUZZ_SEED", "3")))
    print(f"\nlive fuzz: {answers}")
    good.wait_for(f"ok {good_count}", 600)
    assert good.wait(30) == 0
    assert answers["closed"] > 0 and answers["replies"] > 0  # the bad peers did get errors
    log = broker.log()
    assert "internal error" not in log and "Traceback" not in log


GOOD_AMQP_CLIENT = """
import pika
params = pika.ConnectionParameters("127.0.0.1", {port})
ch = pika.BlockingConnection(params).channel()
ch.queue_declare("good-amqp")
ch.confirm_delivery()
cons = pika.BlockingConnection(params).channel()
cons.basic_qos(prefetch_count=50)
print("ready", flush=True)
expect = 0
for i in range({count}):
    ch.basic_publish("", "good-amqp", b"%06d" % i)
    if i % 100 == 99:
        for method, _, body in cons.consume("good-amqp", inactivity_timeout=10):
            assert method is not None, "the good client stalled"
            assert int(body) == expect, (body, expect)
            cons.basic_ack(method.delivery_tag)
            expect += 1
            if expect == i + 1:
                break
cons.cancel()
print("ok", expect, flush=True)
"""


def test_fuzzed_amqp_peers_beside_a_good_pika_client(broker: Broker) -> None:
    from tests.fuzz_amqp import run_live as run_live_amqp

    count = int(os.environ.get("ZBROKER_FUZZ_LIVE", "20000"))
    good_count = max(3000, count // 700 * 100)
    good = python_snippet(GOOD_AMQP_CLIENT.format(port=broker.amqp_port, count=good_count), broker.port)
    good.wait_for("ready", 20)
    answers = run_live_amqp(broker.amqp_port, count, seed=int(os.environ.get("ZBROKER_FUZZ_SEED", "3")))
    print(f"\nlive AMQP fuzz: {answers}")
    good.wait_for(f"ok {good_count}", 600)
    assert good.wait(30) == 0
    assert answers["closed"] > 0 and answers["replied_bytes"] > 0  # the bad peers did get errors
    log = broker.log()
    assert "internal error" not in log and "Traceback" not in log
