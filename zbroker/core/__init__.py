"""Broker semantics, pure: exchanges, topic matching, bindings, queues, consumers and
credit, confirms. No sockets, no clock reads, no threads (``test_layering`` checks it
imports without zmq)."""
from zbroker.core.broker import DEFAULT_HEARTBEAT_S, DEFAULT_MAX_BODY_BYTES, Broker

__all__ = ["Broker", "DEFAULT_HEARTBEAT_S", "DEFAULT_MAX_BODY_BYTES"]
