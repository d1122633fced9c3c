"""The HTTP API's writes of queues, exchanges and bindings against a real broker, as
RabbitMQ 3.10's: 201 then 204 on PUT, the 406 text as a 400's reason, bindings named by
properties key with a relative ``Location``, 404 and 405 as RabbitMQ answers them."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import unquote


import zbroker.client as pika
from tests.integration.test_management import basic, http, web  # noqa: F401 (web: the fixture)
from tests.support import Broker

NOT_FOUND = {"error": "Object Not Found", "reason": "Not Found"}


def raw(base: str, path: str, method: str, body: Any = None, login: bool = True) -> tuple[int, Any, bytes]:
    """(status, headers, body) of a request."""
    request = urllib.request.Request(base + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers=basic("guest", "guest") if login else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def test_declare_bind_and_delete_over_http(web: Broker) -> None:
    base = web.http
    assert http(base, "/api/queues/%2F/orders", "PUT", {"durable": True, "arguments": {"x-max-length": 5}}) == (
        201, None)
    assert http(base, "/api/queues/%2F/orders", "PUT", {"durable": True, "arguments": {"x-max-length": 5}}) == (
        204, None)
    assert http(base, "/api/queues/%2F/orders", "PUT", {"durable": False}) == (400, {
        "error": "bad_request",
        "reason": "inequivalent arg 'durable' for queue 'orders' in vhost '/': received 'false' but current is 'true'"})
    assert http(base, "/api/queues/nowhere/orders", "PUT", {}) == (404, {"error": "not_found",
                                                                        "reason": "vhost_not_found"})
    queue = http(base, "/api/queues/%2F/orders")[1]
    assert (queue["durable"], queue["auto_delete"], queue["arguments"]) == (True, False, {"x-max-length": 5})

    assert http(base, "/api/exchanges/%2F/events", "PUT", {"type": "topic", "durable": True}) == (201, None)
    assert http(base, "/api/exchanges/%2F/events", "PUT", {"type": "topic", "durable": True}) == (204, None)
    assert http(base, "/api/exchanges/%2F/events")[1]["type"] == "topic"

    status, headers, _ = raw(base, "/api/bindings/%2F/e/events/q/orders", "POST", {"routing_key": "order.*"})
    assert (status, headers["Location"]) == (201, "orders/order.%252A")
    status, headers, _ = raw(base, "/api/bindings/%2F/e/events/q/orders", "POST",
                             {"routing_key": "a b", "arguments": {"k": "v"}})
    props = unquote(headers["Location"].split("/")[1])  # quoted once more, as RabbitMQ's
    assert status == 201 and props.startswith("a+b~")
    listed = http(base, "/api/bindings/%2F/e/events/q/orders")[1]
    assert [(b["routing_key"], b["properties_key"]) for b in listed] == [("a b", props), ("order.*", "order.%2A")]
    assert http(base, f"/api/bindings/%2F/e/events/q/orders/{props}")[1]["arguments"] == {"k": "v"}

    # The binding routes: a client's publish reaches the queue declared over HTTP.
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", web.port))
    channel = connection.channel()
    channel.basic_publish("events", "order.new", b"hello")
    assert channel.queue_declare("orders", passive=True, durable=True,
                                 arguments={"x-max-length": 5}).method.message_count == 1
    connection.close()

    assert http(base, "/api/bindings/%2F/e/events/q/orders/order.%2A", "DELETE") == (204, None)
    assert http(base, "/api/bindings/%2F/e/events/q/orders/order.%2A", "DELETE") == (404, NOT_FOUND)
    assert http(base, "/api/bindings/%2F/e/events/q/orders/order.%2A") == (404, NOT_FOUND)
    assert http(base, "/api/bindings/%2F/e/nowhere/q/orders", "POST", {}) == (
        404, {"error": "not_found", "reason": "no exchange 'nowhere' in vhost '/'"})
    assert http(base, "/api/exchanges/%2F/events?if-unused=true", "DELETE") == (
        400, {"error": "bad_request", "reason": "exchange 'events' in vhost '/' in use"})
    assert http(base, "/api/exchanges/%2F/events", "DELETE") == (204, None)
    assert http(base, "/api/exchanges/%2F/events", "DELETE") == (404, NOT_FOUND)
    assert http(base, "/api/exchanges/%2F/amq.direct", "DELETE") == (
        401, {"error": "not_authorised", "reason": "Access refused."})
    assert http(base, "/api/queues/%2F/orders", "DELETE") == (204, None)
    assert http(base, "/api/queues/%2F/orders") == (404, NOT_FOUND)
    assert http(base, "/api/queues/nowhere/orders") == (404, NOT_FOUND)


def test_a_method_a_path_does_not_take_is_405_with_allow(web: Broker) -> None:
    base = web.http
    status, headers, body = raw(base, "/api/bindings/%2F/e/amq.direct/q/nothing/~", "PUT", {}, login=False)
    assert (status, headers["Allow"], body) == (405, "HEAD, GET, DELETE, OPTIONS", b"")
    assert raw(base, "/api/overview", "POST", {})[1]["Allow"] == "HEAD, GET, OPTIONS"
    status, headers, _ = raw(base, "/api/queues/%2F/q", "OPTIONS", login=False)
    assert (status, headers["Allow"]) == (200, "HEAD, GET, PUT, DELETE, OPTIONS")
    assert raw(base, "/api/bindings/%2F/e/x/q/q", "DELETE")[1]["Allow"] == "HEAD, GET, POST, OPTIONS"


def test_aliveness_and_health_checks(web: Broker) -> None:
    base = web.http
    assert http(base, "/api/aliveness-test/%2F") == (200, {"status": "ok"})
    assert http(base, "/api/aliveness-test/%2F") == (200, {"status": "ok"})
    assert http(base, "/api/queues/%2F/aliveness-test")[1]["messages"] == 0
    assert http(base, "/api/aliveness-test/nowhere") == (404, NOT_FOUND)
    assert http(base, "/api/health/checks/virtual-hosts") == (200, {"status": "ok"})
    assert http(base, "/api/health/checks/local-alarms") == (200, {"status": "ok"})
    assert http(base, "/api/health/checks/node-is-quorum-critical") == (
        200, {"status": "ok", "reason": "single node cluster"})
    assert http(base, f"/api/health/checks/port-listener/{web.port}") == (200, {"status": "ok", "port": web.port})
    status, body = http(base, "/api/health/checks/port-listener/1")
    assert (status, body["status"], body["reason"], body["missing"]) == (503, "failed", "No active listener", 1)
    assert web.port in body["ports"]
    assert http(base, "/api/health/checks/port-listener/x") == (400, {"error": "bad_request",
                                                                      "reason": "Invalid port"})
    assert http(base, "/api/health/checks/protocol-listener/AMQP091") == (200, {"status": "ok", "protocol": "amqp"})
    assert http(base, "/api/health/checks/protocol-listener/management")[1]["protocol"] == "http"
    status, body = http(base, "/api/health/checks/protocol-listener/mqtt")
    assert (status, body["missing"], "amqp" in body["protocols"]) == (503, "mqtt", True)


def test_the_node_with_what_the_server_measures(web: Broker) -> None:
    """``/api/nodes``, as rabbitmqadmin's ``list nodes`` reads it: the server's own memory."""
    status, nodes = http(web.http, "/api/nodes?columns=name,type,mem_used")
    assert status == 200 and len(nodes) == 1
    assert nodes[0]["type"] == "disc" and nodes[0]["mem_used"] > 1_000_000
    assert http(web.http, f"/api/nodes/{nodes[0]['name']}")[1]["running"] is True
    assert http(web.http, "/api/nodes/rabbit%40elsewhere")[0] == 404
