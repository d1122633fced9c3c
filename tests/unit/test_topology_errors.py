"""RabbitMQ's reply codes and texts for declaration and binding rules, through the core."""
import pytest

from zbroker.core import Broker
from zbroker.protocol import Op

from tests.unit.wire import FakePeer


@pytest.fixture
def peer() -> FakePeer:
    return FakePeer(Broker(name_source=lambda: "amq.gen-test"), b"p").open()


def close_of(frames: list) -> tuple[int, str]:
    [(op, fields, _)] = [f for f in frames if f[0] in (Op.CHANNEL_CLOSE, Op.CONNECTION_CLOSE)]
    return (fields[1], fields[2]) if op == Op.CHANNEL_CLOSE else (fields[0], fields[1])


def exchange_declare(peer: FakePeer, name: str, kind: str = "direct", passive: bool = False,
                     durable: bool = False, **kw: bool) -> list:
    return peer.send(Op.EXCHANGE_DECLARE, 1, name, kind, passive, durable, kw.get("auto_delete", False),
                     kw.get("internal", False), {})


def test_passive_declare_of_missing_queue_is_404(peer: FakePeer) -> None:
    assert close_of(peer.declare("nope", passive=True)) == (404, "NOT_FOUND - no queue 'nope' in vhost '/'")


def test_passive_declare_of_missing_exchange_is_404(peer: FakePeer) -> None:
    assert close_of(exchange_declare(peer, "nope", passive=True)) == (
        404, "NOT_FOUND - no exchange 'nope' in vhost '/'")


def test_redeclare_with_other_durable_is_406(peer: FakePeer) -> None:
    peer.declare("q")
    assert close_of(peer.declare("q", durable=True)) == (
        406, "PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'q' in vhost '/': "
             "received 'true' but current is 'false'")


def test_redeclare_with_other_queue_type_is_406(peer: FakePeer) -> None:
    peer.declare("q")
    code, text = close_of(peer.declare("q", arguments={"x-queue-type": "quorum"}))
    assert code == 406
    assert text == ("PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'q' in vhost '/': "
                    "received the value 'quorum' of type 'longstr' but current is none")


def test_unknown_x_arguments_are_not_compared(peer: FakePeer) -> None:
    peer.declare("q", arguments={"x-foo": 1})
    assert peer.declare("q", arguments={"x-foo": 2})[0][0] == Op.QUEUE_DECLARE_OK


def test_quorum_queue_must_be_durable(peer: FakePeer) -> None:
    assert close_of(peer.declare("qq", arguments={"x-queue-type": "quorum"})) == (
        406, "PRECONDITION_FAILED - invalid property 'non-durable' for queue 'qq' in vhost '/'")
    peer.send(Op.CHANNEL_CLOSE_OK, 1)
    peer.send(Op.CHANNEL_OPEN, 1)
    assert peer.declare("qq", durable=True, arguments={"x-queue-type": "quorum"})[0][0] == Op.QUEUE_DECLARE_OK


def test_unsupported_queue_type_is_406(peer: FakePeer) -> None:
    code, text = close_of(peer.declare("s", arguments={"x-queue-type": "lazy"}))
    assert code == 406 and "unsupported queue type 'lazy'" in text


def test_exchange_redeclare_with_other_type_is_406(peer: FakePeer) -> None:
    exchange_declare(peer, "logs", "fanout")
    assert close_of(exchange_declare(peer, "logs", "direct")) == (
        406, "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'logs' in vhost '/': "
             "received 'direct' but current is 'fanout'")


def test_unknown_exchange_type_closes_the_channel_406_as_rabbitmq_4(peer: FakePeer) -> None:
    assert close_of(exchange_declare(peer, "x", "nosuchtype")) == (
        406, "PRECONDITION_FAILED - unknown exchange type 'nosuchtype'")
    assert peer.broker.connections != {} and "x" not in peer.broker.topology.exchanges


def test_reserved_names_are_403(peer: FakePeer) -> None:
    assert close_of(exchange_declare(peer, "amq.mine")) == (
        403, "ACCESS_REFUSED - exchange name 'amq.mine' contains reserved prefix 'amq.*'")
    peer.send(Op.CHANNEL_CLOSE_OK, 1)
    peer.send(Op.CHANNEL_OPEN, 1)
    assert close_of(peer.declare("amq.q")) == (
        403, "ACCESS_REFUSED - queue name 'amq.q' contains reserved prefix 'amq.*'")


