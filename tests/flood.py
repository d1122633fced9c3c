"""Flood a real broker until its queue holds millions of messages, nobody consuming;
watch its resident memory; then drain and check every message arrived exactly once, in
order per publisher.

    python -m tests.flood --publishers 4 --size 100 --count 10000000 [--persistent]
                          [--memory-limit 1GiB] [--csv flood.csv] [--plot flood.png]

(``bin/flood`` runs it.) Phases: the publishers (separate processes, zbroker.client)
publish as fast as the broker's credit lets them; when all are done, or none has moved
for ``--stall`` seconds (an alarm blocks them), a consumer drains the queue, and blocked
publishers resume as memory comes back. A sample row per second: seconds, messages
queued (published minus consumed), broker RSS MiB, publishers blocked.
"""
from __future__ import annotations

import argparse
import csv
import sys
import threading
import time
from pathlib import Path

from tests.support import Broker, python_snippet

PUBLISHER = """
import zbroker.client as pika
me, count, size, persistent = {me}, {count}, {size}, {persistent}
conn = pika.BlockingConnection(pika.ConnectionParameters(port={port}))
conn.add_on_connection_blocked_callback(lambda c, f: print("blocked", flush=True))
conn.add_on_connection_unblocked_callback(lambda c, f: print("unblocked", flush=True))
ch = conn.channel()
ch.queue_declare("flood", durable=persistent)
props = pika.BasicProperties(delivery_mode=2 if persistent else 1)
pad = b"." * max(0, size - 14)
for i in range(count):
    ch.basic_publish("", "flood", b"%03d:%010d" % (me, i) + pad, props)
    if i % 5000 == 4999:
        conn.process_data_events(0)
        print("sent", i + 1, flush=True)
print("sent", count, flush=True)
print("done", flush=True)
conn.close()
"""


CONSUMER = """
import resource, zbroker.client as pika
total, publishers = {total}, {publishers}
expect = [0] * publishers
got = 0
with pika.BlockingConnection(pika.ConnectionParameters(port={port})) as conn:
    ch = conn.channel()
    for method, _, body in ch.consume("flood", auto_ack=True, inactivity_timeout=30):
        if method is None:
            break
        me, seq = int(body[:3]), int(body[4:14])
        if seq != expect[me]:
            raise SystemExit(f"publisher {{me}}: got {{seq}}, expected {{expect[me]}}")
        expect[me] += 1
        got += 1
        if got % 10000 == 0:
            print("consumed", got, flush=True)
        if got == total:
            break
    ch.cancel()
print("consumed", got, flush=True)
print("maxrss", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, flush=True)
"""


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Publisher:
    def __init__(self, me: int, count: int, size: int, persistent: bool, port: int) -> None:
        self.sent = 0
        self.blocked = False
        self.done = False
        self.proc = python_snippet(PUBLISHER.format(me=me, count=count, size=size, persistent=persistent,
                                                    port=port), port)
        threading.Thread(target=self._follow, daemon=True).start()

    def _follow(self) -> None:
        while not self.done:
            try:
                line = self.proc.output._queue.get(timeout=1)
            except Exception:
                continue
            if line is None:
                return
            if line.startswith("sent "):
                self.sent = int(line.split()[1])
            elif line == "blocked":
                self.blocked = True
            elif line == "unblocked":
                self.blocked = False
            elif line == "done":
                self.done = True


