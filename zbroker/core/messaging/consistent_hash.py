"""The ``x-consistent-hash`` exchange's ring and hash, as RabbitMQ 3.10's plugin has them.

What lives here (``rabbit_exchange_type_consistent_hash.erl`` of rabbitmq-server 3.10,
bit for bit; ``ConsistentHashExchange`` in ``exchanges.py`` is the thin exchange around it):

1. A binding's routing key is its *weight*: an integer string (Erlang's
   ``list_to_integer``: an optional sign, then digits) of at least 1. Anything else is
   refused with the plugin's texts (406), also when the binding already exists.
2. The ring is ``sum(weights)`` buckets. A destination bound for the first time takes
   ``weight`` buckets after the last ones; binding it again (another weight) adds
   nothing. Removing any binding of a destination frees all its buckets and the buckets
   after them move down: the ring is the segments in the order destinations came.
3. A message goes to the one destination owning bucket ``jump(phash2(value), buckets)``:
   Erlang's ``erlang:phash2`` (``phash2`` below, a Jenkins hash over the term) seeds
   Erlang's ``exs1024`` generator, which drives Lamping and Veach's jump consistent hash.
   No buckets: unroutable.
4. The value hashed is the routing key (a binary); with the exchange argument
   ``hash-header``, the header's ``{Type, Value}`` pair as RabbitMQ decodes the table;
   with ``hash-property`` (``message_id``, ``correlation_id`` or ``timestamp``, the last
   as its decimal string), that property. A message without it hashes the atom
   ``undefined``: it is not dropped, all such messages go to one destination.

The ring is precomputed when bindings change (a list of segment starts for ``bisect``);
a routed value costs one hash and a few generator steps, and results are cached per
value (bounded, emptied when the ring changes), since producers reuse keys.
"""
from __future__ import annotations

import re
import struct
from bisect import bisect_right
from datetime import datetime, timezone
from typing import Any, Hashable

from zbroker import errors
from zbroker.errors import ChannelError, ConnectionError_

HASH_HEADER = "hash-header"
HASH_PROPERTY = "hash-property"
#: The properties ``hash-property`` may name (the plugin's ``?PROPERTIES``).
PROPERTIES = ("correlation_id", "message_id", "timestamp")
#: Distinct hashed values remembered per exchange; beyond it the cache starts over
#: (as ``topic.py``'s): unbounded key spaces pay the hash, never unbounded memory.
CACHE_MAX_KEYS = 4096
#: Erlang's ``list_to_integer`` on a binding key.
_INTEGER = re.compile(r"[+-]?[0-9]+")

_M32 = 0xFFFFFFFF
_M64 = 0xFFFFFFFFFFFFFFFF


class Atom(str):
    """An Erlang atom (a plain ``str`` is not an Erlang term here; text is ``bytes``)."""


UNDEFINED = Atom("undefined")
_TRUE, _FALSE, _VOID = Atom("true"), Atom("false"), Atom("void")


# -- erlang:phash2 -------------------------------------------------------------------
# make_hash2 of erts (utils.c in OTP 25): Bob Jenkins' mix over the term's parts, with a
# constant per kind of part. Terms: bytes (binary), Atom, int, float, tuple, list.

_GOLDEN = 0x9E3779B9  # HCONST; HCONST_n below is (HCONST * n) mod 2**32
_H2, _H3, _H4, _H9, _H10, _H11, _H12, _H13 = (_GOLDEN * n & _M32 for n in (2, 3, 4, 9, 10, 11, 12, 13))
_NIL_DEF = 2
_TOP_NIL = 3468870702  # the hash of [] alone


def _mix(a: int, b: int, c: int) -> tuple[int, int, int]:
    """Jenkins' MIX of three 32-bit words."""
    a = (a - b - c) & _M32; a ^= c >> 13
    b = (b - c - a) & _M32; b ^= (a << 8) & _M32
    c = (c - a - b) & _M32; c ^= b >> 13
    a = (a - b - c) & _M32; a ^= c >> 12
    b = (b - c - a) & _M32; b ^= (a << 16) & _M32
    c = (c - a - b) & _M32; c ^= b >> 5
    a = (a - b - c) & _M32; a ^= c >> 3
    b = (b - c - a) & _M32; b ^= (a << 10) & _M32
    c = (c - a - b) & _M32; c ^= b >> 15
    return a, b, c


