"""The x-consistent-hash exchange: Erlang's phash2 and the plugin's jump hash against values
computed by Erlang/OTP 25 (the ``erl`` RabbitMQ 3.10.8 runs on), the ring's rules, and the
exchange through the pure core."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from tests.unit.wire import FakePeer, closes
from zbroker.core.messaging.consistent_hash import (UNDEFINED, Atom, HashRing, erlang_binary, hash_source,
                                                    header_term, jump, phash2, weight_of)
from zbroker.core.messaging.exchanges import EXCHANGE_TYPES, ConsistentHashExchange
from zbroker.errors import ChannelError, ConnectionError_
from zbroker.protocol import Op

#: (term, erlang:phash2(Term, 1 bsl 32)) as printed by erl (OTP 25).
PHASH2 = [
    (b"", 147926629), (b"a", 1589197455), (b"abc", 1306188027), (b"k0", 495067479), (b"k999", 840965209),
    (b"hello world!", 965223795), (b"0123456789abcdefghijklmnopqrstuvwxyz", 3446931917),
    (bytes([0, 255, 128, 7]), 3702647628), ("é".encode(), 758303797),
    (UNDEFINED, 180132084), (Atom("true"), 506293), (Atom("longstr"), 56945346),
    ([], 3468870702), ((), 221703996), ([1, 2, 3], 4186538188), ([b"a", 300], 1738250412),
    ([97, 98, 99, 100, 101], 2487089008),  # "abcde", a string
    (0, 3175731469), (1, 539485162), (-1, 1117813597), (2**27 - 1, 4273352567), (2**27, 2562491755),
    (-2**27, 874979335), (-2**27 - 1, 1418916782), (2**32, 2108323275), (2**60, 1373980788),
    (-2**70 - 5, 136595893),
    (1.5, 2023646235), (0.0, 423528920), (-2.25e-300, 2333401194),
    ((Atom("longstr"), b"u1"), 3704199973), ((Atom("signedint"), -5), 1382110205),
    ((Atom("long"), 2**40), 227966336), ((Atom("bool"), Atom("true")), 568901355),
    ((Atom("void"), UNDEFINED), 2711431757), ((Atom("binary"), b"\x00\x01"), 3407093579),
    ((Atom("array"), [(Atom("signedint"), 1), (Atom("longstr"), b"a")]), 1624350318),
    ((Atom("table"), [(b"n", Atom("signedint"), 1), (b"s", Atom("longstr"), b"x")]), 1888157469),
    ((Atom("timestamp"), 1704164645), 3099376200),
]


@pytest.mark.parametrize("term,expected", PHASH2)
def test_phash2_is_erlangs(term: object, expected: int) -> None:
    assert phash2(term, 2**32) == expected
    assert phash2(term) == expected & (2**27 - 1)  # phash2/1


def test_jump_is_the_plugins() -> None:
    """jump_consistent_hash(Key, N) of the plugin, run in erl: keys k0..k39 over 16 buckets,
    one key over growing rings, and the atom undefined (a message without the value)."""
    assert [jump(phash2(f"k{i}".encode()), 16) for i in range(40)] == [
        7, 7, 5, 9, 2, 4, 1, 9, 14, 9, 8, 10, 2, 12, 1, 12, 8, 14, 0, 1,
        11, 3, 4, 1, 8, 14, 6, 3, 4, 2, 13, 13, 8, 6, 14, 13, 8, 7, 11, 10]
    assert [jump(phash2(b"order-42"), n) for n in (1, 2, 3, 7, 16, 100, 1000, 100000)] == [
        0, 1, 1, 1, 10, 31, 945, 78515]
    assert [jump(phash2(UNDEFINED), n) for n in (2, 16, 100)] == [1, 1, 39]


def test_header_values_are_typed_as_rabbitmq_decodes_what_pika_sends() -> None:
    assert header_term("u1") == (Atom("longstr"), b"u1")
    assert header_term(-5) == (Atom("signedint"), -5)
    assert header_term(2**31) == (Atom("long"), 2**31)
    assert header_term(True) == (Atom("bool"), Atom("true"))
    assert header_term(None) == (Atom("void"), UNDEFINED)
    assert header_term(b"\x00\x01") == (Atom("binary"), b"\x00\x01")
    assert header_term([1, "a"]) == (Atom("array"), [(Atom("signedint"), 1), (Atom("longstr"), b"a")])
    assert header_term({"n": 1}) == (Atom("table"), [(b"n", Atom("signedint"), 1)])
    stamp = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert header_term(stamp) == header_term(stamp.replace(tzinfo=None)) == (Atom("timestamp"), 1704164645)


# -- the ring ------------------------------------------------------------------------

def test_weights_make_segments_in_binding_order_and_removal_moves_later_ones_down() -> None:
    ring = HashRing()
    for dest, weight in (("a", 1), ("b", 2), ("c", 3)):
        ring.add(dest, weight)
    assert ring.bucket_owners() == ["a", "b", "b", "c", "c", "c"]
    ring.remove("b")
    ring.add("d", 2)
    assert ring.bucket_owners() == ["a", "c", "c", "c", "d", "d"]
    ring.add("c", 10)  # already in the ring: nothing
    assert ring.buckets == 6
    ring.remove("zzz")
    assert ring.route(b"k") in (("a",), ("c",), ("d",))
    for dest in ("a", "c", "d"):
        ring.remove(dest)
    assert ring.route(b"k") == ()


def test_routing_matches_rabbitmq_for_weights_1_2_3_10() -> None:
    """RabbitMQ 3.10.8 put k0..k999 as 64/122/188/626 over weights 1, 2, 3, 10
    (tests/compat/consistent_hash_program.py); the first keys' queues likewise."""
    ring = HashRing()
    for dest, weight in (("q1", 1), ("q2", 2), ("q3", 3), ("q4", 10)):
        ring.add(dest, weight)
    got = [ring.route(f"k{i}".encode())[0] for i in range(1000)]
    assert [got.count(q) for q in ("q1", "q2", "q3", "q4")] == [64, 122, 188, 626]
    assert [i for i, q in enumerate(got) if q == "q1"][:5] == [18, 65, 97, 105, 110]
    assert got == [ring.route(f"k{i}".encode())[0] for i in range(1000)]  # (cached alike)


