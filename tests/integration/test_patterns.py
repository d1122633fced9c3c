"""Every program in clients/ run as its own process against a real broker."""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.support import WAIT_S, Broker, Process, client_program


@pytest.fixture
def run(broker: Broker):
    started: list[Process] = []

    def _run(name: str, *args: str) -> Process:
        proc = client_program(name, *args, port=broker.port)
        started.append(proc)
        return proc

    yield _run
    for proc in started:
        proc.kill()


def first_to_print(procs: list[Process], pattern: str, timeout: float = WAIT_S) -> Process:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.output.count(pattern):
                return proc
        time.sleep(0.02)  # polling output already being read, not waiting for start-up
    raise AssertionError(f"no process printed {pattern!r}")


def finish(proc: Process) -> None:
    assert proc.wait(30) == 0, proc.output.lines


def test_hello_world(run) -> None:
    receiver = run("receive.py")
    receiver.wait_for(r"Waiting for messages")
    sender = run("send.py")
    finish(sender)
    assert sender.output.count(r"\[x\] Sent 'Hello World!'") == 1
    receiver.wait_for(r"\[x\] Received Hello World!")


def test_work_queue_fair_dispatch_and_killed_worker_redelivery(run) -> None:
    worker_a = run("worker.py")
    worker_b = run("worker.py")
    worker_a.wait_for(r"Waiting for messages")
    worker_b.wait_for(r"Waiting for messages")
    # A long task goes to one worker; with prefetch 1 the short ones go to the other.
    finish(run("new_task.py", "long" + "." * 60))  # a minute of work: busy until killed, however slow the spawns
    for i in range(4):
        finish(run("new_task.py", f"short{i}"))
    busy = first_to_print([worker_a, worker_b], r"Received long")
    idle = worker_b if busy is worker_a else worker_a
    for i in range(4):
        idle.wait_for(rf"Received short{i}")
    assert busy.output.count("short") == 0, "fair dispatch: the busy worker got no short task"
    # Kill the busy worker mid-task: the unacked task goes to the other one.
    busy.kill()
    idle.wait_for(r"Received long")


def test_publish_subscribe_fanout(run) -> None:
    subscribers = [run("receive_logs.py") for _ in range(2)]
    for s in subscribers:
        s.wait_for(r"Waiting for logs")
    finish(run("emit_log.py", "info:", "disk", "almost", "full"))
    for s in subscribers:
        s.wait_for(r"\[x\] info: disk almost full")


def test_routing_direct(run) -> None:
    errors_only = run("receive_logs_direct.py", "error")
    everything = run("receive_logs_direct.py", "info", "warning", "error")
    errors_only.wait_for(r"Waiting for logs")
    everything.wait_for(r"Waiting for logs")
    finish(run("emit_log_direct.py", "info", "routine"))
    finish(run("emit_log_direct.py", "error", "disk", "failed"))
    everything.wait_for(r"info:routine")
    everything.wait_for(r"error:disk failed")
    errors_only.wait_for(r"error:disk failed")
    assert errors_only.output.count("routine") == 0


def test_topics(run) -> None:
    kern = run("receive_logs_topic.py", "kern.*")
    critical = run("receive_logs_topic.py", "*.critical")
    everything = run("receive_logs_topic.py", "#")
    for r in (kern, critical, everything):
        r.wait_for(r"Waiting for logs")
    finish(run("emit_log_topic.py", "kern.critical", "A critical kernel error"))
    finish(run("emit_log_topic.py", "cron.info", "tick"))
    finish(run("emit_log_topic.py", "kern.disk.info", "too deep for kern.*"))
    kern.wait_for(r"kern.critical:A critical kernel error")
    critical.wait_for(r"kern.critical:A critical kernel error")
    everything.wait_for(r"cron.info:tick")
    everything.wait_for(r"kern.disk.info")
    assert critical.output.count("tick") == 0
    assert kern.output.count("too deep") == 0


def test_rpc(run) -> None:
    server = run("rpc_server.py")
    server.wait_for(r"Awaiting RPC requests")
    client = run("rpc_client.py", "10")
    finish(client)
    assert client.output.count(r"\[\.\] Got 55") == 1
    server.wait_for(r"fib\(10\)")


def test_retry_with_delay_through_dead_lettering(run) -> None:
    """A failing job is retried after the delay queue's TTL, then parked; a good one is
    done at once. The delay is real time through the broker's timers."""
    worker = run("retry_worker.py", "300")
    worker.wait_for(r"Waiting for jobs")
    finish(run("retry_send.py", "fail on purpose"))
    worker.wait_for(r"Failed fail on purpose \(attempt 1\)")
    started = time.monotonic()
    finish(run("retry_send.py", "resize image 7"))
    worker.wait_for(r"Done resize image 7 \(attempt 1\)")
    worker.wait_for(r"Parked fail on purpose after 3 attempts")
    waited = time.monotonic() - started
    assert worker.output.count(r"Failed fail on purpose \(attempt 2\)") == 1
    # (the clock starts when the first failure is read, a little after the reject)
    assert 0.4 <= waited < 15.0, f"two retries 300 ms apart took {waited:.2f} s"  # (not stuck; spawns are slow)


def test_every_client_program_is_exercised() -> None:
    from tests.support import CLIENTS
    tests = Path(__file__).resolve().parent.parent
    source = "".join(path.read_text() for path in tests.rglob("*.py"))  # (chaos.py runs the robust ones)
    for program in CLIENTS.glob("*.py"):
        assert re.search(rf'"{program.name}"', source), f"{program.name} has no test"
