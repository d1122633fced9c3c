"""Messaging: RabbitMQ's model of exchanges, queues and consumers, as pure state.

What lives here: the topology of each vhost (``topology.py``: declare, bind, route), the
exchange types (``exchanges.py``, ``topic.py``), the queue types behind one interface
(``queue_type.py``; ``classic.py`` and ``quorum.py`` implement it), consumer choice
(``consumer_choice.py``) and credit (``consumers.py``), connections and channels as the
core sees them (``session.py``), confirms, dead-lettering, transactions, direct
reply-to, the consumer timeout, resource alarms and the timers the broker keeps.

Rules of this package:
- Nothing here reads a clock, touches a socket or knows a wire: ``now`` comes with
  every call, events leave through the ``Outbox`` as tuples named in ``zbroker/methods.py``.
- A queue owns its messages; the broker (``zbroker/core/broker.py`` and the handler
  families beside it) dispatches. Nothing asks a queue which type it is: it asks the
  queue-type interface.
- Imports point inward only: messaging may use ``durability`` records through the
  interfaces it is handed (a queue's journal), never ``management`` or ``access``.
"""
