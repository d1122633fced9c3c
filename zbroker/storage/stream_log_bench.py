"""Soak the stream log: append N messages in chunks, then read them all from the first.

    python -m zbroker.storage.stream_log_bench --messages 10000000 --size 100

Prints the append rate (with one ``sync`` per ``--sync-every`` chunks, as the broker
syncs once per loop pass), the process RSS and its peak (``VmRSS``/``VmHWM``: the
index must not grow with messages), the disk bytes, the time to open it again, and
the read rate from the first offset. The stream is
written under ``--dir`` (a fresh temporary directory by default) and deleted after.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

from zbroker.storage.stream_log import MAX_SEGMENT_BYTES, StreamLog


def _rss_mib() -> tuple[float, float]:
    """(current, peak) resident set of this process, MiB."""
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, kib = line.split()[:2]
                values[key] = int(kib) / 1024
    return values["VmRSS:"], values["VmHWM:"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000_000)
    parser.add_argument("--size", type=int, default=100, help="bytes a message")
    parser.add_argument("--chunk", type=int, default=1000, help="messages an append")
    parser.add_argument("--sync-every", type=int, default=1, help="chunks between syncs")
    parser.add_argument("--read-batch", type=int, default=1000, help="max_entries a read")
    parser.add_argument("--segment-bytes", type=int, default=MAX_SEGMENT_BYTES)
    parser.add_argument("--dir", default=None, help="parent directory (default: a temporary one)")
    args = parser.parse_args(argv)

    parent = tempfile.mkdtemp(prefix="stream-log-bench-", dir=args.dir)
    stream = StreamLog.open(os.path.join(parent, "stream"), max_segment_bytes=args.segment_bytes)
    batch = [(os.urandom(args.size), None) for _ in range(args.chunk)]
    print(f"start: RSS {_rss_mib()[0]:.1f} MiB", flush=True)
    started = time.perf_counter()
    report_every = max(1, args.messages // 10)
    appended, chunks = 0, 0
    while appended < args.messages:
        entries = batch if args.messages - appended >= args.chunk else batch[:args.messages - appended]
        stream.append(entries, int(time.time() * 1000))
        appended += len(entries)
        chunks += 1
        if chunks % args.sync_every == 0:
            stream.sync()
        if appended % report_every < len(entries):
            rss, peak = _rss_mib()
            print(f"  appended {appended:,}: {appended / (time.perf_counter() - started):,.0f} msg/s, "
                  f"RSS {rss:.1f} MiB (peak {peak:.1f}), {stream.segment_count} segment(s)", flush=True)
    stream.sync()
    elapsed = time.perf_counter() - started
    rss, peak = _rss_mib()
    print(f"append: {appended:,} x {args.size} B in {elapsed:.1f} s = {appended / elapsed:,.0f} msg/s "
          f"({appended * args.size / elapsed / 2**20:,.1f} MiB/s payload); {stream.bytes / 2**20:,.0f} MiB "
          f"on disk in {stream.segment_count} segment(s); RSS {rss:.1f} MiB, peak {peak:.1f} MiB", flush=True)

    stream.close()  # a clean stop, then open as a restarted broker would
    started = time.perf_counter()
    stream = StreamLog.open(os.path.join(parent, "stream"), max_segment_bytes=args.segment_bytes)
    print(f"reopen: {time.perf_counter() - started:.3f} s for {stream.segment_count} segment(s), "
          f"offsets {stream.first_offset:,}..{stream.next_offset:,}", flush=True)
    reader = stream.reader(stream.first_offset)
    started = time.perf_counter()
    read, expected = 0, stream.first_offset
    while True:
        got = reader.read(args.read_batch)
        if not got:
            break
        if got[0][0] != expected:
            raise SystemExit(f"read offset {got[0][0]}, expected {expected}")
        expected = got[-1][0] + 1
        read += len(got)
    elapsed = time.perf_counter() - started
    rss, peak = _rss_mib()
    print(f"read: {read:,} in {elapsed:.1f} s = {read / elapsed:,.0f} msg/s; RSS {rss:.1f} MiB, "
          f"peak {peak:.1f} MiB", flush=True)
    if read != appended:
        raise SystemExit(f"read {read} of {appended}")
    stream.delete()
    os.rmdir(parent)


if __name__ == "__main__":
    main()
