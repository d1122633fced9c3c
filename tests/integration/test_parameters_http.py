"""The HTTP API's ``/api/parameters``, ``/api/global-parameters`` and the writes of
``/api/vhost-limits`` against a real broker, as RabbitMQ 3.10's: 201 then 204 on PUT,
RabbitMQ's 400 and 404 bodies, 405 with its Allow header, operator policies and vhost
limits as parameters that act at once, the cluster name, and who may."""
from __future__ import annotations

import urllib.request

import zbroker.client as pika
from tests.integration.test_management import http, web  # noqa: F401 (web: the fixture)
from tests.support import Broker

CAP = {"pattern": "^q$", "definition": {"max-length": 2}, "priority": 1}


def test_parameters_over_http(web: Broker) -> None:
    base = web.http
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", web.port))
    channel = connection.channel()
    channel.queue_declare("q")
    for i in range(4):
        channel.basic_publish("", "q", b"m%d" % i)
    connection.close()

    assert http(base, "/api/parameters") == (200, [])
    assert http(base, "/api/parameters/federation-upstream/%2F/up", "PUT", {"value": {"uri": "amqp://"}}) == (
        400, {"error": "bad_request", "reason": "Validation failed\n\ncomponent federation-upstream not found\n"})
    assert http(base, "/api/parameters/operator_policy/%2F/cap", "PUT", {"value": CAP}) == (201, None)
    assert http(base, "/api/queues/%2F/q")[1]["messages"] == 2  # trimmed at once
    assert http(base, "/api/parameters/operator_policy/%2F/cap", "PUT", {"value": {**CAP, "priority": 2}}) == (
        204, None)
    assert http(base, "/api/operator-policies/%2F/cap")[1]["priority"] == 2
    cap = {"value": {**CAP, "priority": 2, "apply-to": "all"}, "vhost": "/", "component": "operator_policy",
           "name": "cap"}
    assert http(base, "/api/parameters/operator_policy/%2F/cap") == (200, cap)
    assert http(base, "/api/parameters/vhost-limits/%2F/limits", "PUT", {"value": {"max-queues": 10}}) == (
        201, None)
    limits = {"value": {"max-queues": 10}, "vhost": "/", "component": "vhost-limits", "name": "limits"}
    assert http(base, "/api/parameters") == (200, [cap, limits])  # by vhost, then name
    assert http(base, "/api/parameters/vhost-limits") == (200, [limits])
    assert http(base, "/api/parameters/vhost-limits/%2F") == (200, [limits])
    assert http(base, "/api/vhost-limits") == (200, [{"vhost": "/", "value": {"max-queues": 10}}])

    # RabbitMQ's refusals.
    assert http(base, "/api/parameters/vhost-limits/%2F/limits", "PUT", {"value": {"max-queues": "<b>"}}) == (
        400, {"error": "bad_request",
              "reason": 'Validation failed\n\nmax-queues should be a number, actually was '
                        '&lt;&lt;"&lt;b&gt;"&gt;&gt;\n'})
    assert http(base, "/api/parameters/vhost-limits/%2F/limits", "PUT", {"val": 1}) == (
        400, {"error": "bad_request", "reason": "[{key_missing,value}]"})
    assert http(base, "/api/parameters/vhost-limits/nowhere/limits", "PUT", {"value": {}}) == (
        404, {"error": "not_found", "reason": "vhost_not_found"})
    assert http(base, "/api/parameters/policy/%2F/p", "PUT", {"value": CAP}) == (
        400, {"error": "bad_request", "reason": "policies may not be set using this method"})
    assert http(base, "/api/parameters/shovel/%2F/nope") == (404, {"error": "Object Not Found", "reason": "Not Found"})
    assert http(base, "/api/parameters/shovel/%2F/nope", "DELETE") == (
        404, {"error": "Object Not Found", "reason": "Not Found"})
    assert http(base, "/api/parameters/shovel/nowhere")[0] == 404
    for path, allow in (("/api/parameters", "HEAD, GET, OPTIONS"),
                        ("/api/parameters/a/b/c", "HEAD, GET, PUT, DELETE, OPTIONS"),
                        ("/api/global-parameters/x", "HEAD, GET, PUT, DELETE, OPTIONS"),
                        ("/api/vhost-limits/%2F/max-queues", "PUT, DELETE, OPTIONS")):
        request = urllib.request.Request(base + path, method="POST")
        try:
            urllib.request.urlopen(request, timeout=10)
        except urllib.error.HTTPError as exc:
            assert (exc.code, exc.headers["Allow"]) == (405, allow)

    # A vhost's limits one at a time, as RabbitMQ's /api/vhost-limits writes them.
    assert http(base, "/api/vhost-limits/%2F/max-connections", "PUT", {"value": 5}) == (204, None)
    assert http(base, "/api/parameters/vhost-limits/%2F/limits")[1]["value"] == {"max-queues": 10,
                                                                                   "max-connections": 5}
    assert http(base, "/api/vhost-limits/%2F/max-bogus", "PUT", {"value": 5}) == (
        400, {"error": "bad_request",
              "reason": 'Validation failed\n\nUnrecognised terms [{<<"max-bogus">>,5}] in limits\n'})
    assert http(base, "/api/vhost-limits/%2F/max-queues", "PUT", {"value": 5},
                headers={"Content-Type": "text/plain"})[0] == 415
    assert http(base, "/api/vhost-limits/%2F/max-queues", "DELETE") == (204, None)
    assert http(base, "/api/vhost-limits/%2F/max-queues", "DELETE") == (204, None)  # (not set: still 204)
    assert http(base, "/api/vhost-limits") == (200, [{"vhost": "/", "value": {"max-connections": 5}}])

    assert http(base, "/api/parameters/operator_policy/%2F/cap", "DELETE") == (204, None)
    assert http(base, "/api/parameters/vhost-limits/%2F/limits", "DELETE") == (204, None)
    assert http(base, "/api/parameters") == (200, []) and http(base, "/api/operator-policies") == (200, [])


