"""Runtime parameters and global parameters against a broker, through its ctl, its HTTP API
and AMQP: refusals, operator policies and vhost limits set as parameters (and what they
do), global parameters and the cluster name, and a definitions export's parameters.

    python tests/compat/parameters_program.py AMQP_PORT "CTL COMMAND" HTTP_BASE
    # e.g. 5672 "rabbitmqctl" http://127.0.0.1:15672, or
    #      5673 "zbroker ctl --broker tcp://127.0.0.1:5680" http://127.0.0.1:15680

Real pika on both sides (zbroker's AMQP listener); guest/guest over HTTP. It works in a
vhost of its own and prints one line per check, JSON values with their keys sorted (the
order of a JSON object's keys means nothing); ``bin/compare-rabbitmq`` diffs the two
outputs. Not part of the suite, which must pass without a RabbitMQ.

Left out on purpose (zbroker differs, see the README): an operator policy set without
``apply-to`` (RabbitMQ 3.10 stores it and applies it to nothing; zbroker applies it to
``all``), a ``vhost-limits`` parameter named other than ``limits`` (RabbitMQ stores it
and fails), a policymaker writing ``operator_policy`` or ``vhost-limits`` (RabbitMQ lets
it), a non-string ``cluster_name`` (RabbitMQ then refuses every AMQP connection).
"""
import json
import shlex
import subprocess
import sys
import time
import urllib.parse

import pika
from management_http import ManagementHttp, canonical

port, ctl, base = int(sys.argv[1]), shlex.split(sys.argv[2]), sys.argv[3]
VH = "params-compat"
QV = urllib.parse.quote(VH, safe="")
api = ManagementHttp(base)



def run(*args: str) -> str:
    out = subprocess.run([*ctl, *args], capture_output=True, text=True)
    lines = (out.stdout + out.stderr).strip().splitlines()
    return f"exit={out.returncode} " + " | ".join(line for line in lines if line.strip()
                                                   and not line.startswith(("Setting", "Clearing", "Listing")))


def rows(*args: str) -> list:
    """A ctl list's rows, each value's JSON with sorted keys, in a stable order."""
    out = subprocess.run([*ctl, *args, "--quiet", "--no-table-headers"], capture_output=True, text=True)
    found = []
    for line in out.stdout.strip().splitlines():
        cells = line.split("\t")
        found.append("\t".join(cells[:-1] + [canonical(json.loads(cells[-1]))]))
    return sorted(found)




def count(channel, queue: str) -> int:
    return channel.queue_declare(queue, passive=True).method.message_count


