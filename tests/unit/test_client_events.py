"""When a connection's callbacks run (``zbroker/client/events.py``): one round runs the
thread-safe callbacks, then the timers due, then the events queued before it began."""
from __future__ import annotations

from typing import Any

from zbroker.client.events import Events


class Target:
    """An event target that records what it ran and may queue more while running."""

    def __init__(self, events: Events, log: list[str]) -> None:
        self.events = events
        self.log = log

    def dispatch_event(self, kind: str, payload: Any) -> bool:
        self.log.append(f"{kind}:{payload}")
        if payload == "requeue":
            self.events.put(self, kind, "later")
        return payload != "ignored"


def test_a_round_runs_threadsafe_then_timers_then_events_in_order() -> None:
    events, log = Events(), []
    target = Target(events, log)
    events.put(target, "deliver", 1)
    events.put_call(log.append, "blocked")
    events.call_later(0, lambda: log.append("timer"))
    events.add_threadsafe(lambda: log.append("threadsafe"))
    assert events.has_ready()
    assert events.dispatch() == 4
    assert log == ["threadsafe", "timer", "deliver:1", "blocked"]
    assert not events.has_ready()


def test_events_queued_by_a_callback_wait_for_the_next_round() -> None:
    events, log = Events(), []
    target = Target(events, log)
    events.put(target, "deliver", "requeue")
    assert events.dispatch() == 1
    assert log == ["deliver:requeue"]
    assert events.dispatch() == 1
    assert log == ["deliver:requeue", "deliver:later"]


def test_an_event_no_callback_ran_for_is_not_counted() -> None:
    events, log = Events(), []
    events.put(Target(events, log), "deliver", "ignored")
    assert events.dispatch() == 0
    assert log == ["deliver:ignored"]


def test_a_removed_timer_never_runs_and_is_not_waited_for() -> None:
    events, log = Events(), []
    kept = events.call_later(3600, lambda: log.append("kept"))
    removed = events.call_later(0, lambda: log.append("removed"))
    events.remove_timeout(removed)
    assert 3500 < (events.next_timer_in() or 0) <= 3600
    assert events.dispatch() == 0
    assert log == []
    events.remove_timeout(kept)
    assert events.next_timer_in() is None


def test_take_removes_the_matching_events_and_keeps_the_order_of_the_rest() -> None:
    events, log = Events(), []
    a, b = Target(events, log), Target(events, log)
    for target, payload in ((a, 1), (b, 2), (a, 3), (b, 4)):
        events.put(target, "deliver", payload)
    assert [p for _, _, p in events.take(lambda e: e[0] is a)] == [1, 3]
    events.dispatch()
    assert log == ["deliver:2", "deliver:4"]
