"""What the broker keeps in its ``MessageStore``, and when it is made durable.

Rules of this module:
1. A persistent message (``delivery_mode`` 2) routed to durable queues is appended to
   the store once, with the ids of every durable queue it reached, and its publish time
   (so a recovered message expires when it would have). A quorum queue keeps every
   message it gets, persistent or not, as RabbitMQ's quorum queues do.
2. The wire's loop calls ``Broker.commit`` once per pass, before sending anything; it
   saves the durable topology if it changed and commits the store, and only then are
   publisher confirms released (``confirms.py``): a confirm, a declare-ok or a delivery
   is never sent for state that is not yet on disk.
3. A failed write (disk full, I/O error) nacks the publishes that needed it, never acks
   them; the broker logs one line per outage and keeps serving from memory.
4. A message a queue gives up is dead-lettered *before* it is removed from the store:
   the copy's append precedes the original's removal in the journal, so a crash
   between the two keeps both (at least once), never neither.
5. Recovery rebuilds the durable topology, then each durable queue's messages: the head
   window in memory, the rest paged (``queues.PAGE_AFTER``), each with its expiry;
   last, the parameter components are told of their parameters (``parameters.py``).
6. Compaction: when the store asks, the broker says which queues still hold which
   locations (queued, paged or delivered and unacked); moved records are re-pointed.
7. A delayed exchange's hold (``messaging/delayed.py``) is journaled, recovered and
   compacted around as a durable queue is, under its own store id.
8. A stream keeps its messages in its own log (``messaging/stream.py``), not the store:
   each log written to in a pass (its stream marks it in ``Counts.written_logs``) is
   synced at the commit, before the pass's confirms leave; a log not written costs the
   pass nothing. A log that cannot be synced nacks every confirm of the pass (which publish
   went to which stream is not tracked: a publisher may be told to send again a
   message that was safe, never the other way round).
"""
from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

from zbroker.core.durability import snapshot
from zbroker.core.messaging.confirms import Confirms
from zbroker.core.messaging.consumers import Unacked
from zbroker.core.messaging.message import Message
from zbroker.core.messaging import classic as paging_rules
from zbroker.core.messaging.queue_type import QueueType
from zbroker.storage.store import NO_TTL, MessageStore, Recovered, RecoveredQueue

if TYPE_CHECKING:
    from zbroker.core.messaging.session import Channel
    from zbroker.core.access.vhosts import VirtualHosts
    from zbroker.core.parameters import Parameters

log = logging.getLogger(__name__)

PERSISTENT = 2


