"""The HTTP API's runtime parameters, global parameters and a vhost's limits: RabbitMQ
3.10's ``/api/parameters``, ``/api/global-parameters`` and the writes of
``/api/vhost-limits`` (``rabbit_mgmt_wm_parameter(s).erl``, ``rabbit_mgmt_wm_global_
parameter(s).erl``, ``rabbit_mgmt_wm_limit.erl``).

Rules:
- ``GET /api/parameters[/{component}[/{vhost}]]`` lists parameters (policies only under
  ``/api/parameters/policy``), by vhost then name; ``GET``, ``PUT`` and ``DELETE
  /api/parameters/{component}/{vhost}/{name}`` act on one. ``GET
  /api/global-parameters[/{name}]``, ``PUT`` and ``DELETE
  /api/global-parameters/{name}`` the same for global ones. Every answer is the
  broker's (management requests); the broker decides who may.
- A PUT's body is ``{"value": ...}`` (other keys are left, as RabbitMQ leaves them): 201
  when it creates the parameter, 204 when it replaces one. A body that is not a JSON
  object or has no ``value`` is 400 (``not_json``, ``[{key_missing,value}]``); a value
  the broker refuses is 400 with RabbitMQ's text, ``<``, ``>`` and ``&`` as HTML
  entities for a parameter, as RabbitMQ escapes them; a vhost there is not is 404
  ``vhost_not_found``. A DELETE answers 204, or 404 when there is nothing to delete.
- ``PUT /api/vhost-limits/{vhost}/{name}`` (``{"value": N}``, a JSON body) sets one
  limit and keeps the others, 204; ``DELETE`` takes one away, 204 whether or not it was
  set. A body that is not ``application/json`` is 415, as RabbitMQ's.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable

from aiohttp import web

from zbroker.management.client import RequestFailed
from zbroker.management.http_policies import decode_body, missing_keys, refused_write

if TYPE_CHECKING:
    from zbroker.management.http import Api

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: What a PUT's body must have.
REQUIRED = ("value",)


def _error(status: int, error: str, reason: str) -> web.Response:
    return web.json_response({"error": error, "reason": reason}, status=status)


def routes(api: "Api") -> list[web.RouteDef]:
    one = "/api/parameters/{component}/{vhost}/{name}"
    return [
        web.get("/api/parameters", _lister(api, "parameters", "vhost")),
        web.get("/api/parameters/{component}", _lister(api, "parameters", "vhost")),
        web.get("/api/parameters/{component}/{vhost}", _lister(api, "parameters", "vhost")),
        web.get(one, _getter(api, "parameter")), web.put(one, _putter(api, "set_parameter", True)),
        web.delete(one, _deleter(api, "clear_parameter")),
        web.get("/api/global-parameters", _lister(api, "global_parameters", "")),
        web.get("/api/global-parameters/{name}", _getter(api, "global_parameter")),
        web.put("/api/global-parameters/{name}", _putter(api, "set_global_parameter", False)),
        web.delete("/api/global-parameters/{name}", _deleter(api, "clear_global_parameter")),
        web.put("/api/vhost-limits/{vhost}/{name}", _putter(api, "set_vhost_limit", False, json_only=True)),
        web.delete("/api/vhost-limits/{vhost}/{name}", _deleter(api, "clear_vhost_limit")),
    ]


def _names(api: "Api", request: web.Request) -> dict[str, str]:
    """The request's ``component`` and ``name`` (its vhost is the path's, ``Api.ask``)."""
    return {key: api.name(request, key) for key in ("component", "name") if key in request.match_info}


def _lister(api: "Api", kind: str, default_sort: str) -> Handler:
    async def listing(request: web.Request) -> web.Response:
        return await api.listing(request, kind, default_sort, **_names(api, request))
    return listing


def _getter(api: "Api", verb: str) -> Handler:
    async def get(request: web.Request) -> web.Response:
        return web.json_response(await api.ask(verb, **_names(api, request)))
    return get


def _putter(api: "Api", verb: str, escaped: bool, json_only: bool = False) -> Handler:
    """A PUT: 201 when the verb says it ``created``, else 204."""
    async def put(request: web.Request) -> web.Response:
        if json_only and request.content_type != "application/json":
            return web.Response(status=415)
        body = await _body(request)
        if isinstance(body, web.Response):
            return body
        try:
            answer = await api.ask(verb, value=body["value"], **_names(api, request))
        except RequestFailed as exc:
            return refused_write(exc, escaped)
        return web.Response(status=201 if answer.get("created") else 204)
    return put


def _deleter(api: "Api", verb: str) -> Handler:
    async def delete(request: web.Request) -> web.Response:
        try:
            await api.ask(verb, **_names(api, request))
        except RequestFailed as exc:
            if exc.status == 404:  # RabbitMQ: the resource does not exist
                return _error(404, "Object Not Found", "Not Found")
            raise
        return web.Response(status=204)
    return delete


async def _body(request: web.Request) -> dict[str, Any] | web.Response:
    """A PUT's body with its ``value``, or RabbitMQ's 400 for it."""
    body = decode_body(await request.text())
    if isinstance(body, str):
        return _error(400, "bad_request", body)
    missing = missing_keys(body, REQUIRED)
    if missing:
        return _error(400, "bad_request", missing)
    return body
