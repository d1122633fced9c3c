"""The shovel worker (``python -m zbroker.shovel.worker``) between real brokers: two
``zbroker serve --amqp`` processes stand for the source and the destination, the worker
is driven through its contract (a JSON object on stdin, status lines on stdout), and
what arrives is checked with pika. Every wait is for a line or a message, with a
deadline."""
from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.support import Broker, child_env

pika = pytest.importorskip("pika")

WAIT_S = 30.0
PERSISTENT = 2


class ShovelWorker:
    """A worker process; its stdout's JSON lines in ``lines``, its log in ``log``."""

    def __init__(self, config: dict) -> None:
        self.popen = subprocess.Popen([sys.executable, "-m", "zbroker.shovel.worker"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      env=dict(child_env(), ZBROKER_SHOVEL_LOG_LEVEL="INFO"))
        assert self.popen.stdin is not None
        self.popen.stdin.write(json.dumps(config) + "\n")
        self.popen.stdin.flush()
        self.lines: list[dict] = []
        self.log: list[str] = []
        self._new: queue.Queue[dict | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self.log.extend(self.popen.stderr), daemon=True).start()  # type: ignore[arg-type]

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self._new.put(json.loads(line))
        self._new.put(None)

    def wait(self, test: Callable[[dict], bool], after: int = 0, timeout: float = WAIT_S) -> int:
        """The index of the first line from ``after`` on that passes ``test``."""
        deadline = time.monotonic() + timeout
        index = after
        while True:
            while index < len(self.lines):
                if test(self.lines[index]):
                    return index
                index += 1
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no such line within {timeout} s: {self.lines[-10:]}\n{''.join(self.log[-30:])}")
            try:
                line = self._new.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"the worker ended: {self.lines[-10:]}\n{''.join(self.log[-30:])}")
            self.lines.append(line)

    def wait_state(self, state: str, after: int = 0, timeout: float = WAIT_S) -> int:
        return self.wait(lambda line: line.get("state") == state, after, timeout)

    def close_stdin(self) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.close()

    def stop(self) -> int:
        if self.popen.stdin is not None and not self.popen.stdin.closed:
            self.close_stdin()
        try:
            return self.popen.wait(15)
        finally:
            if self.popen.poll() is None:
                self.popen.kill()
                self.popen.wait()


def url(broker: Broker) -> str:
    return f"amqp://guest:guest@127.0.0.1:{broker.amqp_port}/%2F"


def shown(broker: Broker) -> str:
    return f"amqp://127.0.0.1:{broker.amqp_port}/%2F"


def config(name: str = "sh", **definition: Any) -> dict:
    return {"vhost": "/", "name": name, "definition": {"reconnect-delay": 1, **definition}}


def channel(broker: Broker) -> Any:
    return pika.BlockingConnection(pika.URLParameters(url(broker))).channel()


def fill(broker: Broker, queue_name: str, count: int, props: Callable[[int], Any] | None = None,
         durable: bool = True) -> None:
    ch = channel(broker)
    ch.queue_declare(queue_name, durable=durable)
    ch.confirm_delivery()
    for i in range(count):
        ch.basic_publish("", queue_name, b"m%d" % i,
                         props(i) if props else pika.BasicProperties(message_id=str(i), delivery_mode=PERSISTENT))
    ch.connection.close()


def collect(broker: Broker, queue_name: str, count: int, timeout: float = WAIT_S) -> list[tuple[Any, Any, bytes]]:
    """``count`` messages consumed (and acked) from ``queue_name``, as they arrive."""
    ch = channel(broker)
    got: list[tuple[Any, Any, bytes]] = []
    ch.basic_consume(queue_name, lambda c, m, p, b: (got.append((m, p, b)), c.basic_ack(m.delivery_tag)))
    deadline = time.monotonic() + timeout
    while len(got) < count:
        assert time.monotonic() < deadline, f"{len(got)} of {count} messages within {timeout} s"
        ch.connection.process_data_events(0.05)
    ch.connection.close()
    return got


def depth(broker: Broker, queue_name: str) -> int:
    ch = channel(broker)
    count = ch.queue_declare(queue_name, passive=True).method.message_count
    ch.connection.close()
    return count