def _uint32_hash(hash_: int, x: int, y: int, const: int) -> int:
    """UINT32_HASH_2(x, y, const) into ``hash_``."""
    return _mix((const + x) & _M32, (const + y) & _M32, hash_)[2]


def _block_hash(data: bytes, initval: int) -> int:
    length = len(data)
    a = b = _GOLDEN
    c = initval
    full = length - length % 12
    words = struct.unpack_from(f"<{full // 4}I", data) if full else ()
    for i in range(0, len(words), 3):
        a, b, c = _mix((a + words[i]) & _M32, (b + words[i + 1]) & _M32, (c + words[i + 2]) & _M32)
    tail = data[full:] + bytes(12 - (length - full))
    ta, tb, tc = struct.unpack("<3I", tail)
    # the tail's bytes 9..11 go to c's upper three bytes: its first byte is the length
    return _mix((a + ta) & _M32, (b + tb) & _M32, (c + length + (tc << 8)) & _M32)[2]


def atom_hash(name: str) -> int:
    """An atom's hash value in the atom table (hashpjw over its UTF-8 name)."""
    h = 0
    raw = name.encode()
    i = 0
    while i < len(raw):
        v = raw[i]
        i += 1
        if i < len(raw) and (v & 0xFE) == 0xC2 and (raw[i] & 0xC0) == 0x80:  # latin-1 as one char
            v = ((v << 6) | (raw[i] & 0x3F)) & 0xFF
            i += 1
        h = ((h << 4) + v) & _M32
        g = h & 0xF0000000
        if g:
            h ^= g >> 24
            h ^= g
    return h


def _integer_hash(hash_: int, value: int) -> int:
    if -(1 << 27) <= value < (1 << 27):  # a 28-bit small: mixed as a signed 32-bit word
        if value < 0:
            hash_ = _uint32_hash(hash_, -value, 0, _GOLDEN)
        return _uint32_hash(hash_, value & _M32, 0, _GOLDEN)
    const, magnitude = (_H10, -value) if value < 0 else (_H11, value)
    while True:  # as a bignum: 64-bit digits, least significant first, each as two words
        hash_ = _uint32_hash(hash_, magnitude & _M32, (magnitude >> 32) & _M32, const)
        magnitude >>= 64
        if not magnitude:
            return hash_


_NIL = object()  # the end of a list, on the work stack


def make_hash2(term: Any) -> int:
    """erts' ``make_hash2``: the 32-bit hash ``phash2`` reduces."""
    if type(term) is bytes:
        return _block_hash(term, _H13) if term else _H13
    if type(term) is Atom:
        return atom_hash(term)
    hash_ = 0
    stack: list[Any] = [term]
    while stack:
        term = stack.pop()
        kind = type(term)
        if kind is bytes:
            const = (_H13 + hash_) & _M32
            hash_ = _block_hash(term, const) if term else const
        elif kind is Atom:
            hash_ = atom_hash(term) if hash_ == 0 else _uint32_hash(hash_, atom_hash(term), 0, _H3)
        elif kind is int:
            hash_ = _integer_hash(hash_, term)
        elif kind is tuple:
            hash_ = _uint32_hash(hash_, len(term), 0, _H9)
            stack.extend(reversed(term))
        elif kind is list:
            # A run of bytes (0..255) is taken four at a time; then the first other element,
            # then the rest of the list.
            shifted = count = i = 0
            while i < len(term) and type(term[i]) is int and 0 <= term[i] <= 255:
                shifted = ((shifted << 8) + term[i]) & _M32
                i += 1
                count += 1
                if count == 4:
                    hash_ = _uint32_hash(hash_, shifted, 0, _H4)
                    shifted = count = 0
            if count:
                hash_ = _uint32_hash(hash_, shifted, 0, _H4)
            if i < len(term):
                stack.append(term[i + 1:] if i + 1 < len(term) else _NIL)
                stack.append(term[i])
            else:
                stack.append(_NIL)
        elif term is _NIL:
            hash_ = _TOP_NIL if hash_ == 0 else _uint32_hash(hash_, _NIL_DEF, 0, _H2)
        elif kind is float:
            bits = struct.unpack("<Q", struct.pack("<d", term or 0.0))[0]  # (-0.0 as 0.0)
            hash_ = _uint32_hash(hash_, bits >> 32, bits & _M32, _H12)
        else:
            raise TypeError(f"no Erlang term for {kind.__name__}")
    return hash_


