"""Management against real broker processes: every ``zbroker ctl`` verb, the HTTP API's
paths and RabbitMQ field names, Prometheus metrics, definitions in and out."""
from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any, Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

import zbroker.client as pika
from tests.support import ROOT, WAIT_S, Broker, child_env, pump_until
from zbroker.management.client import ManagementClient

HTTP_READY = r"HTTP API and dashboard on http://([\d.]+):(\d+)/"

#: RabbitMQ 3.10's management fields that zbroker fills, per object (a subset of its
#: fields: those zbroker cannot know, e.g. Erlang reductions, are left out on purpose).
QUEUE_FIELDS = {"name", "vhost", "type", "node", "durable", "auto_delete", "exclusive", "arguments",
                "policy", "state", "consumers", "messages", "messages_details", "messages_ready",
                "messages_ready_details", "messages_unacknowledged", "messages_unacknowledged_details",
                "messages_ram", "messages_paged_out", "message_bytes", "message_bytes_ready", "memory",
                "idle_since", "message_stats", "exclusive_consumer_tag", "single_active_consumer_tag"}
OVERVIEW_FIELDS = {"management_version", "rates_mode", "node", "cluster_name", "exchange_types",
                   "message_stats", "queue_totals", "object_totals", "listeners", "product_name",
                   "product_version"}
CONNECTION_FIELDS = {"name", "node", "vhost", "user", "state", "channels", "protocol", "peer_host",
                     "peer_port", "host", "port", "client_properties", "connected_at", "timeout",
                     "frame_max", "channel_max", "type", "auth_mechanism", "ssl"}
CHANNEL_FIELDS = {"name", "number", "node", "vhost", "user", "connection_details", "state",
                  "consumer_count", "messages_unacknowledged", "messages_unconfirmed",
                  "messages_uncommitted", "prefetch_count", "global_prefetch_count", "confirm",
                  "transactional", "message_stats"}
CONSUMER_FIELDS = {"consumer_tag", "queue", "channel_details", "ack_required", "exclusive",
                   "prefetch_count", "arguments", "active", "activity_status"}
EXCHANGE_FIELDS = {"name", "vhost", "type", "durable", "auto_delete", "internal", "arguments",
                   "message_stats"}
BINDING_FIELDS = {"source", "vhost", "destination", "destination_type", "routing_key", "arguments",
                  "properties_key"}


@pytest.fixture
def web() -> Iterator[Broker]:
    proc = Broker("--http", "127.0.0.1:0", "--stats-interval", "0.5")
    m = proc.wait_for(HTTP_READY)
    proc.http = f"http://{m.group(1)}:{m.group(2)}"
    yield proc
    assert proc.stop() == 0
    assert "Traceback" not in proc.log(), proc.log()
    proc.remove_data()


def ctl(broker: Broker, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zbroker", "ctl", "--broker", broker.endpoint, *args],
                          capture_output=True, text=True, env=child_env(), cwd=ROOT, timeout=timeout)


