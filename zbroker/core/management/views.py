"""The broker's objects as RabbitMQ's management API shows them: plain dicts with its
field names, for ``zbroker ctl``, the HTTP API and the metrics alike. Read-only.

Rules:
- A field is here only if zbroker knows its value; none is invented or left at a
  constant to look complete (RabbitMQ's Erlang-only fields -- reductions, garbage
  collection, mirrors -- are absent).
- A queue whose type keeps a log (``QueueType.segments`` not None: a stream) has
  RabbitMQ's stream row (``_log_depth``): ``type`` ``stream``, messages counted as its
  log holds them, and ``segments``; the fields RabbitMQ's stream rows lack are absent.
- Rates come from ``stats.py``: ``<counter>_details: {"rate": per second}`` beside each
  counter, RabbitMQ's shape. Times are milliseconds since the epoch, as RabbitMQ's.
- Names: a connection is RabbitMQ's ``"<peer host>:<port> -> <listener>"`` when the wire
  knows the peer's port (AMQP), ``"<peer host> (<id>) -> <listener>"`` when it knows only
  the host (ZeroMQ tells no port, so the connection's id keeps the name unique), else
  its id; a channel is
  ``"<connection> (<number>)"``, as RabbitMQ names them.
"""
from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any, Iterable

from zbroker.core.messaging.exchanges import Exchange
from zbroker.core.messaging.classic import MESSAGE_MEMORY
from zbroker.core.messaging.policies import PolicySet, merge
from zbroker.core.messaging.queue_type import QueueType
from zbroker.core.messaging.session import Channel, Connection
from zbroker.core.management.binding_keys import properties_key
from zbroker.core.management.stats import CHANNEL_COUNTERS, QUEUE_COUNTERS, channel_counts, queue_counts

if TYPE_CHECKING:
    from zbroker.core.broker import Broker
    from zbroker.core.messaging.topology import Topology
    from zbroker.core.messaging.consumers import Consumer


def details(names: Iterable[str], counts: Iterable[int], rates: Iterable[float]) -> dict[str, Any]:
    """``{name: count, name_details: {"rate": r}}`` for each counter."""
    out: dict[str, Any] = {}
    for name, count, rate in zip(names, counts, rates):
        out[name] = count
        out[name + "_details"] = {"rate": rate}
    return out


def millis(seconds: float) -> int:
    return int(seconds * 1000)


# -- queues ------------------------------------------------------------------------------

def queue(broker: "Broker", q: QueueType) -> dict[str, Any]:
    counts = queue_counts(q)
    rates = broker.stats.rates("queue", q, len(counts))
    publish, deliver, deliver_no_ack, get, get_no_ack = counts[:5]
    stats = details(("publish", *QUEUE_COUNTERS.values()), counts[:7], rates[:7])
    stats.update(details(("deliver_get",), (deliver + deliver_no_ack + get + get_no_ack,),
                         (sum(rates[1:5]),)))
    row = {
        "name": q.name, "vhost": q.topology.vhost, "type": q.settings.queue_type, "node": broker.node_name,
        "durable": q.durable, "auto_delete": q.auto_delete, "exclusive": q.exclusive_owner is not None,
        "arguments": q.arguments, **policy_fields(q.topology.policies, q.TYPE, q.name, q.UNSUPPORTED_POLICIES),
        "state": "running",
        "consumers": len(q.consumers),
    }
    row.update(_log_depth(q, rates) if q.segments is not None else _queue_depth(q, rates))
    row["message_stats"] = stats
    return row


def _queue_depth(q: QueueType, rates: list[float]) -> dict[str, Any]:
    """A classic or quorum queue's owner, consumers and messages, as RabbitMQ's rows."""
    ready, unacked = q.ready, q.unacked
    paged = q.paged_count
    resident = ready - paged
    owner = q.exclusive_owner
    return {
        "owner_pid_details": {"name": connection_name(owner)} if owner is not None else None,
        "exclusive_consumer_tag": next((c.tag for c in q.consumers if c.exclusive), None),
        "single_active_consumer_tag": q.active.tag if q.active is not None else None,
        **details(("messages", "messages_ready", "messages_unacknowledged"),
                  (ready + unacked, ready, unacked), (rates[7] + rates[8], rates[7], rates[8])),
        "messages_ram": resident, "messages_ready_ram": resident, "messages_paged_out": paged,
        "message_bytes_ready": q.ready_bytes, "message_bytes": q.ready_bytes,
        "memory": resident * MESSAGE_MEMORY,
        "idle_since": None if q.consumers else _iso(q.last_used),
    }


