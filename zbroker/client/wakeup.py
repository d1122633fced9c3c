"""The descriptor by which another thread wakes a connection's socket wait
(``add_callback_threadsafe``).

Rules:
- One descriptor where the system has eventfd (Linux), a pipe's two elsewhere: a process
  holding many connections spends one descriptor per connection on this, not two.
- ``wake`` never blocks: a full pipe, or a counter at its maximum, means a wake-up is
  pending anyway. ``clear`` takes every pending wake-up. ``close`` closes each
  descriptor once, however often it is called (a descriptor number closed twice may by
  then be another file's).
"""
from __future__ import annotations

import os
import sys


class Wakeup:
    def __init__(self) -> None:
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