def test_default_and_system_exchanges_cannot_be_deleted_or_bound(peer: FakePeer) -> None:
    assert close_of(peer.send(Op.EXCHANGE_DELETE, 1, "", False))[0] == 403
    peer.send(Op.CHANNEL_CLOSE_OK, 1)
    peer.send(Op.CHANNEL_OPEN, 1)
    assert close_of(peer.send(Op.EXCHANGE_DELETE, 1, "amq.direct", False)) == (
        403, "ACCESS_REFUSED - deletion of system exchange 'amq.direct' in vhost '/' not allowed")
    peer.send(Op.CHANNEL_CLOSE_OK, 1)
    peer.send(Op.CHANNEL_OPEN, 1)
    peer.declare("q")
    assert close_of(peer.send(Op.QUEUE_BIND, 1, "q", "", "k", {})) == (
        403, "ACCESS_REFUSED - operation not permitted on the default exchange")


def test_exclusive_queue_is_405_for_other_connections(peer: FakePeer) -> None:
    peer.declare("mine", exclusive=True)
    other = FakePeer(peer.broker, b"other").open()
    for frames in (other.declare("mine"),):
        code, text = close_of(frames)
        assert code == 405 and text.startswith(
            "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue 'mine' in vhost '/'")
    other.send(Op.CHANNEL_CLOSE_OK, 1)
    other.send(Op.CHANNEL_OPEN, 1)
    assert close_of(other.consume("mine", "c"))[0] == 405
    # Publishing to it through the default exchange is allowed, as in RabbitMQ.
    other.send(Op.CHANNEL_CLOSE_OK, 1)
    other.send(Op.CHANNEL_OPEN, 1)
    assert other.publish("", "mine", b"x") == []
    assert peer.broker.topology.queues["mine"].resident_count == 1


def test_publish_to_missing_exchange_is_404_and_later_frames_are_discarded(peer: FakePeer) -> None:
    from zbroker.protocol import HEADER, encode
    got = peer.send_parts([HEADER, encode(Op.BASIC_PUBLISH, 1, "nosuch", "k", False, {}), b"x",
                           encode(Op.QUEUE_DECLARE, 1, "after", False, False, False, False, {})])
    assert close_of(got) == (404, "NOT_FOUND - no exchange 'nosuch' in vhost '/'")
    assert "after" not in peer.broker.topology.queues
    # Until CLOSE_OK, the channel's frames are dropped; then it can be opened again.
    assert peer.declare("after") == []
    peer.send(Op.CHANNEL_CLOSE_OK, 1)
    assert peer.send(Op.CHANNEL_OPEN, 1)[0][0] == Op.CHANNEL_OPEN_OK


def test_exclusive_consumer_is_403_both_ways(peer: FakePeer) -> None:
    peer.declare("q")
    peer.consume("q", "c1")
    assert close_of(peer.consume("q", "c2", exclusive=True)) == (
        403, "ACCESS_REFUSED - queue 'q' in vhost '/' in exclusive use")
    peer.send(Op.CHANNEL_CLOSE_OK, 1)
    peer.send(Op.CHANNEL_OPEN, 1)
    peer.declare("q2")
    peer.consume("q2", "c1", exclusive=True)
    assert close_of(peer.consume("q2", "c2"))[0] == 403


def test_delete_if_unused_and_if_empty(peer: FakePeer) -> None:
    peer.declare("q")
    peer.consume("q", "c")
    assert close_of(peer.send(Op.QUEUE_DELETE, 1, "q", True, False)) == (
        406, "PRECONDITION_FAILED - queue 'q' in vhost '/' in use")
    peer.send(Op.CHANNEL_CLOSE_OK, 1)
    peer.send(Op.CHANNEL_OPEN, 1)
    peer.publish("", "q", b"x")
    assert close_of(peer.send(Op.QUEUE_DELETE, 1, "q", False, True)) == (
        406, "PRECONDITION_FAILED - queue 'q' in vhost '/' not empty")


def test_deleting_missing_things_succeeds(peer: FakePeer) -> None:
    assert peer.send(Op.QUEUE_DELETE, 1, "none", False, False) == [(Op.QUEUE_DELETE_OK, [1, 0], None)]
    assert peer.send(Op.EXCHANGE_DELETE, 1, "none", False) == [(Op.EXCHANGE_DELETE_OK, [1], None)]


def test_server_named_queue(peer: FakePeer) -> None:
    [(op, fields, _)] = peer.declare("", exclusive=True)
    assert op == Op.QUEUE_DECLARE_OK and fields[1] == "amq.gen-test"


def test_prefetch_size_is_not_implemented(peer: FakePeer) -> None:
    assert close_of(peer.send(Op.BASIC_QOS, 1, 10, 0, False)) == (540, "NOT_IMPLEMENTED - prefetch_size!=0 (10)")


def test_unknown_vhost_is_refused() -> None:
    broker = Broker()
    peer = FakePeer(broker, b"p")
    got = peer.send(Op.HELLO, None, "elsewhere", "guest", "guest", {})
    assert got == [(Op.CONNECTION_CLOSE, [530, "NOT_ALLOWED - vhost elsewhere not found"], None)]
    assert broker.connections == {}


