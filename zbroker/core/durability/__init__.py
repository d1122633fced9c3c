"""Durability: what survives a restart, and how it comes back.

What lives here: the bridge between the broker and its ``MessageStore``
(``persistence.py``: which messages are written, when they are committed, recovery),
each durable queue's journal of moves (``journal.py``), the topology snapshot
(``snapshot.py``) and paging of long queues to the store (``paging.py``).

Rules of this package:
- A message is confirmed to its publisher only after the store has made it durable.
- A message leaves the store only after it has left every queue (and been
  dead-lettered first where it is dead-lettered).
- Recovery rebuilds the same topology and the same queue order the broker had.
"""
