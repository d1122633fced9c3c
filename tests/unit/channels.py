"""A real core channel for tests that drive a queue type directly: the queue delivers to
it as to any consumer's channel, and its deliveries stay in its connection's outbox (no
wire takes them). A compiled core takes its own ``Channel`` only, so no fake stands in."""
from __future__ import annotations

from zbroker.core.messaging.message import Message
from zbroker.core.messaging.session import Channel, Connection, Outbox
from zbroker.core.messaging.timers import Timers


class Clock:
    """What a channel reads of the broker: ``now`` and the consumer-timeout heap."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.ack_timers: Timers[Channel] = Timers()


def new_channel(now: float, global_prefetch: int = 0) -> Channel:
    """A channel, number 1, on a connection of its own."""
    connection = Connection("c", Outbox(), 0, "/", {})
    connection.clock = Clock(now)
    channel = Channel(1, connection)
    channel.global_prefetch = global_prefetch
    return channel


def delivered_on(channel: Channel) -> list[Message]:
    """The messages delivered on ``channel`` and not settled through it, in order."""
    return [entry.message for entry in channel.unacked.values()]
