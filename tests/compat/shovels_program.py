"""Dynamic shovels against a broker, through its ctl, its HTTP API and AMQP: refused
definitions (texts and exit codes, HTTP statuses and bodies), an unknown component,
/api/shovels rows and ``shovel_status`` for a running shovel, for one whose source queue
is missing, for one whose source queue cannot be declared, and deleting one over HTTP.

    python tests/compat/shovels_program.py AMQP_PORT "CTL COMMAND" HTTP_BASE
    # e.g. 5672 "rabbitmqctl" http://127.0.0.1:15672, or
    #      5673 "zbroker ctl --broker tcp://127.0.0.1:5680" http://127.0.0.1:15680

RabbitMQ needs rabbitmq_shovel and rabbitmq_shovel_management. Real pika on both sides
(zbroker's AMQP listener); guest/guest over HTTP. It prints one line per check, JSON with
sorted keys; timestamps (``timestamp``, ``last_changed``) and node names are left out, and
rows are sorted by name (RabbitMQ lists them in no set order). ``bin/compare-rabbitmq``
diffs the two outputs. Not part of the suite, which must pass without a RabbitMQ.

Left out on purpose (zbroker differs, see the README):
- zbroker's extensions of /api/shovels rows: the worker's counters (``moved``, ``acked``,
  ``nacked``, ``in_flight``, ``remaining``) and ``error`` (the worker's own words for its
  last failure: RabbitMQ says "needed a restart" and logs the rest);
- a value that is not an object (``set_parameter shovel s '"amqp://"'``): RabbitMQ 3.10
  fails with a function_clause crash, zbroker says ``s not a list <<"amqp://">>``;
- a shovel's state in the seconds after a failure: RabbitMQ restarts a worker at once the
  first time and after reconnect-delay the next, zbroker after reconnect-delay each time
  (the checks below wait for the state they print).
"""
import json
import re
import shlex
import subprocess
import sys
import time

import pika
from management_http import ManagementHttp, canonical

port, ctl, base = int(sys.argv[1]), shlex.split(sys.argv[2]), sys.argv[3]
api = ManagementHttp(base)
EXTENSIONS = {"moved", "acked", "nacked", "in_flight", "remaining", "error"}
NAMES = ("sh-run", "sh-missing", "sh-undeclarable", "bad", "sh-gone", "sh-exchange")
QUEUES = ("sh.src", "sh.dst", "sh.missing", "sh.missing.dst", "sh.undeclarable", "sh.gone", "sh.gone.dst")
STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")
GOOD = {"src-uri": "amqp://", "src-queue": "sh.src", "dest-uri": "amqp://", "dest-queue": "sh.dst"}



def run(*args: str) -> str:
    out = subprocess.run([*ctl, *args], capture_output=True, text=True)
    lines = (out.stdout + out.stderr).strip().splitlines()
    return f"exit={out.returncode} " + " | ".join(line for line in lines if line.strip()
                                                   and not line.startswith(("Setting", "Clearing")))




def rows() -> dict:
    """/api/shovels by name, without timestamps, node names and zbroker's extensions."""
    _, listed = api.http("GET", "/api/shovels")
    return {r["name"]: {k: v for k, v in r.items() if k not in {"timestamp", "node", *EXTENSIONS}}
            for r in listed}


def wait(name: str, state: str, seconds: float = 30.0) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        row = rows().get(name)
        if row is not None and row["state"] == state or time.monotonic() > deadline:
            return row
        time.sleep(0.1)


def status_table() -> list:
    """shovel_status as a table: the header and each row, last_changed left out."""
    out = subprocess.run([*ctl, "shovel_status"], capture_output=True, text=True)
    lines = out.stdout.strip().splitlines()
    shown = [f"exit={out.returncode}", lines[0].split(" on node ")[0] if lines else ""]
    for line in lines[1:]:
        shown.append("\t".join(c for c in line.split("\t") if c != "last_changed" and not STAMP.match(c)))
    return shown


def status_json() -> str:
    out = subprocess.run([*ctl, "shovel_status", "--formatter", "json"], capture_output=True, text=True)
    listed = json.loads(out.stdout[out.stdout.index("["):])
    return canonical(sorted(({k: v for k, v in r.items() if k != "last_changed"} for r in listed),
                            key=lambda r: r["name"]))


def count(channel, queue: str):
    try:
        return channel.queue_declare(queue, passive=True).method.message_count
    except pika.exceptions.ChannelClosedByBroker as exc:
        return f"{exc.reply_code}"


conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
ch = conn.channel()


def channel():
    global ch
    if not ch.is_open:
        ch = conn.channel()
    return ch


def clean() -> None:
    for name in NAMES:
        run("clear_parameter", "shovel", name)
    for queue in QUEUES:
        channel().queue_delete(queue)


clean()

# Refused definitions: set_parameter's exit code and text, then PUT's status and body.
BAD = {
    "missing src-uri": {k: v for k, v in GOOD.items() if k != "src-uri"},
    "src-queue and src-exchange": {**GOOD, "src-exchange": "amq.direct"},
    "bad ack-mode": {**GOOD, "ack-mode": "sometimes"},
    "no-ack with numeric delete-after": {**GOOD, "ack-mode": "no-ack", "src-delete-after": 10},
    "no-ack with deprecated delete-after": {**GOOD, "ack-mode": "no-ack", "delete-after": 3},
    "unknown key": {**GOOD, "colour": "blue"},
    "bad URI scheme": {**GOOD, "src-uri": "http://localhost"},
    "bad URI scheme, short": {**GOOD, "dest-uri": "ftp://h"},
    "no scheme": {**GOOD, "dest-uri": "localhost"},
    "reconnect-delay as string": {**GOOD, "reconnect-delay": "5"},
    "src-uri not a string": {**GOOD, "src-uri": 5},
    "several at once": {"src-uri": "amqp://", "dest-uri": "amqp://", "dest-queue": "q", "dest-exchange": "x",
                        "ack-mode": 1, "prefetch-count": "many", "dest-add-forward-headers": "yes", "zz": 1},
    "bad publish properties": {**GOOD, "dest-publish-properties": {"delivery_mode": "2", "colour": "red"}},
    "bad delete-after": {**GOOD, "src-delete-after": "soon"},
}
for label, value in BAD.items():
    print(f"ctl {label}:", run("set_parameter", "shovel", "bad", json.dumps(value)))
    print(f"PUT {label}:", api.show("PUT", "/api/parameters/shovel/%2F/bad", {"value": value}))
