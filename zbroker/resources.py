"""Watching the machine: the broker's memory and the data directory's free disk space.

Rules (RabbitMQ's ``vm_memory_high_watermark`` and ``disk_free_limit``):
- The memory limit is bytes of the broker's resident memory, given as a size ("1GiB",
  "512MB", "2000000000") or as a fraction of the machine's memory ("0.4", RabbitMQ's
  default; the machine's memory is the lower of physical RAM and the cgroup's limit).
  The alarm is on while resident memory is at or above the limit (so 0 blocks every
  publisher, as in RabbitMQ).
- The disk limit is free bytes on the data directory's filesystem ("50MB", RabbitMQ's
  default); the alarm is on while free space is below it. ``--in-memory`` has no disk.
- Checks are cheap (one read of /proc, one statvfs) and run at most every
  ``CHECK_INTERVAL_S``; the server loop asks ``due(now)`` each pass.
- Python keeps freed memory in its allocators; while the memory alarm is on, the monitor
  asks glibc to give free pages back (``malloc_trim``) before each check, so a drained
  queue ends the alarm instead of leaving the resident size high for good.
- Units follow RabbitMQ: kB/MB/GB are powers of 1000, KiB/MiB/GiB powers of 1024.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import re
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_MEMORY_LIMIT = "0.4"
DEFAULT_DISK_FREE_LIMIT = "50MB"
CHECK_INTERVAL_S = 0.1
MIB = 1024 * 1024

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
          "t": 1000**4, "tb": 1000**4, "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def parse_size(text: str) -> int:
    """Bytes in "50MB", "1GiB", "123"; ValueError with the accepted forms otherwise."""
    match = _SIZE.match(text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise ValueError(f"{text!r} is not a size: use bytes or a unit such as 50MB, 512MiB, 2GB, 1GiB")
    return int(float(match.group(1)) * _UNITS[unit])


def machine_memory() -> int:
    """Bytes of memory this process may use: physical RAM, or a lower cgroup limit."""
    total = os.sysconf("SC_PHYS_PAGES") * _PAGE
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            raw = Path(path).read_text().strip()
        except OSError:
            continue
        if raw.isdigit():
            total = min(total, int(raw))
    return total


def memory_limit(text: str) -> int:
    """A ``--memory-limit`` value in bytes: a fraction of the machine's memory, or a size."""
    try:
        fraction = float(text)
    except ValueError:
        return parse_size(text)
    if 0 <= fraction <= 1 and "." in text:
        return int(machine_memory() * fraction)
    if fraction >= 0 and fraction == int(fraction):
        return int(fraction)  # bytes
    raise ValueError(f"{text!r}: a fraction of memory must be in [0, 1], e.g. 0.4")


def resident_bytes() -> int:
    """This process's resident memory (RSS)."""
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * _PAGE


def _malloc_trim() -> object:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


class Monitor:
    """The server's view of its resources; ``check`` returns what each alarm should be."""

    def __init__(self, memory_limit: int, disk_path: Path | None, disk_free_limit: int) -> None:
        self.memory_limit = memory_limit
        self.disk_path = disk_path
        self.disk_free_limit = disk_free_limit
        self.memory_alarm = False
        self.next_check = 0.0
        self._trim = _malloc_trim()

    def due(self, now: float) -> bool:
        return now >= self.next_check

    def check(self, now: float) -> dict[str, tuple[bool, str]]:
        """Measure (``now``: monotonic seconds); per resource, (alarm on, the figures)."""
        self.next_check = now + CHECK_INTERVAL_S
        if self.memory_alarm and self._trim is not None:
            self._trim(0)  # type: ignore[operator]
        rss = resident_bytes()
        self.memory_alarm = rss >= self.memory_limit
        state = {"memory": (self.memory_alarm, f"resident {rss / MIB:.1f} MiB, limit "
                                               f"{self.memory_limit / MIB:.1f} MiB")}
        if self.disk_path is not None:
            free = self.disk_free()
            state["disk"] = (free < self.disk_free_limit, f"free {free / MIB:.1f} MiB, limit "
                                                          f"{self.disk_free_limit / MIB:.1f} MiB")
        return state

    def disk_free(self) -> int:
        """Free bytes for an unprivileged writer on the data directory's filesystem."""
        assert self.disk_path is not None
        try:
            st = os.statvfs(self.disk_path)
        except OSError as exc:
            log.error("cannot check free disk space of %s: %s", self.disk_path, exc)
            return 0  # unknown is treated as full: publishers wait rather than lose data
        return st.f_bavail * st.f_frsize
