"""A seeded frame fuzzer for the zbroker wire: generated and mutated frames thrown at the
codec and, through the wire adapter, at the core.

Why a generator of our own, not atheris or hypothesis: a million frames must run in
about a minute, reproducibly from a seed, with no native build. Hypothesis drives the
core's state machine (``tests/unit/test_core_properties.py``), where shrinking matters;
here volume matters. Generation is structure-aware: it knows every command's fields
(``zbroker/protocol/native_commands.py``) and RabbitMQ's argument names, so most frames get
past the codec and reach the core's rules, and then it breaks them: wrong types, missing
and extra fields, unknown opcodes, bit flips, truncation, deep or huge values, bodies
missing or misplaced.

What counts as a bug (each one is reported with the seed and frame that found it):
- the codec raising anything but ``ProtocolError``;
- anything escaping ``NativeWire.handle``;
- the broker closing a channel or connection with 541 INTERNAL_ERROR, or logging an
  error with a traceback (a bug its guards caught).

``python -m tests.fuzz frames N [--seed S]`` runs N frames against the codec and core;
``python -m tests.fuzz live ENDPOINT N`` sends them to a running broker from several bad
peers (see ``tests/integration/test_fuzz_live.py`` for the well-behaved client beside).
"""
from __future__ import annotations

import argparse
import logging
import random
import sys
import time
from typing import Any, Callable

import msgpack

from zbroker.core import Broker
from zbroker.protocol import HEADER, Op, ProtocolError
from zbroker.protocol.native_packed import _array_header, _bin_header, decode_frames
from zbroker.protocol.native_commands import SPECS
from zbroker.wires.native import NativeWire

NAMES = ["", "q", "q2", "dlq", "amq.direct", "amq.fanout", "amq.topic", "amq.headers", "amq.rabbitmq.reply-to",
         "ex", "x" * 300, "amq.gen-x", "*.#", "#", "a.b.c"]
COMMON_NAMES = ["q", "q", "q", "q2", "dlq", "", "ex"]
EXCHANGE_TYPES = ["direct", "fanout", "topic", "headers", "x-bogus", ""]
ARGUMENTS = ["x-message-ttl", "x-expires", "x-max-length", "x-max-length-bytes", "x-overflow",
             "x-dead-letter-exchange", "x-dead-letter-routing-key", "x-max-priority", "x-queue-type",
             "x-single-active-consumer", "x-delivery-limit", "x-priority", "alternate-exchange",
             "x-match", "x-consumer-timeout", "x-anything"]
PROPERTY_NAMES = ["delivery_mode", "priority", "expiration", "headers", "reply_to", "correlation_id",
                  "content_type", "timestamp", "message_id", "user_id", "bogus"]
OPS = sorted(SPECS)
#: What clients send (the rest are the broker's own events, sent now and then anyway).
CLIENT_OPS = [op for op in OPS if not Op(op).name.endswith("_OK") and op not in (
    Op.BASIC_DELIVER, Op.BASIC_RETURN, Op.BASIC_GET_EMPTY, Op.CONNECTION_BLOCKED, Op.CONNECTION_UNBLOCKED,
    Op.PUBLISH_CREDIT, Op.HELLO)]
#: The commands a busy client sends most, weighted in so that messages flow and settle.
BUSY_OPS = [Op.BASIC_PUBLISH] * 8 + [Op.QUEUE_DECLARE, Op.BASIC_CONSUME, Op.BASIC_GET] * 2 + [
    Op.BASIC_ACK, Op.BASIC_NACK, Op.BASIC_REJECT, Op.QUEUE_BIND, Op.EXCHANGE_DECLARE] * 2


