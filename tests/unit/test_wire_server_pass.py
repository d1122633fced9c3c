"""The server's loop reads the clock once per pass and every call of that pass gets the
same ``now``; the poll after a pass waits for the soonest deadline less the time the
pass took, so a deadline that came during the pass is acted on by the next one.

The loop runs on an in-process ROUTER (no network) with a fake clock, and its polls are
told not to wait: nothing here waits for time to pass."""
from __future__ import annotations

import zmq

import zbroker.server as server_module
from tests.support import patches_internals
from tests.unit.wire import FakeClock
from zbroker.core import Broker
from zbroker.protocol import HEADER, Op, encode
from zbroker.server import PROBE_SWEEP_S, Server

#: Passes at most before a test gives up (each is a poll that does not wait).
MAX_PASSES = 10_000


class FakeTime:
    """``time.time`` and ``time.monotonic`` for the server module: each read moves on a
    millisecond, so two reads never agree by chance; reads are counted."""

    def __init__(self, wall: float = 1_000_000.0, mono: float = 500.0) -> None:
        self.wall, self.mono = wall, mono
        self.wall_reads = self.mono_reads = 0

    def time(self) -> float:
        self.wall_reads += 1
        self.wall += 0.001
        return self.wall

    def monotonic(self) -> float:
        self.mono_reads += 1
        self.mono += 0.001
        return self.mono


@patches_internals
def test_every_call_of_a_pass_gets_the_one_now_read_for_it(monkeypatch) -> None:  # noqa: ANN001
    clock = FakeTime()
    monkeypatch.setattr(server_module, "time", clock)
    context = zmq.Context()
    broker = Broker(now=clock.wall)
    server = Server(broker, f"inproc://pass-test-{id(clock):x}", context=context)
    server.open()
    server._poll_timeout_ms = lambda now, mono: 0  # type: ignore[method-assign]
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.setsockopt(zmq.IDENTITY, b"client")
    dealer.connect(server.endpoint)
    dealer.send_multipart([HEADER, encode(Op.HELLO, None, "/", "guest", "guest", {})])
    calls: list[tuple[str, float]] = []
    passes: list[tuple[float, bool]] = []  # (the pass's now, whether the client is connected)
    for name in ("tick", "commit"):
        real = getattr(broker, name)
        monkeypatch.setattr(broker, name, lambda now, real=real, name=name: (calls.append((name, now)),
                                                                             real(now))[1])
    real_commit = broker.commit

    opened_at: list[float] = []  # when the core says the client's connection opened

    def commit(now: float) -> None:
        real_commit(now)
        passes.append((now, b"client" in broker.connections))
        if passes[-1][1] and not opened_at:
            opened_at.append(broker.connections[b"client"].connected_at)
        if len(passes) >= MAX_PASSES or (len(passes) >= 3 and passes[-3][1]):
            server.should_exit = True

    monkeypatch.setattr(broker, "commit", commit)
    try:
        server.serve_forever()
    finally:
        dealer.close(0)
        context.term()
    assert len(passes) < MAX_PASSES, "the client's HELLO was never read"
    nows = [now for now, _ in passes]
    assert len(set(nows)) == len(nows)  # a new now each pass...
    assert [now for name, now in calls if name == "tick"] == nows  # ...which tick got...
    assert [now for name, now in calls if name == "commit"] == nows  # ...and commit
    opened = next(now for now, connected in passes if connected)
    assert opened_at == [opened]  # the drain got it too
    # One wall-clock read per pass, one before the first poll and one at shutdown.
    assert clock.wall_reads == len(passes) + 2


@patches_internals
def test_a_deadline_that_came_during_the_pass_makes_the_next_poll_return_at_once(monkeypatch) -> None:  # noqa: ANN001
    clock = FakeTime()
    monkeypatch.setattr(server_module, "time", clock)
    broker = Broker(now=FakeClock().now)
    server = Server(broker, "inproc://unused")
    now, mono = 1_000.0, clock.mono
    server._next_sweep = mono + PROBE_SWEEP_S
    server._last_probe = mono
    monkeypatch.setattr(broker, "next_deadline", lambda: now + 0.010)  # due 10 ms after the pass began
    clock.mono = mono + 0.004  # the pass took 5 ms (the read adds one): 5 ms to go
    assert 5 <= server._poll_timeout_ms(now, mono) <= 6
    clock.mono = mono + 0.020  # the pass took 21 ms: the deadline came during it
    assert server._poll_timeout_ms(now, mono) == 0


@patches_internals
def test_the_loops_own_intervals_bound_the_poll_on_the_monotonic_clock(monkeypatch) -> None:  # noqa: ANN001
    clock = FakeTime()
    monkeypatch.setattr(server_module, "time", clock)
    broker = Broker(now=FakeClock().now)
    server = Server(broker, "inproc://unused")
    now, mono = 1_000.0, clock.mono
    monkeypatch.setattr(broker, "next_deadline", lambda: None)
    server._next_sweep = mono + 2.0
    server._last_probe = mono
    assert 1998 <= server._poll_timeout_ms(now, mono) <= 2000  # 2 s less the 1 ms the read took
