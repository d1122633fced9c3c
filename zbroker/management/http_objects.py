"""The HTTP API's writes of queues, exchanges and bindings: RabbitMQ 3.10's ``PUT
/api/queues/{vhost}/{name}``, ``PUT``/``DELETE /api/exchanges/{vhost}/{name}`` and
``/api/bindings/{vhost}/e/{source}/{q|e}/{destination}[/{props}]``
(``rabbit_mgmt_wm_queue.erl``, ``_exchange``, ``_bindings``, ``_binding``).

Rules:
- A PUT's body is the AMQP method's fields (``durable``, ``auto_delete``, ``arguments``;
  an exchange's ``type`` and ``internal`` too), read as ``http_policies.decode_body``
  reads one; other keys are ignored, as RabbitMQ's ``props_to_method`` does (3.13's
  ``type`` of a queue included: its type is ``arguments.x-queue-type``). It answers 201
  when it creates the object, 204 when an equivalent one exists; the rest is the
  broker's (``core/management/object_requests.py``): its refusals keep their ``error``
  (``not_found`` from an AMQP 404 or a vhost there is not).
- ``POST .../e/{source}/{q|e}/{destination}`` (body ``routing_key``, ``arguments``)
  binds and answers 201 with no body and a ``Location`` relative to the request's path,
  built as RabbitMQ builds it: the binding's properties key quoted once more
  (``rabbit_mgmt_format:url``) and ``rabbit_web_dispatch_util:relativise``. A ``GET`` of
  the same path lists the bindings between the two; ``GET`` and ``DELETE`` of
  ``.../{props}`` show or remove one (404 when none has that key). ``props`` is read
  from the raw path, so ``%7E`` stays apart from the ``~`` separator.
- ``amq.default`` in a path is the default exchange, as elsewhere in the API.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable
from urllib.parse import quote_plus, unquote

from aiohttp import web

from zbroker.management.client import RequestFailed
from zbroker.management.http_policies import decode_body

if TYPE_CHECKING:
    from zbroker.management.http import Api

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

BINDINGS = "/api/bindings/{vhost}/e/{source}/{dtype:[qe]}/{destination}"
BINDING = BINDINGS + "/{props}"
DESTINATION_TYPES = {"q": "queue", "e": "exchange"}
#: The body keys a PUT passes on, per object (the AMQP method's fields).
QUEUE_KEYS = ("durable", "auto_delete", "arguments")
EXCHANGE_KEYS = ("type", "durable", "auto_delete", "internal", "arguments")
#: Refusals whose ``error`` is the broker's own rather than the one its status implies.
OWN_ERRORS = frozenset({"not_found"})


def _error(status: int, error: str, reason: str) -> web.Response:
    return web.json_response({"error": error, "reason": reason}, status=status)


def exchange_name(name: str) -> str:
    """RabbitMQ names the default exchange ``amq.default`` in URLs."""
    return "" if name == "amq.default" else name


def relativise(origin: str, target: str) -> str:
    """``rabbit_web_dispatch_util:relativise``: ``target`` as a path relative to ``origin``."""
    def walk(here: list[str], there: list[str]) -> list[str]:
        if len(here) == 1 and there and there[0] == here[0]:
            return there
        if here and there and here[0] == there[0]:
            return walk(here[1:], there[1:])
        if here and not there:
            return [".."] * len(here)
        if here:
            return [".."] * (len(here) - 1) + there
        return there
    return "/".join(walk([t for t in origin.split("/") if t], [t for t in target.split("/") if t]))


def routes(api: "Api") -> list[web.RouteDef]:
    handlers = _handlers(api)
    return [
        web.put("/api/queues/{vhost}/{name}", _owned(handlers["put_queue"])),
        web.put("/api/exchanges/{vhost}/{name}", _owned(handlers["put_exchange"])),
        web.delete("/api/exchanges/{vhost}/{name}", _owned(handlers["delete_exchange"])),
        web.get(BINDINGS, _owned(handlers["between"])), web.post(BINDINGS, _owned(handlers["bind"])),
        web.get(BINDING, _owned(handlers["binding"])), web.delete(BINDING, _owned(handlers["unbind"])),
    ]


def _owned(handler: Handler) -> Handler:
    """The broker's refusals with their own ``error`` (``OWN_ERRORS``); others go to the
    common error handling."""
    async def answer(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except RequestFailed as exc:
            if exc.error in OWN_ERRORS:
                return _error(exc.status, exc.error, exc.reason)
            raise
    return answer


def _handlers(api: "Api") -> dict[str, Handler]:
    async def body(request: web.Request, keys: tuple[str, ...]) -> dict[str, Any] | web.Response:
        decoded = decode_body(await request.text())
        if isinstance(decoded, str):
            return _error(400, "bad_request", decoded)
        return {key: decoded[key] for key in keys if key in decoded}

    async def put(request: web.Request, verb: str, keys: tuple[str, ...], name: str) -> web.Response:
        fields = await body(request, keys)
        if isinstance(fields, web.Response):
            return fields
        answer = await api.ask(verb, name=name, **fields)
        return web.Response(status=201 if answer["created"] else 204)

    async def put_queue(request: web.Request) -> web.Response:
        return await put(request, "declare_queue", QUEUE_KEYS, api.name(request))

    async def put_exchange(request: web.Request) -> web.Response:
        return await put(request, "declare_exchange", EXCHANGE_KEYS, exchange_name(api.name(request)))

    async def delete_exchange(request: web.Request) -> web.Response:
        await api.ask("delete_exchange", name=exchange_name(api.name(request)),
                      if_unused=request.query.get("if-unused") == "true")
        return web.Response(status=204)

    def ends(request: web.Request) -> dict[str, str]:
        return {"source": exchange_name(api.name(request, "source")),
                "destination": api.name(request, "destination"),
                "destination_type": DESTINATION_TYPES[request.match_info["dtype"]]}

    def props(request: web.Request) -> str:
        return request.raw_path.partition("?")[0].rpartition("/")[2]

    async def between(request: web.Request) -> web.Response:
        return web.json_response(await api.ask("bindings_between", **ends(request)))

    async def bind(request: web.Request) -> web.Response:
        fields = await body(request, ("routing_key", "arguments"))
        if isinstance(fields, web.Response):
            return fields
        answer = await api.ask("bind", **ends(request), **fields)
        path = request.raw_path.partition("?")[0]
        parts = [unquote(request.match_info[key]) for key in ("vhost", "source")]
        target = "/api/bindings/{}/e/{}/{}/{}/{}".format(
            *(quote_plus(p, safe="") for p in parts), request.match_info["dtype"],
            quote_plus(api.name(request, "destination"), safe=""), quote_plus(answer["properties_key"], safe=""))
        return web.Response(status=201, headers={"Location": relativise(path, target)})

    async def binding(request: web.Request) -> web.Response:
        return web.json_response(await api.ask("binding", properties_key=props(request), **ends(request)))

    async def unbind(request: web.Request) -> web.Response:
        await api.ask("unbind", properties_key=props(request), **ends(request))
        return web.Response(status=204)

    return {"put_queue": put_queue, "put_exchange": put_exchange, "delete_exchange": delete_exchange,
            "between": between, "bind": bind, "binding": binding, "unbind": unbind}
