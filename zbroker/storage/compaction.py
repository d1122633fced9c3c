"""When a store's sparse segment is worth compacting: both stores copy the few messages
still held in a mostly dead segment forward so that its space comes back, but only
once those messages have stayed put.

Why: compacting walks every message every queue holds (to learn which of the segment's
records are still held) and rewrites the survivors. A segment that a consumer is
draining passes through "a tenth live" on its way to empty; compacting it then copies a
tenth of it only for the consumer to take those copies a moment later, and stalls the
loop for the walk. So a segment qualifies once at most 1/``LIVE_FRACTION`` of the
references appended to it are live *and* that count has not changed for
``STABLE_CHECKS`` checks in a row (a store checks once a loop pass, at its commit).
"""
from __future__ import annotations

#: A segment is worth compacting once at most 1/this of what was appended to it is live.
LIVE_FRACTION = 10
#: Checks in a row a sparse segment's live references must stay the same.
STABLE_CHECKS = 64


class Stillness:
    """Per segment: its live references when last checked, and for how many checks in a
    row they have been that."""

    def __init__(self) -> None:
        self._seen: dict[int, tuple[int, int]] = {}

    def worth_compacting(self, number: int, live: int, appended: int) -> bool:
        """Call once a check for each segment that could be compacted."""
        if not 0 < live * LIVE_FRACTION <= appended:
            self._seen.pop(number, None)
            return False
        was, checks = self._seen.get(number, (live, 0))
        checks = checks + 1 if was == live else 1
        self._seen[number] = (live, checks)
        return checks >= STABLE_CHECKS

    def forget(self, number: int) -> None:
        self._seen.pop(number, None)
