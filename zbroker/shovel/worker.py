"""The shovel worker: one dynamic shovel, run until it is done or told to stop, as
RabbitMQ's rabbit_shovel_worker under its rabbit_shovel_dyn_worker_sup (3.10).

The contract with the broker's supervisor:

- Run as ``python -m zbroker.shovel.worker``. It reads ONE JSON object from stdin::

      {"vhost": "/", "name": "my-shovel",
       "definition": {...RabbitMQ 3.10's dynamic shovel keys...},
       "local": {"host": "127.0.0.1", "port": 5672, "secret": "<the secret's bytes, hex>"},
       "cluster_name": "zbroker@host"}          # optional: shovelled-by in forward headers

  then stdin stays open: EOF on stdin (the supervisor died or wants it gone) stops it
  promptly and cleanly (connections closed; unacked deliveries go back to the source).
  SIGTERM and SIGINT do the same.
- ``definition`` keys: src-uri, dest-uri (a string or a list: each connection attempt
  picks one at random, trying the others if it fails), src-queue | src-exchange (+
  src-exchange-key), src-queue-args, src-consumer-args, dest-queue (+ dest-queue-args)
  | dest-exchange (+ dest-exchange-key), ack-mode (on-confirm | on-publish | no-ack;
  on-confirm), src-prefetch-count (1000), reconnect-delay (seconds, 5; 0: no
  reconnect), src-delete-after (never | queue-length | N; the deprecated delete-after),
  dest-add-forward-headers, dest-add-timestamp-header, dest-publish-properties, and the
  deprecated un-prefixed forms; src-protocol/dest-protocol amqp091 only.
- A URI with no host (``amqp://``, ``amqp:///vhost``) is this broker: ``local``'s host and
  port over plain AMQP with the ``ZBROKER-INTERNAL`` login (the secret). Other URIs:
  any AMQP 0-9-1 broker, amqp:// or amqps://, with RabbitMQ's query parameters
  (``uris.py`` says which; one pika cannot honour is refused in the status).
- stdout: one JSON object per line, flushed (logs go to stderr):
    {"state": "starting"}                                  each (re)connection attempt
    {"state": "running", "src": URI, "dest": URI, "info": {...}}
        both sides up and consuming; URIs without credentials; ``info`` is RabbitMQ's
        status fields (src_uri, src_protocol, dest_protocol, dest_uri, src_queue or
        src_exchange + src_exchange_key, dest_queue / dest_exchange / dest_exchange_key)
    {"state": "starting", "error": TEXT}     no connection could be opened (RabbitMQ
                                             keeps such a shovel "starting")
    {"state": "terminated", "error": TEXT}   a broker closed a channel (e.g. 404), a
                                             connection was lost, the source's consumer
                                             was cancelled; or a definition that cannot run
    {"state": "terminated", "done": true}    src-delete-after reached: the supervisor
                                             removes the parameter
    {"moved": N, "acked": N, "nacked": N, "in_flight": N[, "remaining": N]}
        counters since the worker started, at most once a second while they change,
        and once more when an attempt ends
  After a failure it waits reconnect-delay and tries again, forever (a new "starting"
  line). With reconnect-delay 0 a failure is final: "terminated" with the error.
- The process exits after "done" (status 0), when stopped (0), or at once if stdin
  held no JSON object (2, reported as terminated too). A final failure (reconnect-delay
  0, a definition that cannot run) leaves it idle, holding no connection, until
  stopped: as in RabbitMQ the shovel then stays "terminated" with its error, and the
  supervisor does not mistake an exit for a crash to restart.
- In a thread: ``run(config, report, stop)`` is all of the above without the process:
  ``report`` receives each line's dict (from the worker's thread), ``stop`` is set to
  end it; it returns when the shovel is over (a final failure returns at once).

Rules: this module owns the attempts loop, the counters' pace and the process edge;
the link (``link.py``) owns one attempt; nothing here touches pika.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from typing import IO, Any, Callable

from zbroker.shovel.definition import DefinitionError, Shovel, parse
from zbroker.shovel.link import Counters, Link, Outcome
from zbroker.shovel.uris import UnsupportedUri, UriError, remove_credentials, resolve

log = logging.getLogger(__name__)

#: Counters are reported at most this often (the status API's refresh, not a stream).
COUNTERS_EVERY_S = 1.0
EXIT_NO_CONFIG = 2

Report = Callable[[dict], None]


class _CounterReports:
    """Counters to ``report`` at most every COUNTERS_EVERY_S, only when they changed."""

    def __init__(self, report: Report, counters: Counters) -> None:
        self.report = report
        self.counters = counters
        self.last: dict[str, int] | None = None
        self.at = 0.0

    def tick(self) -> None:
        if time.monotonic() - self.at >= COUNTERS_EVERY_S:
            self.flush()

    def flush(self) -> None:
        snapshot = self.counters.snapshot()
        if snapshot != self.last and (self.last is not None or snapshot["moved"] or snapshot.get("remaining")):
            self.report(snapshot)
            self.last = snapshot
        self.at = time.monotonic()


def check_uris(shovel: Shovel) -> None:
    """Refuse up front a URI no attempt could use (raises UriError/UnsupportedUri)."""
    for uri in (*shovel.source.uris, *shovel.destination.uris):
        try:
            resolve(uri, shovel.local, "check")
        except (UriError, UnsupportedUri) as error:
            raise type(error)(f'"{remove_credentials(uri)}": {error}') from None
        except OSError:
            pass  # a certificate file missing now may be there at the next attempt


def run(config: dict, report: Report, stop: threading.Event) -> dict | None:
    """Run one shovel until done, stopped, or failed for good (module docstring); the
    last line reported ("done" or a final "terminated"), None when stopped."""
    try:
        shovel = parse(config)
        check_uris(shovel)
    except (DefinitionError, UriError, UnsupportedUri) as error:
        log.error("shovel %r cannot run: %s", config.get("name") if isinstance(config, dict) else None, error)
        return _final(report, {"state": "terminated", "error": str(error)})
    counters = Counters()
    pace = _CounterReports(report, counters)
    while not stop.is_set():
        report({"state": "starting"})
        try:
            outcome = Link(shovel, counters, report, pace.tick).run(stop)
        except Exception as error:  # a bug of ours or pika's: this attempt is over, not the shovel
            log.exception("shovel %r: the link failed", shovel.name)
            outcome = Outcome("failed", "terminated", f"{type(error).__name__}: {error}")
        pace.flush()
        if outcome.kind == "stopped":
            return None
        if outcome.kind == "done":
            return _final(report, {"state": "terminated", "done": True})
        if not shovel.reconnects:
            return _final(report, {"state": "terminated", "error": outcome.error})
        report({"state": outcome.state, "error": outcome.error})
        if stop.wait(shovel.reconnect_delay_s):
            return None
    return None


def _final(report: Report, line: dict) -> dict:
    report(line)
    return line


# -- the process ---------------------------------------------------------------------

def read_config(stream: IO[str]) -> Any:
    """The first JSON object on ``stream`` (it may span lines); None at EOF before one."""
    decoder = json.JSONDecoder()
    text = ""
    for line in iter(stream.readline, ""):
        text += line
        try:
            value, _end = decoder.raw_decode(text.strip())
        except json.JSONDecodeError:
            continue
        return value
    return None


class _Stdout:
    """Report lines on stdout, whole and flushed; a supervisor gone (EPIPE) stops us."""

    def __init__(self, stream: IO[str], stop: threading.Event) -> None:
        self.stream = stream
        self.stop = stop
        self.lock = threading.Lock()

    def __call__(self, line: dict) -> None:
        with self.lock:
            try:
                self.stream.write(json.dumps(line) + "\n")
                self.stream.flush()
            except (BrokenPipeError, ValueError):  # closed pipe or closed file
                self.stop.set()


def _watch_stdin(stream: IO[str], stop: threading.Event) -> None:
    for _line in iter(stream.readline, ""):
        pass
    log.info("stdin closed: stopping")
    stop.set()


def main() -> int:
    level = os.environ.get("ZBROKER_SHOVEL_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(stream=sys.stderr, level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if level != "DEBUG":  # pika narrates every socket and channel, warns of our passive 404s, and
        logging.getLogger("pika").setLevel(logging.CRITICAL)  # logs each failure we log in our words
    stop = threading.Event()
    report = _Stdout(sys.stdout, stop)
    config = read_config(sys.stdin)
    if not isinstance(config, dict):
        report({"state": "terminated", "error": "no JSON object on stdin"})
        return EXIT_NO_CONFIG
    threading.Thread(target=_watch_stdin, args=(sys.stdin, stop), name="stdin", daemon=True).start()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: stop.set())
    final = run(config, report, stop)
    if final is not None and not final.get("done"):
        stop.wait()  # a final failure: idle (no connection held) until told to go
    return 0


if __name__ == "__main__":
    sys.exit(main())