def value(rng: random.Random, depth: int = 0) -> Any:
    """Any msgpack value, small or nasty."""
    kind = rng.randrange(12 if depth < 4 else 7)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.choice([0, 1, -1, 5, 255, 256, 65535, 2**31, 2**63 - 1, -2**63, 2**64 - 1])
    if kind == 3:
        return rng.choice(NAMES)
    if kind == 4:
        return rng.randbytes(rng.randrange(8))
    if kind == 5:
        return rng.choice([0.0, -1.5, 1e300, float("inf")])
    if kind == 6:
        return rng.choice(["drop-head", "reject-publish", "reject-publish-dlx", "quorum", "classic", "any", "all",
                           "0", "1000", "-1", "\u00e9"])
    if kind in (7, 8):
        return [value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice([*ARGUMENTS, *PROPERTY_NAMES, "x-death", "CC", "BCC"]) if rng.random() < 0.8
            else value(rng, 4): value(rng, depth + 1) for _ in range(rng.randrange(4))}


def field_value(rng: random.Random, name: str, types: tuple[type, ...]) -> Any:
    """A value of the field's own type mostly, another type sometimes."""
    if rng.random() < 0.005:
        return value(rng)
    if name == "channel":
        return rng.choice([1] * 30 + [2] * 12 + [0, 3, 70000])
    if name == "exchange_type":
        return rng.choice(EXCHANGE_TYPES)
    if name in ("arguments", "client_properties"):
        if rng.random() < 0.6:
            return {}
        return {rng.choice(ARGUMENTS): value(rng, 2) for _ in range(rng.randrange(3))}
    if name == "properties":
        if rng.random() < 0.5:
            return {}
        return {rng.choice(PROPERTY_NAMES): value(rng, 2) for _ in range(rng.randrange(3))}
    if bool in types:
        return rng.random() < 0.3
    if int in types:
        return rng.choice([0, 1, 2, 3, 10, 100, 0, 1, -1, 2**40])
    if str in types:
        return rng.choice(COMMON_NAMES) if rng.random() < 0.85 else rng.choice(NAMES)
    if dict in types:
        return value(rng, 3) if rng.random() < 0.2 else {}
    return value(rng)


def command(rng: random.Random, op: int | None = None) -> tuple[bytes, bool]:
    """One packed command (maybe broken); and whether a body should follow."""
    if op is None:
        roll = rng.random()
        op = rng.choice(BUSY_OPS) if roll < 0.6 else rng.choice(CLIENT_OPS) if roll < 0.97 else rng.choice(OPS)
    spec = SPECS[op]
    fields = [field_value(rng, name, types) for name, types in spec.fields]
    roll = rng.random()
    if roll < 0.01 and fields:
        fields.pop(rng.randrange(len(fields)))
    elif roll < 0.02:
        fields.append(value(rng))
    elif roll < 0.025:
        op = rng.choice([0, 9, 99, 255, -1, 2**33])
    packed = msgpack.packb([op, *fields], use_bin_type=True, datetime=True)
    return packed, spec.has_body


def mutate(rng: random.Random, data: bytes) -> bytes:
    if not data:
        return rng.randbytes(rng.randrange(1, 8))
    raw = bytearray(data)
    roll = rng.randrange(5)
    if roll == 0:
        for _ in range(rng.randrange(1, 4)):
            i = rng.randrange(len(raw))
            raw[i] ^= 1 << rng.randrange(8)
    elif roll == 1:
        del raw[rng.randrange(len(raw)):]
    elif roll == 2:
        raw[rng.randrange(len(raw))] = rng.choice([0xC1, 0xDD, 0xDF, 0xC7, 0xD9, 0x92, 0xFF])
    elif roll == 3:
        raw += rng.randbytes(rng.randrange(1, 6))
    else:
        return rng.randbytes(rng.randrange(1, 40))
    return bytes(raw)


