"""What the compat programs share to ask a broker's management HTTP API (RabbitMQ's or
zbroker's) the same way: guest's basic auth, JSON both ways, every answer's status kept,
and answers printed with their keys sorted so that two brokers' outputs can be diffed.
"""
from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import Any

AUTH = "Basic " + base64.b64encode(b"guest:guest").decode()


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


class ManagementHttp:
    def __init__(self, base: str) -> None:
        self.base = base

    def http(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """(status, the decoded answer or None)."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Authorization": AUTH, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, text = response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read().decode()
        return status, json.loads(text) if text else None

    def show(self, method: str, path: str, body: Any = None) -> str:
        """The status and the answer as one comparable line."""
        status, answer = self.http(method, path, body)
        return f"{status} {canonical(answer) if answer is not None else ''}".strip()
