"""Wires: one adapter per protocol between its frames and the core's commands and events.

``native.py`` is the zbroker wire (ZeroMQ multipart messages of msgpack commands); an
AMQP 0-9-1 adapter drives the same core the same way. A wire never decides semantics:
it checks its own framing, hands typed commands to ``Broker`` and encodes the events
the broker queued.
"""
