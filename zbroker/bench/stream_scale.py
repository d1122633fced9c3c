"""A stream at scale, through a real broker: N stored messages, the broker's memory holding
them, and one consumer reading them all from the first on the zbroker wire.

    python -m zbroker.bench.stream_scale --messages 100000000 --size 100 [--read 10000000]

Steps, each timed and printed:
1. ``zbroker serve`` on a fresh data directory; a stream is declared; the broker stops.
2. The stream's log (``<data dir>/streams/<id>``) is filled offline with N messages of
   ``--size`` bytes, in the broker's own entry format, 1,000 to a chunk (filling
   through the broker would take hours at 100,000,000).
3. ``zbroker serve`` starts again on it: its RSS (``VmRSS``) once ready, with the stream
   recovered (the goal: at most 64 MiB at 100,000,000 messages of 100 B).
4. A ``zbroker.client`` consumer (prefetch 1,000, an ack with multiple every 500) reads
   ``--read`` messages (all by default) from ``x-stream-offset: first``: the rate, the
   broker's CPU in cores, and the broker's peak RSS (``VmHWM``) afterwards.
The data directory is deleted at the end (``--keep`` keeps it).
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from zbroker.protocol import stream_entries
from zbroker.storage.stream_codec import STREAMS_DIR
from zbroker.storage.stream_log import StreamLog

READY = re.compile(r"ready on tcp://[^:]+:(\d+)")
CHUNK = 1000
PREFETCH = 1000


def serve(data_dir: Path | None) -> tuple[subprocess.Popen, int]:
    """``zbroker serve`` on ``data_dir`` (None: ``--in-memory``) and a free port, ready."""
    store = ["--in-memory"] if data_dir is None else ["--data-dir", str(data_dir)]
    proc = subprocess.Popen([sys.executable, "-m", "zbroker", "serve", "--bind", "tcp://127.0.0.1:0", *store,
                             "--log-level", "warning"], stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    found = READY.search(line)
    if found is None:
        proc.kill()
        raise SystemExit(f"zbroker serve did not start: {line.strip()}")
    return proc, int(found.group(1))


def memory_mib(pid: int, key: str) -> float:
    """``VmRSS`` or ``VmHWM`` of ``pid``, MiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(key)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, clock ticks (USER_HZ 100)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _declare(port: int, name: str) -> None:
    import zbroker.client as pika
    connection = pika.BlockingConnection(pika.URLParameters(f"tcp://127.0.0.1:{port}"))
    connection.channel().queue_declare(name, durable=True, arguments={"x-queue-type": "stream"})
    connection.close()


def _fill(data_dir: Path, messages: int, size: int) -> float:
    """Step 2; returns the seconds it took."""
    (directory,) = (data_dir / STREAMS_DIR).iterdir()
    entry = stream_entries.encode("", "scale", {"delivery_mode": 2}, time.time(), b"x" * size)
    log = StreamLog.open(directory)
    started = time.perf_counter()
    chunk = [(entry, None)] * CHUNK
    for first in range(0, messages, CHUNK):
        count = min(CHUNK, messages - first)
        log.append(chunk if count == CHUNK else chunk[:count], int(time.time() * 1000))
    log.close()
    return time.perf_counter() - started


def _read(port: int, name: str, count: int) -> float:
    """Step 4's consumer; returns the seconds from consume to the last message."""
    import zbroker.client as pika
    connection = pika.BlockingConnection(pika.URLParameters(f"tcp://127.0.0.1:{port}"))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=PREFETCH)
    seen = [0]

    def on_message(ch: object, method: object, properties: object, body: bytes) -> None:
        seen[0] += 1
        if seen[0] % (PREFETCH // 2) == 0 or seen[0] == count:
            channel.basic_ack(method.delivery_tag, multiple=True)  # type: ignore[attr-defined]
        if seen[0] == count:
            channel.stop_consuming()

    channel.basic_consume(name, on_message, arguments={"x-stream-offset": "first"})
    started = time.perf_counter()
    channel.start_consuming()
    elapsed = time.perf_counter() - started
    connection.close()
    return elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000_000)
    parser.add_argument("--size", type=int, default=100, help="bytes a message")
    parser.add_argument("--read", type=int, default=None, help="messages to read (default: all)")
    parser.add_argument("--dir", default=None, help="parent directory (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    args = parser.parse_args(argv)
    data_dir = Path(tempfile.mkdtemp(prefix="zbroker-stream-scale-", dir=args.dir))
    name = "scale"
    try:
        proc, port = serve(data_dir)
        _declare(port, name)
        stop(proc)
        seconds = _fill(data_dir, args.messages, args.size)
        print(f"filled {args.messages:,} messages of {args.size} B offline in {seconds:.1f} s "
              f"({args.messages / seconds:,.0f} msgs/s)", flush=True)
        started = time.perf_counter()
        proc, port = serve(data_dir)
        print(f"broker ready in {time.perf_counter() - started:.1f} s with the stream recovered; "
              f"RSS {memory_mib(proc.pid, 'VmRSS'):.1f} MiB", flush=True)
        count = args.messages if args.read is None else min(args.read, args.messages)
        cpu = cpu_seconds(proc.pid)
        elapsed = _read(port, name, count)
        cores = (cpu_seconds(proc.pid) - cpu) / elapsed
        print(f"read {count:,} from first on the zbroker wire in {elapsed:.1f} s: {count / elapsed:,.0f} msgs/s, "
              f"broker {cores:.2f} cores, broker peak RSS {memory_mib(proc.pid, 'VmHWM'):.1f} MiB", flush=True)
        stop(proc)
    finally:
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
