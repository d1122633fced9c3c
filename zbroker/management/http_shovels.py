"""The HTTP API's shovel status: RabbitMQ 3.10's ``rabbitmq_shovel_management`` paths.

Rules:
- ``GET /api/shovels`` and ``/api/shovels/{vhost}`` list the dynamic shovels (RabbitMQ's
  rows: ``name``, ``vhost``, ``type``, ``state``, ``timestamp``; a running one's URIs
  (no passwords), protocols, source and destination; a terminated one's ``reason``),
  with the list options every list takes.
- ``DELETE /api/shovels/vhost/{vhost}/{name}`` removes the shovel (its parameter), and
  ``DELETE .../{name}/restart`` starts its worker again; both answer 204, or 404.
- Defining a shovel is ``PUT /api/parameters/shovel/{vhost}/{name}`` (``http_parameters.py``).
- Who may: a ``monitoring`` user, decided by the broker.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from zbroker.management.client import RequestFailed

if TYPE_CHECKING:
    from zbroker.management.http import Api


def routes(api: "Api") -> list[web.RouteDef]:
    async def listing(request: web.Request) -> web.Response:
        return await api.listing(request, "shovels")

    def deleting(verb: str):
        async def delete(request: web.Request) -> web.Response:
            try:
                await api.ask(verb, name=api.name(request))
            except RequestFailed as exc:
                if exc.status == 404:
                    return web.json_response({"error": "Object Not Found", "reason": "Not Found"}, status=404)
                raise
            return web.Response(status=204)
        return delete

    return [web.get("/api/shovels", listing), web.get("/api/shovels/{vhost}", listing),
            web.delete("/api/shovels/vhost/{vhost}/{name}", deleting("delete_shovel")),
            web.delete("/api/shovels/vhost/{vhost}/{name}/restart", deleting("restart_shovel"))]