def test_a_key_moves_only_to_or_from_the_changed_destination() -> None:
    ring = HashRing()
    for dest in ("a", "b", "c", "d"):
        ring.add(dest, 4)
    before = {i: ring.route(f"k{i}".encode()) for i in range(500)}
    ring.add("e", 4)
    after = {i: ring.route(f"k{i}".encode()) for i in range(500)}
    assert all(after[i] in (before[i], ("e",)) for i in range(500))
    assert 60 < sum(after[i] == ("e",) for i in range(500)) < 140


# -- binding keys and arguments ----------------------------------------------------------

@pytest.mark.parametrize("key,weight", [("1", 1), ("10", 10), ("+5", 5), ("007", 7), ("99999999999", 99999999999)])
def test_binding_keys_are_erlang_integers(key: str, weight: int) -> None:
    assert weight_of(key) == weight


@pytest.mark.parametrize("key,text", [
    ("abc", '<<"abc">>'), ("", "<<>>"), (" 5", '<<" 5">>'), ("1.0", '<<"1.0">>'), ("1_0", '<<"1_0">>'),
    ("١", '<<"١">>'), ('a"b\\c\n', '<<"a\\"b\\\\c\\n">>'), ("\x1b", '<<"\\e">>'), ("é", '<<"é">>'),
    ("€", "<<226,130,172>>"), ("a\x01", "<<97,1>>"), ("a\x7f", "<<97,127>>"),
])
def test_a_non_integer_binding_key_is_refused_with_the_key_as_erlang_prints_it(key: str, text: str) -> None:
    assert erlang_binary(key.encode()) == text
    with pytest.raises(ChannelError) as refused:
        weight_of(key)
    assert refused.value.text == f"PRECONDITION_FAILED - The binding key must be an integer: {text}"


@pytest.mark.parametrize("key", ["0", "-1", "-0"])
def test_a_weight_below_one_is_refused(key: str) -> None:
    with pytest.raises(ChannelError, match="The binding key must be greater than 0$"):
        weight_of(key)


def test_exchange_arguments() -> None:
    assert hash_source({}) is None
    assert hash_source({"hash-header": ""}) == ("header", "")
    for prop in ("message_id", "correlation_id", "timestamp"):
        assert hash_source({"hash-property": prop}) == ("property", prop)
    for arguments, text in (({"hash-property": "app_id"}, "Unsupported property: app_id"),
                            ({"hash-header": "h", "hash-property": "x"},
                             "hash-header and hash-property are mutually exclusive")):
        with pytest.raises(ChannelError) as refused:
            hash_source(arguments)
        assert (refused.value.code, refused.value.text) == (406, f"PRECONDITION_FAILED - {text}")
    for arguments in ({"hash-header": 5}, {"hash-property": b"message_id"}, {"hash-header": "h", "hash-property": 1}):
        with pytest.raises(ConnectionError_) as crashed:  # the plugin crashes: RabbitMQ's 541
            hash_source(arguments)
        assert (crashed.value.code, crashed.value.text) == (541, "INTERNAL_ERROR")


# -- the exchange ----------------------------------------------------------------------

