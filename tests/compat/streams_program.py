"""Streams (x-queue-type: stream) over AMQP 0-9-1, as RabbitMQ 3.10 does them: declaring,
arguments, offsets, deliveries, credit, refused operations, management and policies.

    python tests/compat/streams_program.py AMQP_PORT "CTL COMMAND" HTTP_BASE
    # e.g. 5672 "rabbitmqctl" http://127.0.0.1:15672, or
    #      5673 "zbroker ctl --broker tcp://127.0.0.1:5680" http://127.0.0.1:15680

Real pika on both sides (zbroker's AMQP listener), guest/guest over HTTP; one line per
check, no timestamps or generated names; ``bin/compare-rabbitmq`` diffs the two outputs.
Not part of the suite, which must pass without a RabbitMQ. Where zbroker's streams still
differ from RabbitMQ 3.10, the README's "Streams" section lists it.
It takes about a minute (RabbitMQ refreshes a stream's message count every 5 s).

RabbitMQ 3.10.8's rules, as observed here and read in deps/rabbit/src (QN below is
"queue 'NAME' in vhost '/'", rabbit_misc:rs/1):

Declaring (rabbit_channel queue.declare, rabbit_amqqueue:declare/check_declare_arguments,
rabbit_stream_queue:declare, rabbit_queue_type_util:check_*)
- Must be durable, not exclusive, not auto-delete: 406 PRECONDITION_FAILED, channel closed,
  "invalid property 'auto-delete' for QN", then 'exclusive-owner', then 'non-durable', checked
  in that order (an exclusive declare counts as non-durable but names 'exclusive-owner').
- Server-named (""): 406 "Cannot declare a server-named queue for type rabbit_stream_queue".
- Arguments are checked before those properties: first each stream argument's value
  (check_arguments_type_and_value: "invalid arg 'KEY' for QN: ~p-of-the-error"), then any
  argument that belongs only to another queue type (check_arguments_key: "invalid arg 'KEY'
  for QN of queue type rabbit_stream_queue"). Unknown arguments (x-foo, x-ha-policy, and in
  3.10 x-stream-filter-size-bytes with any value) are accepted and kept.
- Stream arguments (capabilities() queue_arguments): x-queue-type, x-max-length-bytes
  (non-negative integer type: {value_negative,-1}, "expected integer, got longstr"),
  x-max-age (longstr only: {unacceptable_type,signedint}; check_max_age: regex
  "(^[0-9]*)(.*)", N > 0 and a unit of Y M D h m s exactly (Y=365D, M=30D); "0s", "10",
  "1.5h", "1w", "1H", "1h " -> invalid_max_age; "01h" is fine; "", "h", "-1h", " 1h" crash
  list_to_integer: connection closed 541 INTERNAL_ERROR), x-stream-max-segment-size-bytes
  (non-negative integer, > 3,000,000,000: 406 "Exceeded max value for
  x-stream-max-segment-size-bytes", check_max_segment_size_bytes), x-initial-cluster-size
  ({value_zero,0}), x-queue-leader-locator (client-local, balanced, least-leaders, random;
  else invalid_queue_locator_arg).
- Refused as another type's: x-message-ttl, x-max-length, x-dead-letter-exchange (a
  non-string one first fails rabbit_channel's "invalid type 'signedint' for arg
  'x-dead-letter-exchange' in QN"), x-dead-letter-routing-key, x-dead-letter-strategy,
  x-max-priority, x-expires, x-overflow, x-single-active-consumer (true or false),
  x-queue-mode, x-queue-version, x-delivery-limit, x-max-in-memory-length/-bytes,
  x-quorum-initial-group-size, x-queue-master-locator: whatever their value.
- Redeclaring (assert_equivalence, rabbit_misc:assert_args_equivalence over the stream's
  own argument keys only): "inequivalent arg 'x-max-age' for QN: received '1D' but current
  is '7D'" (same type: bare values; missing: "none"; else "the value '7D' of type
  'longstr'"), 'x-queue-type' (received none ... / 'quorum' ...), 'durable', 'auto_delete'
  ("received 'true' but current is 'false'"); exclusive: 405 RESOURCE_LOCKED "cannot obtain
  exclusive access to locked QN. It could be ...". Another type's argument or an unknown
  one on a redeclare is NOT checked: ok. declare-ok: consumer_count is always 0 (stat/1).

Consuming (rabbit_stream_queue:consume, parse_offset_arg; rabbit_channel basic.consume)
- Consumer prefetch 0 (no basic.qos, or only a global one): 406 channel "consumer prefetch
  count is not set for 'QN'" (quoted twice, as printed). auto_ack: 540 NOT_IMPLEMENTED,
  connection closed, "automatic acknowledgement not supported by stream queues QN".
  A global qos in force (basic.qos global=true after the per-consumer one; a later
  global=false one lifts it): 540 connection "QN does not support global qos".
- Consumer arguments: x-stream-offset, x-credit; another type's (x-priority,
  x-cancel-on-ha-failover): 406 "invalid arg 'x-priority' for QN of queue type
  rabbit_stream_queue"; unknown ones (x-stream-filter in 3.10) ignored. exclusive=true is
  accepted and ignored (others still consume).
- x-stream-offset: absent or "next" -> only messages written after the consume; "first";
  "last" -> from the start of the last chunk (one confirmed publish is one chunk; the
  messages of one tx.commit share chunks as the writer batches them: last then gave 2 or 3); an integer N (any integer type) ->
  from offset N: below the first offset reads from the first, past the end waits for offset N
  (messages before N are skipped, even new ones); a timestamp ('T', seconds) -> from the first
  chunk whose timestamp (ms) >= seconds*1000, in the future -> like next; a longstr interval
  (check_max_age: "1h", "30s", "1D") -> timestamp now-interval. Any string type matches
  first/last/next (a byte array 'x' too). Invalid interval: 406 channel "invalid arg
  'x-stream-offset' for QN: {invalid_stream_offset_arg,{longstr,<<"0s">>}}"; the ones that
  crash check_max_age ("abc", "", "-1h") and non-integers (bool, decimal): 541 INTERNAL_ERROR.
- Each delivery carries header x-stream-offset, type 'l' (signed 64-bit), replacing a
  publisher's header of that name (rabbit_basic:add_header in stream_entries);
  redelivered=false; exchange and routing key are those it was published with (stored as
  x-exchange/x-routing-key annotations); delivery tags per channel as usual. The message is
  stored as AMQP 1.0 (rabbit_msg_record): all basic properties come back; headers of type
  array or table are dropped (unsupported_header_value_type), a decimal header crashes the
  publish (541 INTERNAL_ERROR, connection); 'I', 'l', 't', 'x', 'T', 'V', 'S' come back as is.
- Offsets count entries, not messages: every segment after the first starts with a
  tracking-snapshot entry that takes an offset, so consumers see gaps (…4, 6…).
- Credit (settle/4, stream_entries/3): a consumer starts with credit = its prefetch at
  basic.consume (a later basic.qos does not change it); each delivered message uses one,
  each acked message (multiple acks count each) gives one back. Whole chunks are delivered
  while credit > 0, so credit can go below 0 with multi-message chunks. Acks do not remove
  anything; every consumer (any connection) reads the whole log independently; after acks
  and reconnects all is still there. basic.cancel: cancel-ok, no more deliveries.
- Messages count (rabbit_osiris_metrics tick, every stream_tick_interval = 5 s): messages =
  messages_ready = last offset + 1 - first offset, messages_unacknowledged = 0.

Refused (protocol errors; 540 and 541 close the connection)
- basic.get: 540 "basic.get not supported by stream queues QN" (dequeue/4).
- queue.purge: 540 "queue.purge not supported by stream queues QN".
- basic.nack and basic.reject (any requeue): 540 "basic.nack and basic.reject not supported
  by stream queues QN" (settle/4). pika's BlockingChannel rejects buffered deliveries when a
  consumer is cancelled or the channel closed: that closes the connection too.
- basic.recover with unacked stream deliveries: 541 INTERNAL_ERROR (the requeue's
  protocol_error is not handled); with none: recover-ok.
- basic.ack of an unknown or already acked tag: 406 channel "unknown delivery tag 99".
- Allowed: queue.delete (if-empty/if-unused ignored; delete-ok message_count 0), bindings to
  any exchange, publisher confirms (ack once written), mandatory (returned only when
  unroutable), transactions.

Management: type "stream", arguments as declared, messages/messages_ready from the tick,
messages_unacknowledged 0, consumers counts AMQP consumers, state "running", node, members
and online are node names (no leader key), readers per node, consumer_details rows have active false, activity_status "up",
ack_required true, prefetch_count, the consumer arguments. list_queues type column "stream".

Policies (rabbit_policies, rabbit_queue_type:is_policy_applicable, args_policy_lookup with
policy_precedence/2 = the policy's value): stream keys max-age, max-length-bytes,
stream-max-segment-size-bytes, initial-cluster-size, queue-leader-locator. A policy with any
key a stream does not take (capabilities() unsupported_policies: max-length, message-ttl,
...) does not apply to a stream at all: the next matching policy does. When both exist the
POLICY wins over the argument, larger or smaller (unlike classic queues' minimum).
effective_policy_definition shows the policy's definition. Validation texts: "<<\"1x\">> is not
a valid max age", "3000000001 is not a valid segment size", "-1 is not a valid cluster
size", "<<\"nope\">> is not a valid queue leader locator value"; max-age 5 or "h" crash.

Retention (osiris_log: write/open_new_segment -> trigger_retention_eval, update_retention
on a policy change; evaluate_retention): whole segments are deleted, never the one being
written, and only when a new segment is started (or retention changes): max-length-bytes
keeps the newest segments within the limit, max-age drops segments whose last chunk is
older than now - max-age. Default segment size 500,000,000 bytes.

Filtering (3.13+, v3.13.7 rabbit_stream_queue; 3.10 stores and ignores all of it)
- Declare x-stream-filter-size-bytes: 16..255 else 406 "Invalid value for
  x-stream-filter-size-bytes" (two spaces, check_filter_size); policy
  stream-filter-size-bytes.
- Publish header x-stream-filter-value: a string; the message is written with that filter
  value into its chunk's Bloom filter (stream_message/2).
- Consume x-stream-filter: a string or an array of strings (non-strings in the array
  ignored); x-stream-match-unfiltered: bool (anything else false), also deliver messages
  without a filter value. Filtering is per chunk (Bloom filter): a chunk that may match is
  delivered whole, so consumers must filter again themselves. Without the stream_filtering
  feature flag: 406 "Filtering is not supported". In 4.x both are consumer_arguments.
"""
import datetime
import decimal
import shlex
import struct
import subprocess
import sys
import time

