"""The one table of reply codes, shared by broker and client.

The numbers and names are AMQP 0-9-1's, as RabbitMQ sends them, because pika users
branch on them (``e.reply_code == 404``). The reply text a user sees starts with the
name, as RabbitMQ's does: ``"NOT_FOUND - no queue 'q' in vhost '/'"``.

Inside the broker, a rule broken by a client is raised as ``ChannelError`` (the channel
is closed) or ``ConnectionError_`` (the whole connection is closed); the core converts
them to close frames at exactly one place.
"""
from __future__ import annotations

REPLY_SUCCESS = 200
NO_ROUTE = 312
CONNECTION_FORCED = 320
INVALID_PATH = 402
ACCESS_REFUSED = 403
NOT_FOUND = 404
RESOURCE_LOCKED = 405
PRECONDITION_FAILED = 406
FRAME_ERROR = 501
SYNTAX_ERROR = 502
COMMAND_INVALID = 503
CHANNEL_ERROR = 504
UNEXPECTED_FRAME = 505
RESOURCE_ERROR = 506
NOT_ALLOWED = 530
NOT_IMPLEMENTED = 540
INTERNAL_ERROR = 541

REPLY_NAMES: dict[int, str] = {
    REPLY_SUCCESS: "OK",
    NO_ROUTE: "NO_ROUTE",
    CONNECTION_FORCED: "CONNECTION_FORCED",
    INVALID_PATH: "INVALID_PATH",
    ACCESS_REFUSED: "ACCESS_REFUSED",
    NOT_FOUND: "NOT_FOUND",
    RESOURCE_LOCKED: "RESOURCE_LOCKED",
    PRECONDITION_FAILED: "PRECONDITION_FAILED",
    FRAME_ERROR: "FRAME_ERROR",
    SYNTAX_ERROR: "SYNTAX_ERROR",
    COMMAND_INVALID: "COMMAND_INVALID",
    CHANNEL_ERROR: "CHANNEL_ERROR",
    UNEXPECTED_FRAME: "UNEXPECTED_FRAME",
    RESOURCE_ERROR: "RESOURCE_ERROR",
    NOT_ALLOWED: "NOT_ALLOWED",
    NOT_IMPLEMENTED: "NOT_IMPLEMENTED",
    INTERNAL_ERROR: "INTERNAL_ERROR",
}


def reply_text(code: int, detail: str) -> str:
    """Format a reply text the way RabbitMQ does: ``NAME - detail``."""
    return f"{REPLY_NAMES.get(code, 'ERROR')} - {detail}"


class BrokerError(Exception):
    """A client broke a rule; carries the AMQP reply code and text."""

    def __init__(self, code: int, detail: str) -> None:
        self.code = code
        self.text = reply_text(code, detail)
        super().__init__(self.text)


class ChannelError(BrokerError):
    """Soft error: the broker closes the offending channel, the connection lives on."""


class ConnectionError_(BrokerError):  # noqa: N801 - the builtin name is taken
    """Hard error: the broker closes the whole connection."""
