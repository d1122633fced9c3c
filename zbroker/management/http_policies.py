"""The HTTP API's policies and operator policies: RabbitMQ 3.10's ``/api/policies`` and
``/api/operator-policies`` (``rabbit_mgmt_wm_policy.erl`` and its siblings).

Rules:
- ``GET /api/policies`` and ``/api/policies/{vhost}`` list them, lowest priority first
  unless ``sort`` says otherwise; ``GET``, ``PUT`` and ``DELETE
  /api/policies/{vhost}/{name}`` act on one. The same paths under
  ``/api/operator-policies``. Every answer is the broker's (management requests); the
  broker decides who may (``policymaker``; ``administrator`` for operator policies).
- A PUT's body is ``{"pattern", "definition", "priority", "apply-to"}`` (priority 0 and
  apply-to ``all`` when left out); it answers 201 when it creates the policy, 204 when it
  replaces one. A DELETE answers 204, or 404 when there is no such policy.
- Refusals are RabbitMQ's: a body that is not a JSON object, or lacks ``pattern`` or
  ``definition``, is 400 with its reason (``not_json``, ``[{key_missing,pattern}]``); a
  policy the broker refuses is 400 with RabbitMQ's ``Validation failed`` text, with
  ``<``, ``>`` and ``&`` as HTML entities for a policy (RabbitMQ escapes them there, not
  for an operator policy); a PUT in a vhost there is not is 404 ``vhost_not_found``.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from aiohttp import web

from zbroker.management.client import RequestFailed

if TYPE_CHECKING:
    from zbroker.management.http import Api

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: path -> (the management requests' suffix, the list's kind, whether a refusal's reason
#: is HTML-escaped).
PATHS: dict[str, tuple[str, str, bool]] = {
    "/api/policies": ("policy", "policies", True),
    "/api/operator-policies": ("operator_policy", "operator_policies", False),
}
#: What a PUT's body must have (``rabbit_mgmt_util:with_decode``'s keys, in its order).
REQUIRED = ("pattern", "definition")
#: RabbitMQ's reason for a body that decodes to a JSON string.
DOUBLY_ENCODED = ("invalid payload: the request body JSON-decoded to a string. "
                  "Is the input doubly-JSON-encoded?")


def _error(status: int, error: str, reason: str) -> web.Response:
    return web.json_response({"error": error, "reason": reason}, status=status)


def escape_html_tags(text: str) -> str:
    """RabbitMQ's ``rabbit_mgmt_format:escape_html_tags``."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def decode_body(text: str) -> dict[str, Any] | str:
    """A PUT's body as RabbitMQ's ``rabbit_mgmt_util:decode/1`` reads it: the JSON object
    (nothing, ``null`` or ``true``/``false`` being an empty one), or the reason it is refused."""
    if text in ("", "null", "undefined"):
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return "not_json"
    if isinstance(value, dict):
        return value
    if isinstance(value, bool):
        return {}
    return DOUBLY_ENCODED if isinstance(value, str) else "not_json"


def missing_keys(body: dict[str, Any], required: tuple[str, ...] = REQUIRED) -> str | None:
    """RabbitMQ's reason for a body without the ``required`` keys, or None."""
    missing = [key for key in required if key not in body]
    return "[" + ",".join(f"{{key_missing,{key}}}" for key in missing) + "]" if missing else None


def refused_write(exc: RequestFailed, escaped: bool) -> web.Response:
    """RabbitMQ's answer to a PUT the broker refused: a vhost there is not is 404
    ``vhost_not_found``; a 400's reason HTML-escaped where RabbitMQ escapes it (``escaped``).
    Any other refusal is raised again."""
    if exc.status == 404:
        return _error(404, "not_found", "vhost_not_found")
    if exc.status == 400 and escaped:
        return _error(400, "bad_request", escape_html_tags(exc.reason))
    raise exc


def routes(api: "Api") -> list[web.RouteDef]:
    found: list[web.RouteDef] = []
    for path, (suffix, kind, escaped) in PATHS.items():
        handlers = _handlers(api, suffix, kind, escaped)
        found += [web.get(path, handlers["list"]), web.get(path + "/{vhost}", handlers["list"]),
                  web.get(path + "/{vhost}/{name}", handlers["get"]),
                  web.put(path + "/{vhost}/{name}", handlers["put"]),
                  web.delete(path + "/{vhost}/{name}", handlers["delete"])]
    return found


def _handlers(api: "Api", suffix: str, kind: str, escaped: bool) -> dict[str, Handler]:
    async def listing(request: web.Request) -> web.Response:
        return await api.listing(request, kind, default_sort="priority")

    async def get(request: web.Request) -> web.Response:
        return web.json_response(await api.ask(suffix, name=api.name(request)))

    async def put(request: web.Request) -> web.Response:
        body = decode_body(await request.text())
        if isinstance(body, str):
            return _error(400, "bad_request", body)
        missing = missing_keys(body)
        if missing:
            return _error(400, "bad_request", missing)
        name = api.name(request)
        existed = await _exists(api, suffix, name)
        optional = {arg: body[key] for key, arg in (("priority", "priority"), ("apply-to", "apply_to"))
                    if key in body}
        try:
            await api.ask(f"set_{suffix}", name=name, pattern=body["pattern"], definition=body["definition"],
                          **optional)
        except RequestFailed as exc:
            return refused_write(exc, escaped)
        return web.Response(status=204 if existed else 201)

    async def delete(request: web.Request) -> web.Response:
        try:
            await api.ask(f"clear_{suffix}", name=api.name(request))
        except RequestFailed as exc:
            if exc.status == 404:  # RabbitMQ: the resource does not exist
                return _error(404, "Object Not Found", "Not Found")
            raise
        return web.Response(status=204)

    return {"list": listing, "get": get, "put": put, "delete": delete}


async def _exists(api: "Api", suffix: str, name: str) -> bool:
    try:
        await api.ask(suffix, name=name)
    except RequestFailed as exc:
        if exc.status == 404:
            return False
        raise
    return True
