"""Direct reply-to (``amq.rabbitmq.reply-to``): RPC replies with no reply queue declared.

Rules (RabbitMQ's):
1. A channel consumes the pseudo-queue ``amq.rabbitmq.reply-to`` with ``auto_ack=True``
   (else 406 "reply consumer cannot acknowledge"), once per channel (else 406 "reply
   consumer already set").
2. A publish on that channel with ``reply_to = amq.rabbitmq.reply-to`` has it rewritten
   to ``amq.rabbitmq.reply-to.<token>``, naming the channel; without the consumer it is
   406 "fast reply consumer does not exist".
3. A publish to the default exchange with such a name as routing key is delivered
   straight to that channel's reply consumer (no queue, no credit, no ack). If the
   channel is gone the reply is unroutable (returned if ``mandatory``).
4. Every declare of a reply name is passive: it exists (0 messages, 1 consumer) while
   its channel consumes, else 404.
5. A reply name belongs to its channel's vhost: from another vhost it does not exist
   (a reply published there is unroutable, a declare 404), so knowing a name is not
   enough to answer across vhosts.
"""
from __future__ import annotations

import base64
import secrets
from typing import TYPE_CHECKING, Any

from zbroker import errors
from zbroker.core.messaging.arguments import REPLY_TO, precondition
from zbroker.errors import ChannelError
from zbroker.methods import BasicConsumeOk, BasicDeliver, QueueDeclareOk  # type: ignore[attr-defined]

if TYPE_CHECKING:
    from zbroker.core.messaging.session import Channel

REPLY_PREFIX = REPLY_TO + "."


def is_reply_name(name: str) -> bool:
    return name == REPLY_TO or name.startswith(REPLY_PREFIX)


class DirectReplyTo:
    def __init__(self) -> None:
        #: reply queue name -> the channel consuming it.
        self._channels: dict[str, Channel] = {}

    def consume(self, channel: "Channel", tag: str, auto_ack: bool) -> None:
        """Rule 1."""
        if not auto_ack:
            raise precondition("reply consumer cannot acknowledge")
        if channel.reply_to is not None:
            raise precondition("reply consumer already set")
        name = REPLY_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(18)).decode()
        channel.reply_to = (tag, name)
        self._channels[name] = channel
        channel.reply(BasicConsumeOk(channel.number, tag))

    def cancel(self, channel: "Channel", tag: str) -> None:
        if channel.reply_to is not None and channel.reply_to[0] == tag:
            self.release(channel)

    def release(self, channel: "Channel") -> None:
        if channel.reply_to is not None:
            self._channels.pop(channel.reply_to[1], None)
            channel.reply_to = None

    @staticmethod
    def address(channel: "Channel", properties: dict) -> dict:
        """Rule 2: the properties with ``reply_to`` naming the channel's reply queue."""
        if channel.reply_to is None:
            raise precondition("fast reply consumer does not exist")
        return {**properties, "reply_to": channel.reply_to[1]}

    def _waiting(self, name: str, vhost: str) -> "Channel | None":
        """The channel consuming reply name ``name`` in ``vhost`` (rule 5), or None."""
        channel = self._channels.get(name)
        if channel is None or channel.reply_to is None or channel.connection.virtual_host != vhost:
            return None
        return channel

    def deliver(self, routing_key: str, properties: dict, body: Any, vhost: str) -> bool:
        """Rule 3; False if no channel of ``vhost`` waits for this reply."""
        channel = self._waiting(routing_key, vhost)
        if channel is None:
            return False
        channel.send(BasicDeliver(channel.number, channel.reply_to[0], channel.take_tag(), False,
                                  "", routing_key, properties), body)
        return True

    def declare(self, channel: "Channel", queue: str) -> None:
        """Rule 4."""
        vhost = channel.connection.virtual_host
        if queue != REPLY_TO and self._waiting(queue, vhost) is None:
            raise ChannelError(errors.NOT_FOUND, f"no queue '{queue}' in vhost '{vhost}'")
        channel.reply(QueueDeclareOk(channel.number, queue, 0, 1))