def rows(out: str) -> list[list[str]]:
    return [line.split("\t") for line in out.splitlines()[1:]]  # after the info line


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def http(base: str, path: str, method: str = "GET", body: Any = None,
         headers: dict | None = None, auth: tuple[str, str] | None = ("guest", "guest")) -> tuple[int, Any]:
    """A request to the HTTP API, logged in as ``auth`` (None: no login)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(basic(*auth) if auth else {}),
                                              **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read().decode()
            status = response.status
    except urllib.error.HTTPError as exc:
        text, status = exc.read().decode(), exc.code
    if not text:
        return status, None
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def workload(port: int, consume: bool = True) -> tuple[Any, Any]:
    """A durable queue bound to a fanout, 10 messages, a consumer holding 3 unacked."""
    connection = pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", port, client_properties={"connection_name": "orders-worker"}))
    channel = connection.channel()
    channel.queue_declare("orders", durable=True, arguments={"x-max-priority": 5})
    channel.exchange_declare("fan", "fanout", durable=True)
    channel.queue_bind("orders", "fan", "k")
    for i in range(10):
        channel.basic_publish("fan", "", b"order %d" % i)
    if consume:
        channel.basic_qos(prefetch_count=3)
        channel.basic_consume("orders", lambda *a: None, consumer_tag="worker-1")
        with ManagementClient(f"tcp://127.0.0.1:{port}") as client:
            deadline = time.monotonic() + WAIT_S
            while client.request("queue", name="orders")["messages_unacknowledged"] < 3:
                assert time.monotonic() < deadline, "the consumer never got its 3 deliveries"
                connection.process_data_events(0.05)
    return connection, channel


# -- zbroker ctl ---------------------------------------------------------------------------

def test_ctl_lists_show_rabbitmqctl_columns(broker: Broker) -> None:
    connection, channel = workload(broker.port)
    out = ctl(broker, "list_queues", "name", "messages_ready", "messages_unacknowledged", "messages",
              "consumers", "durable", "auto_delete", "exclusive", "arguments", "type", "state")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "Listing queues for vhost / ..."
    assert lines[1].split("\t") == ["name", "messages_ready", "messages_unacknowledged", "messages",
                                    "consumers", "durable", "auto_delete", "exclusive", "arguments",
                                    "type", "state"]
    assert lines[2].split("\t") == ["orders", "7", "3", "10", "1", "true", "false", "false",
                                    '{"x-max-priority": 5}', "classic", "running"]

    default = ctl(broker, "list_queues", "-q", "--no-table-headers")
    assert default.stdout.splitlines() == ["orders\t10"]

    exchanges = dict(tuple(r) for r in rows(ctl(broker, "list_exchanges").stdout)[1:])
    assert exchanges["fan"] == "fanout" and exchanges["amq.topic"] == "topic"

    bindings = rows(ctl(broker, "list_bindings").stdout)[1:]
    assert ["fan", "exchange", "orders", "queue", "k", "{}"] in bindings
    assert ["", "exchange", "orders", "queue", "orders", "{}"] in bindings

    conns = rows(ctl(broker, "list_connections", "name", "user", "peer_host", "state", "channels",
                     "client_properties").stdout)[1:]
    assert len(conns) == 1
    name, user, peer_host, state, channels, props = conns[0]
    assert (user, peer_host, state, channels) == ("guest", "127.0.0.1", "running", "1")
    assert name.startswith("127.0.0.1 (") and name.endswith(f"-> 127.0.0.1:{broker.port}")
    assert json.loads(props)["connection_name"] == "orders-worker"

    chans = rows(ctl(broker, "list_channels", "name", "consumer_count", "messages_unacknowledged",
                     "prefetch_count").stdout)[1:]
    assert chans == [[f"{name} (1)", "1", "3", "3"]]

    consumers = rows(ctl(broker, "list_consumers").stdout)[1:]
    assert consumers == [["orders", f"{name} (1)", "worker-1", "true", "3", "true", "{}"]]

    as_json = json.loads(ctl(broker, "list_queues", "name", "messages", "--formatter", "json").stdout)
    assert as_json == [{"name": "orders", "messages": 10}]

    bad = ctl(broker, "list_queues", "name", "colour")
    assert bad.returncode == 64 and "Info key(s) colour are not supported" in bad.stderr
    connection.close()


def test_ctl_status_reports_the_node(broker: Broker) -> None:
    out = ctl(broker, "status")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert re.search(r"Status of node zbroker@\S+ \.\.\.", text)
    assert f"Node data directory: {broker.data_dir}" in text
    assert re.search(r"Total memory used: \d+\.\d MiB", text)
    assert "Memory high watermark:" in text and "Free disk space:" in text
    assert f"Interface: 127.0.0.1, port: {broker.port}, protocol: zbroker" in text
    assert "(none)" in text.split("Alarms")[1]
    status = json.loads(ctl(broker, "status", "--formatter", "json").stdout)
    assert status["object_totals"]["queues"] == 0 and status["alarms"] == []


def test_ctl_purge_delete_and_close(broker: Broker) -> None:
    connection, channel = workload(broker.port)
    cancelled: list[str] = []
    channel.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.consumer_tag))
    out = ctl(broker, "purge_queue", "orders")
    assert out.returncode == 0 and out.stdout.strip() == "Purging queue 'orders' in vhost '/' ..."
    assert rows(ctl(broker, "list_queues", "name", "messages_ready", "messages_unacknowledged").stdout)[1:] == [
        ["orders", "0", "3"]]  # unacked ones stay with the consumer, as RabbitMQ

    refused = ctl(broker, "delete_queue", "orders", "--if-unused")
    assert refused.returncode == 1 and "in use" in refused.stderr
    out = ctl(broker, "delete_queue", "orders")
    assert out.returncode == 0 and "Queue was successfully deleted with 0 ready messages" in out.stdout
    pump_until(connection, lambda: bool(cancelled))
    assert cancelled == ["worker-1"]  # the consumer is told, as RabbitMQ's consumer cancel notify

    missing = ctl(broker, "purge_queue", "orders")
    assert missing.returncode == 1 and missing.stderr.strip() == "Error: Not Found"

    name = rows(ctl(broker, "list_connections", "name").stdout)[1][0]
    out = ctl(broker, "close_connection", name, "maintenance window")
    assert out.returncode == 0, out.stderr
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
        pump_until(connection, lambda: False)  # until the close arrives (or WAIT_S goes by)
    assert closed.value.reply_code == 320
    assert "maintenance window" in closed.value.reply_text
    assert rows(ctl(broker, "list_connections").stdout)[1:] == []


def test_ctl_definitions_round_trip_into_another_broker(broker: Broker, tmp_path) -> None:
    connection, _ = workload(broker.port, consume=False)
    connection.close()
    path = tmp_path / "defs.json"
    assert ctl(broker, "export_definitions", str(path)).returncode == 0
    exported = json.loads(path.read_text())
    assert {q["name"] for q in exported["queues"]} == {"orders"}
    assert exported["bindings"] == [{"source": "fan", "vhost": "/", "destination": "orders",
                                     "destination_type": "queue", "routing_key": "k", "arguments": {}}]
    other = Broker()
    try:
        out = ctl(other, "import_definitions", str(path))
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines()[-1] == ("Imported 1 vhost, 1 user, 1 permission, 0 topic permissions, "
                                               "limits of 0 users and 0 vhosts, 0 policies, 1 exchange, 1 queue and 1 binding")
        c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", other.port))
        ch = c.channel()
        ch.basic_publish("fan", "", b"through the imported binding")
        method, _, body = ch.basic_get("orders", auto_ack=True)
        assert body == b"through the imported binding"
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as err:  # arguments came along
            ch.queue_declare("orders", durable=True)
        assert err.value.reply_code == 406
        c.close()
    finally:
        assert other.stop() == 0
        other.remove_data()


def test_ctl_says_one_line_when_no_broker_runs() -> None:
    out = subprocess.run([sys.executable, "-m", "zbroker", "ctl", "--broker", "tcp://127.0.0.1:1",
                          "-t", "2", "list_queues"], capture_output=True, text=True, env=child_env(), cwd=ROOT)
    assert out.returncode == 69
    assert "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [
        "Error: cannot reach a broker at tcp://127.0.0.1:1: connection refused (is `zbroker serve` running?)"]


# -- HTTP API ------------------------------------------------------------------------------

def test_http_api_shapes_match_rabbitmq_field_names(web: Broker) -> None:
    connection, channel = workload(web.port)
    base = web.http
    status, overview = http(base, "/api/overview")
    assert status == 200 and OVERVIEW_FIELDS <= overview.keys()
    assert overview["object_totals"] == {"connections": 1, "channels": 1, "exchanges": 7, "queues": 1,
                                         "consumers": 1}
    assert overview["queue_totals"]["messages"] == 10
    assert {"publish", "publish_details", "deliver_get", "ack", "confirm"} <= overview["message_stats"].keys()
    assert {"protocol": "zbroker", "port": web.port} .items() <= overview["listeners"][0].items()

    _, queues = http(base, "/api/queues")
    assert QUEUE_FIELDS <= queues[0].keys()
    status, queue = http(base, "/api/queues/%2F/orders")
    assert status == 200 and queue["messages_ready"] == 7 and queue["messages_unacknowledged"] == 3
    assert queue["consumer_details"][0].keys() >= CONSUMER_FIELDS
    assert queue["consumer_details"][0]["channel_details"]["connection_name"].startswith("127.0.0.1")
    assert queue["incoming"] == [{"exchange": {"name": "fan", "vhost": "/"}, "stats": {"publish": 10}}]
    assert queue["message_stats"]["publish"] == 10 and queue["message_stats"]["deliver"] == 3

    for path, fields in (("/api/exchanges", EXCHANGE_FIELDS), ("/api/bindings", BINDING_FIELDS),
                         ("/api/connections", CONNECTION_FIELDS), ("/api/channels", CHANNEL_FIELDS),
                         ("/api/consumers", CONSUMER_FIELDS)):
        status, listing = http(base, path)
        assert status == 200 and listing and fields <= listing[0].keys(), path

    conn_name = http(base, "/api/connections")[1][0]["name"]
    status, one = http(base, "/api/connections/" + urllib.request.quote(conn_name, safe=""))
    assert status == 200 and one["channel_details"][0]["number"] == 1
    status, ch = http(base, "/api/channels/" + urllib.request.quote(conn_name + " (1)", safe=""))
    assert status == 200 and ch["consumer_details"][0]["consumer_tag"] == "worker-1"
    status, ex = http(base, "/api/exchanges/%2F/fan")
    assert status == 200 and ex["message_stats"]["publish_in"] == 10
    _, src = http(base, "/api/exchanges/%2F/fan/bindings/source")
    assert [b["destination"] for b in src] == ["orders"]
    _, qb = http(base, "/api/queues/%2F/orders/bindings")
    assert {b["source"] for b in qb} == {"", "fan"}

    # Pagination and columns, RabbitMQ's page object.
    status, page = http(base, "/api/queues?page=1&page_size=1&columns=name,messages,message_stats.publish")
    assert page == {"filtered_count": 1, "item_count": 1, "page": 1, "page_count": 1, "page_size": 1,
                    "total_count": 1, "items": [{"name": "orders", "messages": 10,
                                                 "message_stats": {"publish": 10}}]}
    _, exchanges = http(base, "/api/exchanges?name=amq.&sort=name&sort_reverse=true&columns=name")
    assert [e["name"] for e in exchanges] == ["amq.topic", "amq.match", "amq.headers", "amq.fanout", "amq.direct"]

    # Errors as RabbitMQ's JSON.
    assert http(base, "/api/queues/%2F/nope") == (404, {"error": "Object Not Found", "reason": "Not Found"})
    assert http(base, "/api/queues/other-vhost/orders")[0] == 404
    assert http(base, "/api/queues?page=0")[0] == 400
    assert http(base, "/api/nothing-here")[0] == 404
    connection.close()


def test_http_rates_come_from_samples(web: Broker) -> None:
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", web.port))
    channel = connection.channel()
    channel.queue_declare("rated")
    http(web.http, "/api/overview")  # somebody is watching: per-object samples start
    deadline = time.monotonic() + WAIT_S
    while True:  # publishing all along: the rates are read while they are made, not after
        for _ in range(20):
            channel.basic_publish("", "rated", b"x")
        connection.process_data_events(0.01)
        _, queue = http(web.http, "/api/queues/%2F/rated")
        _, overview = http(web.http, "/api/overview")
        rates = (queue.get("message_stats", {}).get("publish_details", {}).get("rate", 0),
                 overview.get("message_stats", {}).get("publish_details", {}).get("rate", 0),
                 queue.get("messages_details", {}).get("rate", 0))
        if rates[0] > 10 and rates[1] > 10 and rates[2] > 0:
            break
        assert time.monotonic() < deadline, f"no rates from the samples: {rates}"
    connection.close()


def test_http_actions_get_publish_purge_delete_close(web: Broker) -> None:
    base = web.http
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", web.port))
    channel = connection.channel()
    channel.queue_declare("debug")
    status, routed = http(base, "/api/exchanges/%2F/amq.default/publish", "POST", {
        "routing_key": "debug", "payload": "hello", "payload_encoding": "string",
        "properties": {"content_type": "text/plain", "headers": {"a": 1}}})
    assert (status, routed) == (200, {"routed": True})
    assert http(base, "/api/exchanges/%2F/amq.default/publish", "POST", {
        "routing_key": "nowhere", "payload": "x", "properties": {}})[1] == {"routed": False}
    bad = http(base, "/api/exchanges/%2F/amq.default/publish", "POST", {
        "routing_key": "debug", "payload": "x", "properties": {"priority": 999}})
    assert bad[0] == 400 and "priority" in bad[1]["reason"]

    status, got = http(base, "/api/queues/%2F/debug/get", "POST",
                       {"count": 5, "ackmode": "ack_requeue_true", "encoding": "auto", "truncate": 50000})
    assert status == 200 and len(got) == 1
    assert {"payload": "hello", "payload_encoding": "string", "payload_bytes": 5, "redelivered": False,
            "routing_key": "debug", "message_count": 0}.items() <= got[0].items()
    assert got[0]["properties"] == {"content_type": "text/plain", "headers": {"a": 1}}
    _, again = http(base, "/api/queues/%2F/debug/get", "POST", {"count": 1, "ackmode": "ack_requeue_false"})
    assert again[0]["redelivered"] is True  # requeued by the first get, as RabbitMQ
    assert http(base, "/api/queues/%2F/debug")[1]["messages"] == 0

    channel.basic_publish("", "debug", b"one")
    channel.basic_publish("", "debug", b"two")
    deadline = time.monotonic() + 5  # the publishes come on another connection than the API's
    while http(base, "/api/queues/%2F/debug")[1]["messages"] < 2:
        assert time.monotonic() < deadline
        connection.process_data_events(0.02)
    assert http(base, "/api/queues/%2F/debug/contents", "DELETE")[0] == 204
    assert http(base, "/api/queues/%2F/debug")[1]["messages"] == 0
    assert http(base, "/api/queues/%2F/debug", "DELETE")[0] == 204
    assert http(base, "/api/queues/%2F/debug")[0] == 404

    name = http(base, "/api/connections")[1][0]["name"]
    status, _ = http(base, "/api/connections/" + urllib.request.quote(name, safe=""), "DELETE",
                     headers={"X-Reason": "go away"})
    assert status == 204
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
        pump_until(connection, lambda: False)  # until the close arrives (or WAIT_S goes by)
    assert closed.value.reply_code == 320 and "go away" in closed.value.reply_text


RABBITMQ_EXPORT = {
    "rabbit_version": "3.10.8", "rabbitmq_version": "3.10.8", "product_name": "RabbitMQ",
    "product_version": "3.10.8",
    # (guest/guest as RabbitMQ 3.10.8 hashed it: importing it keeps guest's login working)
    "users": [{"name": "guest", "password_hash": "OftrWJ2x5kPfL0/nijcHnetd1fqdKZHksGvC/qNNNjDl65Et",
               "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ["administrator"], "limits": {}}],
    "vhosts": [{"name": "/"}],
    "permissions": [{"user": "guest", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}],
    "topic_permissions": [], "parameters": [],
    "global_parameters": [{"name": "internal_cluster_id", "value": "rabbitmq-cluster-id-x"}],
    "policies": [],
    "queues": [{"name": "jobs", "vhost": "/", "durable": True, "auto_delete": False,
                "arguments": {"x-queue-type": "classic", "x-message-ttl": 60000}}],
    "exchanges": [{"name": "events", "vhost": "/", "type": "topic", "durable": True, "auto_delete": False,
                   "internal": False, "arguments": {}}],
    "bindings": [{"source": "events", "vhost": "/", "destination": "jobs", "destination_type": "queue",
                  "routing_key": "job.#", "arguments": {}}],
}


def test_http_definitions_import_a_rabbitmq_export(web: Broker) -> None:
    base = web.http
    assert http(base, "/api/definitions", "POST", RABBITMQ_EXPORT)[0] == 204
    _, defs = http(base, "/api/definitions")
    # (each queue's type named as rabbitmqctl export_definitions names it)
    assert defs["queues"] == [{**q, "type": "classic"} for q in RABBITMQ_EXPORT["queues"]]
    assert defs["exchanges"] == RABBITMQ_EXPORT["exchanges"]
    assert defs["bindings"] == RABBITMQ_EXPORT["bindings"]
    # What zbroker cannot apply is refused whole, not dropped: a policy RabbitMQ would
    # refuse (a valid one imports, and comes back out).
    policy = {"vhost": "/", "name": "ttl", "pattern": ".*", "apply-to": "queues",
              "definition": {"message-ttl": 1000}, "priority": 0}
    other = [{"name": "other", "vhost": "/", "durable": True, "auto_delete": False, "arguments": {}}]
    bad = {**RABBITMQ_EXPORT, "queues": other, "policies": [{**policy, "definition": {"message-ttl": "x"}}]}
    status, error = http(base, "/api/definitions", "POST", bad)
    assert status == 400 and error["reason"] == ("policy 'ttl': Validation failed: "
                                                 '<<"x">> is not a valid message TTL')
    assert http(base, "/api/definitions", "POST", {**RABBITMQ_EXPORT, "policies": [policy]})[0] == 204
    assert http(base, "/api/definitions")[1]["policies"] == [policy]
    status, error = http(base, "/api/definitions", "POST",
                         {**RABBITMQ_EXPORT, "permissions": [{"user": "alice", "vhost": "/", "configure": "^alice",
                                                              "write": ".*", "read": ".*"}]})
    assert status == 400 and error["reason"] == "permission for user 'alice': no such user"
    assert http(base, "/api/queues/%2F/other")[0] == 404  # nothing of a refused file was imported


def test_health_check_alarms(tmp_path) -> None:
    proc = Broker("--http", "127.0.0.1:0", "--memory-limit", "0")  # 0: the memory alarm is always on
    try:
        m = proc.wait_for(HTTP_READY)
        base = f"http://{m.group(1)}:{m.group(2)}"
        proc.wait_for("memory alarm set")
        status, body = http(base, "/api/health/checks/alarms")
        assert status == 503 and body["status"] == "failed"
        assert body["alarms"][0]["resource"] == "memory"
        metrics = {f.name: f for f in text_string_to_metric_families(http(base, "/metrics")[1])}
        assert metrics["rabbitmq_alarms_memory_used_watermark"].samples[0].value == 1
    finally:
        assert proc.stop() == 0
        proc.remove_data()


# -- Prometheus ----------------------------------------------------------------------------

def test_metrics_have_rabbitmq_prometheus_names(web: Broker) -> None:
    connection, channel = workload(web.port)
    status, text = http(web.http, "/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(text)}

    def value(name: str, **labels: str) -> float:
        samples = [s for s in families[name].samples if labels.items() <= s.labels.items()
                   and not s.name.endswith("_created")]
        assert len(samples) == 1, (name, samples)
        return samples[0].value

    assert value("rabbitmq_connections") == 1
    assert value("rabbitmq_channels") == 1
    assert value("rabbitmq_queues") == 1
    assert value("rabbitmq_queue_messages_ready") == 7
    assert value("rabbitmq_queue_messages_unacked") == 3
    assert value("rabbitmq_channel_messages_published") == 10  # the _total counter
    assert value("rabbitmq_global_messages_received") == 10
    assert value("rabbitmq_global_messages_routed") == 10
    assert value("rabbitmq_global_messages_delivered") == 3
    assert value("rabbitmq_global_messages_delivered_consume_manual_ack") == 3
    assert value("rabbitmq_alarms_memory_used_watermark") == 0
    assert value("rabbitmq_process_resident_memory_bytes") > 10_000_000
    assert "rabbitmq_channel_messages_published_total 10.0" in text

    _, per_object = http(web.http, "/metrics/per-object")
    families = {f.name: f for f in text_string_to_metric_families(per_object)}
    ready = {s.labels["queue"]: s.value for s in families["rabbitmq_queue_messages_ready"].samples}
    assert ready == {"orders": 7}
    assert families["rabbitmq_queue_messages_ready"].samples[0].labels["vhost"] == "/"
    published = families["rabbitmq_channel_messages_published"].samples
    assert [s.value for s in published if s.name.endswith("_total")] == [10]
    connection.close()


def test_http_api_users_permissions_and_logins(web: Broker) -> None:
    """RabbitMQ's /api/users, /api/permissions, /api/vhosts, /api/whoami, behind basic auth."""
    base = web.http
    status, body = http(base, "/api/overview", auth=None)
    assert (status, body) == (401, {"error": "not_authorised", "reason": "Not_Authorized"})
    assert http(base, "/api/overview", auth=("guest", "wrong")) == (401, {"error": "not_authorised",
                                                                           "reason": "Login failed"})
    assert http(base, "/api/whoami") == (200, {"name": "guest", "tags": ["administrator"]})
    assert http(base, "/api/users/ops", "PUT", {"password": "s3cret", "tags": "monitoring"})[0] == 201
    assert http(base, "/api/users/ops", "PUT", {"password": "s3cret2", "tags": "monitoring"})[0] == 204
    status, ops = http(base, "/api/users/ops")
    assert status == 200 and ops["tags"] == ["monitoring"] and ops["hashing_algorithm"] == \
        "rabbit_password_hashing_sha256" and ops["password_hash"]
    assert http(base, "/api/whoami", auth=("ops", "s3cret2"))[1] == {"name": "ops", "tags": ["monitoring"]}
    assert http(base, "/api/queues", auth=("ops", "s3cret2"))[0] == 200  # monitoring reads
    assert http(base, "/api/users", auth=("ops", "s3cret2")) == (401, {"error": "not_authorised",
                                                                       "reason": "Not administrator user"})
    assert http(base, "/api/permissions/%2F/ops", "PUT", {"configure": "^ops-", "write": "^ops-",
                                                           "read": ".*"})[0] == 204
    assert http(base, "/api/permissions/%2F/ops") == (200, {"user": "ops", "vhost": "/", "configure": "^ops-",
                                                            "write": "^ops-", "read": ".*"})
    assert [p["user"] for p in http(base, "/api/permissions")[1]] == ["guest", "ops"]
    assert http(base, "/api/users/ops/permissions")[1][0]["configure"] == "^ops-"
    bad = http(base, "/api/permissions/%2F/ops", "PUT", {"configure": "(", "write": "", "read": ""})
    assert bad[0] == 400 and "invalid regular expression" in bad[1]["reason"]
    assert http(base, "/api/vhosts")[1][0]["name"] == "/"
    assert http(base, "/api/vhosts/other", "PUT", {"description": "staging"})[0] == 201
    assert http(base, "/api/vhosts/other")[1]["description"] == "staging"
    assert http(base, "/api/queues/other")[1] == [] and http(base, "/api/queues/nowhere")[0] == 404
    # The login counts on the client wires too: ops may publish to ops-* only.
    connection = pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", web.port, credentials=pika.PlainCredentials("ops", "s3cret2")))
    channel = connection.channel()
    channel.queue_declare("ops-q")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as err:
        connection.channel().queue_declare("payments")
    assert (err.value.reply_code, err.value.reply_text) == (
        403, "ACCESS_REFUSED - configure access to queue 'payments' in vhost '/' refused for user 'ops'")
    connection.close()
    topic = {"exchange": "amq.topic", "write": "^ops\\.", "read": ".*"}
    assert http(base, "/api/topic-permissions/%2F/ops", "PUT", topic)[0] == 204
    assert http(base, "/api/topic-permissions") == (200, [{"user": "ops", "vhost": "/", **topic}])
    assert http(base, "/api/topic-permissions/%2F/ops")[1] == http(base, "/api/users/ops/topic-permissions")[1]
    assert http(base, "/api/topic-permissions/%2F/ops", "DELETE")[0] == 204
    assert http(base, "/api/topic-permissions")[1] == []
    assert http(base, "/api/permissions/%2F/ops", "DELETE")[0] == 204
    assert http(base, "/api/users/ops", "DELETE")[0] == 204
    assert http(base, "/api/vhosts/other", "DELETE")[0] == 204 and http(base, "/api/vhosts/other")[0] == 404
    assert http(base, "/api/users/ops")[0] == 404
    assert http(base, "/metrics", auth=None)[0] == 200  # Prometheus scrapes without a login, as RabbitMQ's
    assert http(base, "/api/vhost-limits/%2F/max-connections", "PUT", {"value": 100})[0] == 204
    assert http(base, "/api/vhost-limits") == (200, [{"vhost": "/", "value": {"max-connections": 100}}])
    assert http(base, "/api/user-limits/guest/max-channels", "PUT", {"value": 50})[0] == 204
    assert http(base, "/api/user-limits") == (200, [{"user": "guest", "value": {"max-channels": 50}}])
    assert http(base, "/api/vhost-limits/%2F/max-connections", "DELETE")[0] == 204
    assert http(base, "/api/user-limits/guest/max-channels", "DELETE")[0] == 204
    assert http(base, "/api/vhost-limits")[1] == [] and http(base, "/api/user-limits")[1] == []
    assert http(base, "/api/user-limits/guest/max-queues", "PUT", {"value": 1})[0] == 400
