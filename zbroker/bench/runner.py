"""Run the benchmark: start a broker, run each workload as separate processes, repeat the
whole set in rounds that alternate targets, and report medians (the machine is small and
noisy, so one run proves nothing).

Targets: ``zbroker`` (through ``zbroker.client``), ``zbroker-amqp`` (real pika against
the same broker's AMQP 0-9-1 listener, with ``--amqp``), ``zbroker-curve`` and
``zbroker-amqps`` (with ``--secure``: ``zbroker.client`` with CURVE against a second broker
started with ``--curve-secret-key``, and real pika over TLS against the first broker's
``--amqps`` listener, certificates from a throwaway trustme CA), ``rabbitmq`` (real pika, with
``--against``) and ``relay`` (a bare pyzmq ROUTER relay in the same process layout: the
practical ceiling for a Python broker). ``push_pull`` (two processes, raw pyzmq) is
measured once per round as the rawest limit.

Broker CPU: around each run, the CPU seconds (user + system, from /proc) of the broker's
processes are read -- zbroker's one process, and RabbitMQ's ``beam.smp`` when it runs on
this machine -- and reported per message published (per call for rpc); the stream workload
(``streams.py``) reports it as cores while its consumers read.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from urllib.parse import quote
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from zbroker.bench import WORKLOADS, ceiling, roles, streams

READY = re.compile(r"ready on tcp://[^:]+:(\d+)")
AMQP_READY = re.compile(r"AMQP 0-9-1 listener on [^:]+:(\d+)")
AMQPS_READY = re.compile(r"AMQP 0-9-1 TLS listener on [^:]+:(\d+)")
HTTP_READY = re.compile(r"HTTP API and dashboard on (http://[\d.]+:\d+)/")
FULL = {"publish": 100_000, "workqueue": 100_000, "fanout": 50_000, "rpc": 5_000, "fanin": 80_000,
        "persistent": 20_000, "persistent_64k": 5_000, "push_pull": 200_000,
        "stream": 200_000, "stream_publish": 100_000}
QUICK = {"publish": 2_000, "workqueue": 2_000, "fanout": 1_000, "rpc": 200, "fanin": 4_000,
         "persistent": 300, "persistent_64k": 100, "push_pull": 20_000, "stream": 5_000, "stream_publish": 2_000}
#: Messages per wait_for_confirms in the pipelined persistent runs.
PIPELINE_BATCH = 1000
FANOUT_CONSUMERS = 4
WORKQUEUE_WORKERS = 2
FANIN_PRODUCERS = 8
#: What the table prints for each metric, and whether bigger is better.
METRICS = {
    "publish": [("msgs_per_s", "publish: 1 producer, msgs/s", True)],
    "workqueue": [("msgs_per_s", "workqueue: 1 producer, 2 workers, prefetch 100, msgs/s", True)],
    "fanout": [("deliveries_per_s", "fanout: 1 producer, 4 consumers, deliveries/s", True)],
    "rpc": [("p50_us", "rpc: round trip p50, us", False), ("p99_us", "rpc: round trip p99, us", False),
            ("calls_per_s", "rpc: sequential calls/s", True)],
    "fanin": [("msgs_per_s", "fanin: 8 producers, 1 consumer prefetch 1000, msgs/s", True)],
    "persistent": [("confirmed_100b_per_s", "persistent 100 B, a confirm per message, msgs/s", True),
                   ("confirmed_64k_per_s", "persistent 64 KiB, a confirm per message, msgs/s", True),
                   ("pipelined_100b_per_s", f"persistent 100 B, pipelined confirms ({PIPELINE_BATCH}), msgs/s", True),
                   ("pipelined_64k_per_s", f"persistent 64 KiB, pipelined confirms ({PIPELINE_BATCH}), msgs/s", True)],
    "stream": streams.METRICS,
    "push_pull": [("msgs_per_s", "raw pyzmq PUSH->PULL, 2 processes, msgs/s", True)],
}
#: Workloads whose broker CPU is reported, and what it is divided by.
CPU_PER = {"publish": "publish", "workqueue": "workqueue", "fanout": "fanout", "fanin": "fanin", "rpc": "rpc"}
for _workload in CPU_PER:
    METRICS[_workload].append(("broker_cpu_us", f"{_workload}: broker CPU per message, us", False))
#: Targets in the table's order, and the ratios it shows.
TARGETS = ("zbroker", "zbroker-curve", "zbroker-amqp", "zbroker-amqps", "rabbitmq", "relay")
RATIOS = (("zbroker", "rabbitmq"), ("zbroker-amqp", "rabbitmq"), ("zbroker", "relay"),
          ("zbroker-curve", "zbroker"), ("zbroker-amqps", "zbroker-amqp"))


class BenchError(RuntimeError):
    """A workload failed or timed out; the message says which and why."""


@dataclass
class Target:
    """Who is measured: a client module speaking the pika API, and the broker's URL."""

    name: str
    client: str = ""
    url: str = ""
    #: The broker's processes, whose CPU time is read around each run.
    pids: list[int] = field(default_factory=list)


