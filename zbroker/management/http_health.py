"""The HTTP API's health checks beyond ``/api/health/checks/alarms``: RabbitMQ 3.10's
``/api/aliveness-test/{vhost}`` and ``/api/health/checks/{local-alarms, virtual-hosts,
port-listener/{port}, protocol-listener/{protocol}, node-is-quorum-critical}``
(``rabbit_mgmt_wm_aliveness_test.erl``, ``rabbit_mgmt_wm_health_check_*.erl``).

Rules:
- A passing check is 200 ``{"status": "ok", …}``; a failing one 503 ``{"status":
  "failed", "reason": …}`` with what RabbitMQ adds (the missing port or protocol and
  those that listen, the alarms). Their texts are RabbitMQ's.
- Listeners are the overview's (``listeners``: AMQP, AMQPS, the zbroker wire and this
  HTTP server); a protocol's name is normalised as RabbitMQ's (``amqp091`` is ``amqp``,
  ``amqps`` is ``amqp/ssl``, ``management`` is ``http``…).
- zbroker is one node whose vhosts run in its loop: every vhost is up, and no quorum
  queue depends on another node (``single node cluster``, as RabbitMQ says of one).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from zbroker.management.http import Api

#: RabbitMQ's status for a failed health check (``HEALTH_CHECK_FAILURE_STATUS``).
FAILURE_STATUS = 503
#: RabbitMQ's protocol aliases (``normalize_protocol``), for the protocols zbroker serves.
PROTOCOL_ALIASES = {
    **dict.fromkeys(("amqp091", "amqp0.9.1", "amqp0-9-1", "amqp0_9_1", "amqp10", "amqp1.0", "amqp1-0", "amqp1_0"),
                    "amqp"),
    "amqps": "amqp/ssl",
    **dict.fromkeys(("http1", "http1.1", "http_api", "management", "management_ui", "ui"), "http"),
}


def _reply(body: dict[str, Any]) -> web.Response:
    return web.json_response(body, status=200 if body["status"] == "ok" else FAILURE_STATUS)


def routes(api: "Api") -> list[web.RouteDef]:
    async def listeners() -> list[dict[str, Any]]:
        return (await api.ask("overview")).get("listeners", [])

    async def aliveness(request: web.Request) -> web.Response:
        return _reply(await api.ask("aliveness_test"))

    async def local_alarms(request: web.Request) -> web.Response:
        active = await api.ask("alarms")
        if not active:
            return _reply({"status": "ok"})
        node = (await api.ask("overview"))["node"]
        return _reply({"status": "failed", "reason": "There are alarms in effect on the node",
                       "alarms": [{"resource": resource, "node": node} for resource in active]})

    async def virtual_hosts(request: web.Request) -> web.Response:
        await api.ask("whoami")  # (the login: a management user's, as every check)
        return _reply({"status": "ok"})

    async def port_listener(request: web.Request) -> web.Response:
        try:
            port = int(request.match_info["port"])
        except ValueError:
            return web.json_response({"error": "bad_request", "reason": "Invalid port"}, status=400)
        ports = [listener["port"] for listener in await listeners()]
        if port in ports:
            return _reply({"status": "ok", "port": port})
        return _reply({"status": "failed", "reason": "No active listener", "missing": port, "ports": ports})

    async def protocol_listener(request: web.Request) -> web.Response:
        protocol = request.match_info["protocol"].lower()
        protocol = PROTOCOL_ALIASES.get(protocol, protocol)
        protocols = [listener["protocol"] for listener in await listeners()]
        if protocol in protocols:
            return _reply({"status": "ok", "protocol": protocol})
        return _reply({"status": "failed", "reason": "No active listener", "missing": protocol,
                       "protocols": protocols})

    async def quorum_critical(request: web.Request) -> web.Response:
        await api.ask("whoami")
        return _reply({"status": "ok", "reason": "single node cluster"})

    return [
        web.get("/api/aliveness-test/{vhost}", aliveness),
        web.get("/api/health/checks/local-alarms", local_alarms),
        web.get("/api/health/checks/virtual-hosts", virtual_hosts),
        web.get("/api/health/checks/port-listener/{port}", port_listener),
        web.get("/api/health/checks/protocol-listener/{protocol}", protocol_listener),
        web.get("/api/health/checks/node-is-quorum-critical", quorum_critical),
    ]
