"""How the broker process sets CPython's cyclic garbage collector.

Rules:
- Reference counting frees what the broker makes: messages, commands and events hold no
  cycles. The cyclic collector is there for the rare cycle (an exception's traceback, a
  closed connection's objects), and it still runs, every generation of it.
- Its cost grows with the live objects it tracks, and every queued message is one (a
  compiled class is tracked like any). With CPython's defaults (a young collection every
  700 new container objects, a full one each time the tracked heap grows by a quarter), a
  broker filling a queue spent a fifth of its CPU in the collector (``perf`` of ``zbroker
  serve`` under a publisher, 300,000 messages queued: ``gc_collect_main``,
  ``visit_decref`` and ``visit_reachable``, 20% of its samples).
- So, before the broker is built: what the imports made (modules, classes, functions,
  tables) is frozen, never scanned again, and a young collection waits for
  ``YOUNG_THRESHOLD`` new objects, by when most of a pass's commands, events and
  delivered messages are gone and cost the collector nothing.
- Nothing the broker itself makes is frozen: a frozen object in a cycle would never be
  freed, and a queue recovered at start and deleted later must be.
"""
from __future__ import annotations

import gc

#: New container objects between young collections (CPython's default: 700).
YOUNG_THRESHOLD = 50_000
#: Young collections per middle one, middle ones per full one (CPython's: 10 and 10).
OLDER_THRESHOLDS = (10, 10)


def tune_for_serving() -> None:
    """Freeze what the imports made and space young collections out (the module's rules).
    Called once, before the broker and its store are built."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