@dataclass
class Results:
    runs: int
    counts: dict[str, int]
    samples: dict[str, dict[str, dict[str, list[float]]]] = field(default_factory=dict)

    def add(self, target: str, workload: str, metrics: dict[str, float]) -> None:
        per = self.samples.setdefault(target, {}).setdefault(workload, {})
        for name, value in metrics.items():
            per.setdefault(name, []).append(value)

    def median(self, target: str, workload: str, metric: str) -> float | None:
        values = self.samples.get(target, {}).get(workload, {}).get(metric)
        return statistics.median(values) if values else None

    def to_json(self) -> dict[str, Any]:
        return {
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "platform": platform.platform()},
            "runs": self.runs,
            "counts": self.counts,
            "results": {t: {w: {m: {"samples": v, "median": statistics.median(v)} for m, v in ms.items()}
                            for w, ms in ws.items()} for t, ws in self.samples.items()},
        }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BrokerProcess:
    """A ``zbroker serve`` on a free loopback port, for the length of the benchmark; with
    ``watched``, its HTTP API is polled every second meanwhile, as a dashboard would."""

    def __init__(self, watched: bool = False, amqp: bool = False, extra: tuple[str, ...] = ()) -> None:
        # Its own data directory, so the benchmark never touches a user's broker state.
        self.data_dir = tempfile.mkdtemp(prefix="zbroker-bench-")
        http = ["--http", "127.0.0.1:0"] if watched else []
        listen = ["--amqp", "127.0.0.1:0"] if amqp else []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "zbroker", "serve", "--bind", "tcp://127.0.0.1:0", "--log-level", "warning",
             "--data-dir", self.data_dir, *http, *listen, *extra],
            stderr=subprocess.PIPE, text=True)
        assert self.proc.stderr is not None
        self._stop_polling = threading.Event()
        self.amqp_port = self.amqps_port = 0
        while True:  # the listener lines, then the ready line (or the error that stopped it)
            line = self.proc.stderr.readline()
            if (listener := AMQP_READY.search(line)) is not None:
                self.amqp_port = int(listener.group(1))
            elif (listener := AMQPS_READY.search(line)) is not None:
                self.amqps_port = int(listener.group(1))
            elif (web := HTTP_READY.search(line)) is not None:
                threading.Thread(target=self._poll, args=(web.group(1),), daemon=True).start()
            else:
                break
        m = READY.search(line)
        if not m:
            self.stop()
            raise BenchError(f"zbroker serve did not start: {line.strip() or 'no output'}")
        self.port = int(m.group(1))

    def _poll(self, base: str) -> None:
        """What the dashboard asks every second (it refreshes every 2 s), and a scrape."""
        paths = ("/api/overview", "/api/queues", "/api/connections", "/api/channels", "/metrics")
        while not self._stop_polling.wait(1.0):
            for path in paths:
                try:
                    with urllib.request.urlopen(base + path, timeout=5) as response:
                        response.read()
                except OSError:
                    pass  # the benchmark measures the broker; a missed poll changes nothing

    def stop(self) -> None:
        self._stop_polling.set()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.data_dir, ignore_errors=True)


