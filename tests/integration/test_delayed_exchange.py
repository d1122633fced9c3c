"""The x-delayed-message exchange against a real broker process: a persistent delayed
message on a durable exchange survives SIGKILL and arrives after its delay, a transient one
does not; a mandatory delayed publish comes back at once and still arrives (RabbitMQ's
plugin), over both wires. Every wait is for an event, with a deadline."""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator

import pytest

from tests.support import Broker, pump_until

DELAY_MS = 4000


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="zbroker-delayed-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def declare(ch: Any) -> None:
    ch.exchange_declare("later", "x-delayed-message", durable=True, arguments={"x-delayed-type": "direct"})
    ch.queue_declare("due", durable=True)
    ch.queue_bind("due", "later", "k")


def test_a_persistent_delayed_message_survives_sigkill_and_arrives_after_its_delay(data_dir: Path) -> None:
    pika = pytest.importorskip("pika")
    broker = Broker(data_dir=data_dir)
    try:
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.amqp_port))
        ch = conn.channel()
        declare(ch)
        ch.confirm_delivery()
        published_at = time.time()
        ch.basic_publish("later", "k", b"transient", pika.BasicProperties(headers={"x-delay": DELAY_MS // 2}))
        ch.basic_publish("later", "k", b"persistent", pika.BasicProperties(headers={"x-delay": DELAY_MS},
                                                                           delivery_mode=2))
        # Both confirmed: the persistent one is on disk. Killed before either is due.
        assert ch.queue_declare("due", durable=True, passive=True).method.message_count == 0
        broker.kill()
        broker = Broker(data_dir=data_dir)
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.amqp_port))
        ch = conn.channel()
        got: list[tuple[bytes, float, dict]] = []
        ch.basic_consume("due", lambda c, m, p, body: got.append((body, time.time(), p.headers)), auto_ack=True)
        pump_until(conn, lambda: bool(got), timeout=DELAY_MS / 1000 + 30)
        body, arrived_at, headers = got[0]
        assert body == b"persistent" and arrived_at >= published_at + DELAY_MS / 1000
        assert headers == {"x-delay": DELAY_MS}  # as published
        # The transient one, due first, was lost with the process.
        assert [b for b, _, _ in got] == [b"persistent"]
        assert ch.queue_declare("due", durable=True, passive=True).method.message_count == 0
        conn.close()
    finally:
        broker.stop()


def test_a_mandatory_delayed_publish_comes_back_at_once_and_still_arrives(
        connect: Callable[..., Any], pika: ModuleType, wire: str) -> None:
    conn = connect()
    ch = conn.channel()
    ch.exchange_declare("later", "x-delayed-message", arguments={"x-delayed-type": "fanout"})
    ch.queue_declare("due")
    ch.queue_bind("due", "later")
    returned: list[tuple[int, str]] = []
    ch.add_on_return_callback(lambda c, method, p, body: returned.append((method.reply_code, method.reply_text)))
    ch.basic_publish("later", "", b"m", pika.BasicProperties(headers={"x-delay": 300}), mandatory=True)
    pump_until(conn, lambda: bool(returned))
    assert returned == [(312, "NO_ROUTE")]
    got: list[bytes] = []
    ch.basic_consume("due", lambda c, m, p, body: got.append(body), auto_ack=True)
    pump_until(conn, lambda: bool(got))
    assert got == [b"m"]