@pytest.fixture
def brokers() -> Iterator[tuple[Broker, Broker]]:
    """A source broker and a destination broker."""
    pair = (Broker(in_memory=True), Broker(in_memory=True))
    yield pair
    for broker in pair:
        broker.stop()


@pytest.fixture
def workers() -> Iterator[Callable[[dict], ShovelWorker]]:
    started: list[ShovelWorker] = []

    def start(cfg: dict) -> ShovelWorker:
        started.append(ShovelWorker(cfg))
        return started[-1]

    yield start
    for worker in started:
        worker.stop()


ALL_PROPERTIES = dict(content_type="application/json", content_encoding="utf-8",
                      headers={"s": "x", "i": -5, "big": 2**40, "b": b"\x00\xff", "l": [1, "a", {"k": None}]},
                      delivery_mode=PERSISTENT, priority=3, correlation_id="cid", reply_to="rq", expiration="600000",
                      message_id="mid", timestamp=1_700_000_000, type="t", user_id="guest", app_id="app")


def test_queue_to_queue_moves_bodies_and_every_property(brokers, workers) -> None:
    src, dest = brokers
    fill(src, "in", 50, lambda i: pika.BasicProperties(**ALL_PROPERTIES))
    worker = workers(config(**{"src-uri": url(src), "src-queue": "in", "dest-uri": url(dest), "dest-queue": "out"}))
    running = worker.lines[worker.wait_state("running")]
    assert running["src"] == shown(src) and running["dest"] == shown(dest)
    assert running["info"] == {"src_uri": shown(src), "src_protocol": "amqp091", "dest_protocol": "amqp091",
                               "dest_uri": shown(dest), "src_queue": "in", "dest_queue": "out"}
    got = collect(dest, "out", 50)
    assert [body for _, _, body in got] == [b"m%d" % i for i in range(50)]
    for method, props, _ in got:
        assert {k: getattr(props, k) for k in ALL_PROPERTIES} == ALL_PROPERTIES
        assert (method.exchange, method.routing_key) == ("", "out")
    assert depth(src, "in") == 0
    counters = worker.lines[worker.wait(lambda line: line.get("acked") == 50)]
    assert counters["moved"] == 50 and counters["in_flight"] == 0


def test_exchange_to_exchange_keeps_the_routing_key_unless_told(brokers, workers) -> None:
    src, dest = brokers
    out = channel(dest)
    out.exchange_declare("out", "topic")
    out.queue_declare("kept")
    out.queue_bind("kept", "out", "a.#")
    out.exchange_declare("fixed", "direct")
    out.queue_declare("rekeyed")
    out.queue_bind("rekeyed", "fixed", "k")
    source = channel(src)
    source.exchange_declare("in", "topic")
    one = workers(config("one", **{"src-uri": url(src), "src-exchange": "in", "src-exchange-key": "a.*",
                                   "dest-uri": url(dest), "dest-exchange": "out"}))
    two = workers(config("two", **{"src-uri": url(src), "src-exchange": "in", "src-exchange-key": "#",
                                   "dest-uri": url(dest), "dest-exchange": "fixed", "dest-exchange-key": "k"}))
    info = one.lines[one.wait_state("running")]["info"]
    assert (info["src_exchange"], info["src_exchange_key"], info["dest_exchange"]) == ("in", "a.*", "out")
    two.wait_state("running")
    source.confirm_delivery()
    source.basic_publish("in", "a.b", b"ab", pika.BasicProperties(headers={"h": 1}, priority=2))
    source.basic_publish("in", "c.d", b"cd")
    kept = collect(dest, "kept", 1)
    assert [(m.exchange, m.routing_key, b, p.headers, p.priority) for m, p, b in kept] == [
        ("out", "a.b", b"ab", {"h": 1}, 2)]
    rekeyed = collect(dest, "rekeyed", 2)
    assert sorted((m.routing_key, b) for m, _, b in rekeyed) == [("k", b"ab"), ("k", b"cd")]
    assert depth(dest, "kept") == 0


