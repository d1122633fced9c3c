"""Flow control on the zbroker wire: publish credit one way, a delivery window the other.

A ROUTER socket reads every peer, so the broker cannot slow a publisher by not reading
its socket, as an AMQP broker does. Both directions are bounded by counting instead.

Publish credit (RabbitMQ's credit flow, between the client and the broker):
- HELLO_OK's server properties carry ``publish_credit``: ``PUBLISH_CREDIT`` bytes. A
  message costs the lengths of its frames plus ``MESSAGE_COST`` (``zbroker/credit.py``).
- The client sends a message holding a publish only while its credit is positive, and
  takes each such message's cost from it.
- After each loop pass (after its commit, so persistent messages are on disk) the broker
  returns what it took from each peer in a ``PUBLISH_CREDIT`` event once that is a
  quarter window or more (so a slow publisher, an RPC client, gets no extra message per
  publish; one with less than that taken still has three quarters to go on), except to a
  connection an alarm blocks (``core/messaging/alarms.py``): it gets its credit when the alarm
  clears. A publisher is therefore never more than one window ahead of what the broker
  has applied and written: its send queue, the socket buffers and the broker's receive
  pipe hold at most ``PUBLISH_CREDIT`` bytes (plus one message) of its publishes.
- A peer that publishes with a whole window outstanding broke the rule: closed with 503.

Delivery window (the consumer side's mirror image):
- HELLO_OK carries ``delivery_window``: ``DELIVERY_WINDOW`` bytes. The core counts what
  it delivers to a connection (body + ``DELIVERY_COST`` each, ``zbroker/credit.py``) and
  stops delivering to it at the window; the client reports ``DELIVERY_READ n`` for the
  deliveries it has taken in (a quarter window at a time, and only while the program
  keeps up: it holds back its reports while many events wait undispatched), and
  deliveries resume. A peer reporting more than it was sent broke the rule: closed, 503.
"""
from __future__ import annotations

from typing import Any, Hashable, Mapping

from zbroker.credit import PUBLISH_CREDIT

class PublishCredit:
    """Per peer: publish bytes taken since the last grant. The wire charges ``used``
    itself (on the per-publish path a method call costs more than the rule)."""

    def __init__(self, window: int = PUBLISH_CREDIT) -> None:
        self.window = window
        self.step = max(1, window // 4)
        self.used: dict[Hashable, int] = {}

    def grants(self, connections: Mapping[Hashable, Any]) -> list[tuple[Hashable, int]]:
        """The credit to return now (a quarter window or more), per open connection; an
        alarm-blocked one waits."""
        out = []
        for peer, used in list(self.used.items()):
            conn = connections.get(peer)
            if conn is None:
                del self.used[peer]
            elif used >= self.step and not conn.publish_blocked:
                out.append((peer, used))
                del self.used[peer]
        return out
