"""Transactions (tx.select, tx.commit, tx.rollback) with RabbitMQ's semantics.

Rules:
1. After ``tx_select`` a channel's publishes and settlements (ack, nack, reject) are
   checked when they arrive -- an unknown exchange, a bad expiration, an unknown
   delivery tag fail then, as in RabbitMQ -- and take effect only at ``tx_commit``,
   in the order they came.
2. ``tx_rollback`` discards the held publishes; deliveries whose acks it discards are
   unacked again, under their delivery tags.
3. A tx channel cannot switch to confirm mode, nor a confirm channel to tx (406);
   commit or rollback on a channel not in tx mode is 406 "channel is not transactional".
4. Deliveries settled in an open transaction keep their credit until the commit, and go
   back to their queues if the channel closes first.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterator

from zbroker.core.messaging.arguments import precondition
from zbroker.core.messaging.consumers import returnable
from zbroker.methods import Method as M
from zbroker.methods import TxCommitOk, TxRollbackOk, TxSelectOk  # type: ignore[attr-defined]

if TYPE_CHECKING:
    from zbroker.core.messaging.consumers import Unacked
    from zbroker.core.messaging.delivery import Delivery
    from zbroker.core.messaging.publishing import Publishing
    from zbroker.core.messaging.session import Channel

#: Methods a transaction holds until its commit.
HELD = frozenset(int(m) for m in (M.BASIC_PUBLISH, M.BASIC_ACK, M.BASIC_NACK, M.BASIC_REJECT))


class Publish:
    __slots__ = ("fields", "body")

    def __init__(self, fields: list[Any], body: Any) -> None:
        self.fields = fields
        self.body = body


class Settle:
    """An ack (``requeue`` None), nack or reject held for the commit."""

    __slots__ = ("entries", "requeue")

    def __init__(self, entries: "list[Unacked]", requeue: bool | None) -> None:
        self.entries = entries
        self.requeue = requeue


def select(channel: "Channel") -> None:
    if channel.confirm:
        raise precondition("cannot switch from confirm to tx mode")
    if channel.tx is None:
        channel.tx = []


def hold(channel: "Channel", op: int, fields: list[Any], body: Any,
         check_publish: Callable[[list[Any], Any], None]) -> None:
    """Rule 1: check now, apply at commit."""
    assert channel.tx is not None  # called for tx channels only
    if op == M.BASIC_PUBLISH:
        check_publish(fields, body)
        channel.tx.append(Publish(fields, body))
        return
    multiple = fields[2] if op != M.BASIC_REJECT else False
    requeue = None if op == M.BASIC_ACK else fields[-1]
    entries = channel.settle(fields[1], multiple)
    channel.tx.append(Settle(entries if requeue is None else returnable(channel, entries), requeue))


def held_deliveries(channel: "Channel") -> "Iterator[Unacked]":
    """Deliveries settled in the open transaction (still the channel's: rule 4)."""
    for item in channel.tx or ():
        if isinstance(item, Settle):
            yield from item.entries


def take(channel: "Channel") -> list[Publish | Settle]:
    """What the commit applies; the channel stays in tx mode with nothing held."""
    if channel.tx is None:
        raise precondition("channel is not transactional")
    held, channel.tx = channel.tx, []
    return held


def rollback(channel: "Channel") -> None:
    """Rule 2."""
    if channel.tx is None:
        raise precondition("channel is not transactional")
    entries = list(held_deliveries(channel))
    channel.tx = []
    if entries:
        channel.unacked.update((entry.tag, entry) for entry in entries)
        channel.unacked = dict(sorted(channel.unacked.items()))


class Transactions:
    """The tx.* handlers: what a transaction holds is applied by publishing and delivery."""

    def __init__(self, publishing: "Publishing", delivery: "Delivery") -> None:
        self.publishing = publishing
        self.delivery = delivery

    def tx_select(self, channel: "Channel", _: Any) -> None:
        select(channel)
        channel.reply(TxSelectOk(channel.number))

    def hold(self, channel: "Channel", op: int, fields: Any, body: Any) -> None:
        """A publish or settlement on a tx channel: checked now, applied at commit (rule 1)."""
        hold(channel, op, fields, body, lambda fields_, body_: self.publishing.check(channel, fields_, body_))

    def tx_commit(self, channel: "Channel", _: Any) -> None:
        held = take(channel)
        channel.tx = None  # applied as if outside a transaction
        try:
            for item in held:
                if isinstance(item, Publish):
                    self.publishing.basic_publish(channel, item.body, *item.fields[1:])
                else:
                    self.delivery.settle(channel, item.entries, item.requeue)
        finally:
            channel.tx = []
        channel.reply(TxCommitOk(channel.number))

    def tx_rollback(self, channel: "Channel", _: Any) -> None:
        rollback(channel)
        channel.reply(TxRollbackOk(channel.number))