class Durability:
    def __init__(self, store: MessageStore, vhosts: "VirtualHosts", confirms: Confirms,
                 unacked: Callable[[], Iterable[Unacked]], parameters: "Parameters | None" = None) -> None:
        self.store = store
        self.vhosts = vhosts
        #: The global parameters saved with the topology, and the components told of
        #: the parameters recovered (``parameters.py``).
        self.parameters = parameters
        self.confirms = confirms
        self._unacked = unacked
        self._saved_changes = 0
        self.failing = False

    # -- recovery (rule 5) -----------------------------------------------------------

    def _changes(self) -> int:
        """Changes to what the snapshot holds: the vhosts' durable topology, the users and
        the parameters."""
        return (self.vhosts.durable_changes + self.vhosts.users.changes
                + (self.parameters.changes if self.parameters is not None else 0))

    def recover(self, recovered: Recovered, now: float) -> int:
        """Rebuild what the store held; returns the highest publish seq it had seen."""
        by_id: dict[int, QueueType] = {}
        if recovered.topology is not None:
            by_id = snapshot.restore(self.vhosts, recovered.topology, self.parameters)
        self._saved_changes = self._changes()
        for queue_id, stored in recovered.queues.items():
            queue = by_id.get(queue_id)
            if queue is None:  # deleted before the crash, after its last snapshot
                self.store.drop_queue(queue_id, stored.locations)
                continue
            self._recover_messages(queue, stored, now)
        if recovered.queues:
            log.info("recovered %d durable queue(s), %d persistent message(s)", len(by_id),
                     sum(q.message_count for q in by_id.values()))
        if self.parameters is not None:  # (their components start their work now)
            self.parameters.recovered()
        return recovered.max_seq

    def _recover_messages(self, queue: QueueType, stored: RecoveredQueue, now: float) -> None:
        """The head window (and every redelivered message, all at the front) in memory,
        the rest as the paged tail: the same bound as live paging."""
        journal = queue.journal
        assert journal is not None  # recovered queues are durable
        resident = resident_bytes = 0
        paging = False
        delivered_up_to = stored.delivered_up_to
        queue_ttl = queue.settings.message_ttl
        for i, seq in enumerate(stored.seqs):
            location, size = stored.locations[i], stored.sizes[i]
            published, ttl = stored.published[i], stored.ttls[i]
            if math.isnan(published):  # written before publish times were kept
                published = now
            if queue_ttl is not None and (ttl == NO_TTL or queue_ttl < ttl):
                ttl = queue_ttl
            expires = None if ttl == NO_TTL else published + ttl / 1000.0
            redelivered = seq <= delivered_up_to
            message = None
            if not self.store.pages or redelivered or (
                    not paging and resident < paging_rules.PAGE_AFTER
                    and resident_bytes < paging_rules.PAGE_AFTER_BYTES):
                message = journal.load(Message.paged(seq, location, size, redelivered))
                resident += 1
                resident_bytes += size
            else:
                paging = True
            queue.append_recovered(message, seq, location, size, stored.priorities[i], expires)

    # -- writing (rules 1-3) -----------------------------------------------------------

    def store_message(self, message: Message, queues: Iterable[QueueType],
                      confirming: "Channel | None" = None) -> None:
        """Journal a persistent message for the durable queues it reached.

        ``confirming`` is the publisher's confirm channel, if any: it learns of a failure.
        """
        queue_ids = [q.journal.queue_id for q in queues if q.persists and q.journal is not None]
        if not queue_ids:
            return
        # Transient queues it also reached share the record (and count in it), so that
        # a message's location always names a record of every queue holding it.
        queue_ids += [q.journal.queue_id for q in queues if not q.persists and q.journal is not None]
        if confirming is not None:
            self.confirms.awaits_disk(confirming)
        try:
            message.location = self.store.append(message.seq, queue_ids, message.exchange,
                                                 message.routing_key, message.properties, message.body,
                                                 published_at=message.published_at)
        except OSError as exc:  # kept in memory; a confirming publisher gets a nack
            log.error("cannot store a persistent message: %s", exc)
            if confirming is not None:
                self.confirms.store_failed(confirming)

    @staticmethod
    def forget(queue: QueueType, message: Message) -> None:
        """The message left ``queue`` for good: free its place in the store."""
        journal = queue.journal
        if journal is not None and message.location is not None:
            journal.remove(message.seq, message.location)

    def commit(self) -> None:
        """Rule 2; then compaction, while the disk accepts writes."""
        changes = self._changes()
        if changes != self._saved_changes:
            self.store.save_topology(snapshot.snapshot(self.vhosts, self.parameters))
            self._saved_changes = changes
        self._sync_logs()
        try:
            self.store.commit()
        except OSError as exc:
            if not self.failing:  # once per outage, not once per loop pass
                log.error("store commit failed: %s; publishes waiting for confirms are nacked "
                          "until it works again", exc)
            self.failing = True
            self.confirms.store_failed()
        else:
            if self.failing:
                log.warning("store commits work again")
            self.failing = False
        if self.confirms:
            self.confirms.flush()
        self.confirms.committed()
        if self.failing:
            return  # compaction writes too: not while the disk refuses
        try:
            moved = self.store.compact(self._held)
        except OSError as exc:
            log.error("store compaction failed: %s", exc)
            return
        if moved:
            self._relocate(moved)

    @property
    def logs_need_sync(self) -> bool:
        """A stream log was written to since the last commit (rule 8)."""
        return bool(self.vhosts.counts.written_logs)

    def _sync_logs(self) -> None:
        """Rule 8: the logs written to since the last commit (``Counts.written_logs``)."""
        written = self.vhosts.counts.written_logs
        if not written:
            return
        logs = list(written)
        written.clear()
        for stream_log in logs:
            if stream_log.needs_sync:
                try:
                    stream_log.sync()
                except OSError as exc:
                    log.error("a stream's log cannot be synced: %s; this pass's confirms are nacked", exc)
                    self.confirms.store_failed(every=True)

    def close_logs(self) -> None:
        for stream_log in self.vhosts.counts.logs.values():
            stream_log.close()

    # -- compaction (rule 6) ------------------------------------------------------------

    def _journaled(self) -> Iterator[QueueType]:
        """Every queue, and every delayed exchange's hold (rule 7)."""
        yield from self.vhosts.queues()
        for topology in self.vhosts.topologies.values():
            yield from topology.holds()

    def _references(self) -> Iterator[tuple[int, int, Message | None]]:
        """(queue id, location, message or None if paged) of everything the store holds for us."""
        for queue in self._journaled():
            if queue.journal is not None:
                qid = queue.journal.queue_id
                for message in queue.resident():
                    if message.location is not None:
                        yield qid, message.location, message
                for _, location in queue.paged():
                    yield qid, location, None
        for entry in self._unacked():
            if entry.queue.journal is not None and entry.message.location is not None:
                yield entry.queue.journal.queue_id, entry.message.location, entry.message

    def _held(self, selects: Callable[[int], bool]) -> dict[int, list[int]]:
        held: dict[int, set[int]] = {}
        for qid, location, _ in self._references():
            if selects(location):
                held.setdefault(location, set()).add(qid)
        return {location: sorted(qids) for location, qids in held.items()}

    def _relocate(self, moved: dict[int, int]) -> None:
        """A compaction copied records: point messages and paged entries at the copies."""
        # A message object can be referenced from several places: move each one once.
        messages = {id(m): (m, moved[loc]) for _, loc, m in self._references() if m is not None and loc in moved}
        for message, location in messages.values():
            message.location = location
        for queue in self.vhosts.queues():
            queue.relocate(moved)