def _log_depth(q: QueueType, rates: list[float]) -> dict[str, Any]:
    """A stream's messages as RabbitMQ's ``rabbit_osiris_metrics`` reports them: messages
    and messages_ready both what the log holds, messages_unacknowledged 0 (a delivery out
    is still in the log; its channel counts it). Its ``segments`` are the log's (the key
    RabbitMQ's stream rows have from 3.13.3; 3.10 shows it only in ``rabbitmq-streams
    stream_status``). ``message_bytes``/``message_bytes_ready`` are the log's bytes: zbroker's
    (RabbitMQ's stream rows have no bytes). Left out as RabbitMQ's stream rows leave them
    out: the owner, the exclusive and single-active consumer tags, messages_ram,
    messages_ready_ram, messages_paged_out, idle_since, and memory (zbroker does not
    measure a stream's)."""
    ready = q.ready
    return {
        **details(("messages", "messages_ready", "messages_unacknowledged"),
                  (ready, ready, 0), (rates[7], rates[7], 0.0)),
        "message_bytes_ready": q.ready_bytes, "message_bytes": q.ready_bytes,
        "segments": q.segments,
    }


def queue_detail(broker: "Broker", q: QueueType) -> dict[str, Any]:
    """A queue with its consumers and its incoming publishes per exchange."""
    out = queue(broker, q)
    out["consumer_details"] = [consumer(broker, c) for c in q.consumers]
    out["incoming"] = [{"exchange": {"name": name, "vhost": q.topology.vhost}, "stats": {"publish": count}}
                       for name, count in sorted(q.incoming.items())]
    return out


def consumer(broker: "Broker", c: "Consumer") -> dict[str, Any]:
    q = c.queue
    active = q.active is None or q.active is c
    shown = active and q.counts_consumers  # (a stream's consumers show false, and "up")
    return {
        "consumer_tag": c.tag, "queue": {"name": q.name, "vhost": q.topology.vhost},
        "channel_details": channel_ref(c.channel), "ack_required": not c.auto_ack,
        "exclusive": c.exclusive, "prefetch_count": c.prefetch, "arguments": c.arguments,
        "active": shown,
        "activity_status": ("single_active" if q.settings.single_active_consumer and active
                            else "up" if active else "waiting"),
        "priority": c.priority,
    }


# -- exchanges and bindings ----------------------------------------------------------------

def exchange(broker: "Broker", ex: Exchange, vhost: str) -> dict[str, Any]:
    counts = (ex.published_in, ex.published_out)
    rates = broker.stats.rates("exchange", ex, 2)
    return {
        "name": ex.name, "vhost": vhost, "type": ex.kind or "direct", "durable": ex.durable,
        "auto_delete": ex.auto_delete, "internal": ex.internal, "arguments": ex.arguments, **ex.info(),
        **exchange_policy(broker.vhosts.topologies[vhost].policies, ex.name), "user_who_performed_action": "",
        "message_stats": details(("publish_in", "publish_out"), counts, rates),
    }


def policy_fields(policies: "PolicySet", kind: str, name: str, unsupported: frozenset[str]) -> dict[str, Any]:
    """RabbitMQ's ``policy``, ``operator_policy`` (null when none) and
    ``effective_policy_definition`` ({} when none) of a queue (``policies.py``)."""
    policy, operator = policies.chosen(kind, name, unsupported)
    return {"policy": policy.name if policy is not None else None,
            "operator_policy": operator.name if operator is not None else None,
            "effective_policy_definition": merge(policy, operator)}


