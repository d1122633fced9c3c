"""The client's wake-up descriptor (``zbroker/client/wakeup.py``)."""
from __future__ import annotations

import os
import select
import sys

import pytest

from zbroker.client.wakeup import Wakeup


def readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


def test_a_wake_makes_it_readable_until_cleared_however_many_came() -> None:
    wakeup = Wakeup()
    try:
        assert not readable(wakeup.fd)
        for _ in range(100_000):  # (more than a pipe holds: the rest are pending anyway)
            wakeup.wake()
        assert readable(wakeup.fd)
        wakeup.clear()
        assert not readable(wakeup.fd)
        wakeup.clear()  # nothing pending: returns at once
    finally:
        wakeup.close()


@pytest.mark.skipif(not hasattr(os, "eventfd") or sys.platform != "linux",
                    reason="one descriptor where the system has eventfd")
def test_it_takes_one_descriptor_and_closing_twice_closes_it_once() -> None:
    before = len(os.listdir("/proc/self/fd"))  # (each listing counts its own directory too)
    wakeup = Wakeup()
    assert len(os.listdir("/proc/self/fd")) - before == 1
    fd = wakeup.fd
    wakeup.close()
    reused = os.open(os.devnull, os.O_RDONLY)  # may get the same number
    try:
        wakeup.close()  # must not close the file that has the number now
        os.fstat(reused)
    finally:
        os.close(reused)
    assert wakeup.fd == -1 and fd != -1
    wakeup.wake()  # closed: nobody waits, nothing raised