def message(rng: random.Random) -> list[bytes]:
    """One ZeroMQ message after the routing id, in the split or the packed form: header,
    commands, bodies -- or not quite."""
    entries = []
    for _ in range(1 if rng.random() < 0.8 else rng.randrange(1, 5)):
        packed, has_body = command(rng)
        if rng.random() < 0.015:
            packed = mutate(rng, packed)
        body = rng.randbytes(rng.choice([0, 1, 10, 100])) if has_body and rng.random() < 0.99 else None
        entries.append((packed, body))
    stray = rng.random() < 0.003  # a stray half command at the end
    if rng.random() < 0.5:
        return packed_message(rng, entries, stray)
    parts = [HEADER if rng.random() < 0.99 else mutate(rng, HEADER)]
    for packed, body in entries:
        parts.append(packed)
        if body is not None:
            parts.append(body)
    if stray:
        parts.append(b"\x93\x2e\x01")
    return parts


def packed_message(rng: random.Random, entries: list[tuple[bytes, bytes | None]], stray: bool) -> list[bytes]:
    """The packed form of ``entries``: bodies inside, now and then as frames of their
    own; and now and then a wrong count, a wrong frame number, a flipped bit."""
    items: list[bytes] = []
    own: list[bytes] = []
    for packed, body in entries:
        items.append(packed)
        if body is None:
            continue
        if rng.random() < 0.1:
            own.append(body)
            items.append(msgpack.packb(len(own) if rng.random() < 0.95 else rng.choice([0, 7, -1, "x", None])))
        else:
            items.append(_bin_header(len(body)) + body)
    if stray:
        items.append(b"\x93\x2e\x01")
    count = len(items) + (0 if rng.random() < 0.98 else rng.choice([-1, 1]))
    frame = HEADER + _array_header(max(count, 0)) + b"".join(items)
    if rng.random() < 0.01:
        frame = HEADER + mutate(rng, frame[len(HEADER):])
    if rng.random() < 0.003:
        own.append(b"a frame no command names")
    return [frame, *own]


def opening(rng: random.Random) -> list[list[bytes]]:
    """HELLO and a channel or two, so most frames meet an open connection."""
    hello = msgpack.packb([Op.HELLO, None, "/", "guest", "guest", {}])
    return [[HEADER, hello], [HEADER, msgpack.packb([Op.CHANNEL_OPEN, 1])],
            [HEADER, msgpack.packb([Op.CHANNEL_OPEN, 2])]]


