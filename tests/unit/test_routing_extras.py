"""Alternate exchanges, direct reply-to, quorum delivery limits, transactions and
channel.flow, through the pure core."""
from __future__ import annotations


from tests.unit.wire import FakePeer, bodies, closes, deliveries, props_of
from zbroker.core import Broker
from zbroker.protocol import Op




# -- alternate exchanges ---------------------------------------------------------------

def test_unroutable_messages_go_to_the_alternate_exchange(peer: FakePeer) -> None:
    peer.exchange("ae", "fanout")
    peer.declare("unrouted")
    peer.bind("unrouted", "ae")
    peer.exchange("main", "direct", arguments={"alternate-exchange": "ae"})
    peer.declare("known")
    peer.bind("known", "main", "k")
    got = peer.publish("main", "other", b"to the alternate", mandatory=True)
    assert not [op for op, _, _ in got if op == Op.BASIC_RETURN]  # routed, for mandatory
    peer.publish("main", "k", b"routed normally")
    assert peer.drain("unrouted") == [b"to the alternate"] and peer.drain("known") == [b"routed normally"]


def test_a_missing_or_looping_alternate_is_unroutable(peer: FakePeer) -> None:
    peer.exchange("a", "direct", arguments={"alternate-exchange": "b"})
    peer.exchange("b", "direct", arguments={"alternate-exchange": "a"})
    peer.exchange("c", "direct", arguments={"alternate-exchange": "missing"})
    for exchange in ("a", "c"):
        got = peer.publish(exchange, "k", b"x", mandatory=True)
        assert [f[1] for op, f, _ in got if op == Op.BASIC_RETURN] == [312]


def test_an_alternate_exchange_name_must_be_a_string(peer: FakePeer) -> None:
    assert closes(peer.exchange("x", arguments={"alternate-exchange": 5})) == [
        (406, "PRECONDITION_FAILED - invalid arg 'alternate-exchange' for exchange 'x' in vhost '/': "
              "{unacceptable_type,signedint}")]


# -- direct reply-to -------------------------------------------------------------------

def test_direct_reply_to_round_trip() -> None:
    broker = Broker()
    client, server = FakePeer(broker, b"client").open(), FakePeer(broker, b"server").open()
    server.declare("rpc")
    server.consume("rpc", "srv", auto_ack=True)
    client.consume("amq.rabbitmq.reply-to", "replies", auto_ack=True)
    client.publish("", "rpc", b"question", properties={"reply_to": "amq.rabbitmq.reply-to",
                                                       "correlation_id": "1"})
    [request] = props_of(server.collect())
    reply_to = request["reply_to"]
    assert reply_to.startswith("amq.rabbitmq.reply-to.") and request["correlation_id"] == "1"
    server.publish("", reply_to, b"answer", properties={"correlation_id": "1"})
    reply = client.collect()
    assert bodies(reply) == [b"answer"] and deliveries(reply)[0][1] == "replies"
    assert server.count(reply_to) == 0  # a passive declare of a live reply queue succeeds
    client.cancel("replies")
    got = server.publish("", reply_to, b"too late", mandatory=True)
    assert [f[1] for op, f, _ in got if op == Op.BASIC_RETURN] == [312]


def test_direct_reply_to_rules(peer: FakePeer) -> None:
    peer.declare("rpc")
    assert closes(peer.publish("", "rpc", b"q", properties={"reply_to": "amq.rabbitmq.reply-to"})) == [
        (406, "PRECONDITION_FAILED - fast reply consumer does not exist")]
    peer.send(Op.CHANNEL_CLOSE_OK, 1)
    peer.send(Op.CHANNEL_OPEN, 2)
    assert closes(peer.consume("amq.rabbitmq.reply-to", "r", ch=2, auto_ack=False)) == [
        (406, "PRECONDITION_FAILED - reply consumer cannot acknowledge")]


# -- quorum delivery limit ---------------------------------------------------------------

def test_quorum_redeliveries_count_and_the_limit_dead_letters(peer: FakePeer) -> None:
    peer.declare("dead")
    peer.declare("q", durable=True, arguments={"x-queue-type": "quorum", "x-delivery-limit": 2,
                                               "x-dead-letter-exchange": "",
                                               "x-dead-letter-routing-key": "dead"})
    peer.consume("q", "c")
    frames = peer.publish("", "q", b"poison")
    counts = []
    for _ in range(3):  # each nack (requeue) brings it straight back, counted
        [delivery] = deliveries(frames)
        counts.append((props_of(frames)[0].get("headers") or {}).get("x-delivery-count"))
        frames = peer.nack(delivery[2])
    assert counts == [None, 1, 2]
    assert deliveries(frames) == []  # the third return passed the limit of 2
    [props] = [props_of(f)[0] for f in [peer.get("dead")]]
    assert props["headers"]["x-death"][0]["reason"] == "delivery_limit"
    assert peer.count("q") == 0


