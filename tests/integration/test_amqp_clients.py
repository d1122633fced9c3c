"""Unmodified AMQP client libraries against zbroker's AMQP 0-9-1 listener, each in its own
process: Celery (with the rpc:// result backend, and acks_late surviving a SIGKILLed
worker), kombu with a topic exchange, aio-pika with confirms and RPC, Dramatiq, py-amqp."""
from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.support import Broker, Process, child_env


def run(code: str, cwd: Path) -> Process:
    return Process([sys.executable, "-c", textwrap.dedent(code)], child_env(), cwd=cwd)


CELERY_APP = """
import os, time
from celery import Celery
app = Celery("tasks", broker=f"amqp://guest:guest@127.0.0.1:{os.environ['AMQP_PORT']}//", backend="rpc://")
app.conf.update(task_acks_late=True, worker_prefetch_multiplier=1, broker_connection_retry_on_startup=True,
                worker_hijack_root_logger=False, worker_redirect_stdouts=False)

@app.task
def add(x, y):
    return x + y

@app.task
def slow(tag):
    marker = os.path.join(os.environ["MARKS"], tag)
    first = not os.path.exists(marker)
    open(marker, "a").write(f"{os.getpid()}\\n")
    print(f"running {tag} {'first' if first else 'again'}", flush=True)
    if first:
        time.sleep(60)  # killed before it ends
    return f"done {tag} by {os.getpid()}"
"""


