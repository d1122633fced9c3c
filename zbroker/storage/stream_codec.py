"""A stream queue's messages as entries of its log on disk (``stream_log.py``), and where
each stream's log lives in the data directory.

Rules of this module:
1. An entry is ``u32 metadata length | metadata (msgpack) | body``; the metadata is
   ``[exchange, routing key, properties, published_at]`` (as the message store writes
   them, datetimes as msgpack timestamps), the body as it came, after it. Decoding gives
   the core's fields back: ``(exchange, routing key, properties, body, published_at)``.
2. It reads a message's attributes and knows nothing else of the core (the core's
   ``stream_logs.EntryCodec`` is the protocol it meets).
3. A stream's log is the directory ``<data dir>/streams/<store id>``. A new stream (not
   one recovered) starts from an empty directory: whatever a crash left there under a
   store id the snapshot never recorded is removed first.
"""
from __future__ import annotations

import shutil
import struct
from pathlib import Path
from typing import Any, Callable

import msgpack

from zbroker.storage.stream_log import MAX_SEGMENT_BYTES, StreamLog

META_LEN = struct.Struct("<I")
STREAMS_DIR = "streams"
_pack = msgpack.Packer(use_bin_type=True, datetime=True).pack


class StreamCodec:
    """Rule 1: a message into an entry's bytes, and back into its fields."""

    @staticmethod
    def encode(message: Any) -> bytes:
        meta = _pack([message.exchange, message.routing_key, message.properties, message.published_at])
        return META_LEN.pack(len(meta)) + meta + bytes(message.body)

    @staticmethod
    def decode(entry: bytes) -> tuple[Any, Any, dict, bytes, float]:
        end = META_LEN.size + META_LEN.unpack_from(entry)[0]
        exchange, routing_key, properties, published_at = msgpack.unpackb(
            entry[META_LEN.size:end], raw=False, timestamp=3, strict_map_key=False)
        return exchange, routing_key, properties, bytes(entry[end:]), published_at


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


def open_stream_log(data_dir: str | Path, store_id: int, recovered: bool, max_segment_bytes: int | None,
                    max_length_bytes: int | None, max_age_s: float | None) -> StreamLog:
    """Rule 3: the log of the stream with ``store_id``."""
    directory = Path(data_dir) / STREAMS_DIR / str(store_id)
    if not recovered and directory.exists():
        shutil.rmtree(directory)
    return StreamLog.open(directory, max_segment_bytes or MAX_SEGMENT_BYTES, max_length_bytes, max_age_s)