def run(args: argparse.Namespace) -> int:
    extra = ["--memory-limit", args.memory_limit, "--log-level", "info"]
    broker = Broker(*extra, in_memory=args.in_memory)
    per = args.count // args.publishers
    total = per * args.publishers
    rows: list[tuple[float, int, float, int]] = []
    consumed = 0
    started = time.monotonic()
    stop = threading.Event()
    pubs: list[Publisher] = []
    pub_peak = [0.0]
    consumer_peak = 0

    def sample() -> None:
        while not stop.is_set():
            for p in pubs:
                if p.proc.popen.poll() is None:
                    pub_peak.append(rss_mib(p.proc.pid))
            queued = sum(p.sent for p in pubs) - consumed
            rows.append((round(time.monotonic() - started, 1), queued, round(rss_mib(broker.pid), 1),
                         sum(p.blocked for p in pubs)))
            if args.verbose:
                print("%7.1f s  queued %10d  rss %8.1f MiB  blocked %d" % rows[-1], file=sys.stderr, flush=True)
            stop.wait(1.0)

    pubs.extend(Publisher(i, per, args.size, args.persistent, broker.port) for i in range(args.publishers))
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    ok = False
    try:
        last, moved_at = -1, time.monotonic()
        while not all(p.done for p in pubs):
            sent = sum(p.sent for p in pubs)
            if sent != last:
                last, moved_at = sent, time.monotonic()
            elif time.monotonic() - moved_at > args.stall:
                break  # blocked: time to drain
            time.sleep(0.2)
        flood_peak = max(r[2] for r in rows) if rows else 0.0
        at_block = sum(p.sent for p in pubs)
        blocked = sum(p.blocked for p in pubs)
        print(f"flood: {at_block:,} queued in {time.monotonic() - started:.0f} s, broker RSS peak "
              f"{flood_peak:.0f} MiB, {blocked} of {args.publishers} publisher(s) blocked", flush=True)
        consumer = python_snippet(CONSUMER.format(total=total, publishers=args.publishers, port=broker.port),
                                  broker.port)
        while consumer.popen.poll() is None or not consumer.output._queue.empty():
            try:
                line = consumer.output._queue.get(timeout=1)
            except Exception:
                continue
            if line is None:
                break
            if line.startswith("consumed "):
                consumed = int(line.split()[1])
            elif line.startswith("maxrss "):
                consumer_peak = int(line.split()[1])
            elif line:
                print("consumer:", line, flush=True)
        ok = consumer.wait(60) == 0 and consumed == total and all(p.proc.wait(60) == 0 for p in pubs)
        print(f"drained: {consumed:,} of {total:,} messages, each once and in order per publisher; "
              f"publishers {'all finished' if ok else 'FAILED'}; total {time.monotonic() - started:.0f} s; "
              f"peak RSS: broker {max(r[2] for r in rows):.0f} MiB, each publisher <= "
              f"{max(pub_peak):.0f} MiB, consumer {consumer_peak} MiB", flush=True)
    finally:
        stop.set()
        sampler.join()
        for p in pubs:
            p.done = True
            p.proc.kill()
        broker.stop()
        broker.remove_data()
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["seconds", "queued", "rss_mib", "publishers_blocked"])
            writer.writerows(rows)
    if args.plot:
        plot(rows, title(args), args.plot)
    return 0 if ok else 1


def title(args: argparse.Namespace) -> str:
    kind = "persistent" if args.persistent else "transient"
    store = ", --in-memory" if args.in_memory else ""
    return f"{args.publishers} publisher(s), {args.size} B {kind}, memory limit {args.memory_limit}{store}"


def replot(csv_path: Path, png: Path, heading: str) -> None:
    """Draw a plot again from a run's CSV."""
    with open(csv_path) as f:
        rows = [(float(r["seconds"]), int(r["queued"]), float(r["rss_mib"]), int(r["publishers_blocked"]))
                for r in csv.DictReader(f)]
    plot(rows, heading, png)


def plot(rows: list[tuple[float, int, float, int]], heading: str, path: Path) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("--plot needs matplotlib (pip install matplotlib); the CSV has the same data", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([r[0] for r in rows], [r[2] for r in rows], label="broker RSS, MiB")
    ax.set_xlabel("seconds")
    ax.set_ylabel("MiB")
    ax2 = ax.twinx()
    ax2.plot([r[0] for r in rows], [r[1] / 1e6 for r in rows], color="tab:orange", label="queued, millions")
    ax2.set_ylabel("messages queued (millions)")
    ax.set_title(heading, fontsize=10)
    fig.legend(loc="upper left", bbox_to_anchor=(0.1, 0.88), fontsize=9)
    fig.tight_layout()
    fig.savefig(path)


def main() -> int:
    parser = argparse.ArgumentParser(prog="bin/flood", description=__doc__.split("\n\n")[0])
    parser.add_argument("--publishers", type=int, default=1)
    parser.add_argument("--size", type=int, default=100, help="body bytes (at least 14)")
    parser.add_argument("--count", type=int, default=1_000_000, help="messages in all")
    parser.add_argument("--persistent", action="store_true", help="persistent messages, durable queue")
    parser.add_argument("--in-memory", action="store_true", help="no disk: the memory alarm is the only bound")
    parser.add_argument("--memory-limit", default="1GiB")
    parser.add_argument("--stall", type=float, default=10.0, help="seconds without progress that end the flood")
    parser.add_argument("--csv", type=Path)
    parser.add_argument("--plot", type=Path)
    parser.add_argument("-v", "--verbose", action="store_true", help="print each sample")
    parser.add_argument("--replot", nargs=3, metavar=("CSV", "PNG", "TITLE"),
                        help="only draw a plot again from a run's CSV")
    args = parser.parse_args()
    if args.replot:
        replot(Path(args.replot[0]), Path(args.replot[1]), args.replot[2])
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