def celery_worker(tmp_path: Path, port: int, name: str) -> Process:
    env = child_env()
    env.update(AMQP_PORT=str(port), MARKS=str(tmp_path), PYTHONPATH=f"{tmp_path}:{env['PYTHONPATH']}")
    return Process([sys.executable, "-m", "celery", "-A", "tasks", "worker", "--pool=solo", "-n", name,
                    "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "info"], env, cwd=tmp_path)


def test_celery_runs_tasks_and_a_killed_acks_late_task_runs_again_elsewhere(broker: Broker, tmp_path: Path) -> None:
    pytest.importorskip("celery")
    (tmp_path / "tasks.py").write_text(CELERY_APP)
    first = celery_worker(tmp_path, broker.amqp_port, "w1@test")
    first.wait_for("ready", timeout=30)
    env = child_env()
    env.update(AMQP_PORT=str(broker.amqp_port), MARKS=str(tmp_path), PYTHONPATH=f"{tmp_path}:{env['PYTHONPATH']}")
    client = Process([sys.executable, "-c", textwrap.dedent("""
        from tasks import add, slow
        print("sum", add.delay(2, 3).get(timeout=30), flush=True)
        print("sums", [r.get(timeout=30) for r in [add.delay(i, i) for i in range(10)]], flush=True)
        print("slow", slow.delay("job").get(timeout=60), flush=True)
    """)], env, cwd=tmp_path)
    client.wait_for(r"sum 5", timeout=30)
    client.wait_for(r"sums \[0, 2, 4, 6, 8, 10, 12, 14, 16, 18\]", timeout=30)
    first.wait_for("running job first", timeout=30)
    first.kill()  # SIGKILL mid-task: acks_late left it unacked
    second = celery_worker(tmp_path, broker.amqp_port, "w2@test")
    try:
        second.wait_for("running job again", timeout=30)
        m = client.wait_for(r"slow done job by (\d+)", timeout=30)
        assert int(m.group(1)) == second.pid
        assert client.wait(30) == 0
    finally:
        second.stop()
        client.kill()


def test_kombu_topic_exchange_producer_and_consumer(broker: Broker, tmp_path: Path) -> None:
    pytest.importorskip("kombu")
    proc = run(f"""
        from kombu import Connection, Exchange, Queue, Producer, Consumer
        news = Exchange("news", type="topic")
        sport = Queue("sport", news, routing_key="sport.#")
        with Connection("pyamqp://guest:guest@127.0.0.1:{broker.amqp_port}//") as conn:
            with conn.channel() as ch:
                sport(ch).declare()
                producer = Producer(ch, exchange=news, serializer="json")
                for key, n in (("sport.football", 1), ("weather.rain", 2), ("sport.chess.blitz", 3)):
                    producer.publish({{"n": n}}, routing_key=key)
                got = []
                def on_message(body, message):
                    got.append((message.delivery_info["routing_key"], body["n"]))
                    message.ack()
                with Consumer(ch, queues=[sport], callbacks=[on_message]):
                    while len(got) < 2:
                        conn.drain_events(timeout=10)
                print("kombu", got, flush=True)
    """, tmp_path)
    proc.wait_for(r"kombu \[\('sport.football', 1\), \('sport.chess.blitz', 3\)\]", timeout=30)
    assert proc.wait() == 0


def test_aio_pika_robust_connection_confirms_and_rpc(broker: Broker, tmp_path: Path) -> None:
    pytest.importorskip("aio_pika")
    proc = run(f"""
        import asyncio, aio_pika
        from aio_pika.patterns import RPC

        async def main():
            conn = await aio_pika.connect_robust("amqp://guest:guest@127.0.0.1:{broker.amqp_port}/")
            async with conn:
                ch = await conn.channel(publisher_confirms=True)
                queue = await ch.declare_queue("aio", durable=True)
                for i in range(20):
                    confirmation = await ch.default_exchange.publish(
                        aio_pika.Message(str(i).encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                         headers={{"i": i}}), routing_key="aio")
                    assert confirmation is not None
                got = []
                async with queue.iterator() as it:
                    async for message in it:
                        async with message.process():
                            got.append(message.headers["i"])
                        if len(got) == 20:
                            break
                print("consumed", got == list(range(20)), flush=True)
                rpc_channel = await conn.channel()
                rpc = await RPC.create(rpc_channel)
                async def multiply(*, x, y):
                    return x * y
                await rpc.register("multiply", multiply, auto_delete=True)
                print("rpc", await rpc.proxy.multiply(x=6, y=7), flush=True)
                # close() cancels the result consumer (the auto-delete result queue goes)
                # and then unbinds that queue: unbinding what is gone is unbind-ok.
                await rpc.close()
                print("rpc closed", flush=True)

        asyncio.run(main())
    """, tmp_path)
    proc.wait_for("consumed True", timeout=30)
    proc.wait_for("rpc 42", timeout=30)
    proc.wait_for("rpc closed", timeout=30)
    assert proc.wait() == 0


def test_dramatiq_worker_runs_the_actors_messages(broker: Broker, tmp_path: Path) -> None:
    pytest.importorskip("dramatiq")
    out = tmp_path / "out.txt"
    (tmp_path / "actors.py").write_text(textwrap.dedent(f"""
        import dramatiq
        from dramatiq.brokers.rabbitmq import RabbitmqBroker
        dramatiq.set_broker(RabbitmqBroker(url="amqp://guest:guest@127.0.0.1:{broker.amqp_port}/"))

        @dramatiq.actor(max_retries=0)
        def write(line):
            with open({str(out)!r}, "a") as f:
                f.write(line + "\\n")
    """))
    env = child_env()
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    sender = Process([sys.executable, "-c", "from actors import write\n"
                      "[write.send(f'line {i}') for i in range(10)]\nprint('sent', flush=True)"], env, cwd=tmp_path)
    sender.wait_for("sent", timeout=30)
    assert sender.wait() == 0
    worker = Process([sys.executable, "-m", "dramatiq", "actors", "--processes", "1", "--threads", "2"],
                     env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 10):
            time.sleep(0.1)
        assert sorted(out.read_text().splitlines()) == sorted(f"line {i}" for i in range(10))
    finally:
        worker.stop()


def test_py_amqp_publishes_gets_and_declares(broker: Broker, tmp_path: Path) -> None:
    pytest.importorskip("amqp")
    proc = run(f"""
        import amqp
        with amqp.Connection("127.0.0.1:{broker.amqp_port}") as conn:  # AMQPLAIN login
            ch = conn.channel()
            ch.queue_declare("py-amqp", auto_delete=False)
            ch.basic_publish(amqp.Message("hello", application_headers={{"n": 1}}, content_type="text/plain"),
                             routing_key="py-amqp")
            message = ch.basic_get("py-amqp", no_ack=True)
            print("got", message.body, message.headers, message.content_type, flush=True)
    """, tmp_path)
    proc.wait_for(r"got hello \{'n': 1\} text/plain", timeout=30)
    assert proc.wait() == 0
