"""Protocol errors over raw AMQP 0-9-1, for RabbitMQ and zbroker's AMQP listener alike.

    python tests/compat/amqp_errors_program.py PORT

Each case logs in as guest, sends bytes a client library would never send, and prints
what the broker answered: its connection.close or channel.close (code and text), or that
it closed the socket, or "open". ``bin/compare-rabbitmq`` diffs it between the brokers.
Not part of the suite, which must pass without a RabbitMQ.
"""
import socket
import struct
import sys

from pamqp import commands as C
from pamqp import frame, header
from pamqp.body import ContentBody

PORT = int(sys.argv[1])
LOGIN = b"".join((
    b"AMQP\x00\x00\x09\x01",
    frame.marshal(C.Connection.StartOk({"capabilities": {"authentication_failure_close": True}}, "PLAIN",
                                       "\0guest\0guest", "en_US"), 0),
    frame.marshal(C.Connection.TuneOk(2047, 131072, 0), 0),
    frame.marshal(C.Connection.Open("/"), 0),
    frame.marshal(C.Channel.Open(), 1),
))


def answer(data: bytes, login: bytes = LOGIN) -> str:
    with socket.create_connection(("127.0.0.1", PORT)) as sock:
        sock.settimeout(1.5)
        sock.sendall(login + data)
        got = b""
        try:
            while chunk := sock.recv(65536):
                got += chunk
            closed = "socket closed"
        except socket.timeout:
            closed = "open"
        except ConnectionResetError:
            closed = "socket reset"
    seen = []
    while got:
        if got[:4] == b"AMQP":
            seen.append(f"protocol header {got[:8]!r}")
            got = got[8:]
            continue
        try:
            used, channel, value = frame.unmarshal(got)
        except Exception:
            break
        got = got[used:]
        if isinstance(value, (C.Connection.Close, C.Channel.Close)):
            seen.append(f"{value.name} {value.reply_code} {value.reply_text}")
    return " | ".join(seen + [closed])


def method_frame(channel: int, class_id: int, method_id: int, args: bytes = b"") -> bytes:
    payload = struct.pack(">HH", class_id, method_id) + args
    return struct.pack(">BHI", 1, channel, len(payload)) + payload + b"\xce"


CASES = [
    ("wrong protocol header", b"", b"AMQP\x00\x00\x08\x00"),
    ("wrong password", b"", LOGIN.replace(b"\0guest\0guest", b"\0guest\0wrong")),
    ("unknown vhost", b"", LOGIN.replace(frame.marshal(C.Connection.Open("/"), 0),
                                         frame.marshal(C.Connection.Open("nope"), 0))),
    ("frame over frame_max", struct.pack(">BHI", 1, 1, 200_000) + b"\x00" * 200_000 + b"\xce", LOGIN),
    ("bad frame end", method_frame(1, 50, 10, b"\x00\x00\x01q\x00\x00\x00\x00\x00")[:-1] + b"\x00", LOGIN),
    ("unknown frame type", struct.pack(">BHI", 9, 1, 1) + b"\x00\xce", LOGIN),
    ("method on unopened channel", frame.marshal(C.Queue.Declare(queue="q"), 5), LOGIN),
    ("channel.open twice", frame.marshal(C.Channel.Open(), 1), LOGIN),
    ("method between publish and content", frame.marshal(C.Basic.Publish(routing_key="q"), 1)
     + frame.marshal(C.Queue.Declare(queue="q"), 1), LOGIN),
    ("body without header", frame.marshal(ContentBody(b"x"), 1), LOGIN),
    ("body larger than announced", frame.marshal(C.Basic.Publish(routing_key="q"), 1)
     + frame.marshal(header.ContentHeader(0, 1, C.Basic.Properties()), 1)
     + frame.marshal(ContentBody(b"xyz"), 1), LOGIN),
    ("unknown method", method_frame(1, 60, 999), LOGIN),
    ("immediate publish", frame.marshal(C.Basic.Publish(routing_key="q", immediate=True), 1), LOGIN),
    ("truncated queue.declare", method_frame(1, 50, 10, b"\x00\x00\x09qu"), LOGIN),
    ("heartbeat on a channel", struct.pack(">BHI", 8, 1, 0) + b"\xce", LOGIN),
    ("recover-async", frame.marshal(C.Basic.RecoverAsync(requeue=True), 1), LOGIN),
    ("unknown delivery tag", frame.marshal(C.Basic.Ack(delivery_tag=99), 1), LOGIN),
    ("prefetch_size", frame.marshal(C.Basic.Qos(prefetch_size=10), 1), LOGIN),
]

for label, data, login in CASES:
    print(f"{label} | {answer(data, login)}")
