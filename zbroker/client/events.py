"""When the program's callbacks run: a connection's queued events, its timers, and the
callbacks other threads hand it.

Rules:
- Nothing here runs a callback except ``dispatch``, and the connection calls it only
  from ``process_data_events`` (and what is built on it), as pika does.
- One round runs, in order: the thread-safe callbacks queued, the timers due, then the
  events present when the round began; events that callbacks queue wait for the next
  round.
- An event is ``(target, kind, payload)`` (``link.py``): ``target.dispatch_event(kind,
  payload)`` runs it and says whether a callback ran. ``put_call`` queues a plain call
  (the connection's blocked/unblocked callbacks) in the same order as the rest.
- ``add_threadsafe`` is the only method other threads may call (a deque's append is
  atomic); the connection wakes its socket wait itself.
"""
from __future__ import annotations

import heapq
import itertools
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from zbroker.client.link import Event, EventTarget


class Events:
    """A connection's event queue, timers and thread-safe callbacks (module rules)."""

    def __init__(self) -> None:
        self.queue: deque[Event] = deque()
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._timer_ids = itertools.count(1)
        self._cancelled_timers: set[int] = set()
        self._threadsafe: deque[Callable[[], None]] = deque()
        #: Dispatch rounds in progress (a callback may call process_data_events).
        self.dispatching = 0

    def put(self, target: EventTarget, kind: str, payload: Any) -> None:
        self.queue.append((target, kind, payload))

    def put_call(self, callback: Callable[..., None], *args: Any) -> None:
        """Queue ``callback(*args)`` as an event."""
        self.queue.append((_CALL, "call", (callback, args)))

    def take(self, match: Callable[[Event], bool]) -> list[Event]:
        """Remove the events ``match`` accepts and return them, in order."""
        taken = [event for event in self.queue if match(event)]
        if taken:
            kept = [event for event in self.queue if not match(event)]
            self.queue.clear()
            self.queue.extend(kept)
        return taken

    def add_threadsafe(self, callback: Callable[[], None]) -> None:
        self._threadsafe.append(callback)

    def has_threadsafe(self) -> bool:
        return bool(self._threadsafe)

    def call_later(self, delay: float, callback: Callable[[], None]) -> int:
        timer_id = next(self._timer_ids)
        heapq.heappush(self._timers, (time.monotonic() + delay, timer_id, callback))
        return timer_id

    def remove_timeout(self, timeout_id: int) -> None:
        if any(t[1] == timeout_id for t in self._timers):
            self._cancelled_timers.add(timeout_id)

    def has_ready(self) -> bool:
        """Whether a dispatch round now would have something to run."""
        return bool(self.queue or self._threadsafe or
                    (self._timers and self._timers[0][0] <= time.monotonic()))

    def next_timer_in(self) -> float | None:
        """Seconds until the next timer is due (None: no timer)."""
        while self._timers and self._timers[0][1] in self._cancelled_timers:
            self._cancelled_timers.discard(heapq.heappop(self._timers)[1])
        if not self._timers:
            return None
        return max(0.0, self._timers[0][0] - time.monotonic())

    def dispatch(self) -> int:
        """Run one round of callbacks; returns how many ran."""
        ran = 0
        self.dispatching += 1
        try:
            while self._threadsafe:
                self._threadsafe.popleft()()
                ran += 1
            now = time.monotonic() if self._timers else 0.0
            while self._timers and self._timers[0][0] <= now:
                _, timer_id, callback = heapq.heappop(self._timers)
                if timer_id in self._cancelled_timers:
                    self._cancelled_timers.discard(timer_id)
                    continue
                callback()
                ran += 1
            # Only the events present now: callbacks may queue more, handled next round.
            queue = self.queue
            for _ in range(len(queue)):
                if not queue:
                    break
                target, kind, payload = queue.popleft()
                if target.dispatch_event(kind, payload):
                    ran += 1
        finally:
            self.dispatching -= 1
        return ran


class _Call:
    """The target of ``put_call``'s events."""

    def dispatch_event(self, kind: str, payload: Any) -> bool:
        callback, args = payload
        callback(*args)
        return True


_CALL = _Call()