@pytest.mark.parametrize("ack_mode", ["on-confirm", "on-publish", "no-ack"])
def test_each_ack_mode_moves_everything(brokers, workers, ack_mode: str) -> None:
    src, dest = brokers
    fill(src, "in", 500)
    worker = workers(config(**{"src-uri": url(src), "src-queue": "in", "dest-uri": url(dest), "dest-queue": "out",
                               "ack-mode": ack_mode, "src-prefetch-count": 50}))
    worker.wait_state("running")
    got = collect(dest, "out", 500)
    assert sorted(int(p.message_id) for _, p, _ in got) == list(range(500))
    # on-confirm acks a delivery only when its confirm comes back, which may be after the
    # destination's queue already holds it: wait for the line where nothing is in flight
    line = worker.lines[worker.wait(lambda line: line.get("moved") == 500 and line.get("in_flight") == 0)]
    assert (line["acked"], line["nacked"]) == (0 if ack_mode == "no-ack" else 500, 0)
    assert depth(src, "in") == 0


def test_delete_after_queue_length_moves_what_was_there_then_is_done(brokers, workers) -> None:
    src, dest = brokers
    fill(src, "in", 120)
    worker = workers(config(**{"src-uri": url(src), "src-queue": "in", "dest-uri": url(dest), "dest-queue": "out",
                               "src-delete-after": "queue-length", "src-prefetch-count": 7}))
    done = worker.wait(lambda line: line.get("done") is True)
    assert worker.lines[done] == {"state": "terminated", "done": True}
    assert worker.popen.wait(10) == 0
    assert worker.lines[done - 1] == {"moved": 120, "acked": 120, "nacked": 0, "in_flight": 0, "remaining": 0}
    assert (depth(dest, "out"), depth(src, "in")) == (120, 0)


@pytest.mark.parametrize("ack_mode", ["on-confirm", "on-publish"])
def test_delete_after_a_count_moves_exactly_that_many(brokers, workers, ack_mode: str) -> None:
    src, dest = brokers
    fill(src, "in", 100)
    worker = workers(config(**{"src-uri": url(src), "src-queue": "in", "dest-uri": url(dest), "dest-queue": "out",
                               "src-delete-after": 40, "ack-mode": ack_mode}))  # prefetch 1000: all delivered
    worker.wait(lambda line: line.get("done") is True)
    assert worker.popen.wait(10) == 0
    assert (depth(dest, "out"), depth(src, "in")) == (40, 60)  # the 60 delivered beyond were requeued
    assert [int(p.message_id) for _, p, _ in collect(dest, "out", 40)] == list(range(40))


def test_delete_after_queue_length_of_an_empty_queue_is_done_at_once(brokers, workers) -> None:
    src, dest = brokers
    fill(src, "in", 0)
    worker = workers(config(**{"src-uri": url(src), "src-queue": "in", "dest-uri": url(dest),
                               "src-delete-after": "queue-length"}))
    worker.wait(lambda line: line.get("done") is True)
    assert [line["state"] for line in worker.lines] == ["starting", "terminated"]


def test_forward_and_timestamp_headers_and_publish_properties(brokers, workers) -> None:
    src, dest = brokers
    previous = {"shovelled-by": "elsewhere", "shovel-type": "static"}
    fill(src, "in", 1, lambda i: pika.BasicProperties(headers={"x-shovelled": [previous], "keep": "me"},
                                                      priority=1, app_id="a"))
    before = int(time.time())
    worker = workers({**config(**{"src-uri": url(src), "src-queue": "in", "dest-uri": url(dest), "dest-queue": "out",
                         "dest-add-forward-headers": True, "dest-add-timestamp-header": True,
                         "dest-publish-properties": {"app_id": "shovelled", "delivery_mode": 2}}),
             "vhost": "/", "name": "fwd", "cluster_name": "zbroker@here"})
    worker.wait_state("running")
    [(_, props, _)] = collect(dest, "out", 1)
    assert props.headers["x-shovelled"] == [
        {"shovelled-by": "zbroker@here", "shovel-type": "dynamic", "shovel-name": "fwd", "shovel-vhost": "/",
         "src-uri": shown(src), "dest-uri": shown(dest), "src-queue": "in", "dest-queue": "out"}, previous]
    assert before <= props.headers["x-shovelled-timestamp"] <= time.time() + 1
    assert props.headers["keep"] == "me"
    assert (props.app_id, props.delivery_mode, props.priority) == ("shovelled", 2, 1)


