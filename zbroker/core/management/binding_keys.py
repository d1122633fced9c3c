"""A binding's name in management URLs: RabbitMQ's *properties key*
(``rabbit_mgmt_format:pack_binding_props``).

Rules of this module:
- The routing key is quoted as ``quote_plus`` with ``~`` (the separator) as ``%7E``; an
  empty one is ``~`` alone.
- A binding with arguments adds ``~`` and a hash of them: 32 bits, base64url without
  padding, RabbitMQ's shape. RabbitMQ hashes the Erlang term with ``phash2``; this is a
  stable digest of the arguments (the same across restarts), not equal to RabbitMQ's.
- The views and the binding requests use these functions alike, so a key a list shows
  names the binding it came from.
"""
from __future__ import annotations

import base64
import json
import zlib
from urllib.parse import quote_plus, unquote_plus


def quote_binding(text: str) -> str:
    """RabbitMQ's ``quote_binding``: ``quote_plus``, and ``~`` (its separator) as ``%7E``."""
    return quote_plus(text, safe="").replace("~", "%7E")


def args_hash(arguments: dict) -> str:
    """32 bits of the arguments, base64url without padding (RabbitMQ's shape)."""
    canonical = json.dumps(arguments, sort_keys=True, default=repr, separators=(",", ":"))
    return base64.urlsafe_b64encode(zlib.crc32(canonical.encode()).to_bytes(4, "big")).rstrip(b"=").decode()


def properties_key(routing_key: str, arguments: dict) -> str:
    """RabbitMQ's ``pack_binding_props``."""
    if not arguments:
        return quote_binding(routing_key) if routing_key else "~"
    return f"{quote_binding(routing_key)}~{quote_binding(args_hash(arguments))}"


def tokenise(props: str) -> list[str]:
    """RabbitMQ's ``tokenise``: split at each ``~``, a trailing one dropped."""
    tokens: list[str] = []
    while props:
        head, sep, props = props.partition("~")
        tokens.append(head)
        if not sep:
            break
    return tokens


def unpack(props: str) -> tuple[str, str | None] | None:
    """(routing key, arguments hash or None) from a properties key, or None if it is not
    one (RabbitMQ's ``unpack``)."""
    tokens = tokenise(props)
    if not 1 <= len(tokens) <= 2:
        return None
    return unquote_plus(tokens[0]), (unquote_plus(tokens[1]) if len(tokens) == 2 else None)
