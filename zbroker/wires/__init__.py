"""Wires: one adapter per protocol between its frames and the core's commands and events.

``native.py`` is the zbroker wire (ZeroMQ multipart messages of msgpack commands);
``amqp.py`` (with ``amqp_handshake.py`` and ``amqp_connection.py``) the AMQP 0-9-1 wire,
driving the same core the same way; ``management.py`` answers management requests. A
wire never decides semantics: it checks its own framing, hands typed commands to
``Broker`` and encodes the events of its own connections, which the server hands it
(each wire's connection ids are of its own type, ``CONN_ID``). A wire never reaches into
another wire's output (``NativeWire.take_outgoing`` takes the whole outbox: it is for a
broker with that wire alone, the unit tests' and the fuzzer's).
"""
