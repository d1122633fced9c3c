"""The frame fuzzer against a live broker over real sockets, while a well-behaved client
publishes and consumes beside the bad peers: the broker never crashes or logs a bug, the
good client sees no error and loses nothing. ``bin/fuzz live N`` is the long run."""
from __future__ import annotations

import os

from tests.fuzz import run_live
from tests.support import Broker, python_snippet

#: The well-behaved client's program, after a head that imports ``pika`` (zbroker's
#: client or real pika) and sets ``params`` for the wire under test.
GOOD_CLIENT = """
conn = pika.BlockingConnection(params)
ch = conn.channel()
ch.queue_declare("{queue}")
ch.confirm_delivery()
cons = pika.BlockingConnection(params).channel()
cons.basic_qos(prefetch_count=50)
print("ready", flush=True)
expect = 0
for i in range({count}):
    ch.basic_publish("", "{queue}", b"%06d" % i)
    if i % 100 == 99:
        for method, _, body in cons.consume("{queue}", inactivity_timeout=10):
            assert method is not None, "the good client stalled"
            assert int(body) == expect, (body, expect)
            cons.basic_ack(method.delivery_tag)
            expect += 1
            if expect == i + 1:
                break
cons.cancel()
print("ok", expect, flush=True)
"""
ZBROKER_HEAD = "import zbroker.client as pika\nparams = pika.ConnectionParameters(port={port})\n"
PIKA_HEAD = "import pika\nparams = pika.ConnectionParameters('127.0.0.1', {port})\n"


def good_client(broker: Broker, head: str, port: int, queue: str, count: int):  # noqa: ANN201
    """Start the good client; it publishes ``count`` confirmed messages and consumes them."""
    code = head.format(port=port) + GOOD_CLIENT.format(queue=queue, count=count)
    good = python_snippet(code, broker.port)
    good.wait_for("ready", 20)
    return good


def good_count(count: int) -> int:
    return max(3000, count // 700 * 100)  # the good client works throughout


def test_fuzzed_peers_beside_a_good_client(broker: Broker) -> None:
    count = int(os.environ.get("ZBROKER_FUZZ_LIVE", "20000"))
    good = good_client(broker, ZBROKER_HEAD, broker.port, "good-only", good_count(count))
    answers = run_live(broker.endpoint, count, seed=int(os.environ.get("ZBROKER_FUZZ_SEED", "3")))
    print(f"\nlive fuzz: {answers}")
    good.wait_for(f"ok {good_count(count)}", 600)
    assert good.wait(30) == 0
    assert answers["closed"] > 0 and answers["replies"] > 0  # the bad peers did get errors
    log = broker.log()
    assert "internal error" not in log and "Traceback" not in log


def test_fuzzed_amqp_peers_beside_a_good_pika_client(broker: Broker) -> None:
    from tests.fuzz_amqp import run_live as run_live_amqp

    count = int(os.environ.get("ZBROKER_FUZZ_LIVE", "20000"))
    good = good_client(broker, PIKA_HEAD, broker.amqp_port, "good-amqp", good_count(count))
    answers = run_live_amqp(broker.amqp_port, count, seed=int(os.environ.get("ZBROKER_FUZZ_SEED", "3")))
    print(f"\nlive AMQP fuzz: {answers}")
    good.wait_for(f"ok {good_count(count)}", 600)
    assert good.wait(30) == 0
    assert answers["closed"] > 0 and answers["replied_bytes"] > 0  # the bad peers did get errors
    log = broker.log()
    assert "internal error" not in log and "Traceback" not in log