def test_exchange_to_exchange_binding_routes_once(peer: FakePeer) -> None:
    exchange_declare(peer, "up", "fanout")
    exchange_declare(peer, "down", "direct")
    peer.declare("q")
    peer.send(Op.EXCHANGE_BIND, 1, "down", "up", "", {})
    peer.send(Op.EXCHANGE_BIND, 1, "up", "down", "k", {})  # a cycle
    peer.send(Op.QUEUE_BIND, 1, "q", "down", "k", {})
    peer.publish("up", "k", b"x")
    assert [m.body for m in peer.broker.topology.queues["q"].resident()] == [b"x"]


def test_auto_delete_exchange_goes_with_last_binding(peer: FakePeer) -> None:
    exchange_declare(peer, "tmp", "fanout", auto_delete=True)
    peer.declare("q")
    peer.send(Op.QUEUE_BIND, 1, "q", "tmp", "", {})
    peer.send(Op.QUEUE_UNBIND, 1, "q", "tmp", "", {})
    assert "tmp" not in peer.broker.topology.exchanges


def test_deleting_a_queue_removes_its_bindings(peer: FakePeer) -> None:
    peer.declare("q")
    peer.send(Op.QUEUE_BIND, 1, "q", "amq.topic", "a.#", {})
    peer.send(Op.QUEUE_DELETE, 1, "q", False, False)
    assert peer.broker.topology.exchanges["amq.topic"].bindings == {}


def unbind_queue(peer: FakePeer, queue: str, exchange: str, key: str = "k") -> list:
    return peer.send(Op.QUEUE_UNBIND, 1, queue, exchange, key, {})


def unbind_exchange(peer: FakePeer, destination: str, source: str, key: str = "k") -> list:
    return peer.send(Op.EXCHANGE_UNBIND, 1, destination, source, key, {})


def test_unbinding_what_is_gone_is_unbind_ok_as_rabbitmq(peer: FakePeer) -> None:
    """Unbinding is idempotent (RabbitMQ 3.10's rabbit_binding:remove): a missing queue,
    exchange or binding answers unbind-ok, so a client may unbind what auto-delete took."""
    peer.exchange("x")
    peer.declare("q")
    assert unbind_queue(peer, "q", "x")[0][0] == Op.QUEUE_UNBIND_OK            # no such binding
    assert unbind_queue(peer, "gone", "x")[0][0] == Op.QUEUE_UNBIND_OK         # no such queue
    assert unbind_queue(peer, "q", "gone")[0][0] == Op.QUEUE_UNBIND_OK         # no such exchange
    assert unbind_exchange(peer, "gone", "x")[0][0] == Op.EXCHANGE_UNBIND_OK   # no destination
    assert unbind_exchange(peer, "x", "gone")[0][0] == Op.EXCHANGE_UNBIND_OK   # no source
    assert unbind_exchange(peer, "x", "amq.direct")[0][0] == Op.EXCHANGE_UNBIND_OK  # no binding
    peer.bind("q", "x", "k")
    assert unbind_queue(peer, "q", "x")[0][0] == Op.QUEUE_UNBIND_OK
    assert peer.broker.topology.exchanges["x"].bindings == {}


def test_unbinding_the_default_exchange_is_still_refused(peer: FakePeer) -> None:
    assert close_of(unbind_queue(peer, "q", "")) == (
        403, "ACCESS_REFUSED - operation not permitted on the default exchange")


def test_unbinding_another_connections_exclusive_queue_is_405_when_bound(peer: FakePeer) -> None:
    owner = FakePeer(peer.broker, b"owner").open()
    owner.send(Op.QUEUE_DECLARE, 1, "mine", False, False, True, False, {})
    assert unbind_queue(peer, "mine", "amq.direct")[0][0] == Op.QUEUE_UNBIND_OK  # nothing to remove
    owner.bind("mine", "amq.direct", "k")
    assert close_of(unbind_queue(peer, "mine", "amq.direct"))[0] == 405
    assert [(d.name, k) for d, k, _ in peer.broker.topology.exchanges["amq.direct"].bindings] == [("mine", "k")]


def test_binding_with_both_ends_missing_names_the_exchange_as_rabbitmq(peer: FakePeer) -> None:
    assert close_of(peer.bind("nq", "nx")) == (404, "NOT_FOUND - no exchange 'nx' in vhost '/'")
    peer.send(Op.CHANNEL_CLOSE_OK, 1)
    peer.send(Op.CHANNEL_OPEN, 1)
    assert close_of(peer.bind("nq", "amq.direct")) == (404, "NOT_FOUND - no queue 'nq' in vhost '/'")
