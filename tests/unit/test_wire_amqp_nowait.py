"""AMQP's no-wait bit: the wire passes it to the core as a ``nowait`` command, and the core
leaves out that command's -ok and nothing else: errors still close the channel, the
deliveries and confirms it leads to still come, and the next command is answered."""
from __future__ import annotations

from pamqp import commands as C

from tests.unit.amqp_peer import AmqpPeer, make


def opened() -> tuple:
    broker, wire, clock = make()
    peer = AmqpPeer(wire, clock)
    peer.handshake()
    peer.open_channel()
    return broker, peer


def channel_closed(methods: list) -> tuple[int, str]:
    assert [type(m) for m in methods] == [C.Channel.Close], methods
    return methods[0].reply_code, methods[0].reply_text


def test_nowait_declares_binds_deletes_consumes_cancels_and_confirm_select_get_no_answer() -> None:
    broker, peer = opened()
    for method in (C.Exchange.Declare(exchange="x", exchange_type="fanout", nowait=True),
                   C.Exchange.Declare(exchange="y", exchange_type="direct", nowait=True),
                   C.Exchange.Bind(destination="y", source="x", nowait=True),
                   C.Exchange.Unbind(destination="y", source="x", nowait=True),
                   C.Queue.Declare(queue="q", nowait=True),
                   C.Queue.Bind(queue="q", exchange="x", nowait=True),
                   C.Queue.Purge(queue="q", nowait=True),
                   C.Basic.Consume(queue="q", consumer_tag="c", nowait=True),
                   C.Basic.Cancel(consumer_tag="c", nowait=True),
                   C.Confirm.Select(nowait=True),
                   C.Queue.Delete(queue="q", nowait=True),
                   C.Exchange.Delete(exchange="y", nowait=True)):
        peer.send(1, method)
        assert peer.methods() == [], method
    assert "q" not in broker.topology.queues and "y" not in broker.topology.exchanges
    assert "x" in broker.topology.exchanges


def test_without_the_bit_the_same_commands_are_answered() -> None:
    _, peer = opened()
    peer.send(1, C.Queue.Declare(queue="q", nowait=True))
    peer.send(1, C.Queue.Declare(queue="q"))
    peer.send(1, C.Basic.Consume(queue="q", consumer_tag="c", nowait=True))
    peer.send(1, C.Basic.Cancel(consumer_tag="c"))
    assert [type(m) for m in peer.methods()] == [C.Queue.DeclareOk, C.Basic.CancelOk]


def test_a_nowait_consume_still_gets_its_deliveries_and_nowait_confirms_their_acks() -> None:
    _, peer = opened()
    peer.send(1, C.Confirm.Select(nowait=True))
    peer.send(1, C.Queue.Declare(queue="q", nowait=True))
    peer.send(1, C.Basic.Consume(queue="q", consumer_tag="c", no_ack=True, nowait=True))
    peer.publish(1, "", "q", b"m")
    peer.wire.broker.after_input()
    peer.pump()
    got = peer.methods()
    assert [type(m) for m in got] == [C.Basic.Deliver, C.Basic.Ack]
    assert got[1].delivery_tag == 1


def test_nowait_errors_still_close_the_channel_and_the_next_channel_is_answered() -> None:
    broker, peer = opened()
    cases = [(C.Queue.Declare(queue="missing", passive=True, nowait=True), 404),
             (C.Queue.Bind(queue="missing", exchange="amq.direct", nowait=True), 404),
             (C.Basic.Consume(queue="missing", nowait=True), 404),
             (C.Exchange.Declare(exchange="e", exchange_type="no-such-type", nowait=True), 406),
             (C.Exchange.Delete(exchange="missing", nowait=True), None),  # (deleting nothing is no
             (C.Queue.Delete(queue="missing", nowait=True), None)]  # error, as in RabbitMQ)
    for channel, (method, code) in enumerate(cases, 2):
        peer.open_channel(channel)
        peer.send(channel, method)
        got = peer.methods()
        if code is None:
            assert got == [], method
        else:
            assert channel_closed(got)[0] == code, method
            peer.send(channel, C.Channel.CloseOk())
        assert peer.key in broker.connections
    peer.open_channel(20)
    peer.send(20, C.Queue.Declare(queue="answered"))
    assert [type(m) for m in peer.methods()] == [C.Queue.DeclareOk]
