"""A ``BlockingChannel`` driven through a fake ``ChannelLink``: no socket, no broker.

The fake plays the broker from a script (what it answers to each command the channel
sends) and runs queued events only when the test dispatches, as a connection would.
That the channel works against it shows the link (``zbroker/client/link.py``) is all
it needs of its connection.
"""
from __future__ import annotations

from collections import deque
from types import SimpleNamespace
from typing import Any, Callable

import pytest

from zbroker.client import BlockingChannel, exceptions
from zbroker.protocol import Op, decode_command
from zbroker.protocol.native_codec import MAX_COMMAND_BYTES

CH = 1
#: What the scripted broker answers by default: a method's -ok with the channel number.
OK = {Op.CHANNEL_OPEN: Op.CHANNEL_OPEN_OK, Op.CONFIRM_SELECT: Op.CONFIRM_SELECT_OK,
      Op.BASIC_QOS: Op.BASIC_QOS_OK, Op.CHANNEL_CLOSE: Op.CHANNEL_CLOSE_OK}
Command = tuple[int, list[Any], Any]


class FakeLink:
    """A ChannelLink with no connection behind it (module docstring)."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, list[Any]]] = []
        self.inbox: deque[Command] = deque()
        self.events: deque[tuple[Any, str, Any]] = deque()
        self.channels: dict[int, Any] = {}
        self.is_open = True
        self.dispatching = False
        #: op -> the commands the broker answers with (default: ``OK``).
        self.script: dict[int, Callable[[list[Any]], list[Command]]] = {}

    def _answer(self, op: int, fields: list[Any]) -> list[Command]:
        if op in self.script:
            return self.script[op](fields)
        if op in OK:
            return [(OK[op], [fields[0]], None)]
        if op == Op.BASIC_CONSUME:
            return [(Op.BASIC_CONSUME_OK, [fields[0], fields[2]], None)]
        if op == Op.BASIC_CANCEL:
            return [(Op.BASIC_CANCEL_OK, [fields[0], fields[1]], None)]
        return []

    def send(self, parts: list[Any]) -> None:
        op, fields = decode_command(parts[0], MAX_COMMAND_BYTES)
        self.sent.append((op, fields))
        self.inbox.extend(self._answer(op, fields))

    def publish(self, command: bytes, body: Any) -> None:
        self.send([command, body])

    def wait_until(self, done: Callable[[], bool], timeout: float | None = None) -> bool:
        while not done():
            if not self.inbox:
                raise AssertionError("the channel would wait forever: the script sends nothing more")
            self.feed(self.inbox.popleft())
        return True

    def feed(self, command: Command) -> None:
        op, fields, body = command
        self.channels[fields[0]].handle_command(op, fields, body)

    def queue_event(self, target: Any, kind: str, payload: Any) -> None:
        self.events.append((target, kind, payload))

    def take_events(self, match: Callable[[Any], bool]) -> list[Any]:
        taken = [e for e in self.events if match(e)]
        self.events = deque(e for e in self.events if not match(e))
        return taken

    def process_data_events(self, time_limit: float | None) -> None:
        while self.inbox:
            self.feed(self.inbox.popleft())
        self.dispatch()

    def dispatch(self) -> None:
        for _ in range(len(self.events)):
            target, kind, payload = self.events.popleft()
            target.dispatch_event(kind, payload)

    def register(self, channel: Any) -> None:
        self.channels[channel.channel_number] = channel

    def unregister(self, channel: Any) -> None:
        self.channels.pop(channel.channel_number, None)

    def ops(self) -> list[int]:
        return [op for op, _ in self.sent]


def deliver(tag: str, dtag: int, body: bytes = b"m") -> Command:
    return (Op.BASIC_DELIVER, [CH, tag, dtag, False, "", "q", {}], body)


@pytest.fixture
def link() -> FakeLink:
    return FakeLink()


@pytest.fixture
def channel(link: FakeLink) -> BlockingChannel:
    channel = BlockingChannel(SimpleNamespace(link=link), CH)  # type: ignore[arg-type]
    channel.open_on_broker()
    return channel


def test_opening_registers_through_the_link(link: FakeLink, channel: BlockingChannel) -> None:
    assert link.channels == {CH: channel}
    assert link.ops() == [Op.CHANNEL_OPEN]
    assert channel.is_open


def test_a_refused_open_leaves_the_channel_unregistered(link: FakeLink) -> None:
    link.script[Op.CHANNEL_OPEN] = lambda f: [(Op.CHANNEL_CLOSE, [f[0], 530, "NOT_ALLOWED"], None)]
    channel = BlockingChannel(SimpleNamespace(link=link), CH)  # type: ignore[arg-type]
    with pytest.raises(exceptions.ChannelClosedByBroker) as raised:
        channel.open_on_broker()
    assert raised.value.reply_code == 530
    assert link.channels == {}


def test_deliveries_reach_the_callback_only_when_dispatched(link: FakeLink, channel: BlockingChannel) -> None:
    got: list[bytes] = []
    channel.basic_consume("q", lambda ch, method, props, body: got.append(body), consumer_tag="c")
    link.feed(deliver("c", 1, b"one"))
    link.feed(deliver("c", 2, b"two"))
    assert got == []
    link.dispatch()
    assert got == [b"one", b"two"]


def test_cancelling_a_manual_ack_consumer_requeues_what_it_was_not_given(link: FakeLink,
                                                                         channel: BlockingChannel) -> None:
    got: list[Any] = []
    channel.basic_consume("q", lambda *a: got.append(a), consumer_tag="c")
    link.feed(deliver("c", 1))  # queued, not dispatched
    # A delivery the broker sent before it saw the cancel arrives before the cancel-ok.
    link.script[Op.BASIC_CANCEL] = lambda f: [deliver("c", 2), (Op.BASIC_CANCEL_OK, [f[0], f[1]], None)]
    assert channel.basic_cancel("c") == []
    rejects = [fields[1:] for op, fields in link.sent if op == Op.BASIC_REJECT]
    assert rejects == [[1, True], [2, True]]
    link.dispatch()
    assert got == []
    assert channel.consumer_tags == []


def test_cancelling_an_auto_ack_consumer_hands_back_what_it_was_not_given(link: FakeLink,
                                                                          channel: BlockingChannel) -> None:
    channel.basic_consume("q", lambda *a: None, auto_ack=True, consumer_tag="c")
    link.feed(deliver("c", 1, b"one"))
    link.script[Op.BASIC_CANCEL] = lambda f: [deliver("c", 2, b"two"), (Op.BASIC_CANCEL_OK, [f[0], f[1]], None)]
    pending = channel.basic_cancel("c")
    assert [body for _, _, body in pending] == [b"one", b"two"]
    assert Op.BASIC_REJECT not in link.ops()


def test_a_delivery_for_an_unknown_consumer_is_rejected_with_requeue(link: FakeLink,
                                                                     channel: BlockingChannel) -> None:
    link.feed(deliver("nobody", 7))
    assert link.sent[-1] == (Op.BASIC_REJECT, [CH, 7, True])
    assert not link.events


def test_a_broker_close_fails_the_waiting_call_and_every_later_one(link: FakeLink,
                                                                   channel: BlockingChannel) -> None:
    text = "PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'q' in vhost '/'"
    link.script[Op.QUEUE_DECLARE] = lambda f: [(Op.CHANNEL_CLOSE, [f[0], 406, text], None)]
    with pytest.raises(exceptions.ChannelClosedByBroker) as raised:
        channel.queue_declare("q", durable=True)
    assert (raised.value.reply_code, raised.value.reply_text) == (406, text)
    assert link.sent[-1] == (Op.CHANNEL_CLOSE_OK, [CH])
    assert link.channels == {}
    with pytest.raises(exceptions.ChannelWrongStateError):
        channel.basic_publish("", "q", b"m")


def test_nacks_and_acks_settle_pipelined_publishes(link: FakeLink, channel: BlockingChannel) -> None:
    channel.confirm_delivery()
    assert [channel.publish_nowait("", "q", body) for body in (b"1", b"2", b"3")] == [1, 2, 3]
    link.inbox.extend([(Op.BASIC_NACK, [CH, 2, True, False], None), (Op.BASIC_ACK, [CH, 3, False], None)])
    with pytest.raises(exceptions.NackError) as raised:
        channel.wait_for_confirms()
    assert [m.body for m in raised.value.messages] == [b"1", b"2"]
    assert channel.wait_for_confirms() is True


def test_closing_the_connection_drops_only_this_channels_events(link: FakeLink, channel: BlockingChannel) -> None:
    other = object()
    channel.basic_consume("q", lambda *a: None, consumer_tag="c")
    link.feed(deliver("c", 1))
    link.queue_event(other, "deliver", None)  # type: ignore[arg-type]
    channel.connection_closing()
    assert [target for target, _, _ in link.events] == [other]
    assert channel.consumer_tags == []


def test_losing_the_connection_closes_the_channel(link: FakeLink, channel: BlockingChannel) -> None:
    channel.connection_lost(exceptions.StreamLostError("Transport indicated EOF"))
    assert channel.is_closed
    assert link.channels == {}


def test_start_consuming_inside_a_callback_is_refused(link: FakeLink, channel: BlockingChannel) -> None:
    channel.basic_consume("q", lambda *a: None, consumer_tag="c")
    link.dispatching = True
    with pytest.raises(exceptions.ReentrancyError):
        channel.start_consuming()


def test_a_broker_cancel_ends_a_consume_generator(link: FakeLink, channel: BlockingChannel) -> None:
    cancelled: list[Any] = []
    channel.add_on_cancel_callback(cancelled.append)
    messages = channel.consume("q", consumer_tag="g")
    link.inbox.extend([deliver("g", 1, b"one"), (Op.BASIC_CANCEL, [CH, "g"], None)])
    assert [body for _, _, body in messages] == [b"one"]
    assert [frame.method.consumer_tag for frame in cancelled] == ["g"]
    assert channel.get_waiting_message_count() == 0
