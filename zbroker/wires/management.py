"""Management requests on the broker's socket (``protocol/native_management.py``) <-> the core's
``Management``. Pure like the other wires: the server hands it frames, takes replies.

Rules:
- A request is answered whatever it asks: a malformed one gets a 400-like error reply
  (it has no connection to close), a refused one the core's ``ManagementError``, a bug
  a 500 with the traceback in the broker's log. Nothing a management peer sends can
  stop the loop or touch another peer.
- Publishing through management checks the message properties as a client's publish
  is checked (``tables.check_properties``).
- ``facts`` is a callable the server gives: what only it knows (listeners, memory,
  data directory), merged into ``overview`` and ``status``.
- Every request logs in and is authorised before it is applied
  (``core/access/management_access.py``): ``host`` is where the request came from (None: a
  local transport), ``relay_token`` what the in-process HTTP server proves itself with.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

from zbroker.core import Broker
from zbroker.core.management.requests import Management, ManagementError
from zbroker.core.access.management_access import AccessDenied, authorize, login
from zbroker.protocol import ProtocolError
from zbroker.protocol.native_management import MANAGEMENT_HEADER, decode_request, encode_reply
from zbroker.protocol.tables import TableError, check_properties

log = logging.getLogger(__name__)

#: Verbs whose answer includes what the server knows.
_WITH_FACTS = frozenset({"overview", "nodes", "node"})


class ManagementWire:
    def __init__(self, broker: Broker, facts: Callable[[], dict] | None = None,
                 relay_token: bytes = b"") -> None:
        self.broker = broker
        self.management = Management(broker)
        self.relay_token = relay_token
        self.facts = facts or dict
        #: (peer, [MANAGEMENT_HEADER, reply]) waiting to be sent.
        self.replies: list[tuple[bytes, list[bytes]]] = []

    def handle(self, peer: bytes, frames: list[Any], host: str | None = None) -> None:
        """One management message: ``frames`` is ``[MANAGEMENT_HEADER, request]``."""
        request_id = 0
        try:
            if len(frames) != 2:
                raise ProtocolError(0, "a management message is [header, request]")
            request_id, verb, arguments, credentials = decode_request(bytes(frames[1]))
            users = self.broker.users
            principal = login(users, credentials, host, self.relay_token, self.broker.now)
            authorize(users, principal, verb, arguments)
            if verb == "publish" and isinstance(arguments.get("properties"), dict):
                check_properties(arguments["properties"])
            facts = self.facts() if verb in _WITH_FACTS else None
            result = self.management.handle(verb, arguments, facts, principal)
            self._reply(peer, request_id, True, result)
        except AccessDenied as exc:
            error = "not_authorised" if exc.status == 401 else "access_refused"
            self._reply(peer, request_id, False, {"status": exc.status, "error": error, "reason": exc.reason})
        except (ProtocolError, TableError) as exc:
            detail = exc.detail if isinstance(exc, ProtocolError) else f"properties: {exc}"
            log.warning("bad management request from %s: %s", peer.hex()[:12], detail)
            self._reply(peer, request_id, False, {"status": 400, "error": "bad_request", "reason": detail})
        except ManagementError as exc:
            self._reply(peer, request_id, False, {"status": exc.status, **exc.as_dict()})
        except Exception:
            log.exception("internal error answering a management request")
            self._reply(peer, request_id, False, {"status": 500, "error": "internal_server_error",
                                                  "reason": "internal error (see the broker's log)"})

    def _reply(self, peer: bytes, request_id: int, ok: bool, result: Any) -> None:
        self.replies.append((peer, [MANAGEMENT_HEADER, encode_reply(request_id, ok, result)]))

    def take_replies(self) -> list[tuple[bytes, list[bytes]]]:
        replies, self.replies = self.replies, []
        return replies
