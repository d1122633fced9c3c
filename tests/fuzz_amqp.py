"""A seeded fuzzer for the AMQP 0-9-1 wire: generated and mutated frames from several
peers through ``AmqpWire`` into the core, as ``tests/fuzz.py`` does for the zbroker wire.

Generation is structure-aware: real methods (encoded by pamqp) with names, argument
tables and properties drawn from the same pools as the zbroker fuzzer, publishes with
content headers and bodies split into frames, all on open channels -- and then broken:
bit flips, truncation, lying frame sizes, wrong frame types, content frames out of
place, unknown methods, frames on unopened channels.

A bug (reported with the seed and the bytes) is anything escaping the wire, a 541
INTERNAL_ERROR sent to a client, or an error logged with a traceback.

``python -m tests.fuzz_amqp N [--seed S]``; ``bin/fuzz amqp N``. ``run_live`` sends the
same frames over real sockets to a running broker's AMQP listener
(``tests/integration/test_fuzz_live.py``, with a well-behaved client beside).
"""
from __future__ import annotations

import argparse
import logging
import random
import select
import socket
import struct
import sys
import time
from typing import Any, Callable

from pamqp import commands as C
from pamqp import frame, header
from pamqp.body import ContentBody

from tests.fuzz import ARGUMENTS, COMMON_NAMES, EXCHANGE_TYPES, NAMES, Bugs
from zbroker.protocol.amqp_codec import PROTOCOL_HEADER
from zbroker.core import Broker
from zbroker.wires.amqp import AmqpWire

HANDSHAKE = b"".join((
    PROTOCOL_HEADER,
    frame.marshal(C.Connection.StartOk({"capabilities": {"authentication_failure_close": True,
                                                         "consumer_cancel_notify": True}},
                                       "PLAIN", "\0guest\0guest", "en_US"), 0),
    frame.marshal(C.Connection.TuneOk(2047, 131072, 0), 0),
    frame.marshal(C.Connection.Open("/"), 0),
    frame.marshal(C.Channel.Open(), 1),
    frame.marshal(C.Channel.Open(), 2),
))


def _name(rng: random.Random) -> str:
    name = rng.choice(COMMON_NAMES if rng.random() < 0.7 else NAMES)
    return name[:255]


def _arguments(rng: random.Random) -> dict[str, Any]:
    args: dict[str, Any] = {}
    for _ in range(rng.choice([0, 0, 1, 2])):
        args[rng.choice(ARGUMENTS)] = rng.choice([0, 1, -1, 1000, 2**40, "x", "reject-publish", "", True,
                                                  None, [1, "a"], {"k": 1}, 1.5])
    return args


def _properties(rng: random.Random) -> C.Basic.Properties:
    if rng.random() < 0.5:
        return C.Basic.Properties()
    return C.Basic.Properties(
        delivery_mode=rng.choice([None, 1, 2]), priority=rng.choice([None, 0, 5, 255]),
        expiration=rng.choice([None, "0", "100", "-1", "abc"]),
        headers=rng.choice([None, {}, {"a": 1, "CC": ["q2"]}, {"x-match": "any", "n": [1, {"d": None}]}]),
        reply_to=rng.choice([None, "amq.rabbitmq.reply-to", "q"]), correlation_id=rng.choice([None, "c"]))


def _publish(rng: random.Random, channel: int) -> bytes:
    body = rng.randbytes(rng.choice([0, 1, 100, 5000]))
    parts = [frame.marshal(C.Basic.Publish(exchange=rng.choice(["", "", "ex", "amq.topic", "nope"]),
                                           routing_key=_name(rng), mandatory=rng.random() < 0.3), channel),
             frame.marshal(header.ContentHeader(0, len(body), _properties(rng)), channel)]
    step = rng.choice([4088, 131064])
    for start in range(0, len(body), step):
        parts.append(frame.marshal(ContentBody(body[start:start + step]), channel))
    return b"".join(parts)