def exchange_policy(policies: "PolicySet", name: str) -> dict[str, Any]:
    """An exchange's ``policy``: its name, and no field at all when none applies (as RabbitMQ)."""
    policy, _ = policies.chosen("exchange", name)
    return {"policy": policy.name} if policy is not None else {}


def bindings(topology: "Topology") -> list[dict[str, Any]]:
    """A vhost's bindings, the default exchange's implicit ones first, as RabbitMQ lists them."""
    vhost = topology.vhost
    out = [binding(vhost, "", q, q.name, {}) for q in topology.queues.values()]
    for source in topology.exchanges.values():
        for (destination, key, _), arguments in source.bindings.items():
            out.append(binding(vhost, source.name, destination, key, arguments))
    return out


def binding(vhost: str, source: str, destination: Any, routing_key: str, arguments: dict) -> dict[str, Any]:
    return {
        "source": source, "vhost": vhost, "destination": destination.name,
        "destination_type": "queue" if isinstance(destination, QueueType) else "exchange",
        "routing_key": routing_key, "arguments": arguments,
        "properties_key": properties_key(routing_key, arguments),
    }


# -- connections and channels -------------------------------------------------------------

def connection_name(conn: Connection) -> str:
    if conn.peer is None:
        return conn.name
    if conn.peer_port is not None:
        return f"{conn.peer}:{conn.peer_port} -> {conn.listener}"
    return f"{conn.peer} ({conn.name}) -> {conn.listener}"


def connection(broker: "Broker", conn: Connection) -> dict[str, Any]:
    listen_host, _, listen_port = conn.listener.rpartition(":")
    return {
        "name": connection_name(conn), "host": listen_host or None,
        "port": int(listen_port) if listen_port.isdigit() else None, "node": broker.node_name, "vhost": conn.virtual_host,
        "user": conn.user, "protocol": conn.protocol, "type": "network",
        "state": "blocked" if conn.publish_blocked else "running",
        "channels": len(conn.channels), "channel_max": broker.limits.channel_max,
        "frame_max": conn.frame_max or broker.max_body_bytes, "timeout": conn.heartbeat,
        "peer_host": conn.peer, "peer_port": conn.peer_port, "client_properties": conn.client_properties,
        "connected_at": millis(conn.connected_at), "auth_mechanism": conn.auth_mechanism, "ssl": conn.ssl,
        "blocked": conn.publish_blocked, "delivery_window_full": conn.blocked,
    }


def channel_ref(channel: Channel) -> dict[str, Any]:
    conn = channel.connection
    return {"name": channel_name(channel), "number": channel.number,
            "connection_name": connection_name(conn), "peer_host": conn.peer, "peer_port": conn.peer_port,
            "user": conn.user}


def channel_name(channel: Channel) -> str:
    return f"{connection_name(channel.connection)} ({channel.number})"


def channel(broker: "Broker", ch: Channel) -> dict[str, Any]:
    counts = channel_counts(ch)
    rates = broker.stats.rates("channel", ch, len(counts))
    stats = details(CHANNEL_COUNTERS.values(), counts, rates)
    conn = ch.connection
    ref = channel_ref(ch)
    return {
        "name": ref["name"], "number": ch.number, "node": broker.node_name,
        "vhost": conn.virtual_host, "user": conn.user,
        "connection_details": {"name": ref["connection_name"], "peer_host": ref["peer_host"],
                               "peer_port": ref["peer_port"]},
        "state": "running", "consumer_count": len(ch.consumers),
        "messages_unacknowledged": len(ch.unacked),
        "messages_unconfirmed": ch.publish_seq - ch.confirmed_seq if ch.confirm else 0,
        "messages_uncommitted": len(ch.tx or ()), "prefetch_count": ch.prefetch_count,
        "global_prefetch_count": ch.global_prefetch, "confirm": ch.confirm,
        "transactional": ch.tx is not None, "message_stats": stats,
    }


def _iso(seconds: float) -> str:
    """RabbitMQ's ``idle_since`` format: ``2026-12-02 20:09:43`` (UTC)."""
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
