"""The contract every stream log meets (``core/messaging/stream_logs.py``'s ``StreamLog``
protocol, rules 1-6), run against both: the in-memory log of the pure core and the log
on disk (``storage/stream_log.py``). What a stream queue relies on, and nothing of how
either keeps its bytes."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from zbroker.core.messaging.stream_logs import MemoryStreamLog
from zbroker.storage.stream_log import StreamLog

Opener = Callable[..., Any]


@pytest.fixture(params=["memory", "disk"])
def open_log(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    def opener(max_segment_bytes: int = 500_000_000) -> Any:
        if request.param == "memory":
            return MemoryStreamLog(max_segment_bytes)
        return StreamLog.open(tmp_path / "s", max_segment_bytes=max_segment_bytes)
    return opener


def entries(start: int, count: int, value: str | None = None) -> list[tuple[bytes, str | None]]:
    return [(b"entry-%06d" % n, value) for n in range(start, start + count)]


def read_from(log: Any, offset: int, size: int = 3) -> list[tuple[int, bytes, str | None]]:
    reader, out = log.reader(offset), []
    while got := reader.read(size):
        out += got
    return out


def test_offsets_are_dense_from_zero_and_each_append_is_a_chunk(open_log: Opener) -> None:
    log = open_log()
    assert (log.first_offset, log.next_offset, log.last_chunk_offset) == (0, 0, 0)
    assert log.append(entries(0, 3), 1000) == 0
    assert log.add(entries(3, 2), 1001) == 3
    assert log.append(entries(5, 4), 1002) == 5
    assert (log.first_offset, log.next_offset, log.last_chunk_offset) == (0, 9, 5)
    assert [(o, e) for o, e, _ in read_from(log, 0)] == [(n, b"entry-%06d" % n) for n in range(9)]
    log.close()


def test_a_reader_starts_anywhere_and_one_past_the_end_waits_for_more(open_log: Opener) -> None:
    log = open_log()
    log.append(entries(0, 5, "a"), 1000)
    assert [o for o, _, _ in read_from(log, 3)] == [3, 4]
    assert read_from(log, -7)[0][0] == 0  # (before the first: from the first)
    waiting = log.reader(5)
    assert waiting.read(10) == []
    log.add(entries(5, 2), 1001)  # readable at once, synced or not
    assert [(o, f) for o, _, f in waiting.read(10)] == [(5, None), (6, None)]
    log.close()


def test_a_timestamp_names_the_first_chunk_written_at_or_after_it(open_log: Opener) -> None:
    log = open_log()
    for n, ts in enumerate((1000, 2000, 3000)):
        log.append(entries(n * 2, 2), ts)
    assert [log.offset_for_timestamp(ts) for ts in (0, 1000, 1500, 3000, 3001)] == [0, 0, 2, 4, 6]
    log.close()


def test_retention_drops_whole_segments_from_the_front_never_the_newest(open_log: Opener) -> None:
    log = open_log(max_segment_bytes=100)
    for n in range(10):
        log.append(entries(n * 3, 3), 1000 + n)
    segments = log.segment_count
    assert segments > 2
    log.set_retention(1, None)  # (any limit below one segment keeps only the newest)
    first = log.apply_retention(5000)
    assert first == log.first_offset > 0 and log.segment_count == 1 and log.next_offset == 30
    assert [o for o, _, _ in read_from(log, 0)] == list(range(first, 30))
    log.set_retention(None, 1.0)  # by age: the newest segment stays however old
    assert log.apply_retention(10**9) == first and log.segment_count == 1
    log.close()


def test_age_retention_drops_segments_whose_newest_chunk_is_too_old(open_log: Opener) -> None:
    log = open_log(max_segment_bytes=100)
    for n in range(6):
        log.append(entries(n * 3, 3), 1000 * (n + 1))
    before = log.segment_count
    log.set_retention(None, 2.5)  # at 7000 ms: what is older than 4500 ms goes
    first = log.apply_retention(7000)
    assert log.segment_count < before
    assert log.offset_for_timestamp(4500) >= first and read_from(log, first)[0][0] == first
    log.close()


def test_tracking_keeps_the_highest_offset_per_name(open_log: Opener) -> None:
    log = open_log()
    assert log.tracked("a") is None
    log.track("a", 5)
    log.track("a", 2)
    log.track("b", 0)
    log.sync()
    assert (log.tracked("a"), log.tracked("b"), log.tracked("c")) == (5, 0, None)
    log.close()


def test_bytes_and_segments_grow_with_what_is_written(open_log: Opener) -> None:
    log = open_log(max_segment_bytes=100)
    empty = log.bytes
    log.append(entries(0, 3), 1000)
    assert log.bytes > empty and log.segment_count == 1
    for n in range(1, 6):
        log.append(entries(n * 3, 3), 1000)
    assert log.segment_count > 1
    log.delete()