class Session:
    """The processes of one workload run: spawned, waited for, released together, reaped."""

    def __init__(self, mp: Any, timeout: float) -> None:
        self._mp = mp
        self.timeout = timeout
        self.report = mp.Queue()
        self.go_event = mp.Event()
        self.procs: list[Any] = []
        self._early: dict[str, list[Any]] = {}

    def spawn(self, fn: Callable[..., None], *args: Any, with_go: bool = True) -> None:
        extra = (self.report, self.go_event) if with_go else (self.report,)
        proc = self._mp.Process(target=fn, args=(*args, *extra), daemon=True)
        proc.start()
        self.procs.append(proc)

    def expect(self, kind: str) -> Any:
        """The next report of this kind; reports of other kinds that come first are kept."""
        if self._early.get(kind):
            return self._early[kind].pop(0)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            try:
                got, value = self.report.get(timeout=0.5)
            except Exception:  # queue.Empty: check nobody died, then wait on
                dead = [p for p in self.procs if p.exitcode not in (None, 0)]
                if dead:
                    raise BenchError(f"a benchmark process exited with {dead[0].exitcode} "
                                     f"while waiting for {kind!r}") from None
                continue
            if got != kind:
                self._early.setdefault(got, []).append(value)
                continue
            return value
        raise BenchError(f"timed out after {self.timeout:.0f}s waiting for {kind!r}")

    def start(self, ready: int) -> float:
        for _ in range(ready):
            self.expect("ready")
        started = time.time()
        self.go_event.set()
        return started

    def close(self) -> None:
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)


