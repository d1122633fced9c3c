"""The quorum queue, as one node runs it: a classic queue's order, paging and expiry, with
what RabbitMQ's quorum queues add (``rabbit_quorum_queue``).

Rules of this module:
1. Declared durable, shared and kept: non-durable, exclusive or auto-delete is 406
   "invalid property ..." (RabbitMQ's text); its arguments are checked against the
   quorum table (``arguments.py``: classic-only arguments are refused, and so is
   ``x-overflow=reject-publish-dlx``).
2. It keeps every message it gets in the store, persistent or not
   (``keeps_every_message``): a restart loses none, as with RabbitMQ's Raft log.
3. A message returned unsettled (nack or reject with requeue, a channel closed with it
   unacked) is counted. Its redeliveries carry ``x-delivery-count`` (returns so far);
   past ``x-delivery-limit`` returns it is not put back but dead-lettered with reason
   ``delivery_limit`` (or dropped without a dead-letter exchange).
4. There is one replica, this broker: no leader election, no membership, no quorum
   commit to wait for. Arguments about replicas are accepted and mean nothing here
   (``arguments.py`` says which).
"""
from __future__ import annotations

from zbroker.core.messaging.arguments import QUORUM, TYPE_MODULES, QueueSettings
from zbroker.core.messaging.classic import ClassicQueue
from zbroker.core.messaging.message import Message
from zbroker.core.messaging.queue_type import require_durable_shared


class QuorumQueue(ClassicQueue):
    TYPE = QUORUM
    MODULE = TYPE_MODULES[QUORUM]
    keeps_every_message = True
    counts_returns = True
    #: RabbitMQ 3.10's ``rabbit_quorum_queue`` capabilities (the mirroring keys are refused
    #: outright here, as 4.x does).
    UNSUPPORTED_POLICIES = frozenset({"max-priority", "queue-mode", "single-active-consumer", "queue-master-locator",
                                      "max-age", "stream-max-segment-size-bytes", "initial-cluster-size"})
    #: 3.10's ``rabbit_quorum_queue``: the policy wins for overflow and expires.
    POLICY_PRECEDENCE = {"max-length": "min", "max-length-bytes": "min", "delivery-limit": "min",
                         "message-ttl": "min", "overflow": "policy", "expires": "policy",
                         "dead-letter-exchange": "argument", "dead-letter-routing-key": "argument",
                         "consumer-timeout": "min"}

    @classmethod
    def check_declare(cls, name: str, vhost: str, durable: bool, exclusive: bool, auto_delete: bool,
                      settings: QueueSettings) -> None:
        """Rule 1."""
        require_durable_shared(name, vhost, durable, exclusive, auto_delete)

    def returned(self, message: Message) -> Message | None:
        """Rule 3: counted; None once past the delivery limit."""
        back = message.as_redelivered(returned=True)
        limit = self.settings.delivery_limit
        return None if limit is not None and back.returns > limit else back

    def take(self, settled: bool) -> Message:
        """Rule 3: a redelivery carries ``x-delivery-count``."""
        message = super().take(settled)
        if message.returns:
            message = _with_delivery_count(message)
        return message


def _with_delivery_count(message: Message) -> Message:
    """A quorum queue's redelivery carries ``x-delivery-count``: returns so far."""
    properties = dict(message.properties)
    headers = dict(properties.get("headers") or {})
    headers["x-delivery-count"] = message.returns
    properties["headers"] = headers
    return message.copy(properties=properties)
