"""The HTTP API (RabbitMQ's management paths and JSON), Prometheus metrics and the dashboard.

Design: aiohttp on its own thread and asyncio loop inside the broker process. It holds
no broker state: every request becomes a management request (``client.py``) to the
broker loop over an in-process ZeroMQ endpoint of the broker's own ROUTER, answered
between two passes of the loop like any client's command. So the loop stays the only
thread that touches broker state, and an HTTP client that is slow, hostile or holds a
thousand keep-alive connections costs the loop nothing but the requests it makes.

Rules:
- Paths, query options, field names and error bodies are RabbitMQ's; a path's
  ``{vhost}`` (``%2F`` is ``/``) is the vhost of its request (an unknown one is 404).
  Write calls answer 204 as RabbitMQ (201 for a new user, vhost or policy). Policies
  and operator policies have their own module (``http_policies.py``), runtime and global
  parameters and a vhost's limits theirs (``http_parameters.py``), declaring and
  deleting queues, exchanges and bindings theirs (``http_objects.py``), and so do the
  health checks other than alarms' (``http_health.py``).
- A method a path does not take is 405 with no body and RabbitMQ's ``Allow`` header
  (cowboy_rest's: its methods in ``ALLOW_ORDER``, with HEAD and OPTIONS); an OPTIONS
  request is 200 with the same header. Both come before the login, as cowboy_rest
  checks the method before ``is_authorized``.
- ``/metrics`` is rabbitmq_prometheus's aggregated metrics, ``/metrics/per-object``
  adds labels per queue and channel (``metrics.py``).
- The dashboard is static files (``dashboard/``) that read the same API.
- Every ``/api`` path needs HTTP basic auth with a user whose tags allow the request
  (``core/access/management_access.py``); without it, 401 and RabbitMQ's ``WWW-Authenticate``
  realm, so curl and rabbitmqadmin know to send it. The broker checks each request: this
  thread forwards the login with the client's address (for ``guest``'s loopback rule)
  and the relay token. ``/metrics`` needs no login, as rabbitmq_prometheus's.
- The dashboard's page and static files need no login (they hold no data): the page
  has its own login form and sends the same basic auth on each of its requests, with
  ``X-Requested-With: XMLHttpRequest``, to which a 401 comes without
  ``WWW-Authenticate`` (a browser shows no login box of its own over the form). The
  page forbids scripts from anywhere but here (``PAGE_POLICY``): the login it keeps
  in the tab's ``sessionStorage`` is only for this origin's scripts.
- Bound to loopback by default when enabled.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import contextvars
import json
import logging
import threading
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import unquote

import zmq
import zmq.asyncio
from aiohttp import web

from zbroker.management import http_health, http_objects, http_parameters, http_policies, http_shovels, metrics
from zbroker.management.client import AsyncManagementClient, RequestFailed, Unreachable

log = logging.getLogger(__name__)

DEFAULT_HTTP = "127.0.0.1:15680"
DASHBOARD = Path(__file__).parent / "dashboard"
_STATUS = {400: web.HTTPBadRequest, 401: web.HTTPUnauthorized, 403: web.HTTPForbidden, 404: web.HTTPNotFound,
           405: web.HTTPMethodNotAllowed, 501: web.HTTPNotImplemented}
_ERRORS = {401: "not_authorised", 403: "access_refused", 404: "Object Not Found", 405: "Method Not Allowed",
           501: "not_implemented"}
#: RabbitMQ's realm: a browser asks for a login when a page answers 401 with it.
CHALLENGE = {"WWW-Authenticate": 'Basic realm="RabbitMQ Management"'}
#: The dashboard's requests say so with this header (jQuery's), and get no challenge.
SCRIPTED = ("X-Requested-With", "XMLHttpRequest")
#: The dashboard page's Content-Security-Policy: its own scripts only, no framing.
PAGE_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; object-src 'none'; "
               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
#: The order of methods in an ``Allow`` header, as RabbitMQ's resources list them.
ALLOW_ORDER = ("HEAD", "GET", "PUT", "POST", "DELETE", "OPTIONS")
#: The credentials of the request being answered (set by ``authenticate``).
_credentials: contextvars.ContextVar[dict] = contextvars.ContextVar("credentials")
#: The vhost the request's path names (``%2F`` is ``/``), or None.
_vhost: contextvars.ContextVar[str | None] = contextvars.ContextVar("vhost", default=None)
#: Query options a list takes, and how to read each.
_LIST_OPTIONS: dict[str, Callable[[str], Any]] = {
    "page": int, "page_size": int, "name": str, "use_regex": lambda v: v.lower() == "true",
    "sort": str, "sort_reverse": lambda v: v.lower() == "true",
    "columns": lambda v: [c for c in v.split(",") if c],
}


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data, default=str), status=status, content_type="application/json")


def _error(status: int, reason: str) -> web.Response:
    response = _json({"error": _ERRORS.get(status, "bad_request"), "reason": reason}, status)
    if status == 401:
        response.headers.update(CHALLENGE)
    return response


def basic_auth(header: str | None) -> tuple[str, str] | None:
    """(user, password) from an ``Authorization: Basic …`` header, or None."""
    if not header or not header.startswith("Basic "):
        return None
    try:
        user, sep, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


class Api:
    def __init__(self, client: AsyncManagementClient) -> None:
        self.client = client

    async def ask(self, verb: str, **arguments: Any) -> Any:
        """A management request as the HTTP client; the vhost in the path (``{vhost}``) is
        the request's unless it names another."""
        vhost = _vhost.get()
        if vhost is not None:
            arguments.setdefault("vhost", vhost)
        return await self.client.request(verb, _credentials.get(), **arguments)

    @staticmethod
    def name(request: web.Request, key: str = "name") -> str:
        return unquote(request.match_info[key])

    async def listing(self, request: web.Request, kind: str, default_sort: str = "", **arguments: Any
                      ) -> web.Response:
        """A list with the request's query options and ``arguments``; ``default_sort``: the
        field it is sorted by when the query names none (ties by vhost, then name, as
        RabbitMQ's)."""
        options: dict[str, Any] = dict(arguments)
        for key, read in _LIST_OPTIONS.items():
            if key in request.query:
                try:
                    options[key] = read(request.query[key])
                except ValueError:
                    raise _Refused(400, f"{key}: not a valid value") from None
        if default_sort and "sort" not in options:
            if "page" in options:
                options["sort"] = default_sort
            else:
                items = await self.ask("list", kind=kind, **options)
                return _json(sorted(items, key=lambda item: (item.get(default_sort, 0), item.get("vhost", ""),
                                                             item.get("name", ""))))
        return _json(await self.ask("list", kind=kind, **options))

    async def body(self, request: web.Request) -> dict:
        try:
            data = await request.json()
        except ValueError:
            raise _Refused(400, "the request body is not JSON") from None
        if not isinstance(data, dict):
            raise _Refused(400, "the request body must be a JSON object")
        return data


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def routes(api: Api) -> list[web.RouteDef]:
    """Every path, RabbitMQ's."""
    def lister(kind: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        return lambda request: api.listing(request, kind)

    async def overview(request: web.Request) -> web.Response:
        return _json(await api.ask("overview"))

    async def queue(request: web.Request) -> web.Response:
        return _json(await api.ask("queue", name=api.name(request)))

    async def delete_queue(request: web.Request) -> web.Response:
        await api.ask("delete_queue", name=api.name(request),
                      if_empty=request.query.get("if-empty") == "true",
                      if_unused=request.query.get("if-unused") == "true")
        return web.Response(status=204)

    async def purge(request: web.Request) -> web.Response:
        await api.ask("purge_queue", name=api.name(request))
        return web.Response(status=204)

    async def get_messages(request: web.Request) -> web.Response:
        body = await api.body(request)
        arguments = {k: body[k] for k in ("count", "ackmode", "encoding", "truncate") if k in body}
        if "truncate" in arguments and arguments["truncate"] in ("", None):
            del arguments["truncate"]
        return _json(await api.ask("get_messages", name=api.name(request), **arguments))

    async def queue_bindings(request: web.Request) -> web.Response:
        return _json(await api.ask("queue_bindings", name=api.name(request)))

    async def exchange(request: web.Request) -> web.Response:
        return _json(await api.ask("exchange", name=_exchange_name(request)))

    async def exchange_bindings(request: web.Request) -> web.Response:
        return _json(await api.ask("exchange_bindings", name=_exchange_name(request),
                                   direction=request.match_info["direction"]))

    async def publish(request: web.Request) -> web.Response:
        body = await api.body(request)
        return _json(await api.ask("publish", exchange=_exchange_name(request),
                                   routing_key=body.get("routing_key"), properties=body.get("properties") or {},
                                   payload=body.get("payload"),
                                   payload_encoding=body.get("payload_encoding", "string")))

    async def connection(request: web.Request) -> web.Response:
        return _json(await api.ask("connection", name=api.name(request)))

    async def close_connection(request: web.Request) -> web.Response:
        await api.ask("close_connection", name=api.name(request),
                      reason=request.headers.get("X-Reason", "Closed via management plugin"))
        return web.Response(status=204)

    async def channel(request: web.Request) -> web.Response:
        return _json(await api.ask("channel", name=api.name(request)))

    async def get_definitions(request: web.Request) -> web.Response:
        return _json(await api.ask("definitions"))

    async def post_definitions(request: web.Request) -> web.Response:
        await api.ask("import_definitions", definitions=await api.body(request))
        return web.Response(status=204)

    async def alarms(request: web.Request) -> web.Response:
        active = await api.ask("alarms")
        if not active:
            return _json({"status": "ok"})
        overview = await api.ask("overview")
        return _json({"status": "failed", "reason": "resource alarm(s) in effect in the cluster",
                      "alarms": [{"node": overview["node"], "resource": r} for r in active]}, 503)

    async def vhosts(request: web.Request) -> web.Response:
        return _json(await api.ask("list", kind="vhosts"))

    async def vhost(request: web.Request) -> web.Response:
        name = api.name(request)
        for vhost in await api.ask("list", kind="vhosts"):
            if vhost["name"] == name:
                return _json(vhost)
        raise _Refused(404, "Not Found")

    async def put_vhost(request: web.Request) -> web.Response:
        body = await api.body(request) if request.can_read_body else {}
        name = api.name(request)
        if any(v["name"] == name for v in await api.ask("list", kind="vhosts")):
            return web.Response(status=204)  # RabbitMQ: PUT of an existing vhost changes nothing here
        tags = body.get("tags") or []
        await api.ask("add_vhost", name=name, description=body.get("description") or "",
                      tags=[t for t in tags.split(",") if t] if isinstance(tags, str) else tags)
        return web.Response(status=201)

    async def delete_vhost(request: web.Request) -> web.Response:
        await api.ask("delete_vhost", name=api.name(request))
        return web.Response(status=204)

    async def whoami(request: web.Request) -> web.Response:
        return _json(await api.ask("whoami"))

    async def nodes(request: web.Request) -> web.Response:
        return _json(await api.ask("nodes"))

    async def node(request: web.Request) -> web.Response:
        return _json(await api.ask("node", name=api.name(request)))

    async def users(request: web.Request) -> web.Response:
        return _json(await api.ask("list", kind="users"))

    async def user(request: web.Request) -> web.Response:
        name = api.name(request)
        found = [u for u in await api.ask("list", kind="users") if u["name"] == name]
        if not found:
            raise _Refused(404, "Not Found")
        return _json(found[0])

    async def put_user(request: web.Request) -> web.Response:
        body = await api.body(request)
        created = await api.ask("put_user", name=api.name(request), **{
            key: body[key] for key in ("password", "password_hash", "hashing_algorithm", "tags") if key in body})
        return web.Response(status=201 if created["created"] else 204)

    async def delete_user(request: web.Request) -> web.Response:
        await api.ask("delete_user", name=api.name(request))
        return web.Response(status=204)

    async def permissions(request: web.Request) -> web.Response:
        return _json(await api.ask("list", kind="permissions"))

    async def user_permissions(request: web.Request) -> web.Response:
        return _json(await api.ask("user_permissions", name=api.name(request)))

    async def permission(request: web.Request) -> web.Response:
        user, vhost = api.name(request, "user"), api.name(request, "vhost")
        found = [p for p in await api.ask("user_permissions", name=user) if p["vhost"] == vhost]
        if not found:
            raise _Refused(404, "Not Found")
        return _json(found[0])

    async def put_permission(request: web.Request) -> web.Response:
        body = await api.body(request)
        await api.ask("set_permissions", name=api.name(request, "user"), vhost=api.name(request, "vhost"),
                      **{key: body.get(key, "") for key in ("configure", "write", "read")})
        return web.Response(status=204)

    async def topic_permissions(request: web.Request) -> web.Response:
        return _json(await api.ask("list", kind="topic_permissions"))

    async def user_topic_permissions(request: web.Request) -> web.Response:
        found = await api.ask("user_topic_permissions", name=api.name(request, "user" if "user" in
                                                                        request.match_info else "name"))
        vhost = _vhost.get()
        return _json([t for t in found if vhost is None or t["vhost"] == vhost])

    async def put_topic_permission(request: web.Request) -> web.Response:
        body = await api.body(request)
        await api.ask("set_topic_permissions", name=api.name(request, "user"), exchange=body.get("exchange"),
                      write=body.get("write", ""), read=body.get("read", ""))
        return web.Response(status=204)

    async def delete_topic_permission(request: web.Request) -> web.Response:
        await api.ask("clear_topic_permissions", name=api.name(request, "user"))
        return web.Response(status=204)

    async def limits(request: web.Request) -> web.Response:
        kind = "vhost_limits" if request.path.startswith("/api/vhost-limits") else "user_limits"
        return _json(await api.ask("list", kind=kind))

    async def put_limit(request: web.Request) -> web.Response:
        body = await api.body(request)
        if "value" not in body:
            raise _Refused(400, "the body must be {\"value\": N}")
        await api.ask("set_user_limits", name=api.name(request, "owner"),
                      definition={api.name(request, "limit"): body["value"]})
        return web.Response(status=204)

    async def delete_limit(request: web.Request) -> web.Response:
        await api.ask("clear_user_limits", name=api.name(request, "owner"), limit=api.name(request, "limit"))
        return web.Response(status=204)

    async def delete_permission(request: web.Request) -> web.Response:
        await api.ask("clear_permissions", name=api.name(request, "user"), vhost=api.name(request, "vhost"))
        return web.Response(status=204)

    async def prometheus(request: web.Request) -> web.Response:
        per_object = request.path.endswith("/per-object")
        text = await metrics.exposition(api.ask, per_object)
        return web.Response(body=text, headers={"Content-Type": metrics.CONTENT_TYPE})

    async def index(request: web.Request) -> web.FileResponse:
        # No login here: the page holds no data, and logs in with its own form.
        return web.FileResponse(DASHBOARD / "index.html", headers={"Content-Security-Policy": PAGE_POLICY,
                                                                   "Cache-Control": "no-cache"})

    r = web
    return [
        r.get("/api/overview", overview),
        r.get("/api/vhosts", vhosts), r.get("/api/vhosts/{name}", vhost),
        r.put("/api/vhosts/{name}", put_vhost), r.delete("/api/vhosts/{name}", delete_vhost),
        r.get("/api/whoami", whoami), r.get("/api/nodes", nodes), r.get("/api/nodes/{name}", node),
        r.get("/api/users", users), r.get("/api/users/{name}", user), r.put("/api/users/{name}", put_user),
        r.delete("/api/users/{name}", delete_user),
        r.get("/api/users/{name}/permissions", user_permissions),
        r.get("/api/permissions", permissions), r.get("/api/permissions/{vhost}/{user}", permission),
        r.put("/api/permissions/{vhost}/{user}", put_permission),
        r.delete("/api/permissions/{vhost}/{user}", delete_permission),
        r.get("/api/topic-permissions", topic_permissions),
        r.get("/api/topic-permissions/{vhost}/{user}", user_topic_permissions),
        r.put("/api/topic-permissions/{vhost}/{user}", put_topic_permission),
        r.delete("/api/topic-permissions/{vhost}/{user}", delete_topic_permission),
        r.get("/api/users/{name}/topic-permissions", user_topic_permissions),
        r.get("/api/vhost-limits", limits), r.get("/api/user-limits", limits),
        r.put("/api/user-limits/{owner}/{limit}", put_limit), r.delete("/api/user-limits/{owner}/{limit}", delete_limit),
        r.get("/api/queues", lister("queues")), r.get("/api/queues/{vhost}", lister("queues")),
        r.get("/api/queues/{vhost}/{name}", queue), r.delete("/api/queues/{vhost}/{name}", delete_queue),
        r.delete("/api/queues/{vhost}/{name}/contents", purge),
        r.post("/api/queues/{vhost}/{name}/get", get_messages),
        r.get("/api/queues/{vhost}/{name}/bindings", queue_bindings),
        r.get("/api/exchanges", lister("exchanges")), r.get("/api/exchanges/{vhost}", lister("exchanges")),
        r.get("/api/exchanges/{vhost}/{name}", exchange),
        r.get("/api/exchanges/{vhost}/{name}/bindings/{direction:source|destination}", exchange_bindings),
        r.post("/api/exchanges/{vhost}/{name}/publish", publish),
        r.get("/api/bindings", lister("bindings")), r.get("/api/bindings/{vhost}", lister("bindings")),
        r.get("/api/connections", lister("connections")),
        r.get("/api/connections/{name}", connection), r.delete("/api/connections/{name}", close_connection),
        r.get("/api/channels", lister("channels")), r.get("/api/channels/{name}", channel),
        r.get("/api/consumers", lister("consumers")), r.get("/api/consumers/{vhost}", lister("consumers")),
        r.get("/api/definitions", get_definitions), r.post("/api/definitions", post_definitions),
        r.get("/api/health/checks/alarms", alarms),
        r.get("/metrics", prometheus), r.get("/metrics/per-object", prometheus),
        r.get("/", index), r.static("/static", DASHBOARD),
        *http_policies.routes(api), *http_objects.routes(api), *http_health.routes(api),
        *http_shovels.routes(api), *http_parameters.routes(api),
    ]


def _exchange_name(request: web.Request) -> str:
    """RabbitMQ names the default exchange ``amq.default`` in URLs."""
    name = unquote(request.match_info["name"])
    return "" if name == "amq.default" else name


def authentication(relay_token: bytes) -> Callable:
    """The middleware that sets each request's credentials (rule 5)."""
    @web.middleware
    async def authenticate(request: web.Request,
                           handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if request.path == "/":  # the dashboard's page: no data, a login form of its own
            return await handler(request)
        if request.path.startswith(("/metrics", "/static/")):
            _credentials.set({"relay": relay_token})  # the exporter's own reads
            return await handler(request)
        if request.method == "OPTIONS" or request.match_info.http_exception is not None \
                and request.match_info.http_exception.status == 405:
            return await handler(request)  # the method is refused before any login (rule 2)
        vhost = request.match_info.get("vhost")
        _vhost.set(unquote(vhost) if vhost is not None else None)
        login = basic_auth(request.headers.get("Authorization"))
        if login is None:
            return _error(401, "Not_Authorized")
        _credentials.set({"relay": relay_token, "user": login[0], "password": login[1], "peer": request.remote})
        return await handler(request)
    return authenticate


@web.middleware
async def errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                 ) -> web.StreamResponse:
    """Every refusal as RabbitMQ's JSON error body; never a traceback to the client. A
    request from the dashboard's script gets its 401 without the challenge."""
    response = await _answer(request, handler)
    if response.status == 401 and request.headers.get(SCRIPTED[0]) == SCRIPTED[1]:
        response.headers.popall("WWW-Authenticate", None)
    return response


async def _answer(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                  ) -> web.StreamResponse:
    try:
        return await handler(request)
    except _Refused as exc:
        return _error(exc.status, exc.reason)
    except RequestFailed as exc:
        return _error(exc.status if exc.status in _STATUS else 500, exc.reason)
    except Unreachable as exc:
        return _error(503, str(exc))
    except web.HTTPException as exc:
        if exc.status == 404:
            return _error(404, "Not Found")
        if isinstance(exc, web.HTTPMethodNotAllowed):
            allowed = set(exc.allowed_methods) | {"OPTIONS"} | ({"HEAD"} if "GET" in exc.allowed_methods else set())
            header = {"Allow": ", ".join(m for m in ALLOW_ORDER if m in allowed)}
            return web.Response(status=200 if request.method == "OPTIONS" else 405, headers=header)
        raise
    except Exception:
        log.exception("internal error answering %s %s", request.method, request.path)
        return _error(500, "internal error (see the broker's log)")


class HttpServer:
    """The HTTP listener on its own thread; ``start`` returns once it listens (or raises)."""

    def __init__(self, address: str, endpoint: str, context: zmq.Context, relay_token: bytes) -> None:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"{address!r}: expected HOST:PORT, e.g. {DEFAULT_HTTP}")
        self.host, self.port = host.strip("[]"), int(port)
        self.endpoint = endpoint
        self.context = context
        self.relay_token = relay_token
        self.bound = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="zbroker-http", daemon=True)
        self._runner: web.AppRunner | None = None
        self._client: AsyncManagementClient | None = None

    def start(self) -> str:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise OSError(f"cannot listen for HTTP on {self.host}:{self.port}: {self._error}")
        return self.bound

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start(), which raises it in the main thread
            self._error = exc
            self._ready.set()
            return
        self._loop.run_forever()

    async def _serve(self) -> None:
        client = self._client = AsyncManagementClient(
            self.endpoint, zmq.asyncio.Context.shadow(self.context.underlying))
        app = web.Application(middlewares=[errors, authentication(self.relay_token)],
                              client_max_size=64 * 1024 * 1024)
        app.add_routes(routes(Api(client)))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        port = self._runner.addresses[0][1] if self._runner.addresses else self.port
        self.bound = f"{self.host}:{port}"
        self._ready.set()

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        async def shutdown() -> None:
            if self._runner is not None:
                await self._runner.cleanup()
            if self._client is not None:
                self._client.close()
        future = asyncio.run_coroutine_threadsafe(shutdown(), self._loop)
        try:
            future.result(timeout=5)
        except Exception as exc:  # stopping must not keep the broker from stopping
            log.warning("HTTP server did not stop cleanly: %s", exc)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