def _latency_metrics(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {"p50_us": statistics.median(ordered) * 1e6,
            "p99_us": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e6,
            "calls_per_s": len(ordered) / sum(ordered)}


class Workloads:
    """Each method runs one workload on one target and returns its metrics."""

    def __init__(self, counts: dict[str, int], timeout: float) -> None:
        self.counts = counts
        self.timeout = timeout
        self._mp = multiprocessing.get_context("spawn")
        self._serial = 0
        self.streams = streams.StreamBench(counts, lambda: Session(self._mp, timeout), cpu_seconds)

    def _name(self, workload: str) -> str:
        self._serial += 1
        return f"bench.{workload}.{os.getpid()}.{self._serial}"

    def has_relay(self, workload: str) -> bool:
        """Whether the bare relay has this workload (the persistent one is disk work: no)."""
        return hasattr(self, f"_relay_{workload}")

    def run(self, workload: str, target: Target) -> dict[str, float]:
        session = Session(self._mp, self.timeout)
        try:
            if target.name == "relay":
                return getattr(self, f"_relay_{workload}")(session)
            before = cpu_seconds(target.pids)
            metrics = getattr(self, f"_{workload}")(session, target)
            if target.pids and workload in CPU_PER:
                used = cpu_seconds(target.pids) - before
                metrics["broker_cpu_us"] = used / self.counts[CPU_PER[workload]] * 1e6
            return metrics
        finally:
            session.close()

    # -- through a broker (zbroker or RabbitMQ), pika API only --------------------------

    def _publish(self, s: Session, t: Target) -> dict[str, float]:
        n = self.counts["publish"]
        s.spawn(roles.publisher, t.client, t.url, self._name("publish"), n)
        s.start(1)
        return {"msgs_per_s": n / s.expect("elapsed")}

    def _spread(self, s: Session, t: Target, consumer_args: tuple[Any, ...], consumers: int,
                producer_args: tuple[Any, ...], messages: int) -> float:
        """One producer, ``consumers`` consumers; deliveries per second, first publish to last."""
        for _ in range(consumers):
            s.spawn(roles.consumer, t.client, t.url, *consumer_args)
        s.spawn(roles.producer, t.client, t.url, *producer_args)
        started = s.start(consumers + 1)
        s.expect("sent")
        return _rate(messages, started, [s.expect("done") for _ in range(consumers)])

    def _workqueue(self, s: Session, t: Target) -> dict[str, float]:
        n, queue = self.counts["workqueue"], self._name("workqueue")
        try:
            # Competing workers cannot know their share: each stops at a stop marker.
            return {"msgs_per_s": self._spread(s, t, (queue, "", 0, 100, False), WORKQUEUE_WORKERS,
                                               ("", queue, n, WORKQUEUE_WORKERS), n)}
        finally:
            _delete(t, queues=[queue])

    def _fanout(self, s: Session, t: Target) -> dict[str, float]:
        n, exchange = self.counts["fanout"], self._name("fanout")
        _declare_exchange(t, exchange, "fanout")
        try:
            return {"deliveries_per_s": self._spread(s, t, ("", exchange, n, 0, True), FANOUT_CONSUMERS,
                                                     (exchange, "", n, 0), n * FANOUT_CONSUMERS)}
        finally:
            _delete(t, exchanges=[exchange])

    def _rpc(self, s: Session, t: Target) -> dict[str, float]:
        queue = self._name("rpc")
        s.spawn(roles.rpc_server, t.client, t.url, queue)
        s.expect("ready")  # the server's queue exists before the client's first call
        s.spawn(roles.rpc_client, t.client, t.url, queue, self.counts["rpc"])
        s.start(1)
        return _latency_metrics(s.expect("latencies"))

    def _fanin(self, s: Session, t: Target) -> dict[str, float]:
        n, queue = self.counts["fanin"], self._name("fanin")
        each = n // FANIN_PRODUCERS
        s.spawn(roles.consumer, t.client, t.url, queue, "", each * FANIN_PRODUCERS, 1000, False)
        s.expect("ready")  # the queue exists before anyone publishes
        for _ in range(FANIN_PRODUCERS):
            s.spawn(roles.producer, t.client, t.url, "", queue, each, 0)
        try:
            started = s.start(FANIN_PRODUCERS)
            for _ in range(FANIN_PRODUCERS):
                s.expect("sent")
            done = [s.expect("done")]
        finally:
            _delete(t, queues=[queue])
        return {"msgs_per_s": _rate(each * FANIN_PRODUCERS, started, done)}

    def _persistent(self, s: Session, t: Target) -> dict[str, float]:
        """Each case in its own processes; pipelined ones only where the client has the calls."""
        metrics = {}
        pipelined = t.client == "zbroker.client"
        for key, count, size, batch in (("confirmed_100b_per_s", self.counts["persistent"], 100, 0),
                                        ("confirmed_64k_per_s", self.counts["persistent_64k"], 65536, 0),
                                        ("pipelined_100b_per_s", self.counts["persistent"], 100, PIPELINE_BATCH),
                                        ("pipelined_64k_per_s", self.counts["persistent_64k"], 65536, PIPELINE_BATCH)):
            if batch and not pipelined:
                continue
            case = Session(self._mp, self.timeout)
            try:
                case.spawn(roles.persistent_publisher, t.client, t.url, self._name("persistent"), count, size,
                           batch)
                case.start(1)
                metrics[key] = count / case.expect("elapsed")
            finally:
                case.close()
        return metrics

    def _stream(self, s: Session, t: Target) -> dict[str, float]:
        return self.streams.run(t)

    # -- the bare relay, same layouts ----------------------------------------------------

    def _relay(self, s: Session, mode: str, expect: int = 0) -> str:
        endpoint = f"tcp://127.0.0.1:{_free_port()}"
        s.spawn(ceiling.relay, endpoint, mode, expect, with_go=False)
        s.expect("relay")
        return endpoint

    def _relay_publish(self, s: Session) -> dict[str, float]:
        n = self.counts["publish"]
        endpoint = self._relay(s, "sink", n)
        s.spawn(ceiling.relay_producer, endpoint, n)
        started = s.start(1)
        s.expect("sent")
        return {"msgs_per_s": n / (s.expect("end") - started)}

    def _relay_spread(self, s: Session, mode: str, n: int, consumers: int, producers: int) -> float:
        """Producers -> relay -> consumers; returns deliveries per second."""
        endpoint = self._relay(s, mode)
        per_consumer = n if mode == "fanout" else n // consumers
        for _ in range(consumers):
            s.spawn(ceiling.relay_consumer, endpoint, per_consumer)
        for _ in range(consumers):
            s.expect("ready")
        for _ in range(producers):
            s.spawn(ceiling.relay_producer, endpoint, n // producers)
        started = s.start(producers)
        for _ in range(producers):
            s.expect("sent")
        done = [s.expect("done") for _ in range(consumers)]
        return _rate(per_consumer * consumers, started, done)

    def _relay_workqueue(self, s: Session) -> dict[str, float]:
        n = self.counts["workqueue"]
        return {"msgs_per_s": self._relay_spread(s, "rr", n, WORKQUEUE_WORKERS, 1)}

    def _relay_fanout(self, s: Session) -> dict[str, float]:
        return {"deliveries_per_s": self._relay_spread(s, "fanout", self.counts["fanout"], FANOUT_CONSUMERS, 1)}

    def _relay_fanin(self, s: Session) -> dict[str, float]:
        return {"msgs_per_s": self._relay_spread(s, "rr", self.counts["fanin"], 1, FANIN_PRODUCERS)}

    def _relay_rpc(self, s: Session) -> dict[str, float]:
        endpoint = self._relay(s, "rpc")
        s.spawn(ceiling.relay_server, endpoint)
        s.expect("ready")
        s.spawn(ceiling.relay_client, endpoint, self.counts["rpc"])
        s.start(1)
        return _latency_metrics(s.expect("latencies"))

    def push_pull(self) -> dict[str, float]:
        n = self.counts["push_pull"]
        session = Session(self._mp, self.timeout)
        endpoint = f"tcp://127.0.0.1:{_free_port()}"
        try:
            session.spawn(ceiling.pull, endpoint, n)
            session.expect("ready")
            session.spawn(ceiling.push, endpoint, n)
            session.start(1)
            return {"msgs_per_s": (n - 1) / session.expect("elapsed")}
        finally:
            session.close()


def _rate(messages: int, started: float, done: list[tuple[int, float]]) -> float:
    total = sum(count for count, _ in done)
    if total != messages:
        raise BenchError(f"consumers got {total} messages, expected {messages}")
    return messages / (max(last for _, last in done) - started)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far (0 for one that is gone)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def rabbitmq_pids() -> list[int]:
    """RabbitMQ's Erlang VM on this machine, if it runs here (else its CPU is not read)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/comm"):
        try:
            if stat.read_text().strip() == "beam.smp":
                pids.append(int(stat.parent.name))
        except OSError:
            continue
    return pids


def _admin(target: Target) -> tuple[Any, Any]:
    _, conn = roles.connect(target.client, target.url)
    return conn, conn.channel()


def _check_reachable(target: Target) -> None:
    """Fail with one clear line, before any process starts, if a broker cannot be reached."""
    try:
        conn, _ = _admin(target)
        conn.close()
    except Exception as exc:  # whatever the client raises, the user needs one line, not a trace
        raise BenchError(f"cannot connect to {target.name} at {target.url}: {exc!r}") from None


def _declare_exchange(target: Target, name: str, kind: str) -> None:
    conn, ch = _admin(target)
    ch.exchange_declare(name, kind)
    conn.close()


def _delete(target: Target, queues: list[str] = (), exchanges: list[str] = ()) -> None:  # type: ignore[assignment]
    conn, ch = _admin(target)
    for q in queues:
        ch.queue_delete(q)
    for x in exchanges:
        ch.exchange_delete(x)
    conn.close()


def _secure_setup(directory: Path) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    """(TLS options for the first broker, CURVE options for the second, its public key):
    a throwaway trustme CA and certificate (its CA file exported for the pika roles),
    and a CURVE key pair."""
    import trustme

    from zbroker.curve import keygen, load_secret_key
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    cert.private_key_pem.write_to_path(str(directory / "server.key"))
    cert.cert_chain_pems[0].write_to_path(str(directory / "server.pem"))
    os.environ[roles.CA_ENV] = str(directory / "ca.pem")  # (inherited by the spawned roles)
    _, secret = keygen(directory, "bench")
    tls = ("--amqps", "127.0.0.1:0", "--tls-cert", str(directory / "server.pem"),
           "--tls-key", str(directory / "server.key"))
    return tls, ("--curve-secret-key", str(secret)), load_secret_key(secret)[0].decode()


def run(runs: int, quick: bool, against: str | None, timeout: float, workloads: list[str],
        progress: Callable[[str], None], watched: bool = False, amqp: bool = False,
        secure: bool = False, stream_messages: int | None = None) -> Results:
    counts = dict(QUICK if quick else FULL)
    if stream_messages:
        counts["stream"] = stream_messages
    results = Results(runs, counts)
    bench = Workloads(counts, timeout)
    keys = Path(tempfile.mkdtemp(prefix="zbroker-bench-keys-"))
    tls, curve, curve_key = _secure_setup(keys) if secure else ((), (), "")
    broker = BrokerProcess(watched, amqp or secure, tls)
    curved = BrokerProcess(extra=curve) if secure else None
    try:
        targets = [Target("zbroker", "zbroker.client", f"zbroker://127.0.0.1:{broker.port}", [broker.proc.pid])]
        if curved is not None:
            targets.append(Target("zbroker-curve", "zbroker.client", f"zbroker://127.0.0.1:{curved.port}"
                                  f"?curve_server_key={quote(curve_key)}", [curved.proc.pid]))
        if amqp or secure:
            targets.append(Target("zbroker-amqp", "pika", f"amqp://guest:guest@127.0.0.1:{broker.amqp_port}/%2F",
                                  [broker.proc.pid]))
        if secure:
            targets.append(Target("zbroker-amqps", "pika", f"amqps://guest:guest@localhost:{broker.amqps_port}/%2F",
                                  [broker.proc.pid]))
        if against:
            targets.append(Target("rabbitmq", "pika", against, rabbitmq_pids()))
        for target in targets:
            _check_reachable(target)
        targets.append(Target("relay"))
        cases = [(w, t) for w in workloads for t in targets if t.name != "relay" or bench.has_relay(w)]
        steps = runs * (len(cases) + 1)
        step = 0
        for i in range(runs):
            for workload, target in cases:
                step += 1
                metrics = bench.run(workload, target)
                results.add(target.name, workload, metrics)
                progress(f"[{step}/{steps}] round {i + 1}: {workload} on {target.name}: {_brief(metrics)}")
            step += 1
            metrics = bench.push_pull()
            results.add("push_pull", "push_pull", metrics)
            progress(f"[{step}/{steps}] round {i + 1}: raw PUSH->PULL: {_brief(metrics)}")
    finally:
        bench.streams.close()
        broker.stop()
        if curved is not None:
            curved.stop()
        shutil.rmtree(keys, ignore_errors=True)
    return results


def _brief(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {_cell(k, v) or 0}" for k, v in metrics.items())


def _cell(metric: str, value: float | None) -> str:
    if not value:
        return ""
    if metric in streams.RATIOS:
        return f"{value:.2f}x"
    return f"{value:.2f}" if metric.endswith("_cores") else f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def table(results: Results) -> str:
    """Medians side by side; ratios say how zbroker compares (for latencies, lower is better)."""
    names = [n for n in TARGETS if n in results.samples]
    ratios = [(a, b) for a, b in RATIOS if a in names and b in names]
    rows = [[f"median of {results.runs} rounds", *names, *(f"{a}/{b}" for a, b in ratios)]]
    for workload in WORKLOADS:
        for metric, label, _ in METRICS[workload]:
            values = {n: results.median(n, workload, metric) for n in names}
            if not any(values.get(n) is not None for n in names if n != "relay"):
                continue
            row = [label, *(_cell(metric, values[n]) for n in names)]
            for a, b in ratios:
                z, o = values[a], values[b]
                row.append(f"{z / o:.2f}x" if z and o and metric not in streams.RATIOS else "")
            rows.append(row)
    push_pull = results.median("push_pull", "push_pull", "msgs_per_s")
    if push_pull and "relay" in names:
        rows.append([METRICS["push_pull"][0][1], *(f"{push_pull:,.0f}" if n == "relay" else "" for n in names),
                     *([""] * len(ratios))])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_json(results: Results, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results.to_json(), indent=2))
