"""The client's wake-up descriptor (``zbroker/client/wakeup.py``)."""
from __future__ import annotations

import os
import select
import subprocess
import sys
from pathlib import Path

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
    # Counted in a fresh process: here, sockets that earlier tests closed are freed by
    # libzmq's threads at their own pace, and may free a descriptor between the counts.
    count = ("import os; from zbroker.client.wakeup import Wakeup; before = len(os.listdir('/proc/self/fd')); "
             "w = Wakeup(); print(len(os.listdir('/proc/self/fd')) - before)")
    out = subprocess.run([sys.executable, "-c", count], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "1", out.stderr
    wakeup = Wakeup()
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


def test_each_thread_has_one_wake_up_released_with_the_thread() -> None:
    import gc
    import threading
    import weakref

    from zbroker.client.wakeup import for_this_thread
    mine = for_this_thread()
    assert for_this_thread() is mine and mine.fd >= 0
    seen: list[weakref.ref] = []
    worker = threading.Thread(target=lambda: seen.append(weakref.ref(for_this_thread())))
    worker.start()
    worker.join(10)
    gc.collect()
    assert seen and seen[0]() is None  # (the thread's locals went with it)


def test_a_wake_up_nothing_refers_to_closes_its_descriptor() -> None:
    import gc
    wakeup = Wakeup()
    fd = wakeup.fd
    del wakeup
    gc.collect()
    with pytest.raises(OSError):
        os.fstat(fd)


def test_a_forked_child_makes_its_own_wake_up() -> None:
    from zbroker.client import wakeup as module
    inherited = module.for_this_thread()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: its first wait makes its own wake-up
        try:
            own = module.for_this_thread()
            os.write(write, b"ok" if own is not inherited and own.fd != inherited.fd else b"no")
        finally:
            os._exit(0)
    os.close(write)
    try:
        assert os.read(read, 2) == b"ok"
    finally:
        os.close(read)
        os.waitpid(child, 0)
    assert module.for_this_thread() is inherited  # the parent keeps its own
