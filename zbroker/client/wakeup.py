"""The descriptor by which another thread wakes a connection's socket wait
(``add_callback_threadsafe``).

Rules:
- One per thread, not one per connection (``for_this_thread``): a thread waits on one
  connection at a time, so the connections it runs can share it. A connection wakes the
  wake-up of the thread that last waited on it, and that thread, before it waits, looks
  for callbacks queued before it made its wake-up the connection's (``_pump``). A wake-up
  meant for another of the thread's connections only ends a wait early: that connection
  finds its callbacks when it is next waited on, as it would have. A forked child makes
  its own (the parent's descriptor is the parent's).
- One descriptor where the system has eventfd (Linux), a pipe's two elsewhere.
- ``wake`` never blocks: a full pipe, or a counter at its maximum, means a wake-up is
  pending anyway. ``clear`` takes every pending wake-up. ``close`` closes each
  descriptor once, however often it is called (a descriptor number closed twice may by
  then be another file's); a wake-up nothing refers to any more closes itself.
"""
from __future__ import annotations

import os
import sys
import threading

#: Forks this process descends through (``for_this_thread`` compares it: a getpid per
#: wait would be a system call).
_forks = 0


class Wakeup:
    def __init__(self) -> None:
        #: Which process made it (``_forks`` when it was made).
        self.generation = _forks
        eventfd = getattr(os, "eventfd", None)
        if eventfd is not None:
            self.fd: int = eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self._write_fd = self.fd
            self._signal = (1).to_bytes(8, sys.byteorder)  # (an eventfd takes a counter)
        else:
            self.fd, self._write_fd = os.pipe()
            os.set_blocking(self.fd, False)
            os.set_blocking(self._write_fd, False)
            self._signal = b"x"

    def wake(self) -> None:
        try:
            os.write(self._write_fd, self._signal)
        except OSError:
            pass  # full (or closed by now): a wake-up is pending, or nobody waits

    def clear(self) -> None:
        try:
            while os.read(self.fd, 512):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        for fd in {self.fd, self._write_fd} - {-1}:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fd = self._write_fd = -1

    def __del__(self) -> None:
        self.close()


_local = threading.local()


def for_this_thread() -> Wakeup:
    """The calling thread's wake-up, made on its first use (and anew in a forked child)."""
    wakeup = getattr(_local, "wakeup", None)
    if wakeup is None or wakeup.generation != _forks:
        wakeup = _local.wakeup = Wakeup()
    return wakeup


def _forked() -> None:
    """In a forked child: the wake-ups it inherited are its parent's to wait on."""
    global _forks
    _forks += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)