def phash2(term: Any, range_: int = 1 << 27) -> int:
    """``erlang:phash2(Term, Range)`` for a range up to 2**32 (``phash2/1``: 2**27)."""
    return make_hash2(term) % range_


# -- the jump consistent hash, driven by Erlang's exs1024 -------------------------------

def _exs1024_seed(seed: int) -> list[int]:
    """``rand:seed_s(exs1024, {Seed, Seed, Seed})``: 16 words from exs64 (their list order)."""
    b1 = ((seed & 0x1FFFFF) + 1) * 2097131 & 0x1FFFFF
    b2 = ((seed & 0x1FFFFF) + 1) * 2097133 & 0x1FFFFF
    b3 = ((seed & 0x1FFFFF) + 1) * 2097143 & 0x1FFFFF
    r = b1 << 43 | b2 << 22 | b3 << 1 | 1
    words = []
    for _ in range(16):
        r ^= r >> 12
        r ^= (r << 25) & _M64
        r ^= r >> 27
        words.append(r * 2685821657736338717 & _M64)
    words.reverse()
    return words


def jump(key: int, buckets: int) -> int:
    """The plugin's ``jump_consistent_hash(Key, N)`` for an integer key: each step draws
    ``R = rand:uniform_s`` (exs1024: next / 2**64) and jumps to ``trunc((B + 1) / R)``."""
    if buckets == 1:
        return 0
    s = _exs1024_seed(key)
    p = 0
    b, j = -1, 0
    while j < buckets:
        b = j
        s0 = s[p]
        p = (p + 1) & 15
        s1 = s[p]
        s1 ^= (s1 << 31) & _M64
        s1 ^= s1 >> 11
        s0 ^= s0 >> 30
        s[p] = s0 ^ s1
        r = ((s0 ^ s1) * 1181783497276652981 & _M64) / 18446744073709551616.0
        j = int((b + 1) / r)
    return b


# -- the exchange's arguments, binding keys and hashed values ----------------------------

def hash_source(arguments: dict) -> tuple[str, str] | None:
    """What the exchange hashes: ``("header", name)``, ``("property", name)`` or None (the
    routing key); the plugin's ``validate`` on declare, with its texts. An argument that
    is not a string crashes the plugin: RabbitMQ closes the connection, 541."""
    header, prop = arguments.get(HASH_HEADER), arguments.get(HASH_PROPERTY)
    for value in (header, prop):
        if value is not None and type(value) is not str:
            error = ConnectionError_(errors.INTERNAL_ERROR, "")
            error.text = "INTERNAL_ERROR"  # (RabbitMQ's text for a crash: the name alone)
            raise error
    if header is not None and prop is not None:
        raise ChannelError(errors.PRECONDITION_FAILED, "hash-header and hash-property are mutually exclusive")
    if prop is not None:
        if prop not in PROPERTIES:
            raise ChannelError(errors.PRECONDITION_FAILED, f"Unsupported property: {prop}")
        return ("property", prop)
    return ("header", header) if header is not None else None


def weight_of(routing_key: str) -> int:
    """A binding key's weight; refused (406) as the plugin's ``validate_binding`` does."""
    if not _INTEGER.fullmatch(routing_key):
        raise ChannelError(errors.PRECONDITION_FAILED,
                           f"The binding key must be an integer: {erlang_binary(routing_key.encode())}")
    weight = int(routing_key)
    if weight < 1:
        raise ChannelError(errors.PRECONDITION_FAILED, "The binding key must be greater than 0")
    return weight


_ESCAPES = {ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t", ord("\v"): "\\v", ord("\b"): "\\b",
            ord("\f"): "\\f", 27: "\\e", ord('"'): '\\"', ord("\\"): "\\\\"}