# -- transactions and flow ----------------------------------------------------------------

def test_transactions_apply_publishes_and_acks_at_commit(peer: FakePeer) -> None:
    peer.declare("q")
    peer.publish("", "q", b"before")
    got = [f for op, f, _ in peer.get("q", auto_ack=False) if op == Op.BASIC_GET_OK]
    assert [op for op, _, _ in peer.send(Op.TX_SELECT, 1)] == [Op.TX_SELECT_OK]
    peer.publish("", "q", b"in tx")
    peer.ack(got[0][1])
    assert peer.count("q") == 0 and peer.broker.topology.queues["q"].unacked == 1
    assert [op for op, _, _ in peer.send(Op.TX_COMMIT, 1)] == [Op.TX_COMMIT_OK]
    assert peer.count("q") == 1 and peer.broker.topology.queues["q"].unacked == 0


def test_rollback_discards_publishes_and_keeps_acked_messages_unacked(peer: FakePeer) -> None:
    peer.declare("q")
    peer.publish("", "q", b"m")
    tag = [f for op, f, _ in peer.get("q", auto_ack=False) if op == Op.BASIC_GET_OK][0][1]
    peer.send(Op.TX_SELECT, 1)
    peer.publish("", "q", b"discarded")
    peer.ack(tag)
    assert [op for op, _, _ in peer.send(Op.TX_ROLLBACK, 1)] == [Op.TX_ROLLBACK_OK]
    peer.send(Op.TX_COMMIT, 1)
    assert peer.count("q") == 0
    peer.ack(tag)  # still unacked after the rollback: acking it now works
    peer.send(Op.TX_COMMIT, 1)
    assert peer.broker.topology.queues["q"].unacked == 0


def test_transaction_mode_rules(peer: FakePeer) -> None:
    assert closes(peer.send(Op.TX_COMMIT, 1)) == [(406, "PRECONDITION_FAILED - channel is not transactional")]
    peer.send(Op.CHANNEL_OPEN, 2)
    peer.send(Op.CONFIRM_SELECT, 2)
    assert closes(peer.send(Op.TX_SELECT, 2)) == [(406, "PRECONDITION_FAILED - cannot switch from confirm to tx mode")]
    peer.send(Op.CHANNEL_OPEN, 3)
    peer.send(Op.TX_SELECT, 3)
    assert closes(peer.send(Op.CONFIRM_SELECT, 3)) == [(406, "PRECONDITION_FAILED - cannot switch from tx to confirm mode")]


def test_channel_flow(peer: FakePeer) -> None:
    assert [(op, f) for op, f, _ in peer.send(Op.CHANNEL_FLOW, 1, True)] == [(Op.CHANNEL_FLOW_OK, [1, True])]
    assert closes(peer.send(Op.CHANNEL_FLOW, 1, False)) == [(540, "NOT_IMPLEMENTED - active=false")]


# -- sender-selected distribution (CC / BCC) --------------------------------------------------

def test_cc_and_bcc_headers_add_routing_keys_and_bcc_does_not_travel(peer: FakePeer) -> None:
    for name in ("main", "copy", "hidden"):
        peer.declare(name)
    peer.publish("", "main", b"x", properties={"headers": {"CC": ["copy"], "BCC": ["hidden"], "app": 1}})
    seen = {name: [(f[-1], b) for op, f, b in peer.get(name) if op == Op.BASIC_GET_OK] for name in
            ("main", "copy", "hidden")}
    assert all(got and got[0][1] == b"x" for got in seen.values())
    assert all(got[0][0]["headers"] == {"CC": ["copy"], "app": 1} for got in seen.values())


def test_a_cc_header_of_another_type_is_406(peer: FakePeer) -> None:
    peer.declare("main")
    assert closes(peer.publish("", "main", b"x", properties={"headers": {"CC": "copy"}})) == [
        (406, "PRECONDITION_FAILED - invalid message: {unacceptable_type_in_header,\"CC\",longstr}")]


def test_a_dead_letter_keeps_its_cc_routing_keys(peer: FakePeer) -> None:
    peer.exchange("dlx", "direct")
    for name, key in (("dead-main", "main"), ("dead-copy", "copy")):
        peer.declare(name)
        peer.bind(name, "dlx", key)
    peer.declare("main", arguments={"x-dead-letter-exchange": "dlx"})
    peer.declare("copy")
    peer.consume("main", "c")
    frames = peer.publish("", "main", b"x", properties={"headers": {"CC": ["copy"]}})
    peer.reject(deliveries(frames)[0][2], requeue=False)
    [props] = [f[-1] for op, f, _ in peer.get("dead-main") if op == Op.BASIC_GET_OK]
    assert props["headers"]["x-death"][0]["routing-keys"] == ["main", "copy"]
    assert "CC" not in props["headers"]  # RabbitMQ drops it from the dead letter
    assert peer.drain("dead-copy") == [b"x"]  # routed by the CC key too
