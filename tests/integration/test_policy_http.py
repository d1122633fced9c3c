"""The HTTP API's ``/api/policies`` and ``/api/operator-policies`` against a real broker, as
RabbitMQ 3.10's: 201 then 204 on PUT, RabbitMQ's 400 and 404 bodies, lists lowest
priority first, a policy that trims a queue at once, operator policies for administrators."""
from __future__ import annotations

import zbroker.client as pika
from tests.integration.test_management import http, web  # noqa: F401 (web: the fixture)
from tests.support import Broker

LIMIT = {"pattern": "^q$", "definition": {"max-length": 1}, "priority": 2, "apply-to": "queues"}


def test_policies_over_http(web: Broker) -> None:
    base = web.http
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", web.port))
    channel = connection.channel()
    channel.queue_declare("q")
    for i in range(4):
        channel.basic_publish("", "q", b"m%d" % i)
    assert channel.queue_declare("q", passive=True).method.message_count == 4
    connection.close()

    assert http(base, "/api/policies/%2F/lim", "PUT", {**LIMIT, "definition": {"max-length": 3}}) == (201, None)
    assert http(base, "/api/queues/%2F/q")[1]["messages"] == 3
    assert http(base, "/api/policies/%2F/lim", "PUT", LIMIT) == (204, None)
    assert http(base, "/api/queues/%2F/q")[1]["messages"] == 1
    view = {"vhost": "/", "name": "lim", "pattern": "^q$", "apply-to": "queues",
            "definition": {"max-length": 1}, "priority": 2}
    assert http(base, "/api/policies/%2F/lim") == (200, view)
    low = {"pattern": ".*", "definition": {"message-ttl": 1000}}  # priority 0, apply-to all
    assert http(base, "/api/policies/%2F/ttl", "PUT", low)[0] == 201
    ttl = {"vhost": "/", "name": "ttl", "pattern": ".*", "apply-to": "all", "definition": {"message-ttl": 1000},
           "priority": 0}
    assert http(base, "/api/policies") == (200, [ttl, view])
    assert http(base, "/api/policies/%2F") == (200, [ttl, view])

    assert http(base, "/api/policies/%2F/bad", "PUT", {"pattern": ".*", "definition": {"max-lenth": 1}}) == (
        400, {"error": "bad_request", "reason": "Validation failed\n\n[{&lt;&lt;\"max-lenth\"&gt;&gt;,1}] "
                                                 "are not recognised policy settings\n"})
    assert http(base, "/api/operator-policies/%2F/bad", "PUT", {"pattern": ".*", "definition": {"max-lenth": 1}}) == (
        400, {"error": "bad_request", "reason": "Validation failed\n\n[{<<\"max-lenth\">>,1}] "
                                                 "are not recognised policy settings\n"})
    assert http(base, "/api/policies/%2F/bad", "PUT", {"definition": {"max-length": 1}}) == (
        400, {"error": "bad_request", "reason": "[{key_missing,pattern}]"})
    assert http(base, "/api/policies/nowhere/lim", "PUT", LIMIT) == (
        404, {"error": "not_found", "reason": "vhost_not_found"})
    assert http(base, "/api/policies/%2F/bad")[0] == 404

    # Operator policies are an administrator's; a policymaker sets policies only.
    assert http(base, "/api/users/maker", "PUT", {"password": "s3cret", "tags": "policymaker"})[0] == 201
    assert http(base, "/api/permissions/%2F/maker", "PUT", {"configure": ".*", "write": ".*", "read": ".*"})[0] == 204
    maker = ("maker", "s3cret")
    assert http(base, "/api/operator-policies/%2F/cap", "PUT", LIMIT, auth=maker) == (
        401, {"error": "not_authorised", "reason": "Not administrator user"})
    assert http(base, "/api/policies/%2F/ttl", "DELETE", auth=maker) == (204, None)
    assert http(base, "/api/operator-policies/%2F/cap", "PUT", {"pattern": "^q", "definition": {"max-length": 5}}) \
        == (201, None)
    assert [p["name"] for p in http(base, "/api/operator-policies/%2F")[1]] == ["cap"]

    assert http(base, "/api/policies/%2F/lim", "DELETE") == (204, None)
    assert http(base, "/api/policies/%2F/lim", "DELETE") == (404, {"error": "Object Not Found", "reason": "Not Found"})
    assert http(base, "/api/operator-policies/%2F/cap", "DELETE") == (204, None)
    assert http(base, "/api/policies") == (200, []) and http(base, "/api/operator-policies") == (200, [])
