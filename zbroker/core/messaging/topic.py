"""Topic matching: which binding patterns match a routing key.

Rules (RabbitMQ's, checked against RabbitMQ 3.10):
- Keys and patterns are split on ``.`` into words; the empty string has zero words, so
  ``"a."`` is the two words ``a`` and ``""``.
- ``*`` matches exactly one word, ``#`` matches zero or more words.

A pattern without ``*`` or ``#`` words matches exactly the key spelled the same, so those
live in a dict by their text, each with its destinations as a frozenset: a key is one
look-up there, whatever the number of bindings. The patterns with wildcards live in a
trie and a key is matched by walking the trie with a *set* of live nodes (an NFA
simulation), so the cost is bounded by words x nodes whatever the number of ``#`` in a
pattern: no backtracking, no exponential case to cap. Only where wildcard patterns
exist are results cached per routing key (producers reuse a few keys); the cache is
bounded and emptied whenever a binding changes.

The API is four verbs: ``add``, ``remove``, ``match``, ``__len__``.
"""
from __future__ import annotations

from typing import Hashable

ONE_WORD = "*"
ANY_WORDS = "#"
#: Distinct routing keys remembered; beyond it the cache starts over. Producers with
#: unbounded key spaces (ids in keys) then pay the trie walk, never unbounded memory.
CACHE_MAX_KEYS = 4096


EMPTY: frozenset[Hashable] = frozenset()


def split_words(key: str) -> tuple[str, ...]:
    return tuple(key.split(".")) if key else ()


def _has_wildcard(words: tuple[str, ...]) -> bool:
    return ONE_WORD in words or ANY_WORDS in words


class _Node:
    __slots__ = ("children", "destinations", "swallows")

    def __init__(self, swallows: bool = False) -> None:
        self.children: dict[str, _Node] = {}
        self.destinations: set[Hashable] = set()
        #: Reached through a '#' edge: it may consume any number of further words.
        self.swallows = swallows


class TopicMatcher:
    """Patterns to destinations; ``match`` gives the destinations for a key."""

    def __init__(self) -> None:
        self._root = _Node()
        self._count = 0
        #: Patterns without wildcards: their text -> their destinations.
        self._exact: dict[str, frozenset[Hashable]] = {}
        #: How many (pattern, destination) pairs are in the trie (wildcard patterns).
        self._wild = 0
        self._cache: dict[str, frozenset[Hashable]] = {}

    def __len__(self) -> int:
        return self._count

    def add(self, pattern: str, destination: Hashable) -> None:
        words = split_words(pattern)
        if not _has_wildcard(words):
            held = self._exact.get(pattern, EMPTY)
            if destination not in held:
                self._exact[pattern] = held | {destination}
                self._count += 1
                self._cache.clear()
            return
        node = self._root
        for word in words:
            child = node.children.get(word)
            if child is None:
                child = node.children[word] = _Node(swallows=word == ANY_WORDS)
            node = child
        if destination not in node.destinations:
            node.destinations.add(destination)
            self._count += 1
            self._wild += 1
            self._cache.clear()

    def remove(self, pattern: str, destination: Hashable) -> None:
        words = split_words(pattern)
        if not _has_wildcard(words):
            held = self._exact.get(pattern, EMPTY)
            if destination in held:
                left = held - {destination}
                if left:
                    self._exact[pattern] = left
                else:
                    del self._exact[pattern]
                self._count -= 1
                self._cache.clear()
            return
        path = [self._root]
        for word in words:
            child = path[-1].children.get(word)
            if child is None:
                return
            path.append(child)
        if destination not in path[-1].destinations:
            return
        path[-1].destinations.discard(destination)
        self._count -= 1
        self._wild -= 1
        self._cache.clear()
        # Prune nodes left with neither destinations nor children.
        for depth in range(len(words), 0, -1):
            node = path[depth]
            if node.destinations or node.children:
                break
            del path[depth - 1].children[words[depth - 1]]

    def match(self, routing_key: str) -> frozenset[Hashable]:
        if not self._wild:  # (exact patterns only: one look-up, nothing to cache)
            return self._exact.get(routing_key, EMPTY)
        hit = self._cache.get(routing_key)
        if hit is not None:
            return hit
        live = _closure({self._root})
        for word in split_words(routing_key):
            nxt: set[_Node] = set()
            for node in live:
                child = node.children.get(word)
                if child is not None:
                    nxt.add(child)
                child = node.children.get(ONE_WORD)
                if child is not None:
                    nxt.add(child)
                if node.swallows:
                    nxt.add(node)
            live = _closure(nxt)
            if not live:
                break
        result = frozenset(d for node in live for d in node.destinations)
        exact = self._exact.get(routing_key)
        if exact:
            result = result | exact
        if len(self._cache) >= CACHE_MAX_KEYS:
            self._cache.clear()
        self._cache[routing_key] = result
        return result


def _closure(nodes: set[_Node]) -> set[_Node]:
    """Add every node reachable through '#' edges: '#' may match zero words."""
    out = set(nodes)
    stack = list(nodes)
    while stack:
        child = stack.pop().children.get(ANY_WORDS)
        if child is not None and child not in out:
            out.add(child)
            stack.append(child)
    return out