import pika
import pika.data
from management_http import ManagementHttp, canonical

port, ctl, base = int(sys.argv[1]), shlex.split(sys.argv[2]), sys.argv[3]
api = ManagementHttp(base)
PARAMS = pika.ConnectionParameters("127.0.0.1", port)
STREAMS = ["st.decl", "st.arg", "st.c", "st.off", "st.ts", "st.credit", "st.ops", "st.m", "st.pol", "st.pol2",
           "st.ret", "st.classic", "st.x", "st.fan", "st.del", "st.del2"]
POLICIES = ["st-pol", "st-pol-skip", "st-ret", "st-bad"]

# The AMQP field type of every header/argument pika decodes, by key (pika turns 'I', 'l'
# and 'L' into the same int): the x-stream-offset header's own type on the wire.
WIRE = {}
_decode_value = pika.data.decode_value


def _decode_table(encoded, offset):
    result = {}
    size = struct.unpack_from(">I", encoded, offset)[0]
    offset += 4
    limit = offset + size
    while offset < limit:
        key, offset = pika.data.decode_short_string(encoded, offset)
        WIRE[key] = encoded[offset:offset + 1].decode()
        result[key], offset = _decode_value(encoded, offset)
    return result, offset


pika.data.decode_table = _decode_table


def plain(value):
    """pika's long prints as 8L: print ints as ints, the rest as repr would."""
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in sorted(value.items())}
    return value


