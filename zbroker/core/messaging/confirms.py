"""Publisher confirms: which publishes the broker still has to answer, and how.

Rules (RabbitMQ's, as the broker applies them):
1. After ``confirm_select`` every publish on the channel gets the next sequence number
   (1, 2, ...), counted here in ``Channel.publish_seq`` whatever becomes of the message.
2. Answers wait for the store's commit of the loop pass (``Broker.commit``), so an ack
   is never sent for a persistent message that is not yet on disk. A pass's answers
   for a channel go out as few frames as possible: one ``multiple`` ack up to the last
   seq, with single nacks for the publishes refused in between.
3. A publish is refused (nacked alone) when a queue it was routed to refused it
   (``x-overflow: reject-publish``); it is still enqueued in the other queues.
4. If the store failed to commit, every publish of the pass that was waiting for the
   disk on that channel is nacked (``multiple``): the publisher must not believe it safe.
   A stream's log that cannot be synced nacks every publish of the pass.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from zbroker.methods import BasicAck, BasicNack  # type: ignore[attr-defined]

if TYPE_CHECKING:
    from zbroker.core.messaging.session import Channel

_ACK, _NACK = BasicAck.METHOD, BasicNack.METHOD
_new = tuple.__new__  # (a named event without the checking constructor: once per confirm)


class Confirms:
    def __init__(self) -> None:
        #: Channels with publishes to answer -> seqs refused in this pass (rule 3).
        self._pending: dict[Channel, list[int] | None] = {}
        #: Channels whose outstanding publishes could not be stored (rule 4).
        self._failed: set[Channel] = set()
        #: Confirm channels that published persistent messages since the last commit.
        self._awaiting_disk: set[Channel] = set()

    def __bool__(self) -> bool:
        return bool(self._pending)

    def published(self, channel: "Channel") -> int:
        channel.publish_seq += 1
        if channel not in self._pending:
            self._pending[channel] = None
        return channel.publish_seq

    def refuse(self, channel: "Channel", seq: int) -> None:
        refused = self._pending.get(channel)
        if refused is None:
            self._pending[channel] = [seq]
        elif refused[-1] != seq:
            refused.append(seq)

    def awaits_disk(self, channel: "Channel") -> None:
        self._awaiting_disk.add(channel)

    def store_failed(self, channel: "Channel | None" = None, every: bool = False) -> None:
        """The store refused a write: ``channel``'s publishes, or all awaiting the disk
        (``every``: all of this pass, as when a stream's log cannot be synced)."""
        if channel is not None:
            self._failed.add(channel)
        elif every:
            self._failed.update(self._pending)
        else:
            self._failed.update(ch for ch in self._pending if ch in self._awaiting_disk)

    def committed(self) -> None:
        self._awaiting_disk.clear()

    def forget(self, channel: "Channel") -> None:
        self._pending.pop(channel, None)
        self._failed.discard(channel)
        self._awaiting_disk.discard(channel)

    def flush(self) -> None:
        """Send this pass's answers (rule 2), after the returns already queued."""
        for channel, refused in self._pending.items():
            if channel.connection.channels.get(channel.number) is not channel:
                continue  # closed since: nothing to answer
            number, last = channel.number, channel.publish_seq
            if channel in self._failed:
                channel.send(_new(BasicNack, (_NACK, number, last, True, False)))
            else:
                answered = channel.confirmed_seq
                for seq in refused or ():
                    if seq - 1 > answered:
                        channel.send(_new(BasicAck, (_ACK, number, seq - 1, True)))
                    channel.send(_new(BasicNack, (_NACK, number, seq, False, False)))
                    answered = seq
                if last > answered:
                    channel.send(_new(BasicAck, (_ACK, number, last, True)))
            channel.confirmed += last - channel.confirmed_seq
            channel.confirmed_seq = last
        self._pending.clear()
        self._failed.clear()