def _method(rng: random.Random, channel: int) -> bytes:
    name, tag = _name(rng), rng.choice([0, 1, 2, 3, 7, 2**40])
    choices: list[Callable[[], Any]] = [
        lambda: C.Queue.Declare(queue=name, durable=rng.random() < 0.2, exclusive=rng.random() < 0.2,
                                auto_delete=rng.random() < 0.2, passive=rng.random() < 0.1,
                                nowait=rng.random() < 0.1, arguments=_arguments(rng)),
        lambda: C.Exchange.Declare(exchange=rng.choice(["ex", "amq.direct", "x2"]),
                                   exchange_type=rng.choice(EXCHANGE_TYPES) or "direct", arguments=_arguments(rng)),
        lambda: C.Queue.Bind(queue=name, exchange=rng.choice(["ex", "amq.topic", "nope"]),
                             routing_key=rng.choice(["#", "a.*", name]), arguments=_arguments(rng)),
        lambda: C.Queue.Purge(queue=name),
        lambda: C.Queue.Delete(queue=name, if_unused=rng.random() < 0.3),
        lambda: C.Basic.Consume(queue=name, consumer_tag=rng.choice(["", "c1", "c2"]), no_ack=rng.random() < 0.5,
                                exclusive=rng.random() < 0.1, arguments=_arguments(rng)),
        lambda: C.Basic.Cancel(consumer_tag=rng.choice(["c1", "c2", "zz"])),
        lambda: C.Basic.Get(queue=name, no_ack=rng.random() < 0.5),
        lambda: C.Basic.Ack(delivery_tag=tag, multiple=rng.random() < 0.3),
        lambda: C.Basic.Nack(delivery_tag=tag, multiple=rng.random() < 0.3, requeue=rng.random() < 0.5),
        lambda: C.Basic.Reject(delivery_tag=tag, requeue=rng.random() < 0.5),
        lambda: C.Basic.Qos(prefetch_count=rng.choice([0, 1, 10, 65535]), prefetch_size=rng.choice([0, 0, 5])),
        lambda: C.Basic.Recover(requeue=rng.random() < 0.8),
        lambda: C.Confirm.Select(),
        lambda: C.Tx.Select(), lambda: C.Tx.Commit(), lambda: C.Tx.Rollback(),
        lambda: C.Channel.Flow(active=rng.random() < 0.9),
        lambda: C.Channel.Close(200, "bye", 0, 0), lambda: C.Channel.CloseOk(), lambda: C.Channel.Open(),
        lambda: C.Exchange.Bind(destination="x2", source="ex", routing_key="k"),
        lambda: C.Exchange.Delete(exchange=rng.choice(["ex", "x2", "amq.direct"])),
    ]
    try:
        return frame.marshal(rng.choice(choices)(), channel)
    except (ValueError, TypeError):  # pamqp refused what was drawn (a name or number out of its range)
        return frame.marshal(C.Basic.Ack(delivery_tag=tag), channel)


def mutate(rng: random.Random, data: bytes) -> bytes:
    kind = rng.randrange(7)
    if not data:
        return data
    if kind == 0:  # bit flips
        out = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
        return bytes(out)
    if kind == 1:  # truncated (the rest arrives never: the connection waits or times out)
        return data[:rng.randrange(len(data))]
    if kind == 2:  # a lying frame size
        return data[:3] + struct.pack(">I", rng.choice([0, 1, 5, 200_000, 2**31])) + data[7:]
    if kind == 3:  # another frame type
        return bytes((rng.choice([0, 2, 3, 4, 8, 9]),)) + data[1:]
    if kind == 4:  # another channel
        return data[:1] + struct.pack(">H", rng.choice([0, 3, 2048, 65535])) + data[3:]
    if kind == 5:  # an unknown method id
        return data[:7] + struct.pack(">HH", rng.randrange(200), rng.randrange(200)) + data[11:]
    return data + rng.randbytes(rng.randint(1, 20))  # trailing garbage


def message(rng: random.Random) -> bytes:
    channel = rng.choice([1, 1, 2])
    data = _publish(rng, channel) if rng.random() < 0.4 else _method(rng, channel)
    return mutate(rng, data) if rng.random() < 0.15 else data


def run(count: int, seed: int, report: Callable[[str], None] = lambda _: None) -> dict[str, int]:
    """``count`` messages from 4 peers; returns counters, raises AssertionError on a bug."""
    rng = random.Random(seed)
    bugs = Bugs()
    logger = logging.getLogger("zbroker")
    level = logger.level
    logger.addHandler(bugs)
    logger.setLevel(logging.ERROR)
    stats = {"messages": 0, "closes": 0, "channel_closes": 0, "brokers": 0}
    now = 1_000_000.0
    broker, wire = Broker(now=now), None
    peers: list[int] = []
    started = time.monotonic()
    try:
        for n in range(count):
            if n % 20_000 == 0:
                broker = Broker(now=now)
                wire = AmqpWire(broker)
                peers = []
                stats["brokers"] += 1
            assert wire is not None
            peers = [k for k in peers if not wire.should_close(k)]
            while len(peers) < 4:
                key = wire.accept("127.0.0.1", 40000 + n % 20000, now, "127.0.0.1:5672")
                _feed(wire, key, HANDSHAKE, now, seed, n)
                peers.append(key)
            key = rng.choice(peers)
            data = message(rng)
            _feed(wire, key, data, now, seed, n, _cuts(rng, len(data)))
            for out_key, buffers in wire.take_output("127.0.0.1:5672").items():
                # A client answers the broker's closes: close-ok, and a channel reopened.
                for close in _check(b"".join(bytes(b) for b in buffers), seed, n, data, stats):
                    if isinstance(close[1], C.Connection.Close):
                        _feed(wire, out_key, frame.marshal(C.Connection.CloseOk(), 0), now, seed, n)
                    elif rng.random() < 0.9:
                        reopen = frame.marshal(C.Channel.CloseOk(), close[0]) + frame.marshal(C.Channel.Open(), close[0])
                        _feed(wire, out_key, reopen, now, seed, n)
                wire.take_output("127.0.0.1:5672")
            if bugs.records:
                record = bugs.records[0]
                trace = logging.Formatter().formatException(record.exc_info) if record.exc_info else ""
                raise AssertionError(f"seed {seed}, message {n}: the broker logged a bug "
                                     f"({record.getMessage()}) for {data!r}\n{trace}")
            stats["messages"] += 1
            if rng.random() < 0.01:
                now += rng.choice([0.001, 0.5, 12.0])
                broker.tick(now)
                wire.tick(now)
                broker.commit(now)
            if n and n % 50_000 == 0:
                report(f"{n:,} messages, {n / (time.monotonic() - started):,.0f}/s")
    finally:
        logger.removeHandler(bugs)
        logger.setLevel(level)
    return stats