def connect():
    return pika.BlockingConnection(PARAMS)


def outcome(exc: Exception) -> str:
    if isinstance(exc, pika.exceptions.ChannelClosedByBroker):
        return f"channel closed {exc.reply_code} {exc.reply_text}"
    if isinstance(exc, pika.exceptions.ConnectionClosedByBroker):
        return f"connection closed {exc.reply_code} {exc.reply_text}"
    return f"{type(exc).__name__} {exc}"


def attempt(label: str, fn) -> None:
    """Run fn(channel) on a fresh connection; print its result or how the broker closed."""
    conn = connect()
    ch = conn.channel()
    try:
        print(f"{label}: ok {fn(ch)}")
    except Exception as exc:  # noqa: BLE001 - the program prints what happened
        print(f"{label}: {outcome(exc)}")
    if conn.is_open:
        conn.close()


def stream(ch, name: str, **arguments):
    return ch.queue_declare(name, durable=True, arguments={"x-queue-type": "stream", **arguments})


def declared(ok) -> str:
    return f"messages={ok.method.message_count} consumers={ok.method.consumer_count}"


def publish(ch, queue: str, bodies, **properties) -> None:
    """One confirmed publish at a time: each message is a chunk of its own."""
    for body in bodies:
        ch.basic_publish("", queue, body.encode(), pika.BasicProperties(**properties))


