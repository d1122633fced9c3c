"""Resource alarms end to end: a real broker blocks publishers when memory or disk runs
low, consumers drain, the publishers resume, and nothing is lost or duplicated."""
from __future__ import annotations

import os
import sys
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import zbroker.client as pika
from zbroker.client import exceptions
from tests.support import Broker, pump_until, python_snippet

PUBLISHER = """
import sys, zbroker.client as pika
count, size, persistent = {count}, {size}, {persistent}
conn = pika.BlockingConnection(pika.ConnectionParameters(port={port}))
conn.add_on_connection_blocked_callback(lambda c, f: print("blocked", f.method.reason, flush=True))
conn.add_on_connection_unblocked_callback(lambda c, f: print("unblocked", flush=True))
ch = conn.channel()
ch.queue_declare("flood", durable=persistent)
if persistent:
    ch.confirm_delivery()
props = pika.BasicProperties(delivery_mode=2 if persistent else 1)
pad = b"." * size
for i in range(count):
    ch.basic_publish("", "flood", b"%08d" % i + pad, props)
    if i % 500 == 0:
        conn.process_data_events(0)  # blocked/unblocked callbacks run here
        print("sent", i, flush=True)
conn.process_data_events(0)
print("done", flush=True)
conn.close()
"""


def drain(conn: pika.BlockingConnection, queue: str, expect: int, timeout: float = 60.0) -> list[int]:
    """Consume ``expect`` messages (auto-ack); returns their sequence numbers."""
    ch = conn.channel()
    seen: list[int] = []
    deadline = time.monotonic() + timeout
    for method, _, body in ch.consume(queue, auto_ack=True, inactivity_timeout=1.0):
        if method is not None:
            seen.append(int(body[:8]))
        if len(seen) >= expect or time.monotonic() > deadline:
            break
    ch.cancel()
    return seen


def test_memory_alarm_blocks_the_publisher_until_a_consumer_drains() -> None:
    broker = Broker("--memory-limit", "110MiB", in_memory=True)
    count = 60_000
    pub = python_snippet(PUBLISHER.format(count=count, size=2048, persistent=False, port=broker.port), broker.port)
    try:
        # Blocked inside basic_publish or between publishes: the client logs it at once;
        # the callback runs at its next process_data_events, as in pika.
        pub.wait_for("connection blocked by the broker: low on memory", 60)
        broker.wait_for(r"memory alarm set \(resident [\d.]+ MiB, limit 110.0 MiB\)")
        time.sleep(0.5)
        if pub.popen.poll() is not None:  # blocked, not failed: if it ended, say how
            pub.output.wait_closed()
            raise AssertionError(f"the publisher ended ({pub.popen.returncode}): {pub.output.lines[-30:]}")
        with pika.BlockingConnection(pika.ConnectionParameters(port=broker.port)) as conn:
            seen = drain(conn, "flood", count, timeout=120)
        pub.wait_for("blocked low on memory", 30)
        pub.wait_for("unblocked", 30)
        pub.wait_for("done", 60)
        assert pub.wait(30) == 0
        assert seen == list(range(count))  # every message, once, in order
    finally:
        pub.kill()
        broker.stop()
    broker.wait_for("memory alarm cleared")
    assert "Traceback" not in broker.log()


def test_blocked_connection_timeout_raises_and_management_goes_on() -> None:
    broker = Broker("--memory-limit", "0")  # RabbitMQ's meaning: block every publisher
    try:
        params = pika.ConnectionParameters(port=broker.port, blocked_connection_timeout=0.5)
        conn = pika.BlockingConnection(params)
        calls = []
        conn.add_on_connection_blocked_callback(lambda c, f: calls.append((c, f)))
        ch = conn.channel()
        ch.queue_declare("q")
        ch.basic_publish("", "q", b"accepted: it was in flight")
        pump_until(conn, lambda: bool(calls))
        assert len(calls) == 1 and calls[0][0] is conn
        assert calls[0][1].method.NAME == "Connection.Blocked"
        assert calls[0][1].method.reason == "low on memory"
        started = time.monotonic()
        with pytest.raises(exceptions.ConnectionBlockedTimeout):
            ch.basic_publish("", "q", b"waits, then the timeout")
        assert time.monotonic() - started < 5.0  # the 0.5 s timeout, with slack for a loaded machine
        assert conn.is_closed
        with pika.BlockingConnection(pika.ConnectionParameters(port=broker.port)) as other:
            och = other.channel()
            assert och.queue_declare("q", passive=True).method.message_count == 1
            method, _, body = och.basic_get("q", auto_ack=True)
            assert body == b"accepted: it was in flight"
    finally:
        broker.stop()


