"""Flow-control accounting that both ends of the zbroker wire, and the core, count alike.

The rules of publish credit and the delivery window are in ``zbroker/wires/flow.py``;
here are only the numbers and the one formula each side must compute identically.
"""
from __future__ import annotations

from typing import Any, Sequence

#: Bytes of publishes one connection may have in flight (4 MiB: ~20,000 small messages,
#: enough that a publisher does not wait for credit on a healthy broker).
PUBLISH_CREDIT = 4 * 1024 * 1024
#: Delivery bytes one connection may hold unreported before the broker pauses it.
DELIVERY_WINDOW = 4 * 1024 * 1024
#: A message's cost besides its frames' bytes: the transport's per-message overhead.
MESSAGE_COST = 64
#: What one delivery counts against the delivery window besides its body (its command
#: frame and the transport's per-message cost).
DELIVERY_COST = 256


def message_cost(parts: Sequence[Any], start: int = 0) -> int:
    """What the message ``parts[start:]`` (its first frame first, in either form) costs
    against publish credit: the client counts the frames it sends, the broker those it
    receives."""
    if len(parts) - start == 1:  # one packed frame: the common case, without a slice
        return len(parts[start]) + MESSAGE_COST
    return sum(map(len, parts[start:])) + MESSAGE_COST
