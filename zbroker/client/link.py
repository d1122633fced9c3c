"""The two sides of the line between a connection and its channels, as interfaces.

Rules:
- A channel uses its connection only through a ``ChannelLink`` (``connection.link``):
  sending, publishing under flow control, waiting for input, the event queue, its own
  registration, and the open state. It never touches the connection's other attributes.
- A connection uses its channels only through ``LinkedChannel``: it hands each its
  commands and its queued events, and tells it when the connection ends or closes.
- Both are ``typing.Protocol``s: any object with these members will do (a test can
  drive a channel with a fake link). Their members are zbroker's client internals, not
  pika's API: the link is its own object so the connection's pika surface does not grow,
  and the channel's members say so in their first docstring line.
- An event is ``(target, kind, payload)``: the connection queues it as it reads and runs
  it in its next dispatch round with ``target.dispatch_event(kind, payload)``
  (``events.py``), so callbacks run only inside dispatching calls, as in pika.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Protocol

if TYPE_CHECKING:
    from zbroker.client.connection import BlockingConnection
    from zbroker.client.events import Events

#: One queued event: who runs it, what it is ("deliver", "return", ...), its data.
Event = tuple[Any, str, Any]


class EventTarget(Protocol):
    """Whatever an event is queued for: a channel, or the connection's own events."""

    def dispatch_event(self, kind: str, payload: Any) -> bool:
        """Run the callbacks of one queued event; whether any ran."""


class ChannelLink(Protocol):
    """What a channel needs from its connection, and all it may use of it."""

    def send(self, parts: list[Any]) -> None:
        """Send one message: its command frame (and body frame). Raises why the
        connection ended, once it has."""

    def publish(self, command: bytes, body: Any) -> None:
        """Send a publish under flow control: first waits (reading input, running no
        callbacks) while the connection has no publish credit or the broker blocks it."""

    def wait_until(self, done: Callable[[], bool], timeout: float | None = None) -> bool:
        """Read input until ``done()``; False if ``timeout`` seconds (None: no limit)
        passed first. Runs no callbacks; raises why the connection ended, if it does."""

    def queue_event(self, target: EventTarget, kind: str, payload: Any) -> None:
        """Queue an event for the next dispatch round."""

    def take_events(self, match: Callable[[Event], bool]) -> list[Event]:
        """Remove the queued events ``match`` accepts and return them, in order."""

    def process_data_events(self, time_limit: float | None) -> None:
        """The connection's ``process_data_events``: read input and run callbacks."""

    def register(self, channel: LinkedChannel) -> None:
        """Route the commands for ``channel.channel_number`` to ``channel``."""

    def unregister(self, channel: LinkedChannel) -> None:
        """Stop routing commands to ``channel`` (closed, or never opened)."""

    @property
    def is_open(self) -> bool:
        """Whether the connection is open (a robust one: not closed)."""

    @property
    def dispatching(self) -> bool:
        """Whether callbacks are running now (pika refuses ``start_consuming`` then)."""


class LinkedChannel(EventTarget, Protocol):
    """What a connection calls on its channels."""

    @property
    def channel_number(self) -> int:
        """The number commands for this channel carry."""

    def open_on_broker(self) -> None:
        """Register with the connection and open the channel on the broker."""

    def handle_command(self, op: int, fields: list[Any], body: Any) -> None:
        """A command the broker sent to this channel."""

    def connection_closing(self) -> None:
        """The program closes the connection: drop what was not dispatched."""

    def connection_lost(self, reason: Exception) -> None:
        """The connection ended (``reason``): the channel is closed too."""


class Link:
    """The ``ChannelLink`` a ``BlockingConnection`` hands its channels (``connection.link``),
    made of the pieces the connection passes in: it needs none of its privates."""

    __slots__ = ("send", "publish", "wait_until", "queue_event", "take_events", "process_data_events",
                 "_connection", "_channels", "_events")

    def __init__(self, connection: BlockingConnection, channels: dict[int, LinkedChannel], events: Events, *,
                 send: Callable[[list[Any]], None], publish: Callable[[bytes, Any], None],
                 wait_until: Callable[..., bool]) -> None:
        # Bound once: a channel's call costs what calling the connection's own did.
        self.send = send
        self.publish = publish
        self.wait_until = wait_until
        self.queue_event = events.put
        self.take_events = events.take
        self.process_data_events = connection.process_data_events
        self._connection = connection
        self._channels = channels
        self._events = events

    def register(self, channel: LinkedChannel) -> None:
        self._channels[channel.channel_number] = channel

    def unregister(self, channel: LinkedChannel) -> None:
        self._channels.pop(channel.channel_number, None)

    @property
    def is_open(self) -> bool:
        return self._connection.is_open

    @property
    def dispatching(self) -> bool:
        return self._events.dispatching > 0
