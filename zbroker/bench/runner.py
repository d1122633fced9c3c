"""Run the benchmark: start a broker, run each workload in separate processes, repeat the
whole set alternating targets, and report medians (the machine is small and noisy)."""
from __future__ import annotations

import json
import multiprocessing
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from zbroker.bench import ceiling, roles

READY = re.compile(r"ready on tcp://[^:]+:(\d+)")
#: Message counts: the issue's figures, and a short run for smoke tests and --quick.
FULL = {"publish": 100_000, "workqueue": 100_000, "push_pull": 200_000}
QUICK = {"publish": 5_000, "workqueue": 5_000, "push_pull": 20_000}


class BenchError(RuntimeError):
    """A workload failed or timed out; the message says which and why."""


@dataclass
class Target:
    """Who is measured: a client module speaking the pika API, and the broker's URL."""

    name: str
    client: str
    url: str


@dataclass
class Results:
    runs: int
    counts: dict[str, int]
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def add(self, target: str, workload: str, value: float) -> None:
        self.samples.setdefault(target, {}).setdefault(workload, []).append(value)

    def median(self, target: str, workload: str) -> float | None:
        values = self.samples.get(target, {}).get(workload)
        return statistics.median(values) if values else None

    def to_json(self) -> dict[str, Any]:
        return {
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "platform": platform.platform()},
            "runs": self.runs,
            "counts": self.counts,
            "unit": "messages per second",
            "results": {t: {w: {"samples": v, "median": statistics.median(v)} for w, v in ws.items()}
                        for t, ws in self.samples.items()},
        }


class BrokerProcess:
    """A ``zbroker serve`` on a free loopback port, for the length of the benchmark."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "zbroker", "serve", "--bind", "tcp://127.0.0.1:0", "--log-level", "warning"],
            stderr=subprocess.PIPE, text=True)
        assert self.proc.stderr is not None
        deadline = time.monotonic() + 20
        for line in self.proc.stderr:
            m = READY.search(line)
            if m:
                self.port = int(m.group(1))
                break
            if time.monotonic() > deadline:
                break
        else:
            raise BenchError("zbroker serve exited before it was ready")
        if not hasattr(self, "port"):
            self.stop()
            raise BenchError("zbroker serve did not become ready in 20 s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Workloads:
    """Each workload: spawn its role processes, collect their reports, return msgs/s."""

    def __init__(self, counts: dict[str, int], timeout: float) -> None:
        self.counts = counts
        self.timeout = timeout
        self._mp = multiprocessing.get_context("spawn")
        self._serial = 0

    def _queue_name(self, workload: str) -> str:
        self._serial += 1
        return f"bench.{workload}.{os.getpid()}.{self._serial}"

    def _expect(self, report: Any, kind: str, procs: list[Any]) -> Any:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            try:
                got, value = report.get(timeout=0.5)
            except Exception:  # queue.Empty; a dead role is checked below
                if any(p.exitcode not in (None, 0) for p in procs):
                    raise BenchError(f"a benchmark process failed while waiting for {kind!r}") from None
                continue
            if got != kind:
                raise BenchError(f"expected {kind!r} from a benchmark process, got {got!r}")
            return value
        raise BenchError(f"timed out after {self.timeout:.0f}s waiting for {kind!r}")

    def _run(self, procs: list[tuple[Callable[..., None], tuple[Any, ...]]]) -> list[Any]:
        started = [self._mp.Process(target=fn, args=args, daemon=True) for fn, args in procs]
        for p in started:
            p.start()
        return started

    @staticmethod
    def _finish(procs: list[Any]) -> None:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()

    def publish(self, target: Target) -> float:
        n = self.counts["publish"]
        report = self._mp.Queue()
        procs = self._run([(roles.publisher, (target.client, target.url, self._queue_name("publish"), n, report))])
        try:
            return n / self._expect(report, "published", procs)
        finally:
            self._finish(procs)

    def workqueue(self, target: Target) -> float:
        n, workers, prefetch = self.counts["workqueue"], 2, 100
        queue = self._queue_name("workqueue")
        report = self._mp.Queue()
        procs = self._run([(roles.worker, (target.client, target.url, queue, prefetch, report))] * workers)
        try:
            for _ in range(workers):
                self._expect(report, "ready", procs)
            procs += self._run([(roles.producer, (target.client, target.url, queue, n, workers, report))])
            started = self._expect(report, "start", procs)
            done = [self._expect(report, "done", procs) for _ in range(workers)]
        finally:
            self._finish(procs)
        total = sum(count for count, _ in done)
        if total != n:
            raise BenchError(f"workqueue: workers acked {total} messages, expected {n}")
        return n / (max(last for _, last in done) - started)

    def push_pull(self, target: Target) -> float:
        n = self.counts["push_pull"]
        endpoint = f"tcp://127.0.0.1:{_free_port()}"
        report = self._mp.Queue()
        procs = self._run([(ceiling.pull, (endpoint, n, report))])
        try:
            self._expect(report, "ready", procs)
            procs += self._run([(ceiling.push, (endpoint, n))])
            return (n - 1) / self._expect(report, "received", procs)
        finally:
            self._finish(procs)


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: (target kind, workload) pairs in the order they run within one round.
PLAN = [("broker", "publish"), ("broker", "workqueue"), ("ceiling", "push_pull")]
LABELS = {"publish": "publish (1 producer, 100 B)", "workqueue": "workqueue (1 producer, 2 workers, prefetch 100)",
          "push_pull": "raw pyzmq PUSH->PULL (ceiling)"}


def run(runs: int, quick: bool, against: str | None, timeout: float,
        progress: Callable[[str], None]) -> Results:
    counts = QUICK if quick else FULL
    results = Results(runs, dict(counts))
    workloads = Workloads(counts, timeout)
    broker = BrokerProcess()
    try:
        targets = [Target("zbroker", "zbroker.client", f"zbroker://127.0.0.1:{broker.port}")]
        if against:
            targets.append(Target("rabbitmq", "pika", against))
        for i in range(runs):
            for kind, workload in PLAN:
                for target in (targets if kind == "broker" else [Target("ceiling", "", "")]):
                    progress(f"run {i + 1}/{runs}: {workload} on {target.name}")
                    results.add(target.name, workload, getattr(workloads, workload)(target))
    finally:
        broker.stop()
    return results


def table(results: Results) -> str:
    names = [n for n in ("zbroker", "rabbitmq", "ceiling") if n in results.samples]
    rows = [["workload (msgs/s, median of %d)" % results.runs, *names]]
    if "rabbitmq" in names:
        rows[0].append("zbroker / rabbitmq")
    for _, workload in PLAN:
        row = [LABELS[workload]]
        for name in names:
            value = results.median(name, workload)
            row.append(f"{value:,.0f}" if value else "")
        if "rabbitmq" in names:
            z, r = results.median("zbroker", workload), results.median("rabbitmq", workload)
            row.append(f"{z / r:.2f}x" if z and r else "")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_json(results: Results, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results.to_json(), indent=2))