@pytest.fixture
def small_disk():
    """A 40 MiB tmpfs of the test's own (the test runs as root, as CI does)."""
    path = Path(tempfile.mkdtemp(prefix="zbroker-disk-"))
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(path)]).returncode != 0:
        pytest.fail("cannot mount a tmpfs (the disk-alarm test needs root or CAP_SYS_ADMIN)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)])
        os.rmdir(path)


def test_disk_alarm_blocks_before_writes_fail_and_nothing_confirmed_is_lost(small_disk: Path) -> None:
    data = small_disk / "data"
    broker = Broker("--disk-free-limit", "20MiB", data_dir=data)
    count = 3000
    filler = small_disk / "filler"
    pub = None
    try:
        pub = python_snippet(PUBLISHER.format(count=count, size=1024, persistent=True, port=broker.port),
                             broker.port)
        pub.wait_for("sent 500", 30)
        # Leave ~12 MiB free: under the limit, far from full.
        free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
        with open(filler, "wb") as f:
            f.write(b"\0" * (free - 12 * 1024 * 1024))
        # Waiting inside basic_publish (for its confirm): the client logs it; callbacks run
        # at its next process_data_events, as in pika.
        pub.wait_for("connection blocked by the broker: low on disk", 30)
        broker.wait_for(r"disk alarm set \(free [\d.]+ MiB, limit 20.0 MiB\)")
        filler.unlink()
        pub.wait_for("blocked low on disk", 30)
        pub.wait_for("unblocked", 30)
        pub.wait_for("done", 60)
        assert pub.wait(30) == 0
    finally:
        if pub is not None:
            pub.kill()
        assert broker.stop() == 0
    log = broker.log()
    assert "Traceback" not in log and "No space left" not in log
    # Every confirmed message survives a restart, once and in order.
    again = Broker(data_dir=data)
    try:
        with pika.BlockingConnection(pika.ConnectionParameters(port=again.port)) as conn:
            assert drain(conn, "flood", count) == list(range(count))
    finally:
        again.stop()


def test_a_transient_backlog_is_paged_to_disk_and_the_broker_stays_small() -> None:
    """300,000 transient 1 KiB messages (300 MB of bodies) into a queue nobody reads: the
    broker pages them to its data directory and stays under 150 MiB, with no alarm; then
    every message is drained once and in order. (Before paging, 400,000 x 2 KiB took the
    broker to 955 MiB.)"""
    broker = Broker("--memory-limit", "150MiB")
    count = 300_000
    pub = python_snippet(PUBLISHER.format(count=count, size=1024, persistent=False, port=broker.port), broker.port)
    peak = 0.0
    try:
        while pub.popen.poll() is None:
            with open(f"/proc/{broker.pid}/status") as f:
                rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024
            peak = max(peak, rss)
            time.sleep(0.2)
        assert pub.wait(5) == 0
        print(f"\nbroker peak RSS with {count:,} x 1 KiB queued: {peak:.0f} MiB")
        assert peak < 150
        with pika.BlockingConnection(pika.ConnectionParameters(port=broker.port)) as conn:
            assert drain(conn, "flood", count, timeout=120) == list(range(count))
    finally:
        pub.kill()
        broker.stop()
        broker.remove_data()
    assert "alarm set" not in broker.log()


def test_a_disk_limit_with_no_disk_is_refused_not_ignored() -> None:
    out = subprocess.run([sys.executable, "-m", "zbroker", "serve", "--in-memory", "--disk-free-limit", "1GB"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert "--disk-free-limit has no meaning with --in-memory" in out.stderr
    assert "Traceback" not in out.stderr