def test_a_destination_nack_requeues_on_the_source(brokers, workers) -> None:
    src, dest = brokers
    fill(src, "in", 10)
    worker = workers(config(**{"src-uri": url(src), "src-queue": "in", "dest-uri": url(dest), "dest-queue": "out",
                               "dest-queue-args": {"x-max-length": 4, "x-overflow": "reject-publish"}}))
    worker.wait(lambda line: line.get("acked") == 4 and line.get("nacked", 0) > 0)
    assert worker.stop() == 0
    assert (depth(dest, "out"), depth(src, "in")) == (4, 6)


def test_a_killed_destination_loses_nothing_with_on_confirm(workers, tmp_path: Path) -> None:
    total = 20_000
    src = Broker(in_memory=True)
    dest = Broker(data_dir=tmp_path)
    try:
        fill(src, "in", total)
        worker = workers(config(**{"src-uri": url(src), "src-queue": "in", "dest-uri": url(dest),
                                   "dest-queue": "out", "src-prefetch-count": 50}))  # (slower: killed mid-way)
        first = worker.wait(lambda line: 0 < line.get("moved", 0) < total)
        port = dest.amqp_port
        dest.kill()
        failed = worker.wait(lambda line: "error" in line, after=first)
        assert worker.lines[failed]["state"] == "terminated"
        assert worker.lines[failed]["error"] in ("destination connection failed: socket_closed_unexpectedly",
                                                 "destination connection failed: connection to target host was "
                                                 "reset by peer (ECONNRESET)")
        dest = Broker(data_dir=tmp_path, amqp=f"127.0.0.1:{port}")
        worker.wait_state("running", after=failed)
        worker.wait(lambda line: line.get("acked") == total, after=failed, timeout=120)  # each acked once
        assert depth(src, "in") == 0
        got = collect(dest, "out", depth(dest, "out"))
        ids = [int(p.message_id) for _, p, _ in got]
        assert set(ids) == set(range(total))  # none lost
        print(f"\n{len(ids) - total} duplicates after a SIGKILL at {worker.lines[first]}")
    finally:
        src.stop()
        dest.stop()