def _cuts(rng: random.Random, size: int) -> tuple[int, ...]:
    """Where the reads cut a message, as TCP may: mostly nowhere, sometimes anywhere."""
    if size < 2 or rng.random() < 0.7:
        return ()
    return tuple(sorted(rng.sample(range(1, size), min(size - 1, rng.randint(1, 4)))))


def _feed(wire: AmqpWire, key: int, data: bytes, now: float, seed: int, n: int,
          cuts: tuple[int, ...] = ()) -> None:
    try:
        for start, end in zip([0, *cuts], [*cuts, len(data)]):
            wire.data_received(key, data[start:end], now)
        wire.encode(wire.broker.outbox.take(), now)
    except Exception as exc:
        raise AssertionError(f"seed {seed}, message {n}: {exc!r} escaped the AMQP wire for {data!r}") from exc


def _check(out: bytes, seed: int, n: int, data: bytes, stats: dict[str, int]) -> list[tuple[int, Any]]:
    """Fail on a 541 in anything the broker wrote; returns its closes ``(channel, method)``."""
    closes = []
    while out:
        if out[:4] == b"AMQP":
            out = out[8:]
            continue
        try:
            used, channel, value = frame.unmarshal(out)
        except Exception:
            return closes
        out = out[used:]
        if isinstance(value, (C.Connection.Close, C.Channel.Close)):
            closes.append((channel, value))
            stats["closes" if isinstance(value, C.Connection.Close) else "channel_closes"] += 1
            if value.reply_code == 541:
                raise AssertionError(f"seed {seed}, message {n}: 541 ({value.reply_text}) for {data!r}")
    return closes


#: A connection.close method frame's start, as the broker sends it (type 1, channel 0).
CONNECTION_CLOSE = b"\x00\x0a\x00\x32"


def run_live(port: int, count: int, seed: int, peers: int = 4) -> dict[str, int]:
    """``count`` fuzzed messages from ``peers`` TCP connections to a live AMQP listener; a
    peer the broker closed connects again. Returns what happened."""
    rng = random.Random(seed)
    answers = {"messages": 0, "closed": 0, "replied_bytes": 0}

    def connect() -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.setblocking(False)
        _send_all(sock, HANDSHAKE)
        return sock

    socks = [connect() for _ in range(peers)]
    try:
        for n in range(count):
            i = rng.randrange(peers)
            try:
                _send_all(socks[i], message(rng))
                if n % 20 == 0:  # now and then a little patience, so a closed peer learns of it
                    select.select([socks[i]], [], [], 0.002)
                while True:
                    data = socks[i].recv(65536)
                    if not data or CONNECTION_CLOSE in data:  # closed, or being closed by the broker
                        raise ConnectionResetError
                    answers["replied_bytes"] += len(data)
            except BlockingIOError:
                pass
            except OSError:  # closed by the broker (or reset): a new peer takes its place
                answers["closed"] += 1
                socks[i].close()
                socks[i] = connect()
            answers["messages"] += 1
    finally:
        for sock in socks:
            sock.close()
    return answers


def _send_all(sock: socket.socket, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[sock.send(view):]
        except BlockingIOError:
            time.sleep(0.001)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz_amqp", description=__doc__.split("\n\n")[0])
    parser.add_argument("count", type=int)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        stats = run(args.count, args.seed, lambda msg: print(msg, file=sys.stderr, flush=True))
    except AssertionError as exc:
        print(f"BUG: {exc}", file=sys.stderr)
        return 1
    print(f"amqp: {stats} in {time.monotonic() - started:.1f} s, seed {args.seed}: no bug found")
    return 0


if __name__ == "__main__":
    sys.exit(main())
