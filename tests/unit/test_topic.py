"""Topic matching, against a table of cases checked on RabbitMQ 3.10."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zbroker.core.messaging.topic import CACHE_MAX_KEYS, TopicMatcher, split_words

PATTERNS = ["*", "#", "", "#.#", "*.#", "a.*", "a.#", "#.a", "a..b", "a.*.b", "*.*"]
# routing key -> patterns that match it, as RabbitMQ 3.10 routed them.
RABBITMQ_CASES = {
    "": {"#", "", "#.#"},
    "a": {"*", "#", "#.#", "*.#", "a.#", "#.a"},
    "a.": {"#", "#.#", "*.#", "a.*", "a.#", "*.*"},
    ".a": {"#", "#.#", "*.#", "#.a", "*.*"},
    "a..b": {"#", "#.#", "*.#", "a.#", "a..b", "a.*.b"},
    "a.b": {"#", "#.#", "*.#", "a.*", "a.#", "*.*"},
    "a.x.b": {"#", "#.#", "*.#", "a.#", "a.*.b"},
    "..": {"#", "#.#", "*.#"},
}


@pytest.fixture
def matcher() -> TopicMatcher:
    m = TopicMatcher()
    for p in PATTERNS:
        m.add(p, p)
    return m


@pytest.mark.parametrize("key", sorted(RABBITMQ_CASES))
def test_matches_rabbitmq(matcher: TopicMatcher, key: str) -> None:
    assert set(matcher.match(key)) == RABBITMQ_CASES[key]


@pytest.mark.parametrize("pattern,key,hit", [
    ("kern.*", "kern.critical", True),
    ("kern.*", "kern.critical.x", False),
    ("*.critical", "kern.critical", True),
    ("*.critical", "critical", False),
    ("#.critical", "critical", True),
    ("#.critical", "a.b.c.critical", True),
    ("a.#.b", "a.b", True),
    ("a.#.b", "a.x.y.b", True),
    ("a.#.b", "a.x.y.c", False),
    ("#.#.#", "a", True),
    ("*.*.*", "a.b", False),
    ("quick.orange.rabbit", "quick.orange.rabbit", True),
    ("*.orange.*", "quick.orange.fox", True),
    ("lazy.#", "lazy.orange.male.rabbit", True),
    ("*.*.rabbit", "lazy.orange.male.rabbit", False),
])
def test_tutorial_and_edge_cases(pattern: str, key: str, hit: bool) -> None:
    m = TopicMatcher()
    m.add(pattern, "q")
    assert (m.match(key) == {"q"}) is hit


def test_many_hashes_do_not_blow_up() -> None:
    m = TopicMatcher()
    m.add(".".join(["#"] * 30) + ".z", "q")
    key = ".".join(["a"] * 200)
    assert m.match(key) == frozenset()
    assert m.match(key + ".z") == {"q"}


def test_remove_prunes_and_invalidates_cache() -> None:
    m = TopicMatcher()
    m.add("a.*", "q1")
    m.add("a.*", "q2")
    assert m.match("a.b") == {"q1", "q2"}
    m.remove("a.*", "q1")
    assert m.match("a.b") == {"q2"}
    m.remove("a.*", "q2")
    assert m.match("a.b") == frozenset()
    assert len(m) == 0
    assert m._root.children == {}


def test_remove_unknown_is_a_no_op() -> None:
    m = TopicMatcher()
    m.add("a.b", "q")
    m.remove("a.c", "q")
    m.remove("a.b", "other")
    assert m.match("a.b") == {"q"}
    assert len(m) == 1


def test_add_is_idempotent() -> None:
    m = TopicMatcher()
    m.add("a.#", "q")
    m.add("a.#", "q")
    assert len(m) == 1


def test_cache_is_bounded() -> None:
    m = TopicMatcher()
    m.add("#", "q")
    for i in range(CACHE_MAX_KEYS + 10):
        assert m.match(f"k.{i}") == {"q"}
    assert len(m._cache) <= CACHE_MAX_KEYS


def test_split_words() -> None:
    assert split_words("") == ()
    assert split_words("a.") == ("a", "")


def _naive(pattern: tuple[str, ...], key: tuple[str, ...]) -> bool:
    """RabbitMQ's rule written out: '*' one word, '#' zero or more, anything else itself."""
    if not pattern:
        return not key
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_naive(rest, key[i:]) for i in range(len(key) + 1))
    return bool(key) and (head == "*" or head == key[0]) and _naive(rest, key[1:])


WORDS = st.sampled_from(["a", "b", "", "*", "#"])
PATTERN = st.lists(WORDS, max_size=4).map(".".join)
KEY = st.lists(st.sampled_from(["a", "b", ""]), max_size=4).map(".".join)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(steps=st.lists(st.tuples(st.booleans(), PATTERN, st.sampled_from("qrs")), max_size=30),
       keys=st.lists(KEY, min_size=1, max_size=10))
def test_exact_and_wildcard_patterns_match_as_rabbitmqs_rule_says(steps, keys) -> None:
    """Bindings added and removed in any order, exact ones and wildcard ones mixed (each
    kept its own way), match as the rule written out does, cached or not."""
    m = TopicMatcher()
    bound: set[tuple[str, str]] = set()
    for add, pattern, queue in steps:
        (m.add if add else m.remove)(pattern, queue)
        (bound.add if add else bound.discard)((pattern, queue))
        assert len(m) == len(bound)
        for key in keys:  # (twice: the second answer may come from the cache)
            want = {q for p, q in bound if _naive(split_words(p), split_words(key))}
            assert set(m.match(key)) == want and set(m.match(key)) == want
