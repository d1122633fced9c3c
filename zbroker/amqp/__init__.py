"""AMQP 0-9-1 as a second wire onto the same core: the codec (``codec.py``: frames,
methods and content headers, decoded by pamqp) and the method table (``methods.py``:
AMQP's classes and methods <-> the core's ``Method`` numbers and field order).

Nothing here touches a socket or the core; ``zbroker/wires/amqp.py`` runs connections.
"""
from zbroker.amqp.codec import FrameError, PROTOCOL_HEADER

__all__ = ["FrameError", "PROTOCOL_HEADER"]