_PRINTABLE = frozenset([*range(32, 127), *range(160, 256), *(c for c in _ESCAPES if c < 32)])


def erlang_binary(data: bytes) -> str:
    """``data`` as Erlang's ``~p`` prints a binary: ``<<"text">>`` when every byte is
    printable Latin-1 (bytes kept, escapes as Erlang's), else ``<<1,2,3>>``."""
    if all(byte in _PRINTABLE for byte in data):
        return '<<"' + data.decode("utf-8", "surrogateescape").translate(_ESCAPES) + '">>' if data else "<<>>"
    return "<<" + ",".join(map(str, data)) + ">>"


def header_term(value: Any) -> tuple:
    """A header value as RabbitMQ decodes it from the table: ``{Type, Value}``, typed as
    pika (and zbroker's AMQP wire) encodes the Python value."""
    kind = type(value)
    if kind is str:
        return (Atom("longstr"), value.encode())
    if kind is bool:
        return (Atom("bool"), _TRUE if value else _FALSE)
    if kind is int:
        if -(1 << 31) <= value < 1 << 31:
            return (Atom("signedint"), value)
        if -(1 << 63) <= value < 1 << 63:
            return (Atom("long"), value)
        return (Atom("longstr"), str(value).encode())
    if kind is float:
        return (Atom("double"), value)
    if kind is bytes or kind is bytearray:
        return (Atom("binary"), bytes(value))
    if kind is dict:
        return (Atom("table"), [(key.encode(), *header_term(item)) for key, item in value.items()])
    if kind is list:
        return (Atom("array"), [header_term(item) for item in value])
    if kind is datetime:  # (naive: UTC, as pika and zbroker's AMQP wire write it)
        return (Atom("timestamp"), int((value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()))
    if value is None:
        return (_VOID, UNDEFINED)
    raise TypeError(f"no AMQP field type for {kind.__name__}")


def hashed_value(source: tuple[str, str], properties: dict | None) -> Any:
    """The term a message hashes on, by ``hash-header`` or ``hash-property``."""
    if not properties:
        return UNDEFINED
    where, name = source
    if where == "header":
        headers = properties.get("headers")
        if not headers or name not in headers:
            return UNDEFINED
        return header_term(headers[name])
    value = properties.get(name)
    if value is None:
        return UNDEFINED
    return str(value).encode() if name == "timestamp" else value.encode()


# -- the ring --------------------------------------------------------------------------

class HashRing:
    """Destinations and their buckets, in the order they were first bound (rule 2)."""

    def __init__(self) -> None:
        self._segments: list[tuple[Hashable, int]] = []  # (destination, weight), ring order
        self._starts: list[int] = []  # first bucket of each segment
        self._owners: tuple[Hashable, ...] = ()
        self.buckets = 0
        self._cache: dict[Hashable, tuple] = {}

    def __contains__(self, destination: Hashable) -> bool:
        return any(dest == destination for dest, _ in self._segments)

    def add(self, destination: Hashable, weight: int) -> None:
        if destination not in self:
            self._segments.append((destination, weight))
            self._rebuild()

    def remove(self, destination: Hashable) -> None:
        if destination in self:
            self._segments = [(dest, w) for dest, w in self._segments if dest != destination]
            self._rebuild()

    def bucket_owners(self) -> list[Hashable]:
        """Every bucket's destination, in bucket order (the plugin's bucket map)."""
        return [dest for dest, weight in self._segments for _ in range(weight)]

    def _rebuild(self) -> None:
        starts, total = [], 0
        for _, weight in self._segments:
            starts.append(total)
            total += weight
        self._starts, self.buckets = starts, total
        self._owners = tuple(dest for dest, _ in self._segments)
        self._cache.clear()

    def route(self, value: Any) -> tuple:
        """The destination (a 1-tuple) for a hashed term, or () with no buckets."""
        if not self.buckets:
            return ()
        key = value if type(value) is not tuple else repr(value)  # (header terms may hold lists)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        bucket = jump(phash2(value), self.buckets)
        found = (self._owners[bisect_right(self._starts, bucket) - 1],)
        if len(self._cache) >= CACHE_MAX_KEYS:
            self._cache.clear()
        self._cache[key] = found
        return found