class Bugs(logging.Handler):
    """Collects the broker's error records that carry a traceback: bugs its guards caught."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)


def run_frames(count: int, seed: int, report: Callable[[str], None] = lambda _: None) -> dict[str, int]:
    """Throw ``count`` messages at the codec and the core; returns counters. Raises
    AssertionError with the seed and the frame on the first bug."""
    rng = random.Random(seed)
    bugs = Bugs()
    logger = logging.getLogger("zbroker")
    level = logger.level
    logger.addHandler(bugs)
    logger.setLevel(logging.ERROR)  # the fuzzer's frames are meant to be refused: quiet
    stats = {"messages": 0, "codec_errors": 0, "closes": 0, "brokers": 0}
    try:
        broker, wire, now = Broker(), None, 1_000_000.0
        wire = NativeWire(broker)
        peers = [b"fz-%d" % i for i in range(4)]
        started = time.monotonic()
        for n in range(count):
            if n % 20_000 == 0:  # a fresh broker now and then: state must not grow forever
                broker = Broker(now=now)
                wire = NativeWire(broker)
                stats["brokers"] += 1
            peer = rng.choice(peers)
            batch = opening(rng) if peer not in broker.connections and rng.random() < 0.95 else [message(rng)]
            for parts in batch:
                _codec(parts, stats)
                try:
                    wire.handle(peer, parts, 0, now)
                except Exception as exc:
                    raise AssertionError(f"seed {seed}, message {n}: {exc!r} escaped the wire for {parts!r}") from exc
                for out_peer, out in wire.take_outgoing().items():
                    for number in _check_replies(out, seed, n, parts, stats):
                        if rng.random() < 0.9:  # a client answers a channel close and reopens
                            wire.handle(out_peer, [HEADER, msgpack.packb([Op.CHANNEL_CLOSE_OK, number])], 0, now)
                            wire.handle(out_peer, [HEADER, msgpack.packb([Op.CHANNEL_OPEN, number])], 0, now)
                if bugs.records:
                    record = bugs.records[0]
                    raise AssertionError(f"seed {seed}, message {n}: the broker logged a bug "
                                         f"({record.getMessage()}) for {parts!r}")
            stats["messages"] += 1
            if rng.random() < 0.01:
                now += rng.choice([0.001, 0.5, 10.0])
                broker.tick(now)
                broker.commit(now)
            if n and n % 100_000 == 0:
                report(f"{n:,} messages, {n / (time.monotonic() - started):,.0f}/s")
    finally:
        logger.removeHandler(bugs)
        logger.setLevel(level)
    return stats


def _codec(parts: list[bytes], stats: dict[str, int]) -> None:
    try:
        list(decode_frames(parts, 0))
    except ProtocolError:
        stats["codec_errors"] += 1


def _check_replies(out: list[list[Any]], seed: int, n: int, parts: list[bytes], stats: dict[str, int]) -> list[int]:
    """Fail on a 541; returns the channels the broker closed."""
    closed = []
    for op, fields, _ in (command for message in out for command in decode_frames(message, 0, 1 << 30)):
        if op == Op.CONNECTION_CLOSE:
            stats["closes"] += 1
            code = fields[0]
        elif op == Op.CHANNEL_CLOSE:
            code = fields[1]
            closed.append(fields[0])
        else:
            continue
        if code == 541:
            raise AssertionError(f"seed {seed}, message {n}: 541 internal error ({fields}) for {parts!r}")
    return closed


def run_live(endpoint: str, count: int, seed: int, peers: int = 4) -> dict[str, int]:
    """Send ``count`` fuzzed messages from ``peers`` bad peers to a live broker; a bad
    peer that was closed starts again as a new peer. Returns what the broker answered."""
    import zmq

    rng = random.Random(seed)
    ctx = zmq.Context()
    answers = {"messages": 0, "closed": 0, "replies": 0}

    def new_peer() -> Any:
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 1000)
        sock.connect(endpoint)
        for parts in opening(rng):
            sock.send_multipart(parts)
        return sock

    socks = [new_peer() for _ in range(peers)]
    try:
        for n in range(count):
            i = rng.randrange(peers)
            try:
                socks[i].send_multipart(message(rng), zmq.NOBLOCK)
            except zmq.Again:
                pass
            answers["messages"] += 1
            # Read what came back (a little patiently now and then, so that a closed
            # peer learns of it and starts again instead of talking to nobody).
            while socks[i].poll(1 if n % 20 == 0 else 0):
                reply = socks[i].recv_multipart()
                answers["replies"] += 1
                if _is_close(reply):
                    answers["closed"] += 1
                    socks[i].close(0)
                    socks[i] = new_peer()
                    break
    finally:
        for sock in socks:
            sock.close(0)
        ctx.term()
    return answers


def _is_close(reply: list[bytes]) -> bool:
    try:
        return any(op == Op.CONNECTION_CLOSE for op, _, _ in decode_frames(reply, 0, 1 << 30))
    except ProtocolError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    frames = sub.add_parser("frames", help="fuzz the codec and the core in this process")
    frames.add_argument("count", type=int)
    frames.add_argument("--seed", type=int, default=1)
    live = sub.add_parser("live", help="fuzz a running broker over ZeroMQ")
    live.add_argument("endpoint")
    live.add_argument("count", type=int)
    live.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        if args.mode == "frames":
            stats = run_frames(args.count, args.seed, lambda msg: print(msg, file=sys.stderr, flush=True))
        else:
            stats = run_live(args.endpoint, args.count, args.seed)
    except AssertionError as exc:
        print(f"BUG: {exc}", file=sys.stderr)
        return 1
    print(f"{args.mode}: {stats} in {time.monotonic() - started:.1f} s, seed {args.seed}: no bug found")
    return 0


if __name__ == "__main__":
    sys.exit(main())
