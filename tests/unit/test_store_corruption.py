"""A torn or corrupt journal tail is found by its checksum and cut off, never delivered."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable

import pytest

from zbroker.storage.compaction import STABLE_CHECKS
from zbroker.storage import DiskStore


def write_three(directory: Path) -> Path:
    store = DiskStore(directory)
    store.open()
    for seq in (1, 2, 3):
        store.append(seq, [1], "", "q", {}, b"message-%d" % seq * 20)
    store.commit()
    store.close()
    return next((directory / "journal").glob("*.seg"))


def record_offsets(directory: Path) -> list[int]:
    store = DiskStore(directory)
    offsets = [m.location & ((1 << 40) - 1) for m in store.open().queues[1]]
    store.close()
    return offsets


def reopen_and_read(directory: Path) -> list[bytes]:
    store = DiskStore(directory)
    try:
        return [store.read(m.location)[3] for m in store.open().queues.get(1, [])]
    finally:
        store.close()


@pytest.mark.parametrize("damage", ["torn", "flipped", "garbage"])
def test_damaged_tail_is_truncated_with_a_log_line(tmp_path: Path, damage: str,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    segment = write_three(tmp_path)
    third = record_offsets(tmp_path)[2]
    fd = os.open(segment, os.O_RDWR)
    try:
        if damage == "torn":  # a crash mid-write: the record's end never made it
            length = int.from_bytes(os.pread(fd, 4, third), "little")
            os.pwrite(fd, bytes(length // 2), third + 8 + length // 2)
        elif damage == "flipped":  # one bit of the body changed
            os.pwrite(fd, bytes([os.pread(fd, 1, third + 30)[0] ^ 0x01]), third + 30)
        else:  # bytes that were never a record, after the last good one
            os.pwrite(fd, b"\xde\xad\xbe\xef" * 8, third)
    finally:
        os.close(fd)
    with caplog.at_level(logging.WARNING, logger="zbroker.storage.disk"):
        bodies = reopen_and_read(tmp_path)
    assert bodies == [b"message-1" * 20, b"message-2" * 20]
    assert any("truncating the journal" in r.getMessage() for r in caplog.records)
    # After the cut the journal is clean: new records land there and survive a restart.
    store = DiskStore(tmp_path)
    store.open()
    store.append(9, [1], "", "q", {}, b"after")
    store.commit()
    store.close()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="zbroker.storage.disk"):
        assert reopen_and_read(tmp_path) == [b"message-1" * 20, b"message-2" * 20, b"after"]
    assert not any("truncating" in r.getMessage() for r in caplog.records)


def test_garbage_in_the_zero_region_is_not_read_as_records(tmp_path: Path) -> None:
    segment = write_three(tmp_path)
    with open(segment, "r+b") as f:
        f.seek(0, os.SEEK_END)
        f.write(os.urandom(4096))
    assert len(reopen_and_read(tmp_path)) == 3


def test_a_full_disk_loses_nothing_already_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Writes fail with ENOSPC for a while: commits raise, nothing moves, and once space
    is back every record lands where its location said it would."""
    store = DiskStore(tmp_path)
    store.open()
    first = store.append(1, [1], "", "q", {}, b"before")
    store.commit()
    real_pwritev = os.pwritev

    def full(*args: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "pwritev", full)
    during = [store.append(seq, [1], "", "q", {}, b"during %d" % seq) for seq in (2, 3)]
    for _ in range(2):
        with pytest.raises(OSError):
            store.commit()
    monkeypatch.setattr(os, "pwritev", real_pwritev)
    store.append(4, [1], "", "q", {}, b"after")
    store.commit()
    assert [store.read(loc)[3] for loc in (first, *during)] == [b"before", b"during 2", b"during 3"]
    store.close()
    assert reopen_and_read(tmp_path) == [b"before", b"during 2", b"during 3", b"after"]


def a_sparse_oldest_segment(directory: Path, keep: tuple[int, ...]) -> tuple[DiskStore, dict[int, int]]:
    """A store of 120 messages over several 4 KiB segments, all removed but ``keep``
    (seq 1 among them pins the oldest segment); returns it with every seq's location."""
    store = DiskStore(directory, segment_bytes=4096)
    store.open()
    locations = {seq: store.append(seq, [1], "", "q", {}, b"%03d" % seq + b"." * 100) for seq in range(1, 121)}
    store.commit()
    for seq in set(locations) - set(keep):
        store.remove(1, seq, locations[seq])
    store.commit()
    return store, locations


def test_a_crash_between_compaction_copy_and_delete_recovers_each_message_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, locations = a_sparse_oldest_segment(tmp_path, keep=(1, 118, 119, 120))
    # The copies are written and synced, then the process dies before the old segment goes.
    monkeypatch.setattr(Path, "unlink", lambda self, missing_ok=False: None)
    moved = {}
    for _ in range(STABLE_CHECKS):  # (a store compacts a segment that stayed sparse that long)
        moved = store.compact(lambda selects: {loc: [1] for seq, loc in locations.items()
                                               if seq in (1, 118, 119, 120) and selects(loc)})
        if moved:
            break
    assert moved and (tmp_path / "journal" / "00000001.seg").exists()
    store._lock.release()
    monkeypatch.undo()
    assert [body[:3] for body in reopen_and_read(tmp_path)] == [b"001", b"118", b"119", b"120"]


def test_a_compaction_whose_sync_fails_keeps_the_old_segment(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The copies of a compaction did not reach the disk (fdatasync failed): the store
    raises, the queues keep their locations in the old segment, and that segment stays
    until they let go of it."""
    store, locations = a_sparse_oldest_segment(tmp_path, keep=(1, 120))
    real_fdatasync, failures = os.fdatasync, []

    def fails_once(fd: int) -> None:
        if not failures:
            failures.append(fd)
            raise OSError(5, "Input/output error")
        real_fdatasync(fd)

    def held(selects: Callable[[int], bool]) -> dict[int, list[int]]:
        return {loc: [1] for seq, loc in locations.items() if seq in (1, 120) and selects(loc)}

    for _ in range(STABLE_CHECKS):
        store.commit()
        monkeypatch.setattr(os, "fdatasync", fails_once)
        try:
            store.compact(held)
        except OSError:
            break
        finally:
            monkeypatch.setattr(os, "fdatasync", real_fdatasync)
    assert failures, "the compaction never ran"
    store.commit()  # the next loop pass: the disk works again
    assert store.read(locations[1])[3][:3] == b"001"  # the old segment is still there
    store.remove(1, 1, locations[1])
    store.commit()
    store.close()
    assert [body[:3] for body in reopen_and_read(tmp_path)] == [b"120"]
