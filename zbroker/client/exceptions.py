"""pika's exception hierarchy, by the same names, so ``except pika.exceptions.X`` ports.

``ChannelClosed`` and ``ConnectionClosed`` carry ``reply_code`` and ``reply_text`` as
their two args, exactly as pika's do; the codes are RabbitMQ's (``zbroker.errors``).
"""
from __future__ import annotations

from typing import Any, Sequence


class AMQPError(Exception):
    def __repr__(self) -> str:
        return f"{type(self).__name__}: An unspecified AMQP error has occurred; {self.args}"


class AMQPConnectionError(AMQPError):
    def __repr__(self) -> str:
        if len(self.args) == 2:
            return f"{type(self).__name__}: ({self.args[0]}) {self.args[1]}"
        return f"{type(self).__name__}: {self.args}"


class ConnectionOpenAborted(AMQPConnectionError):
    """The client closed the connection while it was opening."""


class StreamLostError(AMQPConnectionError):
    """The transport to the broker was lost."""


class IncompatibleProtocolError(AMQPConnectionError):
    """The broker speaks another protocol version."""


class AuthenticationError(AMQPConnectionError):
    """The broker refused the credentials' mechanism."""


class ProbableAuthenticationError(AMQPConnectionError):
    """The broker closed the connection while it was opening: probably credentials."""


class ProbableAccessDeniedError(AMQPConnectionError):
    """The broker closed the connection while it was opening: probably the virtual host."""


class NoFreeChannels(AMQPConnectionError):
    """Every channel number is in use."""


class ConnectionWrongStateError(AMQPConnectionError):
    """The connection is in the wrong state for the requested operation."""


class _Closed(Exception):
    """``reply_code`` and ``reply_text`` as the exception's two args, as pika's carry them."""

    def __init__(self, reply_code: int, reply_text: str) -> None:
        super().__init__(int(reply_code), str(reply_text))

    def __repr__(self) -> str:
        return f"{type(self).__name__}: ({self.reply_code}) {self.reply_text!r}"

    @property
    def reply_code(self) -> int:
        return self.args[0]

    @property
    def reply_text(self) -> str:
        return self.args[1]


class ConnectionClosed(_Closed, AMQPConnectionError):
    """The connection was closed, by the broker or by the client."""


class ConnectionClosedByBroker(ConnectionClosed):
    """The broker closed the connection."""


class ConnectionClosedByClient(ConnectionClosed):
    """The client closed the connection."""


class ConnectionBlockedTimeout(AMQPConnectionError):
    """Timed out waiting for the connection to be unblocked."""


class AMQPHeartbeatTimeout(AMQPConnectionError):
    """The broker stopped answering heartbeats."""


class AMQPChannelError(AMQPError):
    def __repr__(self) -> str:
        return f"{type(self).__name__}: {self.args!r}"


class ChannelWrongStateError(AMQPChannelError):
    """The channel is in the wrong state for the requested operation."""


class ChannelClosed(_Closed, AMQPChannelError):
    """The channel was closed, by the broker or by the client."""


class ChannelClosedByBroker(ChannelClosed):
    """The broker closed the channel (404, 405, 406, ...)."""


class ChannelClosedByClient(ChannelClosed):
    """The client closed the channel."""


class DuplicateConsumerTag(AMQPChannelError):
    """The consumer tag is already in use on this channel."""


class ConsumerCancelled(AMQPChannelError):
    """The broker cancelled the consumer."""


class UnroutableError(AMQPChannelError):
    """Messages published with ``mandatory=True`` that no queue took (confirm mode)."""

    def __init__(self, messages: Sequence[Any]) -> None:
        super().__init__(f"{len(messages)} unroutable message(s) returned")
        self.messages = messages


class NackError(AMQPChannelError):
    """Messages the broker refused in confirm mode."""

    def __init__(self, messages: Sequence[Any]) -> None:
        super().__init__(f"{len(messages)} message(s) NACKed")
        self.messages = messages


class InvalidChannelNumber(AMQPError):
    """The channel number is out of range or in use."""


class ProtocolSyntaxError(AMQPError):
    """The peer sent something the protocol does not allow."""


class UnexpectedFrameError(ProtocolSyntaxError):
    """A frame arrived out of sequence."""


class ProtocolVersionMismatch(ProtocolSyntaxError):
    """The two sides speak different protocol versions."""


class BodyTooLongError(ProtocolSyntaxError):
    """A body is larger than the broker accepts."""


class InvalidFrameError(ProtocolSyntaxError):
    """A frame could not be decoded."""


class InvalidFieldTypeException(ProtocolSyntaxError):
    """A field has a type the protocol cannot carry."""


class UnsupportedAMQPFieldException(ProtocolSyntaxError):
    """A value has a type the protocol cannot carry."""


class MethodNotImplemented(AMQPError):
    """The method is not implemented."""


class ChannelError(Exception):
    """An unspecified channel error."""


class ReentrancyError(Exception):
    """The call would recurse into the connection's dispatch loop."""


class ShortStringTooLong(AMQPError):
    """A name or routing key is longer than AMQP's 255 bytes."""


class DuplicateGetOkCallback(ChannelError):
    """basic_get was called again before its previous callback ran."""