print("after the refusals:", api.show("GET", "/api/parameters/shovel/%2F/bad"), sorted(rows()))

# An unknown component is refused the same way.
upstream = json.dumps({"uri": "amqp://remote"})
print("ctl federation-upstream:", run("set_parameter", "federation-upstream", "up", upstream))
print("PUT federation-upstream:", api.show("PUT", "/api/parameters/federation-upstream/%2F/up",
                                       {"value": {"uri": "amqp://remote"}}))
print("GET federation-upstream:", api.show("GET", "/api/parameters/federation-upstream"))
print("GET federation-upstream/up:", api.show("GET", "/api/parameters/federation-upstream/%2F/up"))
print("ctl clear federation-upstream:", run("clear_parameter", "federation-upstream", "up"))

# A running shovel: its row, its status line, and what it moved.
channel().queue_declare("sh.src", durable=True)
print("set sh-run:", run("set_parameter", "shovel", "sh-run", json.dumps(GOOD)))
print("sh-run:", canonical(wait("sh-run", "running")))
for i in range(5):
    channel().basic_publish("", "sh.src", b"m%d" % i, pika.BasicProperties(message_id=str(i), delivery_mode=2))
deadline = time.monotonic() + 10
while count(channel(), "sh.dst") != 5 and time.monotonic() < deadline:
    time.sleep(0.1)
print("moved:", count(channel(), "sh.src"), count(channel(), "sh.dst"))
print("shovel_status:", status_table())
print("GET /api/shovels/%2F names:", sorted(r["name"] for r in api.http("GET", "/api/shovels/%2F")[1]))
print("GET /api/parameters/shovel/%2F/sh-run:", api.show("GET", "/api/parameters/shovel/%2F/sh-run"))

# From an exchange (the key RabbitMQ shows when none was given: "") to an exchange.
exchange = {"src-uri": "amqp://", "src-exchange": "amq.topic", "dest-uri": "amqp:///%2F", "dest-exchange": "amq.direct",
            "dest-exchange-key": "k", "ack-mode": "on-publish", "src-prefetch-count": 10}
print("set sh-exchange:", run("set_parameter", "shovel", "sh-exchange", json.dumps(exchange)))
print("sh-exchange:", canonical(wait("sh-exchange", "running")))
print("clear sh-exchange:", run("clear_parameter", "shovel", "sh-exchange"))

# A shovel whose source queue is missing: the worker declares it (durable), as RabbitMQ's
# ensure_queue does, and runs.
missing = {"src-uri": "amqp://", "src-queue": "sh.missing", "dest-uri": "amqp://", "dest-queue": "sh.missing.dst"}
print("sh.missing before:", count(channel(), "sh.missing"))
print("set sh-missing:", run("set_parameter", "shovel", "sh-missing", json.dumps(missing)))
print("sh-missing:", canonical(wait("sh-missing", "running")))
print("sh.missing after:", count(channel(), "sh.missing"))

# A missing source queue that cannot be declared: terminated, and the reason.
undeclarable = {"src-uri": "amqp://", "src-queue": "sh.undeclarable", "src-queue-args": {"x-queue-type": "bogus"},
                "dest-uri": "amqp://", "dest-queue": "sh.dst"}
print("set sh-undeclarable:", run("set_parameter", "shovel", "sh-undeclarable", json.dumps(undeclarable)))
print("sh-undeclarable:", canonical(wait("sh-undeclarable", "terminated")))
print("shovel_status --formatter json:", status_json())

# A running shovel whose source queue is deleted: its consumer is cancelled, it starts
# again and declares the queue again.
gone = {"src-uri": "amqp://", "src-queue": "sh.gone", "dest-uri": "amqp://", "dest-queue": "sh.gone.dst",
        "reconnect-delay": 1}
print("set sh-gone:", run("set_parameter", "shovel", "sh-gone", json.dumps(gone)))
print("sh-gone:", wait("sh-gone", "running")["state"])
channel().queue_delete("sh.gone")
time.sleep(0.5)
print("sh-gone again:", canonical(wait("sh-gone", "running")), count(channel(), "sh.gone"))

# Removing shovels over HTTP.
print("DELETE sh-missing:", api.show("DELETE", "/api/shovels/vhost/%2F/sh-missing"))
time.sleep(0.5)
print("after DELETE:", sorted(rows()), api.show("GET", "/api/parameters/shovel/%2F/sh-missing"))
print("DELETE again:", api.show("DELETE", "/api/shovels/vhost/%2F/sh-missing"))
print("restart missing:", api.show("DELETE", "/api/shovels/vhost/%2F/nope/restart"))
print("restart sh-run:", api.show("DELETE", "/api/shovels/vhost/%2F/sh-run/restart"))
print("sh-run after restart:", wait("sh-run", "running")["state"])
print("clear sh-run:", run("clear_parameter", "shovel", "sh-run"))
print("clear again:", run("clear_parameter", "shovel", "sh-run"))
time.sleep(0.5)
print("left:", sorted(rows()))

clean()
conn.close()