def drain(conn, got: list, quiet: float = 0.6, limit: float = 6.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = len(got)
        conn.process_data_events(time_limit=quiet)
        if len(got) == before:
            return


def consume(queue: str, offset=None, prefetch: int = 100, ack: bool = True, extra=None, publish_after=None):
    """Bodies and x-stream-offset values a consumer reads."""
    conn = connect()
    ch = conn.channel()
    ch.basic_qos(prefetch_count=prefetch)
    got = []

    def on_message(channel, method, properties, body):
        got.append((body.decode(), (properties.headers or {}).get("x-stream-offset")))
        if ack:
            channel.basic_ack(method.delivery_tag)

    arguments = dict(extra or {})
    if offset is not None:
        arguments["x-stream-offset"] = offset
    try:
        ch.basic_consume(queue, on_message, arguments=arguments)
        drain(conn, got)
        if publish_after:
            other = conn.channel()
            other.confirm_delivery()
            publish(other, queue, publish_after)
            drain(conn, got)
    except Exception as exc:  # noqa: BLE001
        return outcome(exc)
    conn.close()
    return " ".join(f"{b}@{o}" for b, o in got) or "(none)"


def wait_messages(ch, queue: str, expected: int, seconds: float = 15.0) -> int:
    """queue.declare-ok's message_count once it reaches expected (RabbitMQ counts a stream's
    messages from metrics that are refreshed every few seconds)."""
    deadline = time.monotonic() + seconds
    while True:
        ok = ch.queue_declare(queue, passive=True)
        if ok is None:
            return None
        count = ok.method.message_count
        if count == expected or time.monotonic() > deadline:
            return count
        time.sleep(0.25)


def run(*args: str) -> str:
    out = subprocess.run([*ctl, *args], capture_output=True, text=True)
    lines = (out.stdout + out.stderr).strip().splitlines()
    return f"exit={out.returncode} " + " | ".join(line for line in lines if line.strip()
                                                   and not line.startswith(("Setting", "Clearing")))


def clean() -> None:
    conn = connect()
    ch = conn.channel()
    for name in STREAMS:
        ch.queue_delete(name)
    ch.exchange_delete("st.fanout")
    conn.close()
    for name in POLICIES:
        run("clear_policy", name)


clean()

# --- Declaring -------------------------------------------------------------------------
print("== declare")
attempt("non-durable", lambda ch: ch.queue_declare("st.decl", arguments={"x-queue-type": "stream"}))
attempt("exclusive", lambda ch: ch.queue_declare("st.decl", durable=True, exclusive=True,
                                                 arguments={"x-queue-type": "stream"}))
attempt("auto-delete", lambda ch: ch.queue_declare("st.decl", durable=True, auto_delete=True,
                                                   arguments={"x-queue-type": "stream"}))
attempt("non-durable auto-delete exclusive", lambda ch: ch.queue_declare(
    "st.decl", exclusive=True, auto_delete=True, arguments={"x-queue-type": "stream"}))
attempt("non-durable exclusive", lambda ch: ch.queue_declare(
    "st.decl", exclusive=True, arguments={"x-queue-type": "stream"}))
attempt("server-named", lambda ch: stream(ch, ""))
attempt("STREAM", lambda ch: ch.queue_declare("st.decl", durable=True, arguments={"x-queue-type": "STREAM"}))
attempt("declare", lambda ch: declared(stream(ch, "st.decl", **{"x-max-age": "7D"})))
attempt("redeclare same", lambda ch: declared(stream(ch, "st.decl", **{"x-max-age": "7D"})))
attempt("redeclare other x-max-age", lambda ch: stream(ch, "st.decl", **{"x-max-age": "1D"}))
attempt("redeclare without x-max-age", lambda ch: stream(ch, "st.decl"))
attempt("redeclare new x-max-length-bytes", lambda ch: stream(ch, "st.decl", **{"x-max-age": "7D",
                                                                                 "x-max-length-bytes": 10}))
attempt("redeclare new x-message-ttl", lambda ch: declared(stream(ch, "st.decl", **{"x-max-age": "7D",
                                                                                      "x-message-ttl": 5})))
attempt("redeclare new x-foo", lambda ch: declared(stream(ch, "st.decl", **{"x-max-age": "7D", "x-foo": 1})))
attempt("redeclare without x-queue-type", lambda ch: ch.queue_declare("st.decl", durable=True,
                                                                       arguments={"x-max-age": "7D"}))
attempt("redeclare as quorum", lambda ch: ch.queue_declare("st.decl", durable=True, arguments={
    "x-queue-type": "quorum", "x-max-age": "7D"}))
attempt("redeclare non-durable", lambda ch: ch.queue_declare("st.decl", arguments={
    "x-queue-type": "stream", "x-max-age": "7D"}))
attempt("redeclare auto-delete", lambda ch: ch.queue_declare("st.decl", durable=True, auto_delete=True,
                                                             arguments={"x-queue-type": "stream",
                                                                        "x-max-age": "7D"}))
attempt("redeclare exclusive", lambda ch: ch.queue_declare("st.decl", durable=True, exclusive=True,
                                                           arguments={"x-queue-type": "stream",
                                                                      "x-max-age": "7D"}))
attempt("passive", lambda ch: declared(ch.queue_declare("st.decl", passive=True)))
attempt("classic then stream", lambda ch: (ch.queue_declare("st.classic", durable=True),
                                           stream(ch, "st.classic")))

print("== arguments")
ARGUMENTS = [
    ("x-max-length-bytes", [1000, 0, -1, "1000", decimal.Decimal("1.5"), True]),
    ("x-max-age", ["7D", "1h", "10m", "30s", "1Y", "1M", "0s", "0D", "10", "1.5h", "h", "", "1w", "1H", "-1h",
                   " 1h", "1h ", "01h", "1hh", 3600, b"1h"]),
    ("x-stream-max-segment-size-bytes", [1000000, 3000000000, 3000000001, 0, -1, "1000"]),
    ("x-stream-filter-size-bytes", [16, 300, -1, "x"]),
    ("x-initial-cluster-size", [1, 3, 0, -1, "1"]),
    ("x-queue-leader-locator", ["client-local", "balanced", "least-leaders", "random", "nope", 1]),
    ("x-message-ttl", [1000, "abc"]),
    ("x-max-length", [10]),
    ("x-dead-letter-exchange", ["dlx", 5]),
    ("x-dead-letter-routing-key", ["k"]),
    ("x-max-priority", [5]),
    ("x-expires", [1000]),
    ("x-overflow", ["drop-head", "reject-publish"]),
    ("x-single-active-consumer", [True, False]),
    ("x-queue-mode", ["lazy"]),
    ("x-queue-version", [2]),
    ("x-delivery-limit", [5]),
    ("x-max-in-memory-length", [5]),
    ("x-max-in-memory-bytes", [5]),
    ("x-dead-letter-strategy", ["at-least-once"]),
    ("x-quorum-initial-group-size", [1]),
    ("x-queue-master-locator", ["min-masters"]),
    ("x-ha-policy", ["all"]),
    ("x-foo", ["bar"]),
]


def declare_arg(ch, key, value):
    ok = stream(ch, "st.arg", **{key: value})
    ch.queue_delete("st.arg")
    return declared(ok)


for key, values in ARGUMENTS:
    for value in values:
        attempt(f"{key}={value!r}", lambda ch, k=key, v=value: declare_arg(ch, k, v))
attempt("two bad arguments", lambda ch: stream(ch, "st.arg", **{"x-message-ttl": 1, "x-max-age": "1x"}))

# --- Consuming ---------------------------------------------------------------------------
print("== consume")


class Setup:
    """The channel that makes streams and publishes to them: reopened after a broker closes
    it, and what it is refused is printed rather than raised, so that the rest still runs
    against a broker without streams."""

    def __init__(self):
        self.conn = self.ch = None

    def channel(self):
        if self.conn is None or not self.conn.is_open:
            self.conn = connect()
        if self.ch is None or not self.ch.is_open:
            self.ch = self.conn.channel()
            self.ch.confirm_delivery()
        return self.ch

    def __getattr__(self, name):
        def call(*args, **kwargs):
            try:
                return getattr(self.channel(), name)(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001
                print(f"setup {name} {args[0] if args else ''}: {outcome(exc)}")
                return None
        return call

    def close(self):
        if self.conn is not None and self.conn.is_open:
            self.conn.close()


def section(fn) -> None:
    """Run one part of the program; if the broker stops it, say so and go on with the next."""
    try:
        fn()
    except Exception as exc:  # noqa: BLE001
        print(f"{fn.__name__} stopped: {outcome(exc)}")


sch = Setup()
stream(sch, "st.c")
publish(sch, "st.c", [f"m{i}" for i in range(5)])


def consume_without_qos(ch):
    ch.basic_consume("st.c", lambda *a: None)
    return "consuming"


def consume_with(ch, prefetch=10, global_qos=False, **kwargs):
    ch.basic_qos(prefetch_count=prefetch, global_qos=global_qos)
    ch.basic_consume("st.c", lambda *a: None, **kwargs)
    return "consuming"


attempt("consume without basic.qos", consume_without_qos)
attempt("consume with prefetch 0", lambda ch: consume_with(ch, prefetch=0))
attempt("consume auto_ack", lambda ch: consume_with(ch, auto_ack=True))
attempt("consume with global qos", lambda ch: consume_with(ch, global_qos=True))
attempt("consume with global and consumer qos", lambda ch: (ch.basic_qos(prefetch_count=5, global_qos=True),
                                                              consume_with(ch))[-1])
attempt("consume with consumer qos then global qos", lambda ch: (ch.basic_qos(prefetch_count=5),
                                                                    ch.basic_qos(prefetch_count=5, global_qos=True),
                                                                    consume_with(ch, prefetch=5, global_qos=True))[-1])
attempt("consume exclusive", lambda ch: consume_with(ch, exclusive=True))
attempt("consume x-priority", lambda ch: consume_with(ch, arguments={"x-priority": 5}))
attempt("consume x-credit", lambda ch: consume_with(ch, arguments={"x-credit": {"credit": 5, "drain": False}}))
attempt("consume x-stream-filter (3.10 ignores)", lambda ch: consume_with(ch, arguments={"x-stream-filter": "a"}))
attempt("consume x-cancel-on-ha-failover", lambda ch: consume_with(ch, arguments={"x-cancel-on-ha-failover": True}))

print("== offsets")
for offset in ("first", "last", "next", 0, 2, 4, 5, 100, -1, b"first", True, decimal.Decimal("1.5"),
               "1h", "30s", "1D", "0s", "abc", "", "1x", "-1h"):
    print(f"x-stream-offset={offset!r}:", consume("st.c", offset))
print("no x-stream-offset:", consume("st.c"))
print("next, then one more published:", consume("st.c", "next", publish_after=["m5"]))
print("last, then one more published:", consume("st.c", "last", publish_after=["m6"]))
print("offset 100, then one more published:", consume("st.c", 100, publish_after=["m7"]))


def timestamps():
    # A timestamp offset (an AMQP 'T' field: pika sends a datetime as one, whole seconds): the
    # chunks written at or after that second.
    stream(sch, "st.ts")
    publish(sch, "st.ts", ["t0", "t1"])
    time.sleep(1.1 - time.time() % 1)
    boundary = int(time.time())
    publish(sch, "st.ts", ["t2", "t3"])
    stamp = datetime.datetime.fromtimestamp(boundary, datetime.timezone.utc)
    print("timestamp offset at the second t2 was published in:", consume("st.ts", stamp))
    print("timestamp offset an hour ago:", consume("st.ts", stamp - datetime.timedelta(hours=1)))
    print("timestamp offset in an hour:", consume("st.ts", stamp + datetime.timedelta(hours=1)))
    print("timestamp offset 0 (1970):", consume("st.ts", datetime.datetime.fromtimestamp(0, datetime.timezone.utc)))


section(timestamps)


def deliveries():
    print("== deliveries")
    sch.exchange_declare("st.fanout", "fanout")
    sch.queue_bind("st.c", "st.fanout")
    sch.basic_publish("st.fanout", "some.key", b"full", pika.BasicProperties(
        content_type="text/plain", content_encoding="utf-8", headers={"h-str": "v", "h-int": 7, "h-list": [1, "a"],
                                                                      "h-table": {"k": True}, "x-stream-offset": "mine",
                                                                      "h-bool": True, "h-bytes": b"\x00\x01",
                                                                      "h-ts": datetime.datetime(2024, 1, 2, 3, 4, 5),
                                                                      "h-void": None, "h-long": 2 ** 40, "h-neg": -5},
        delivery_mode=2, priority=3, correlation_id="c1", reply_to="r1", expiration="60000", message_id="id1",
        timestamp=1700000000, type="t1", user_id="guest", app_id="a1"))
    conn = connect()
    ch = conn.channel()
    ch.basic_qos(prefetch_count=10)
    seen = []
    ch.basic_consume("st.c", lambda c, m, p, b: seen.append((m, p, b)), arguments={"x-stream-offset": 8})
    drain(conn, seen)
    for method, props, body in seen:
        print("delivery:", body.decode(), f"tag={method.delivery_tag} redelivered={method.redelivered}",
              f"exchange={method.exchange!r} routing_key={method.routing_key!r}")
        shown = {k: v for k, v in sorted(vars(props).items()) if v is not None and k != "headers"}
        print("  properties:", shown)
        print("  headers:", sorted((k, WIRE.get(k), plain(v)) for k, v in (props.headers or {}).items()))
    conn.close()


section(deliveries)


def publish_decimal_header(ch):
    ch.confirm_delivery()
    ch.basic_publish("", "st.c", b"dec", pika.BasicProperties(headers={"h-dec": decimal.Decimal("1.5")}))
    return "confirmed"


attempt("publish a decimal header", publish_decimal_header)


def credit():
    print("== credit")
    stream(sch, "st.credit")
    publish(sch, "st.credit", [f"c{i}" for i in range(8)])
    conn = connect()
    ch = conn.channel()
    ch.basic_qos(prefetch_count=2)
    seen = []
    ch.basic_consume("st.credit", lambda c, m, p, b: seen.append((m.delivery_tag, b.decode())),
                     arguments={"x-stream-offset": "first"})
    drain(conn, seen)
    print("prefetch 2, nothing acked:", seen)
    ch.basic_qos(prefetch_count=5)
    drain(conn, seen)
    print("basic.qos 5 after basic.consume:", seen)
    ch.basic_ack(seen[0][0])
    drain(conn, seen)
    print("one ack:", seen)
    ch.basic_ack(seen[-1][0], multiple=True)
    drain(conn, seen)
    print("multiple ack of the rest:", seen)
    ch.basic_ack(seen[-1][0], multiple=True)
    drain(conn, seen)
    print("multiple ack again:", seen)
    conn.close()


section(credit)

print("== refused operations")
stream(sch, "st.ops")
publish(sch, "st.ops", ["o0", "o1", "o2"])


def with_delivery(action):
    """Consume st.ops from first with prefetch 10, then do action(channel, first delivery's tag)
    and a queue.declare (passive) to see whether the channel survived."""
    def run_it(ch):
        ch.basic_qos(prefetch_count=10)
        tags = []
        ch.basic_consume("st.ops", lambda c, m, p, b: tags.append(m.delivery_tag),
                         arguments={"x-stream-offset": "first"})
        drain(ch.connection, tags)
        action(ch, tags[0])
        ch.queue_declare("st.ops", passive=True)
        return "the channel is still open"
    return run_it


attempt("basic.get", lambda ch: ch.basic_get("st.ops"))
attempt("basic.get auto_ack", lambda ch: ch.basic_get("st.ops", auto_ack=True))
attempt("queue.purge", lambda ch: ch.queue_purge("st.ops"))
attempt("basic.nack", with_delivery(lambda ch, tag: ch.basic_nack(tag)))
attempt("basic.nack requeue=False", with_delivery(lambda ch, tag: ch.basic_nack(tag, requeue=False)))
attempt("basic.reject", with_delivery(lambda ch, tag: ch.basic_reject(tag)))
attempt("basic.reject requeue=False", with_delivery(lambda ch, tag: ch.basic_reject(tag, requeue=False)))
attempt("basic.recover with unacked", with_delivery(lambda ch, tag: ch.basic_recover(requeue=True)))
attempt("basic.recover without unacked", lambda ch: ch.basic_recover(requeue=True) or "recover-ok")
attempt("basic.ack unknown tag", with_delivery(lambda ch, tag: ch.basic_ack(99)))
attempt("basic.ack twice", with_delivery(lambda ch, tag: (ch.basic_ack(tag), ch.basic_ack(tag))))
attempt("basic.ack multiple 0", with_delivery(lambda ch, tag: ch.basic_ack(0, multiple=True)))


def cancel(ch):
    ch.basic_qos(prefetch_count=10)
    got = []
    tag = ch.basic_consume("st.ops", lambda c, m, p, b: got.append(b.decode()),
                           arguments={"x-stream-offset": "first"}, consumer_tag="st-ctag")
    drain(ch.connection, got)
    ch.basic_cancel(tag)
    other = ch.connection.channel()
    other.confirm_delivery()
    publish(other, "st.ops", ["o3"])
    drain(ch.connection, got)
    return f"{tag} {got}"


attempt("basic.cancel", cancel)


def exclusive_then_other(ch):
    ch.basic_qos(prefetch_count=10)
    ch.basic_consume("st.ops", lambda *a: None, exclusive=True)
    return consume("st.ops", "first")


attempt("exclusive consumer, then another on another connection", exclusive_then_other)


def readers(ch):
    """Three consumers on three connections, each from first, acking as they go."""
    return " | ".join(consume("st.ops", "first") for _ in range(3))


attempt("independent readers", readers)
attempt("after acks and reconnect", lambda ch: consume("st.ops", "first"))
attempt("delete if-empty", lambda ch: (stream(ch, "st.del"), publish(ch, "st.del", ["d"]),
                                       ch.queue_delete("st.del", if_empty=True).method.message_count)[-1])


def delete_if_unused(ch):
    stream(ch, "st.del2")
    ch.basic_qos(prefetch_count=1)
    ch.basic_consume("st.del2", lambda *a: None)
    other = connect()
    count = other.channel().queue_delete("st.del2", if_unused=True).method.message_count
    other.close()
    return count


attempt("delete if-unused with a consumer", delete_if_unused)


def delete_stream(ch):
    ch.confirm_delivery()
    stream(ch, "st.x")
    publish(ch, "st.x", ["x0", "x1"])
    count = ch.queue_delete("st.x").method.message_count
    try:
        ch.queue_declare("st.x", passive=True)
    except pika.exceptions.ChannelClosedByBroker as exc:
        return f"delete-ok message_count={count}, then {outcome(exc)}"


attempt("queue.delete", delete_stream)

print("== publishing")


def confirmed(ch):
    ch.confirm_delivery()
    ch.basic_publish("", "st.ops", b"p", mandatory=True)
    ch.basic_publish("st.fanout", "k", b"via exchange", mandatory=True)
    return "acked, not returned"


attempt("confirms and mandatory", confirmed)


def bound(ch):
    ch.exchange_declare("st.direct", "direct")
    ch.queue_bind("st.ops", "st.direct", "rk")
    ch.confirm_delivery()
    ch.basic_publish("st.direct", "rk", b"routed", mandatory=True)
    try:
        ch.basic_publish("st.direct", "other", b"unroutable", mandatory=True)
    except pika.exceptions.UnroutableError as exc:
        returned = f"returned {len(exc.messages)}"
    ch.queue_unbind("st.ops", "st.direct", "rk")
    ch.exchange_delete("st.direct")
    return f"{returned}, read back: {consume('st.ops', 'last')}"


attempt("bind, publish through a direct exchange, unbind", bound)


def transactional(ch):
    """The commit's messages may share a chunk or not (the writer batches what it has
    waiting): last gives the last chunk, one to three of them; print what is certain."""
    ch.tx_select()
    for i in range(3):
        ch.basic_publish("", "st.ops", b"tx%d" % i)
    ch.tx_commit()
    got = [token.split("@")[0] for token in consume("st.ops", "last").split()]
    return f"last ends with tx2: {got[-1:] == ['tx2']}, only the commit's: {set(got) <= {'tx0', 'tx1', 'tx2'}}"


attempt("transactional publish, then last", transactional)


# --- Management ---------------------------------------------------------------------------


def management():
    print("== management")
    VOLATILE = {"consumer_details", "garbage_collection", "memory", "reductions", "reductions_details",
                "message_stats", "messages_details", "messages_ready_details", "messages_unacknowledged_details",
                "incoming", "deliveries", "node", "leader", "members", "online", "readers",
                "idle_since", "head_message_timestamp", "consumer_capacity", "consumer_utilisation"}
    stream(sch, "st.m", **{"x-max-age": "1D", "x-max-length-bytes": 1000000, "x-stream-max-segment-size-bytes": 500000})
    publish(sch, "st.m", ["a", "b", "c"])
    watcher = connect()
    wch = watcher.channel()
    wch.basic_qos(prefetch_count=1)
    watched = []
    wch.basic_consume("st.m", lambda c, m, p, b: (watched.append(b), c.basic_ack(m.delivery_tag)),
                      arguments={"x-stream-offset": "first"}, consumer_tag="st-watcher")
    drain(watcher, watched)
    print("declare-ok message_count reaches:", wait_messages(sch, "st.m", 3),
          "consumer_count:", getattr(sch.queue_declare("st.m", passive=True), "method", None)
          and sch.queue_declare("st.m", passive=True).method.consumer_count)


    def queue_json(name: str, expected: int, seconds: float = 20.0) -> dict:
        """The row once RabbitMQ's management database has all of it: the stream's statistics
        (messages, state, policy: every 5 s) and its consumer (events) arrive separately."""
        deadline = time.monotonic() + seconds
        while True:
            status, row = api.http("GET", f"/api/queues/%2F/{name}")
            complete = (status == 200 and row.get("messages") == expected and "state" in row
                        and any(c.get("consumer_tag") == "st-watcher" for c in row.get("consumer_details", [])))
            if complete or time.monotonic() > deadline:
                return row
            time.sleep(0.25)


    row = queue_json("st.m", 3)
    print("GET /api/queues/%2F/st.m:", canonical({k: v for k, v in row.items() if k not in VOLATILE}))
    print("  members, online, leader:", [len(row.get("members") or []), len(row.get("online") or []),
                                         "leader" in row, "node" in row])
    print("  consumer_details:", canonical([{k: v for k, v in c.items() if k in ("ack_required", "active", "activity_status",
                                                                                 "arguments", "consumer_tag", "exclusive",
                                                                                 "prefetch_count", "queue")}
                                            for c in row.get("consumer_details", [])]))
    listed = subprocess.run([*ctl, "list_queues", "name", "type", "messages", "messages_ready", "messages_unacknowledged",
                             "consumers", "durable", "auto_delete", "exclusive", "arguments", "policy", "state"],
                            capture_output=True, text=True).stdout.splitlines()
    print("list_queues:", " | ".join(line for line in listed if line.startswith(("name\t", "st.m\t"))))
    drain(watcher, watched)
    watcher.close()


section(management)

# --- Policies -------------------------------------------------------------------------------


def policies():
    print("== policies")
    print("set st-pol:", run("set_policy", "st-pol", r"^st\.pol", '{"max-age": "1h", "max-length-bytes": 2000000}',
                             "--apply-to", "queues"))
    print("set st-pol-skip:", run("set_policy", "st-pol-skip", r"^st\.pol2$", '{"max-age": "2h", "max-length": 10}',
                                  "--apply-to", "queues", "--priority", "5"))
    stream(sch, "st.pol", **{"x-max-age": "7D"})
    stream(sch, "st.pol2")
    listed = subprocess.run([*ctl, "list_queues", "name", "policy"], capture_output=True, text=True).stdout.splitlines()
    print("list_queues name policy:", sorted(line for line in listed if line.startswith("st.pol")))
    for name in ("st.pol", "st.pol2"):
        # The HTTP API shows a stream's policy once its statistics arrive (every 5 s in RabbitMQ).
        deadline = time.monotonic() + 15
        while True:
            _, row = api.http("GET", f"/api/queues/%2F/{name}")
            if row.get("policy") or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        print(f"{name}:", canonical({k: row.get(k) for k in ("arguments", "policy", "operator_policy",
                                                             "effective_policy_definition")}))
    # ({"max-age": 5} and {"max-age": "h"} crash RabbitMQ 3.10's validation: a badarg trace, not printed.)
    for definition in ('{"max-age": "1x"}', '{"max-age": "0s"}',
                       '{"stream-max-segment-size-bytes": 3000000001}', '{"stream-max-segment-size-bytes": "1"}',
                       '{"initial-cluster-size": -1}', '{"queue-leader-locator": "nope"}', '{"max-length-bytes": -1}'):
        print("bad", definition, "->", run("set_policy", "st-bad", "^st-bad$", definition))


section(policies)


def retention():
    # Retention is per segment (1,000-byte segments here): an argument's max-length-bytes with a
    # policy's beside it, whichever wins decides what the stream keeps.
    print("set st-ret:", run("set_policy", "st-ret", r"^st\.ret", '{"max-length-bytes": 3000}', "--apply-to", "queues"))
    time.sleep(0.5)


    def retained(name: str, **arguments) -> str:
        stream(sch, name, **{"x-stream-max-segment-size-bytes": 1000, **arguments})
        publish(sch, name, [f"{i:03d}" + "." * 96 for i in range(60)])
        time.sleep(1)
        got = [(body[:3], offset) for body, offset in (token.split("@") for token in consume(name, "first").split())]
        return f"{len(got) < 60} ({len(got)} of 60 kept: {' '.join(f'{b}@{o}' for b, o in got)})"


    print("trimmed? argument 1,000,000 bytes, policy 3,000:", retained("st.ret", **{"x-max-length-bytes": 1000000}))
    run("clear_policy", "st-ret")
    print("trimmed? argument 3,000 bytes, no policy:", retained("st.x", **{"x-max-length-bytes": 3000}))
    sch.queue_delete("st.x")
    print("trimmed? no limit:", retained("st.x"))
    sch.queue_delete("st.x")

    # max-age: an argument of a year, a policy of a second; segments older than that go when the
    # next segment is started.
    print("set st-ret:", run("set_policy", "st-ret", r"^st\.ret", '{"max-age": "1s"}', "--apply-to", "queues"))
    time.sleep(0.5)
    sch.queue_delete("st.ret")
    stream(sch, "st.ret", **{"x-stream-max-segment-size-bytes": 1000, "x-max-age": "1Y"})
    publish(sch, "st.ret", [f"{i:03d}" + "." * 96 for i in range(20)])
    time.sleep(2.5)
    publish(sch, "st.ret", [f"{i:03d}" + "." * 96 for i in range(20, 40)])
    time.sleep(1)
    kept = [token.split("@") for token in consume("st.ret", "first").split()]
    print("max-age policy 1s over argument 1Y: trimmed", int(kept[0][0][:3]) > 0, "- oldest kept", kept[0][0][:3],
          "of 000-039 (000-019 written 2.5 s before 020-039; the segment being written then is kept)")


section(retention)

clean()
sch.close()
