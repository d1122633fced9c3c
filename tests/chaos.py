"""Chaos: the broker SIGKILLed and restarted again and again under a work queue of
persistent tasks, with robust workers and a robust confirming producer (the programs in
``clients/``). Every task must be done at least once, none corrupted (checksums); the
duplicates are counted and reported.

``python -m tests.chaos [--kills N] [--tasks N] [--seed S]`` (``bin/chaos``); the suite
runs ``run(kills=10, tasks=2000, seed=12)``.
"""
from __future__ import annotations

import argparse
import random
import socket
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tests.support import Broker, client_program

QUEUE = "chaos_tasks"


@dataclass
class Report:
    kills: int
    tasks: int
    done: int
    lost: list[int]
    corrupt: int
    duplicates: int
    reconnects: int
    seconds: float
    #: Reconnections per client process (the workers', then the producer's).
    per_client: tuple[int, ...] = ()

    def __str__(self) -> str:
        return (f"{self.kills} broker kills, {self.tasks} tasks: {self.done} done, {len(self.lost)} lost, "
                f"{self.corrupt} corrupt, {self.duplicates} duplicates; clients reconnected {self.reconnects} "
                f"times; {self.seconds:.1f} s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_broker(port: int, data_dir: Path) -> Broker:
    return Broker(bind=f"tcp://127.0.0.1:{port}", data_dir=data_dir, amqp=None)


def read_results(files: list[Path]) -> Counter:
    seen: Counter = Counter()
    for path in files:
        if path.exists():
            for line in path.read_text().splitlines():
                task, _, verdict = line.partition(" ")
                seen[(int(task), verdict)] += 1
    return seen


def run(kills: int = 10, tasks: int = 2000, seed: int = 12, workers: int = 2, timeout: float = 120.0) -> Report:
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="zbroker-chaos-"))
    port = free_port()
    broker = start_broker(port, work / "data")
    results = [work / f"worker{i}.txt" for i in range(workers)]
    started = time.monotonic()
    consumers = [client_program("robust_worker.py", QUEUE, str(path), port=port) for path in results]
    for consumer in consumers:
        consumer.wait_for("Waiting for tasks", 20)
    # A trickle that lasts through the kills (~0.75 s apart): 50 tasks per batch.
    pause = max(0.0, kills * 0.75 / max(1, tasks // 50))
    producer = client_program("robust_producer.py", str(tasks), QUEUE, f"{pause:.3f}", port=port)
    try:
        # Its first connection is not retried (pika's rule): the kills start once it is in.
        producer.wait_for("Sending", 20)
        for _ in range(kills):
            time.sleep(rng.uniform(0.3, 0.9))
            broker.kill()
            time.sleep(rng.uniform(0.0, 0.3))
            broker = start_broker(port, work / "data")
        # One budget for the rest: the producer's last confirms, then the workers' last tasks.
        deadline = time.monotonic() + timeout
        try:
            producer.wait_for(r"tasks confirmed", timeout)
        except AssertionError as exc:  # reported below, with what every process said
            print(f"chaos: {exc}", file=sys.stderr)
        while time.monotonic() < deadline:
            done = {task for task, _ in read_results(results)}
            if len(done) >= tasks:
                break
            time.sleep(0.2)
    finally:
        for process in (producer, *consumers):
            process.stop()
        broker.stop()
    for process in (producer, *consumers):
        process.output.drain()
    per_client = [sum(line.count(" [*] reconnected") for line in c.output.lines) for c in consumers]
    confirmed = [line for line in producer.output.lines if "confirmed after" in line]
    per_client.append(int(confirmed[0].split("after ")[1].split()[0]) if confirmed else 0)
    reconnects = sum(per_client)
    seen = read_results(results)
    per_task = Counter(task for task, _ in seen.elements())
    report = Report(kills, tasks, len(per_task), sorted(set(range(tasks)) - set(per_task)),
                    sum(n for (_, verdict), n in seen.items() if verdict != "ok"),
                    sum(n - 1 for n in per_task.values() if n > 1), reconnects, time.monotonic() - started,
                    tuple(per_client))
    if report.lost or report.corrupt:
        for name, process in [("producer", producer), *((f"worker {i}", c) for i, c in enumerate(consumers))]:
            print(f"--- {name}:", *process.output.lines[-30:], sep="\n", file=sys.stderr)
        print("--- the last broker:", broker.log()[-5000:], sep="\n", file=sys.stderr)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--tasks", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    report = run(args.kills, args.tasks, args.seed, timeout=600.0)
    print(report)
    sys.exit(1 if report.lost or report.corrupt else 0)


if __name__ == "__main__":
    main()
