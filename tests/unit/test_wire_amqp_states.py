"""The AMQP connection's states: the transition table itself, the path a connection takes
through it, and what an illegal transition (a bug in the wire) does: that connection is
dropped, logged, and every other connection goes on."""
from __future__ import annotations

import logging

import pytest
from pamqp import commands as C

from tests.unit.amqp_peer import AmqpPeer, make
from zbroker.methods import Method as M
from zbroker.protocol.amqp_codec import PROTOCOL_HEADER
from zbroker.wires import amqp_handshake
from zbroker.wires.amqp_connection import TRANSITIONS, IllegalTransition, State


def test_the_table_names_every_state_and_only_moves_forward() -> None:
    assert set(TRANSITIONS) == set(State)
    for old, news in TRANSITIONS.items():
        assert all(new > old for new in news), old
    assert TRANSITIONS[State.CLOSED] == frozenset()  # the end


def test_closed_may_follow_every_state_and_running_only_the_handshake() -> None:
    assert all(State.CLOSED in TRANSITIONS[s] for s in State if s is not State.CLOSED)
    assert [s for s in State if State.RUNNING in TRANSITIONS[s]] == [State.OPEN]
    handshake = [State.HEADER, State.START_OK, State.TUNE_OK, State.OPEN, State.RUNNING]
    for old, new in zip(handshake, handshake[1:]):
        assert new in TRANSITIONS[old]
        assert not any(later in TRANSITIONS[old] for later in handshake[handshake.index(new) + 1:])
    # Only a running connection answers a client's close (close-ok, then CLOSE_WAIT).
    assert [s for s in State if State.CLOSE_WAIT in TRANSITIONS[s]] == [State.RUNNING, State.CLOSING]


def test_a_move_the_table_forbids_raises_and_leaves_the_state() -> None:
    _, wire, clock = make()
    peer = AmqpPeer(wire, clock)
    conn = wire.connections[peer.key]
    assert conn.state is State.HEADER
    conn.move(State.HEADER)  # staying is not a move
    with pytest.raises(IllegalTransition, match="HEADER -> RUNNING is not a legal transition"):
        conn.move(State.RUNNING)
    assert conn.state is State.HEADER


def test_a_connection_goes_through_the_handshake_states_in_order() -> None:
    broker, wire, clock = make()
    peer = AmqpPeer(wire, clock)
    conn = wire.connections[peer.key]
    seen = []
    real_move = conn.move
    conn.move = lambda new: (seen.append(new), real_move(new))  # type: ignore[method-assign]
    peer.handshake()
    peer.send(0, C.Connection.Close(200, "bye", 0, 0))
    wire.tick(clock.advance(60))
    assert seen == [State.START_OK, State.TUNE_OK, State.OPEN, State.RUNNING, State.CLOSING,
                    State.CLOSE_WAIT, State.CLOSED]


def test_an_illegal_transition_on_input_drops_that_connection_only(monkeypatch, caplog) -> None:  # noqa: ANN001
    broker, wire, clock = make()
    bystander = AmqpPeer(wire, clock)
    bystander.handshake()
    bystander.open_channel()
    broken = AmqpPeer(wire, clock)
    broken.send_bytes(PROTOCOL_HEADER)
    broken.take()

    def bad_step(broker_, conn, method, now) -> None:  # noqa: ANN001
        conn.move(State.CLOSE_WAIT)  # a bug: the handshake cannot jump to CLOSE_WAIT

    monkeypatch.setitem(amqp_handshake.STEPS, State.START_OK, (C.Connection.StartOk, bad_step))
    with caplog.at_level(logging.ERROR, logger="zbroker.wires.amqp"):
        broken.send(0, C.Connection.StartOk({}, "PLAIN", "\0guest\0guest", "en_US"))
    assert broken.closed and wire.connections[broken.key].state is State.CLOSED
    assert "START_OK -> CLOSE_WAIT is not a legal transition" in caplog.text
    bystander.send(1, C.Queue.Declare(queue="fine"))
    assert isinstance(bystander.take()[1], C.Queue.DeclareOk)


def test_an_illegal_transition_in_the_timers_drops_that_connection_and_tells_the_core(monkeypatch,  # noqa: ANN001
                                                                                      caplog) -> None:
    broker, wire, clock = make()
    bystander = AmqpPeer(wire, clock)
    bystander.handshake(heartbeat=2)
    broken = AmqpPeer(wire, clock)
    broken.handshake(heartbeat=2)
    broken_conn = wire.connections[broken.key]
    monkeypatch.setattr(broken_conn, "send", lambda data: broken_conn.move(State.START_OK))  # a bug
    with caplog.at_level(logging.ERROR, logger="zbroker.wires.amqp"):
        wire.tick(clock.advance(1.1))  # heartbeats are due on both
    assert "RUNNING -> START_OK is not a legal transition" in caplog.text
    assert broken.closed and broken.key not in broker.connections
    assert not bystander.closed and bystander.key in broker.connections
    bystander.pump()
    assert bystander.received  # its heartbeat went out


def test_an_illegal_transition_while_encoding_drops_that_connection(caplog) -> None:  # noqa: ANN001
    broker, wire, clock = make()
    peer = AmqpPeer(wire, clock)
    peer.send_bytes(PROTOCOL_HEADER)  # in the handshake: a close-ok cannot be answered yet
    broker.outbox.put(peer.key, (M.CONNECTION_CLOSE_OK,))
    with caplog.at_level(logging.ERROR, logger="zbroker.wires.amqp"):
        peer.pump()
    assert "START_OK -> CLOSE_WAIT is not a legal transition" in caplog.text
    assert peer.closed