def test_from_an_amqps_source_checking_its_certificate(workers, tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key"
    ca.cert_pem.write_to_path(str(ca_file))
    server.private_key_pem.write_to_path(str(key_file))
    for i, blob in enumerate(server.cert_chain_pems):
        blob.write_to_path(str(cert_file), append=i > 0)
    src = Broker("--amqps", "127.0.0.1:0", "--tls-cert", str(cert_file), "--tls-key", str(key_file), in_memory=True)
    dest = Broker(in_memory=True)
    try:
        fill(src, "in", 10)
        tls = f"amqps://guest:guest@localhost:{src.amqps_port}/%2F?verify=verify_peer&cacertfile={ca_file}"
        worker = workers(config(**{"src-uri": tls, "src-queue": "in", "dest-uri": url(dest), "dest-queue": "out"}))
        assert worker.lines[worker.wait_state("running")]["src"] == f"amqps://localhost:{src.amqps_port}/%2F"
        assert len(collect(dest, "out", 10)) == 10
        untrusted = workers(config("untrusted", **{
            "src-uri": f"amqps://guest:guest@127.0.0.1:{src.amqps_port}/%2F?verify=verify_peer",
            "src-queue": "in", "dest-uri": url(dest)}))
        line = untrusted.lines[untrusted.wait(lambda line: "error" in line)]
        assert line["state"] == "starting" and "CERTIFICATE_VERIFY_FAILED" in line["error"]
    finally:
        src.stop()
        dest.stop()


def test_a_missing_source_exchange_is_a_404_and_retried_until_it_exists(brokers, workers) -> None:
    src, dest = brokers
    worker = workers(config(**{"src-uri": url(src), "src-exchange": "nope", "dest-uri": url(dest),
                               "dest-queue": "out"}))
    first = worker.wait(lambda line: "error" in line)
    assert worker.lines[first] == {"state": "terminated", "error": "one of its connections closed with code 404, "
                                   "reason: NOT_FOUND - no exchange 'nope' in vhost '/'"}
    again = worker.wait_state("starting", after=first)
    worker.wait(lambda line: "error" in line, after=again)  # tried again, failed again
    channel(src).exchange_declare("nope", "fanout")
    worker.wait_state("running", after=again)


def test_a_source_queue_deleted_under_it_restarts_and_redeclares(brokers, workers) -> None:
    src, dest = brokers
    fill(src, "in", 1)
    worker = workers(config(**{"src-uri": url(src), "src-queue": "in", "dest-uri": url(dest), "dest-queue": "out"}))
    running = worker.wait_state("running")
    collect(dest, "out", 1)
    channel(src).queue_delete("in")
    cancelled = worker.wait(lambda line: "error" in line, after=running)
    assert worker.lines[cancelled] == {"state": "terminated", "error": "needed a restart"}
    worker.wait_state("running", after=cancelled)
    fill(src, "in", 1)  # (declared again by the shovel, durable)
    collect(dest, "out", 1)


def test_an_unreachable_destination_stays_starting_with_the_reason(brokers, workers) -> None:
    src, dest = brokers
    port = dest.amqp_port
    dest.stop()
    worker = workers(config(**{"src-uri": url(src), "src-queue": "in",
                               "dest-uri": [f"amqp://guest:guest@127.0.0.1:{port}", f"amqp://u:p@127.0.0.1:{port}"],
                               "dest-queue": "out"}))
    line = worker.lines[worker.wait(lambda line: "error" in line)]
    assert line["state"] == "starting"
    assert line["error"] == (f"could not connect to destination (URI: amqp://127.0.0.1:{port}): "
                             "connection to target host was refused (ECONNREFUSED)")
    assert not any("u:p" in text or "guest:guest" in text for text in worker.log)


def test_a_wrong_password_says_so(brokers, workers) -> None:
    src, dest = brokers
    worker = workers(config(**{"src-uri": f"amqp://guest:wrong@127.0.0.1:{src.amqp_port}", "src-queue": "in",
                               "dest-uri": url(dest)}))
    line = worker.lines[worker.wait(lambda line: "error" in line)]
    assert line["error"].endswith("ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. "
                                  "For details see the broker logfile.")


def test_reconnect_delay_zero_makes_a_failure_final(brokers, workers) -> None:
    src, dest = brokers
    worker = workers({**config(**{"src-uri": url(src), "src-exchange": "nope", "dest-uri": url(dest)}),
                      "definition": {"src-uri": url(src), "src-exchange": "nope", "dest-uri": url(dest),
                                     "reconnect-delay": 0}})
    final = worker.wait(lambda line: "error" in line)
    assert worker.lines[final]["state"] == "terminated"
    assert worker.popen.poll() is None  # idle until told to go, not restarted by an exit
    assert worker.stop() == 0
    assert [line.get("state") for line in worker.lines] == ["starting", "terminated"]


def test_an_unsupported_uri_is_refused_in_the_status(brokers, workers) -> None:
    src, dest = brokers
    worker = workers(config(**{"src-uri": url(src) + "?auth_mechanism=amqplain", "src-queue": "in",
                               "dest-uri": url(dest)}))
    line = worker.lines[worker.wait(lambda line: "error" in line)]
    assert line["state"] == "terminated" and "amqplain" in line["error"] and "pika" in line["error"]


def test_eof_on_stdin_stops_it_and_the_source_gets_back_what_was_unacked(brokers, workers) -> None:
    src, dest = brokers
    fill(src, "in", 30)
    blocker = channel(dest)  # the destination refuses everything: deliveries stay unacked
    blocker.queue_declare("out", arguments={"x-max-length": 0, "x-overflow": "reject-publish"})
    worker = workers(config(**{"src-uri": url(src), "src-queue": "in", "dest-uri": url(dest), "dest-queue": "out",
                               "src-prefetch-count": 5}))
    worker.wait(lambda line: line.get("nacked", 0) > 0)
    started = time.monotonic()
    worker.close_stdin()
    assert worker.popen.wait(15) == 0
    assert time.monotonic() - started < 10  # the 3 s close timeout, not a hang
    assert depth(src, "in") == 30


def test_run_in_a_thread(brokers) -> None:
    from zbroker.shovel.worker import run
    src, dest = brokers
    fill(src, "in", 200)
    lines: list[dict] = []
    stop = threading.Event()
    cfg = config(**{"src-uri": url(src), "src-queue": "in", "dest-uri": url(dest), "dest-queue": "out"})
    channel(dest).queue_declare("out", durable=True)
    thread = threading.Thread(target=run, args=(cfg, lines.append, stop))
    thread.start()
    try:
        collect(dest, "out", 200)
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert [line.get("state") for line in lines if "state" in line] == ["starting", "running"]
