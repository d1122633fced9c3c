"""Broker semantics, pure and protocol-neutral: typed commands and ``now`` in, events out.

The folder tells the architecture:
- ``broker.py``: the entry points wires call, the handler table, the one error boundary;
- ``admission.py``: connections and channels coming and going, and what they leave;
- ``messaging/``: exchanges, queue types, consumers, delivery, the command handlers;
- ``access/``: users, permissions, vhosts, limits, and the checks commands pass;
- ``management/``: operators' requests, views, statistics, definitions;
- ``durability/``: the store bridge, journals, snapshots, paging, recovery.
No sockets, no clock reads, no threads, no wire formats (``test_layering`` checks it).
"""
from zbroker.core.broker import DEFAULT_HEARTBEAT_S, DEFAULT_MAX_BODY_BYTES, Broker

__all__ = ["Broker", "DEFAULT_HEARTBEAT_S", "DEFAULT_MAX_BODY_BYTES"]
