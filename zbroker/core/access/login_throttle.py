"""Failed logins, throttled per source address: password guessing at one try a second.

Rules:
- Each failed login from an address takes a token from that address's bucket
  (``BURST`` tokens, one back every ``REFILL_S``). With the bucket empty, every login
  from that address is refused without looking at the password until a token is back:
  a guesser gets about one answer a second, not thousands. (A legitimate client on the
  same address is refused as long as the guessing goes on; the log says so.)
- Successful logins cost nothing. Local transports (no address) share one bucket.
- Refused logins are logged without the password: each one while the address is not
  throttled, then one line when throttling starts and one summary per ``LOG_EVERY_S``.
- At most ``MAX_ADDRESSES`` buckets are kept (full ones are forgotten first), so a flood
  from many addresses cannot grow memory without bound.
- Time is the core's ``now``; nothing here sleeps.
"""
from __future__ import annotations

import logging

log = logging.getLogger("zbroker.core.access.users")

BURST = 10
REFILL_S = 1.0
LOG_EVERY_S = 10.0
MAX_ADDRESSES = 10_000
LOCAL = "(local)"


class LoginThrottle:
    def __init__(self, burst: int = BURST, refill_s: float = REFILL_S) -> None:
        self.burst = burst
        self.refill_s = refill_s
        #: address -> [tokens, when counted, throttled refusals not yet logged, when logged]
        self._buckets: dict[str, list[float]] = {}

    def _tokens(self, address: str, now: float) -> list[float]:
        bucket = self._buckets.get(address)
        if bucket is None:
            if len(self._buckets) >= MAX_ADDRESSES:
                self._forget(now)
            bucket = self._buckets[address] = [float(self.burst), now, 0, 0.0]
        else:
            bucket[0] = min(self.burst, bucket[0] + (now - bucket[1]) / self.refill_s)
            bucket[1] = now
        return bucket

    def _forget(self, now: float) -> None:
        for address in [a for a, b in self._buckets.items()
                        if b[0] + (now - b[1]) / self.refill_s >= self.burst] or list(self._buckets)[:1]:
            del self._buckets[address]

    def throttled(self, host: str | None, now: float, what: str) -> bool:
        """True (and logged, rate-limited) if logins from ``host`` are refused unseen."""
        address = host or LOCAL
        if address not in self._buckets:
            return False
        bucket = self._tokens(address, now)
        if bucket[0] >= 1:
            if bucket[2]:
                log.warning("%d more %s logins from %s refused while throttled", bucket[2], what, address)
                bucket[2] = 0
            return False
        if bucket[2] == 0 and bucket[3] == 0:
            log.warning("too many failed logins from %s: its logins are refused for now (one try per %g s)",
                        address, self.refill_s)
            bucket[3] = now
        bucket[2] += 1
        if now - bucket[3] >= LOG_EVERY_S:
            log.warning("%d %s logins from %s refused while throttled", bucket[2], what, address)
            bucket[2], bucket[3] = 0, now
        return True

    def failed(self, host: str | None, now: float) -> None:
        bucket = self._tokens(host or LOCAL, now)
        bucket[0] = max(0.0, bucket[0] - 1)
        if bucket[0] >= 1:
            bucket[3] = 0.0  # (a new run of throttling is announced again)
