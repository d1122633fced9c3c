"""Asking a running broker management questions over its own socket.

Rules:
- One DEALER socket; each request carries an id, and a reply with another id (a late
  answer to a request that timed out) is skipped.
- A broker that does not answer within ``timeout`` seconds is ``Unreachable``, with a
  sentence saying whether the connection was refused or it did not answer; a refused
  request is ``RequestFailed`` with RabbitMQ's status and reason. Callers print those;
  nothing here prints.
- ``AsyncManagementClient`` is the same for an asyncio program (the HTTP server).
- Every request carries ``credentials`` (``user``/``password``; RabbitMQ's ``guest``
  by default, which logs in from loopback only): the broker checks each one.
"""
from __future__ import annotations

import itertools
import time
from typing import Any

import zmq
import zmq.asyncio
import zmq.utils.monitor

from zbroker.curve import secure_client
from zbroker.protocol import ProtocolError
from zbroker.protocol.native_management import MANAGEMENT_HEADER, decode_reply, encode_request

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_CREDENTIALS = {"user": "guest", "password": "guest"}


class Unreachable(Exception):
    """No answer from the broker."""


class RequestFailed(Exception):
    """The broker refused the request."""

    def __init__(self, status: int, error: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.error = error
        self.reason = reason


def _result(endpoint: str, request_id: int, frames: list[bytes]) -> tuple[bool, Any]:
    """(is the answer to this request, its result); raises RequestFailed."""
    if len(frames) != 2 or frames[0] != MANAGEMENT_HEADER:
        return False, None
    try:
        reply_id, ok, result = decode_reply(frames[1])
    except ProtocolError as exc:
        raise Unreachable(f"the broker at {endpoint} answered something unreadable: {exc.detail}") from None
    if reply_id != request_id:
        return False, None
    if not ok:
        raise RequestFailed(result.get("status", 500), result.get("error", ""), result.get("reason", ""))
    return True, result


class ManagementClient:
    def __init__(self, endpoint: str, timeout: float = DEFAULT_TIMEOUT_S,
                 context: zmq.Context | None = None, credentials: dict | None = None,
                 curve_server_key: bytes | None = None) -> None:
        """``curve_server_key``: the broker's CURVE public key, when it encrypts its wire."""
        self.endpoint = endpoint
        self.timeout = timeout
        self.credentials = credentials or DEFAULT_CREDENTIALS
        self._ids = itertools.count(1)
        self._sock = (context or zmq.Context.instance()).socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._curve = curve_server_key is not None
        if curve_server_key is not None:
            secure_client(self._sock, curve_server_key)
        self._monitor = self._sock.get_monitor_socket(
            zmq.EVENT_CONNECTED | zmq.EVENT_CONNECT_RETRIED | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
            | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
        self._refused = False
        self._handshake_failed = False
        self._sock.connect(endpoint)

    def request(self, verb: str, **arguments: Any) -> Any:
        request_id = next(self._ids)
        self._sock.send_multipart([MANAGEMENT_HEADER, encode_request(request_id, verb, arguments,
                                                                     self.credentials)])
        deadline = time.monotonic() + self.timeout
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Unreachable(self._silence())
            for sock, _ in poller.poll(int(left * 1000) + 1):
                if sock is self._monitor:
                    event = zmq.utils.monitor.recv_monitor_message(self._monitor)["event"]
                    if event in (zmq.EVENT_CONNECTED, zmq.EVENT_CONNECT_RETRIED):
                        self._refused = event == zmq.EVENT_CONNECT_RETRIED
                    else:
                        raise Unreachable(self._handshake_failure())
                    continue
                done, result = _result(self.endpoint, request_id, self._sock.recv_multipart())
                if done:
                    return result

    def _handshake_failure(self) -> str:
        if self._curve:
            return (f"the CURVE handshake with {self.endpoint} failed: is --curve-server-key the broker's "
                    "public key?")
        return (f"the ZeroMQ handshake with {self.endpoint} failed: the broker may require CURVE "
                "(give --curve-server-key, the broker's public key)")

    def _silence(self) -> str:
        if self._refused:
            return f"cannot reach a broker at {self.endpoint}: connection refused (is `zbroker serve` running?)"
        return f"no answer from a broker at {self.endpoint} within {self.timeout:g} s"

    def close(self) -> None:
        self._sock.disable_monitor()
        self._monitor.close(0)
        self._sock.close(0)

    def __enter__(self) -> "ManagementClient":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


class AsyncManagementClient:
    """For the HTTP server's event loop: one DEALER, requests answered by id, concurrently."""

    def __init__(self, endpoint: str, context: zmq.asyncio.Context,
                 timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._sock = context.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.connect(endpoint)
        self._waiting: dict[int, Any] = {}
        self._reader: Any = None

    async def request(self, verb: str, credentials: dict, **arguments: Any) -> Any:
        """``credentials``: the HTTP client's login and address, with the relay token."""
        import asyncio
        loop = asyncio.get_running_loop()
        if self._reader is None:
            self._reader = loop.create_task(self._read())
        request_id = next(self._ids)
        future = self._waiting[request_id] = loop.create_future()
        try:
            await self._sock.send_multipart([MANAGEMENT_HEADER,
                                             encode_request(request_id, verb, arguments, credentials)])
            return await asyncio.wait_for(future, self.timeout)
        except asyncio.TimeoutError:
            raise Unreachable(f"no answer from the broker within {self.timeout:g} s") from None
        finally:
            self._waiting.pop(request_id, None)

    async def _read(self) -> None:
        while True:
            frames = await self._sock.recv_multipart()
            if len(frames) != 2 or frames[0] != MANAGEMENT_HEADER:
                continue
            try:
                reply_id, _, _ = decode_reply(frames[1])
            except ProtocolError:
                continue
            future = self._waiting.get(reply_id)
            if future is None or future.done():
                continue
            try:
                future.set_result(_result(self.endpoint, reply_id, frames)[1])
            except RequestFailed as exc:
                future.set_exception(exc)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        self._sock.close(0)