def test_global_parameters_and_who_may(web: Broker) -> None:
    base = web.http
    node = http(base, "/api/overview")[1]["node"]
    assert http(base, "/api/overview")[1]["cluster_name"] == node
    assert http(base, "/api/global-parameters/cluster_name", "PUT", {"value": "blue"}) == (201, None)
    assert http(base, "/api/global-parameters/cluster_name", "PUT", {"value": "green"}) == (204, None)
    assert http(base, "/api/global-parameters/anything", "PUT", {"value": {"a": [1, 2]}}) == (201, None)
    assert http(base, "/api/global-parameters") == (200, [{"name": "anything", "value": {"a": [1, 2]}},
                                                          {"name": "cluster_name", "value": "green"}])
    assert http(base, "/api/global-parameters/cluster_name") == (200, {"value": "green", "name": "cluster_name"})
    assert http(base, "/api/overview")[1]["cluster_name"] == "green"
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", web.port))
    connection.close()
    assert http(base, "/api/global-parameters/nope") == (404, {"error": "Object Not Found", "reason": "Not Found"})
    assert http(base, "/api/global-parameters/nope", "DELETE")[0] == 404
    assert http(base, "/api/global-parameters/cluster_name", "DELETE") == (204, None)
    assert http(base, "/api/overview")[1]["cluster_name"] == node

    assert http(base, "/api/users/maker", "PUT", {"password": "s3cret", "tags": "policymaker"})[0] == 201
    assert http(base, "/api/users/viewer", "PUT", {"password": "s3cret", "tags": "management"})[0] == 201
    assert http(base, "/api/vhosts/mine", "PUT")[0] == 201
    assert http(base, "/api/permissions/mine/maker", "PUT", {"configure": ".*", "write": ".*", "read": ".*"})[0] == 204
    maker, viewer = ("maker", "s3cret"), ("viewer", "s3cret")
    refused = (401, {"error": "not_authorised", "reason": "User not authorised to access object"})
    assert http(base, "/api/parameters", auth=viewer) == refused
    assert http(base, "/api/global-parameters", auth=viewer) == refused
    assert http(base, "/api/parameters/vhost-limits/%2F", auth=maker) == refused
    assert http(base, "/api/parameters/vhost-limits/mine", auth=maker) == (200, [])
    assert http(base, "/api/global-parameters/g", "PUT", {"value": 1}, auth=maker) == (201, None)
    assert http(base, "/api/parameters/vhost-limits/mine/limits", "PUT", {"value": {"max-queues": 1}},
                auth=maker) == (401, {"error": "not_authorised", "reason": "Not administrator user"})
    assert http(base, "/api/vhost-limits/mine/max-queues", "PUT", {"value": 1}, auth=maker)[0] == 401
