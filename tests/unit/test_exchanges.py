"""Exchange types routing, with no broker around them."""
from zbroker.core.messaging.exchanges import (DirectExchange, FanoutExchange, HeadersExchange, TopicExchange,
                                    headers_match)


def test_direct_routes_by_exact_key() -> None:
    x = DirectExchange("d")
    x.bind("q1", "error", {})
    x.bind("q2", "error", {})
    x.bind("q2", "info", {})
    assert set(x.route("error", None)) == {"q1", "q2"}
    assert set(x.route("info", None)) == {"q2"}
    assert set(x.route("debug", None)) == set()


def test_binding_twice_is_one_binding_and_unbind_removes_it() -> None:
    x = DirectExchange("d")
    assert x.bind("q", "k", {}) is True
    assert x.bind("q", "k", {}) is False
    assert x.unbind("q", "k", {}) is True
    assert set(x.route("k", None)) == set()
    assert x.unbind("q", "k", {}) is False


def test_bindings_differing_in_arguments_route_until_the_last_goes() -> None:
    x = DirectExchange("d")
    x.bind("q", "k", {"a": 1})
    x.bind("q", "k", {"a": 2})
    x.unbind("q", "k", {"a": 1})
    assert set(x.route("k", None)) == {"q"}
    x.unbind("q", "k", {"a": 2})
    assert set(x.route("k", None)) == set()


def test_fanout_ignores_keys() -> None:
    x = FanoutExchange("f")
    x.bind("q1", "", {})
    x.bind("q2", "whatever", {})
    assert set(x.route("anything", None)) == {"q1", "q2"}
    x.unbind("q2", "whatever", {})
    assert set(x.route("", None)) == {"q1"}


def test_topic_exchange() -> None:
    x = TopicExchange("t")
    x.bind("q1", "*.orange.*", {})
    x.bind("q2", "*.*.rabbit", {})
    x.bind("q2", "lazy.#", {})
    assert set(x.route("quick.orange.rabbit", None)) == {"q1", "q2"}
    assert set(x.route("lazy.pink.rabbit", None)) == {"q2"}
    assert set(x.route("quick.brown.fox", None)) == set()


def test_headers_all_and_any() -> None:
    x = HeadersExchange("h")
    x.bind("all", "", {"x-match": "all", "format": "pdf", "type": "report"})
    x.bind("any", "", {"x-match": "any", "format": "pdf", "type": "log"})
    assert set(x.route("", {"format": "pdf", "type": "report"})) == {"all", "any"}
    assert set(x.route("", {"format": "pdf"})) == {"any"}
    assert set(x.route("", {"type": "log"})) == {"any"}
    assert set(x.route("", {"format": "zip"})) == set()
    assert set(x.route("", None)) == set()


def test_headers_default_is_all_and_x_arguments_are_not_compared() -> None:
    assert headers_match({"a": 1, "x-other": 5}, {"a": 1}) is True
    assert headers_match({"a": 1}, {"a": 2}) is False
    assert headers_match({"x-match": "all-with-x", "x-k": 1}, {"x-k": 1}) is True
    assert headers_match({"x-match": "any-with-x", "x-k": 1}, {"x-k": 2}) is False
