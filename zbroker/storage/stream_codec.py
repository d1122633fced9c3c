"""A stream queue's messages as entries of its log on disk (``stream_log.py``), and where
each stream's log lives in the data directory.

Rules of this module:
1. An entry is ``zbroker/protocol/stream_entries.py``'s (the format the zbroker wire
   also carries to a stream's consumers, so they get entries as the log holds them:
   ``wire_entries``). Decoding gives the core's fields back: ``(exchange, routing key,
   properties, body, published_at)``.
2. It reads a message's attributes and knows nothing else of the core (the core's
   ``stream_logs.EntryCodec`` is the protocol it meets).
3. A stream's log is the directory ``<data dir>/streams/<store id>``. A new stream (not
   one recovered) starts from an empty directory: whatever a crash left there under a
   store id the snapshot never recorded is removed first. After recovery, the
   directories of streams the broker no longer has (deleted just before a crash, or
   left by one) are removed (``remove_unused``).
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Callable, Iterable

from zbroker.protocol import stream_entries
from zbroker.storage.stream_log import MAX_SEGMENT_BYTES, StreamLog

STREAMS_DIR = "streams"
log = logging.getLogger(__name__)


class StreamCodec:
    """Rule 1: a message into an entry's bytes, and back into its fields."""

    #: Its entries are what the zbroker wire's STREAM_DELIVER carries; each decode
    #: builds new tables.
    wire_entries = True
    decodes_new = True

    @staticmethod
    def encode(message: Any) -> bytes:
        return stream_entries.encode(message.exchange, message.routing_key, message.properties,
                                     message.published_at, message.body)

    decode = staticmethod(stream_entries.decode)


CODEC = StreamCodec()


def stream_logs(data_dir: str | Path) -> Callable[[int, Any, bool], tuple[StreamLog, StreamCodec]]:
    """The core's ``Topology(log_for=...)``: a stream's log (rule 3) and this codec, by
    its store id, its settings (a ``QueueSettings``, read by attribute) and whether it
    is recovered."""
    def log_for(store_id: int, settings: Any, recovered: bool) -> tuple[StreamLog, StreamCodec]:
        max_age = settings.max_age
        return open_stream_log(data_dir, store_id, recovered, settings.max_segment_size_bytes,
                               settings.max_length_bytes, None if max_age is None else max_age / 1000), CODEC
    return log_for


def remove_unused(data_dir: str | Path, kept: Iterable[int]) -> list[int]:
    """Rule 3: remove every stream directory whose store id is not in ``kept``; returns
    the ids removed."""
    root = Path(data_dir) / STREAMS_DIR
    keep = {str(store_id) for store_id in kept}
    removed = []
    if root.is_dir():
        for directory in root.iterdir():
            if directory.is_dir() and directory.name not in keep and directory.name.isdigit():
                shutil.rmtree(directory, ignore_errors=True)
                removed.append(int(directory.name))
    if removed:
        log.info("removed the logs of %d stream(s) the broker no longer has: %s", len(removed), sorted(removed))
    return removed


def open_stream_log(data_dir: str | Path, store_id: int, recovered: bool, max_segment_bytes: int | None,
                    max_length_bytes: int | None, max_age_s: float | None) -> StreamLog:
    """Rule 3: the log of the stream with ``store_id``."""
    directory = Path(data_dir) / STREAMS_DIR / str(store_id)
    if not recovered and directory.exists():
        shutil.rmtree(directory)
    return StreamLog.open(directory, max_segment_bytes or MAX_SEGMENT_BYTES, max_length_bytes, max_age_s)
