"""``/api/nodes``: the one node, its figures from what the server measured, for monitoring
users; and ``count`` given as a string, as rabbitmqadmin sends it."""
from __future__ import annotations

import pytest

from tests.unit.wire import FakePeer
from zbroker.core.access.management_access import AccessDenied, Principal, authorize
from zbroker.core.management.requests import Management, ManagementError

FACTS = {"pid": 4242, "memory": {"resident": 50_000_000, "limit": 800_000_000}, "disk": {"free": 9, "limit": 5}}


def test_the_one_node_with_the_servers_figures(peer: FakePeer) -> None:
    m = Management(peer.broker)
    [node] = m.handle("nodes", {}, FACTS)
    assert (node["name"], node["type"], node["running"], node["os_pid"]) == ("zbroker@localhost", "disc", True, "4242")
    assert (node["mem_used"], node["mem_limit"], node["disk_free"], node["disk_free_limit"]) == (
        50_000_000, 800_000_000, 9, 5)
    assert node["mem_alarm"] is False and node["disk_free_alarm"] is False
    assert m.handle("node", {"name": "zbroker@localhost"}, FACTS) == node
    with pytest.raises(ManagementError) as err:
        m.handle("node", {"name": "rabbit@elsewhere"}, FACTS)
    assert err.value.status == 404


def test_nodes_are_for_monitoring_users(peer: FakePeer) -> None:
    users = peer.broker.users
    authorize(users, Principal("ops", ["monitoring"]), "nodes", {})
    authorize(users, Principal("admin", ["administrator"]), "node", {"name": "x"})
    with pytest.raises(AccessDenied) as err:
        authorize(users, Principal("dev", ["management"]), "nodes", {})
    assert (err.value.status, err.value.reason) == (401, "Not monitor user")


def test_get_messages_takes_count_as_a_string(peer: FakePeer) -> None:
    peer.declare("q")
    peer.publish("", "q", b"one")
    got = Management(peer.broker).handle("get_messages", {"name": "q", "count": "5", "ackmode": "ack_requeue_false",
                                                          "encoding": "auto", "truncate": "50000"})
    assert [g["payload"] for g in got] == ["one"]
    with pytest.raises(ManagementError):
        Management(peer.broker).handle("get_messages", {"name": "q", "count": "five"})