def settle(operator_policy) -> None:
    """Policies apply asynchronously in RabbitMQ: wait until the queue's view names
    ``operator_policy`` (None: none), then a moment more, the same on both."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status, queue = api.http("GET", f"/api/queues/{QV}/pp.q")
        if status == 200 and (queue.get("operator_policy") or None) == operator_policy:
            break
        time.sleep(0.1)
    time.sleep(0.3)


run("delete_vhost", VH)
run("add_vhost", VH)
run("set_permissions", "-p", VH, "guest", ".*", ".*", ".*")
for name in ("pp-g", "pp-list"):
    run("clear_global_parameter", name)
conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port, VH))
ch = conn.channel()
ch.confirm_delivery()  # (each publish is in its queue before the next line counts it)

# What is refused, and how.
print("unknown component:", run("set_parameter", "-p", VH, "federation-upstream", "up", '{"uri":"amqp://"}'))
print("unknown component over HTTP:", api.show("PUT", f"/api/parameters/federation-upstream/{QV}/up",
                                           {"value": {"uri": "amqp://"}}))
print("policy component:", run("set_parameter", "-p", VH, "policy", "p", "{}"))
print("policy component over HTTP:", api.show("PUT", f"/api/parameters/policy/{QV}/p", {"value": {}}))
print("clear policy component:", run("clear_parameter", "-p", VH, "policy", "p"))
print("clear missing:", run("clear_parameter", "-p", VH, "shovel", "nope"))
print("clear missing over HTTP:", api.show("DELETE", f"/api/parameters/shovel/{QV}/nope"))
print("get missing over HTTP:", api.show("GET", f"/api/parameters/shovel/{QV}/nope"))
print("not JSON:", run("set_parameter", "-p", VH, "vhost-limits", "limits", "notjson"))
print("no such vhost:", run("set_parameter", "-p", "params-nowhere", "vhost-limits", "limits", "{}"))
print("list in no such vhost:", run("list_parameters", "-p", "params-nowhere"))
print("PUT without value:", api.show("PUT", f"/api/parameters/vhost-limits/{QV}/limits", {"val": 1}))
print("PUT in no such vhost:", api.show("PUT", "/api/parameters/vhost-limits/params-nowhere/limits", {"value": {}}))

# An operator policy as a parameter: it trims the queue, is listed, and goes.
ch.queue_declare("pp.q")
for i in range(10):
    ch.basic_publish("", "pp.q", b"%d" % i)
cap = {"pattern": "^pp\\.q$", "definition": {"max-length": 3}, "priority": 1, "apply-to": "queues"}
print("set operator_policy:", run("set_parameter", "-p", VH, "operator_policy", "pp-cap", json.dumps(cap)))
settle("pp-cap")
print("trimmed to:", count(ch, "pp.q"))
print("listed:", rows("list_parameters", "-p", VH))
print("over HTTP:", api.show("GET", f"/api/parameters/operator_policy/{QV}/pp-cap"))
print("as an operator policy:", api.show("GET", f"/api/operator-policies/{QV}"))
print("PUT it again:", api.show("PUT", f"/api/parameters/operator_policy/{QV}/pp-cap",
                            {"value": {**cap, "definition": {"max-length": 2}}}))
print("PUT another:", api.show("PUT", f"/api/parameters/operator_policy/{QV}/pp-cap2", {"value": cap}))
time.sleep(0.5)
print("trimmed to:", count(ch, "pp.q"))
for bad in ({"pattern": "^a", "definition": {"max-length": 1}},
            {"pattern": "^a", "priority": 1, "definition": {"foo": 1}, "extra": 2},
            {"pattern": "^a", "priority": "x", "definition": {"max-length": 1}},
            {"pattern": "^a", "priority": 1, "definition": {"dead-letter-exchange": "x"}}, [1, 2]):
    print("bad", canonical(bad), "->", run("set_parameter", "-p", VH, "operator_policy", "pp-bad", json.dumps(bad)))
print("bad over HTTP:", api.show("PUT", f"/api/parameters/operator_policy/{QV}/pp-bad",
                             {"value": {"pattern": "<a", "priority": 1, "definition": {"foo": 1}}}))
print("clear:", run("clear_parameter", "-p", VH, "operator_policy", "pp-cap"))
settle("pp-cap2")
print("DELETE:", api.show("DELETE", f"/api/parameters/operator_policy/{QV}/pp-cap2"))
settle(None)
for i in range(5):
    ch.basic_publish("", "pp.q", b"%d" % i)
print("no longer trimmed:", count(ch, "pp.q"))

# Vhost limits as the limits parameter.
print("set vhost-limits:", run("set_parameter", "-p", VH, "vhost-limits", "limits", '{"max-queues": 2}'))
ch.queue_declare("pp.q2")
try:
    ch.queue_declare("pp.q3")
except pika.exceptions.ChannelClosedByBroker as exc:
    print("over the limit:", exc.reply_code, exc.reply_text)
    ch = conn.channel()
print("listed:", rows("list_parameters", "-p", VH))
print("vhost limits:", [v for v in api.http("GET", "/api/vhost-limits")[1] if v["vhost"] == VH])
print("one limit over HTTP:", api.show("PUT", f"/api/vhost-limits/{QV}/max-connections", {"value": 9}))
print("parameter:", api.show("GET", f"/api/parameters/vhost-limits/{QV}/limits"))
print("bogus limit over HTTP:", api.show("PUT", f"/api/vhost-limits/{QV}/max-bogus", {"value": 9}))
print("bad limit over HTTP:", api.show("PUT", f"/api/vhost-limits/{QV}/max-queues", {"value": "x"}))
print("DELETE a limit:", api.show("DELETE", f"/api/vhost-limits/{QV}/max-queues"))
print("parameter:", api.show("GET", f"/api/parameters/vhost-limits/{QV}/limits"))
for bad in ('{"max-queues": "x"}', '{"foo": 1}', "5", '{"max-connections": 1.5}'):
    print("bad", bad, "->", run("set_parameter", "-p", VH, "vhost-limits", "limits", bad))
print("clear:", run("clear_parameter", "-p", VH, "vhost-limits", "limits"))
ch.queue_declare("pp.q3")
print("declared after clearing:", count(ch, "pp.q3"))

# Global parameters, and the cluster name.
print("set global:", run("set_global_parameter", "pp-g", '{"a": [1, 2]}'))
print("set global over HTTP:", api.show("PUT", "/api/global-parameters/pp-list", {"value": 42}))
print("again over HTTP:", api.show("PUT", "/api/global-parameters/pp-list", {"value": 43}))
print("listed:", [r for r in rows("list_global_parameters") if r.startswith("pp-")])
print("over HTTP:", api.show("GET", "/api/global-parameters/pp-g"))
print("missing over HTTP:", api.show("GET", "/api/global-parameters/pp-nope"))
print("clear:", run("clear_global_parameter", "pp-list"))
print("clear missing:", run("clear_global_parameter", "pp-list"))
print("DELETE missing:", api.show("DELETE", "/api/global-parameters/pp-list"))
print("set cluster_name:", run("set_global_parameter", "cluster_name", '"pp-cluster"'))
print("overview cluster_name:", api.http("GET", "/api/overview")[1]["cluster_name"])
probe = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port, VH))
print("connection.start cluster_name:", probe._impl.server_properties.get("cluster_name"))
probe.close()
print("clear cluster_name:", run("clear_global_parameter", "cluster_name"))
overview = api.http("GET", "/api/overview")[1]
print("cluster_name is the node's again:", overview["cluster_name"] == overview["node"])

# A definitions export's parameters.
run("set_parameter", "-p", VH, "vhost-limits", "limits", '{"max-connections": 10, "max-queues": 100}')
run("set_parameter", "-p", VH, "operator_policy", "pp-exported", json.dumps(cap))
exported = api.http("GET", "/api/definitions")[1]
print("exported parameters:", sorted(canonical(p) for p in exported["parameters"] if p["vhost"] == VH))
print("exported global parameters:", [g for g in exported["global_parameters"] if g["name"].startswith("pp-")])
print("no policies among them:", all(p["component"] != "policy" for p in exported["parameters"]))
print("import an unknown component:", api.show("POST", "/api/definitions", {"parameters": [
    {"vhost": VH, "component": "federation-upstream", "name": "up", "value": {}}]}))

conn.close()
run("clear_global_parameter", "pp-g")
run("delete_vhost", VH)
