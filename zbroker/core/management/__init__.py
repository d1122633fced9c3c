"""Management: what operators ask of the broker, answered on the broker's thread.

What lives here: the management requests and their dispatch (``requests.py``), the
views they return (``views.py``), counters sampled into rates (``stats.py``) and
definitions export and import (``definitions.py``).

Rules of this package:
- Management reads and changes broker state only through requests the server hands to
  the core, never from another thread: reading stats takes no lock.
- Statistics read plain counters that messaging keeps; nothing on the message path
  waits for, or depends on, a statistic.
- A refused request is a ``ManagementError`` with RabbitMQ's status and reason.
"""
