"""Unit-test fixtures: the pure core with one open client connection, no sockets."""
from __future__ import annotations

import pytest

from tests.unit.wire import FakePeer
from zbroker.core import Broker


@pytest.fixture
def peer() -> FakePeer:
    """A fresh broker and one client on channel 1 (tests needing a clock define their own)."""
    return FakePeer(Broker(), b"p").open()
