"""One body of tests run against every MessageStore: what is committed is what a reopened
store gives back."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest
import zmq

from zbroker.storage import DiskStore, MemoryState, MemoryStore, MessageStore, StoreError

# A factory returns a function that opens the store "again" (a restart) each time it is called.
Reopen = Callable[[], MessageStore]


@pytest.fixture(params=["memory", "disk"])
def reopen(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Reopen]:
    opened: list[MessageStore] = []
    state = MemoryState()

    def _reopen() -> MessageStore:
        for store in opened:  # a restart: the previous incarnation is gone
            store.close()
        opened.clear()
        store = MemoryStore(state) if request.param == "memory" else DiskStore(tmp_path, segment_bytes=4096)
        opened.append(store)
        return store

    yield _reopen
    for store in opened:
        store.close()


def live(store: MessageStore) -> dict[int, list[tuple[int, bool]]]:
    return {qid: [(m.seq, m.redelivered) for m in msgs] for qid, msgs in store.open().queues.items()}


def test_new_store_is_empty(reopen: Reopen) -> None:
    recovered = reopen().open()
    assert (recovered.topology, recovered.queues, recovered.max_seq) == (None, {}, 0)


def test_append_read_round_trip_keeps_everything(reopen: Reopen) -> None:
    store = reopen()
    store.open()
    props = {"delivery_mode": 2, "headers": {"k": [1, "two", None]}, "correlation_id": "c"}
    loc = store.append(1, [5], "ex", "a.b", props, b"\x00body\xff")
    big = store.append(2, [5], "", "q", {}, zmq.Frame(b"z" * 100_000))
    assert store.read(loc)[:4] == ("ex", "a.b", props, b"\x00body\xff")  # before commit too
    store.commit()
    assert bytes(store.read(big)[3]) == b"z" * 100_000
    store = reopen()
    recovered = store.open()
    assert [m.seq for m in recovered.queues[5]] == [1, 2]
    assert store.read(recovered.queues[5][0].location)[:4] == ("ex", "a.b", props, b"\x00body\xff")
    assert recovered.max_seq == 2


def test_removed_messages_do_not_come_back(reopen: Reopen) -> None:
    store = reopen()
    store.open()
    locs = [store.append(seq, [1], "", "q", {}, b"m%d" % seq) for seq in (1, 2, 3)]
    store.remove(1, 2, locs[1])
    store.commit()
    assert live(reopen()) == {1: [(1, False), (3, False)]}


def test_a_seq_named_by_a_surviving_removal_is_not_handed_out_again(reopen: Reopen) -> None:
    """The disk store deletes a segment once its messages are removed, while the removal
    records live on in a later one: the recovered ``max_seq`` still covers them, so a
    message published after the restart does not share a seq with one and vanish at the
    next recovery."""
    store = reopen()
    store.open()
    locs = [store.append(seq, [1], "", "q", {}, b"x" * 5000) for seq in (1, 2)]  # a segment each
    store.commit()
    for seq, loc in zip((1, 2), locs):
        store.remove(1, seq, loc)  # (in a third segment: the first two go)
    store.commit()
    store = reopen()
    seq = store.open().max_seq + 1
    assert seq == 3
    store.append(seq, [1], "", "q", {}, b"after the restart")
    store.commit()
    assert live(reopen()) == {1: [(3, False)]}


def test_message_in_two_queues_lives_until_both_remove_it(reopen: Reopen) -> None:
    store = reopen()
    store.open()
    loc = store.append(1, [1, 2], "fan", "", {}, b"x")
    store.remove(1, 1, loc)
    store.commit()
    store = reopen()
    recovered = store.open().queues
    assert list(recovered) == [2] and [m.seq for m in recovered[2]] == [1]
    assert store.read(recovered[2][0].location)[3] == b"x"


def test_delivered_marks_come_back_as_redelivered(reopen: Reopen) -> None:
    store = reopen()
    store.open()
    for seq in (1, 2, 3):
        store.append(seq, [7], "", "q", {}, b"m")
    store.delivered(7, 2)
    store.commit()
    assert live(reopen()) == {7: [(1, True), (2, True), (3, False)]}


def test_dropped_queue_loses_all_its_messages(reopen: Reopen) -> None:
    store = reopen()
    store.open()
    a = store.append(1, [1, 2], "", "q", {}, b"a")
    store.append(2, [1], "", "q", {}, b"b")
    store.delivered(1, 2)
    store.drop_queue(1, [a])
    store.commit()
    assert live(reopen()) == {2: [(1, False)]}


def test_topology_snapshot_replaced_whole(reopen: Reopen) -> None:
    store = reopen()
    store.open()
    store.save_topology({"format": 1, "queues": [["a", 1, False, {}]]})
    store.commit()
    store.save_topology({"format": 1, "queues": []})
    store.commit()
    assert reopen().open().topology == {"format": 1, "queues": []}


def test_sequence_numbers_survive_everything_being_removed(reopen: Reopen) -> None:
    store = reopen()
    store.open()
    loc = store.append(41, [1], "", "q", {}, b"x")
    store.remove(1, 41, loc)
    store.commit()
    assert reopen().open().max_seq in (0, 41)  # never above what was appended


def test_many_messages_across_segments_keep_order(reopen: Reopen) -> None:
    store = reopen()
    store.open()
    locs = {seq: store.append(seq, [3], "", "q", {}, bytes([seq % 256]) * 300) for seq in range(1, 201)}
    for seq in range(1, 151):  # the first segments become dead
        store.remove(3, seq, locs[seq])
    store.commit()
    store = reopen()
    recovered = store.open().queues[3]
    assert [m.seq for m in recovered] == list(range(151, 201))
    assert all(store.read(m.location)[3] == bytes([m.seq % 256]) * 300 for m in recovered)


# -- disk store only ------------------------------------------------------------------

def test_disk_store_deletes_dead_segments(tmp_path: Path) -> None:
    store = DiskStore(tmp_path, segment_bytes=4096)
    store.open()
    locs = [store.append(seq, [1], "", "q", {}, b"x" * 500) for seq in range(1, 61)]
    store.commit()
    before = len(list((tmp_path / "journal").glob("*.seg")))
    for seq, loc in enumerate(locs, 1):
        store.remove(1, seq, loc)
    store.commit()
    after = len(list((tmp_path / "journal").glob("*.seg")))
    store.close()
    assert before >= 5 and after == 1


def test_second_disk_store_on_one_directory_is_refused(tmp_path: Path) -> None:
    first = DiskStore(tmp_path)
    first.open()
    with pytest.raises(StoreError, match="in use by another zbroker"):
        DiskStore(tmp_path).open()
    first.close()
    second = DiskStore(tmp_path)  # the lock goes with the first store
    second.open()
    second.close()


def test_transient_records_are_readable_but_never_recovered(reopen: Reopen) -> None:
    store = reopen()
    store.open()
    loc = store.append(1, [4], "", "q", {"x": 1}, b"paged only", persistent=False)
    store.append(2, [4], "", "q", {}, b"kept")
    store.commit()
    assert store.read(loc)[:4] == ("", "q", {"x": 1}, b"paged only")
    assert live(reopen()) == {4: [(2, False)]}


def test_disk_store_refuses_another_format(tmp_path: Path) -> None:
    store = DiskStore(tmp_path)
    store.open()
    store.close()
    assert (tmp_path / "format").read_text().strip() == "zbroker-journal 1"
    (tmp_path / "format").write_text("zbroker-journal 99\n")
    with pytest.raises(StoreError, match="format 'zbroker-journal 99'"):
        DiskStore(tmp_path).open()
    (tmp_path / "format").write_text("zbroker-journal 1\n")
    again = DiskStore(tmp_path)
    again.open()  # the refused attempt left the lock free
    again.close()