def test_the_exchange_hashes_a_header_or_a_property_and_missing_ones_alike() -> None:
    by_key = ConsistentHashExchange("x")
    by_header = ConsistentHashExchange("h", arguments={"hash-header": "user"})
    by_stamp = ConsistentHashExchange("t", arguments={"hash-property": "timestamp"})
    for exchange in (by_key, by_header, by_stamp):
        for dest, weight in (("q1", "1"), ("q2", "2"), ("q3", "3"), ("q4", "10")):
            exchange.bind(dest, weight, {})
    for i in range(50):
        assert list(by_header.route("ignored", {"headers": {"user": f"u{i}"}})) == list(
            by_header._ring.route((Atom("longstr"), f"u{i}".encode())))
        assert list(by_stamp.route("", {"timestamp": 1_700_000_000 + i})) == list(
            by_key.route(str(1_700_000_000 + i), None))  # (its decimal string, as the routing key's bytes)
    nowhere = [list(by_header.route("k", props)) for props in (None, {}, {"headers": {}}, {"headers": {"o": 1}})]
    nowhere += [list(by_stamp.route("k", props)) for props in (None, {"message_id": "m"})]
    assert nowhere == [["q2"]] * 6  # the atom undefined's bucket (RabbitMQ: every such message to q2)


def test_the_exchange_type_is_registered() -> None:
    assert EXCHANGE_TYPES["x-consistent-hash"] is ConsistentHashExchange


def test_through_the_core(peer: FakePeer) -> None:
    peer.exchange("chx", "x-consistent-hash")
    for queue, weight in (("q1", "1"), ("q2", "2"), ("q3", "3"), ("q4", "10")):
        peer.declare(queue)
        peer.bind(queue, "chx", weight)
    for i in range(200):
        peer.publish("chx", f"k{i}", str(i).encode())
    ring = HashRing()
    for queue, weight in (("q1", 1), ("q2", 2), ("q3", 3), ("q4", 10)):
        ring.add(queue, weight)
    expected = {q: [str(i).encode() for i in range(200) if ring.route(f"k{i}".encode()) == (q,)]
                for q in ("q1", "q2", "q3", "q4")}
    assert {q: peer.drain(q) for q in expected} == expected
    # q2 goes: the buckets after its own move down (the plugin's ring, not the least moves)
    peer.send(Op.QUEUE_DELETE, 1, "q2", False, False)
    for i in range(200):
        peer.publish("chx", f"k{i}", str(i).encode())
    ring.remove("q2")
    assert ring.bucket_owners() == ["q1"] + ["q3"] * 3 + ["q4"] * 10
    assert {q: peer.drain(q) for q in ("q1", "q3", "q4")} == {
        q: [str(i).encode() for i in range(200) if ring.route(f"k{i}".encode()) == (q,)] for q in ("q1", "q3", "q4")}
    # unbinding one of a queue's two bindings takes all its buckets
    peer.bind("q1", "chx", "5")
    peer.send(Op.QUEUE_UNBIND, 1, "q1", "chx", "5", {})
    for i in range(50):
        peer.publish("chx", f"k{i}", b"x")
    assert peer.count("q1") == 0 and peer.count("q3") + peer.count("q4") == 50


def test_refusals_through_the_core(peer: FakePeer) -> None:
    peer.exchange("chx", "x-consistent-hash")
    peer.declare("q")
    assert closes(peer.bind("q", "chx", "abc")) == [
        (406, 'PRECONDITION_FAILED - The binding key must be an integer: <<"abc">>')]
    peer.send(Op.CHANNEL_OPEN, 2)
    assert closes(peer.send(Op.EXCHANGE_BIND, 2, "amq.fanout", "chx", "0", {})) == [
        (406, "PRECONDITION_FAILED - The binding key must be greater than 0")]
    peer.send(Op.CHANNEL_OPEN, 3)
    assert closes(peer.exchange("chy", "x-consistent-hash", ch=3, arguments={"hash-property": "app_id"})) == [
        (406, "PRECONDITION_FAILED - Unsupported property: app_id")]
    peer.send(Op.CHANNEL_OPEN, 4)
    assert closes(peer.exchange("chy", "x-consistent-hash", ch=4, arguments={"hash-header": 5})) == [
        (541, "INTERNAL_ERROR")]


def test_cc_and_bcc_do_not_add_copies_through_a_consistent_hash_exchange(peer: FakePeer) -> None:
    """RabbitMQ's plugin routes by the first routing key alone: one copy per message."""
    peer.exchange("ch", "x-consistent-hash")
    for name in ("a", "b", "c"):
        peer.declare(name)
        peer.bind(name, "ch", "1")
    for i in range(20):
        peer.send(Op.BASIC_PUBLISH, 1, "ch", f"k{i}", False, {"headers": {"CC": ["x1", "x2"], "BCC": ["y"]}},
                  body=b"m")
    assert sum(peer.count(name) for name in ("a", "b", "c")) == 20


def test_definitions_check_consistent_hash_bindings_before_importing_anything(peer: FakePeer) -> None:
    from zbroker.core.management.definitions import DefinitionsError, apply
    bad = {"exchanges": [{"name": "ch", "type": "x-consistent-hash"}], "queues": [{"name": "q"}],
           "bindings": [{"source": "ch", "destination": "q", "destination_type": "queue", "routing_key": "abc"}]}
    with pytest.raises(DefinitionsError, match='binding from .ch.: PRECONDITION_FAILED - The binding key must be an '
                                               'integer: <<"abc">>'):
        apply(peer.broker, bad)
    assert "ch" not in peer.broker.topology.exchanges and "q" not in peer.broker.topology.queues
