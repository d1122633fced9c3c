"""Management requests log in and are authorised (RabbitMQ's management tags and
permissions), through the management wire with a fake clock."""
from typing import Any

import pytest

from tests.unit.wire import FakeClock
from zbroker.core import Broker
from zbroker.protocol.native_management import MANAGEMENT_HEADER, decode_reply, encode_request
from zbroker.wires.management import ManagementWire

TOKEN = b"t" * 32


@pytest.fixture
def wire() -> ManagementWire:
    broker = Broker()
    users = broker.topology.users
    users.add("admin", "a", ["administrator"])
    users.add("watcher", "w", ["monitoring"])
    users.add("app", "p", ["management"])
    users.set_permissions("app", "/", "^app-", "^app-", "^app-")
    users.add("plain", "x", [])
    users.set_permissions("plain", "/", ".*", ".*", ".*")
    for name in ("app-q", "other"):
        wire_declare(broker, name)
    return ManagementWire(broker, relay_token=TOKEN)


def wire_declare(broker: Broker, name: str) -> None:
    from zbroker.core.management.requests import Management
    Management(broker).handle("import_definitions", {"definitions": {"queues": [{"name": name}]}})


def ask(wire: ManagementWire, verb: str, credentials: Any, host: str | None = "127.0.0.1", **args: Any) -> Any:
    wire.handle(b"ctl", [MANAGEMENT_HEADER, encode_request(1, verb, args, credentials)], host)
    [(_, frames)] = wire.take_replies()
    _, ok, result = decode_reply(frames[1])
    return result if ok else (result["status"], result["reason"])


def login(user: str, password: str) -> dict:
    return {"user": user, "password": password}


def test_no_or_wrong_login_is_401(wire: ManagementWire) -> None:
    assert ask(wire, "overview", None) == (401, "Login failed")
    assert ask(wire, "overview", login("admin", "wrong")) == (401, "Login failed")
    assert ask(wire, "overview", login("nobody", "x")) == (401, "Login failed")
    assert ask(wire, "whoami", login("guest", "guest"), host="192.0.2.9") == (401, "Login failed")  # loopback only
    assert ask(wire, "whoami", login("admin", "a")) == {"name": "admin", "tags": ["administrator"]}


def test_tags_decide_what_may_be_asked(wire: ManagementWire) -> None:
    assert ask(wire, "list", login("plain", "x"), kind="queues") == (401, "Not management user")
    assert [q["name"] for q in ask(wire, "list", login("watcher", "w"), kind="queues")] == ["app-q", "other"]
    assert ask(wire, "list", login("watcher", "w"), kind="users") == (401, "Not administrator user")
    assert ask(wire, "add_user", login("watcher", "w"), name="eve", password="e") == (401, "Not administrator user")
    assert ask(wire, "set_permissions", login("app", "p"), name="app", configure=".*", write=".*",
               read=".*") == (401, "Not administrator user")
    assert ask(wire, "add_user", login("admin", "a"), name="eve", password="e") == {"name": "eve"}
    listed = ask(wire, "list", login("admin", "a"), kind="users")
    assert {u["name"] for u in listed} >= {"eve", "admin"} and all("password_hash" in u for u in listed)


def test_queue_actions_need_the_users_permission(wire: ManagementWire) -> None:
    app = login("app", "p")
    assert ask(wire, "purge_queue", app, name="app-q") == {"message_count": 0}
    assert ask(wire, "purge_queue", app, name="other") == (
        403, "ACCESS_REFUSED - read access to queue 'other' in vhost '/' refused for user 'app'")
    assert ask(wire, "delete_queue", app, name="other")[0] == 403
    assert ask(wire, "publish", app, exchange="", routing_key="other", payload="x")[0] == 403
    assert ask(wire, "get_messages", app, name="app-q") == []
    assert ask(wire, "close_connection", app, name="x") == (401, "Not administrator user")


def test_only_the_relay_may_say_where_a_login_comes_from(wire: ManagementWire) -> None:
    forged = {**login("guest", "guest"), "peer": "127.0.0.1", "relay": b"x" * 32}
    assert ask(wire, "whoami", forged, host="192.0.2.9") == (401, "Login failed")
    relayed = {**login("guest", "guest"), "peer": "127.0.0.1", "relay": TOKEN}
    assert ask(wire, "whoami", relayed, host=None)["name"] == "guest"
    from_afar = {**relayed, "peer": "192.0.2.9"}
    assert ask(wire, "whoami", from_afar, host=None) == (401, "Login failed")
    exporter = {"relay": TOKEN}  # the metrics exporter: reads, nothing else
    assert ask(wire, "list", exporter, host=None, kind="queues")[0]["name"] == "app-q"
    assert ask(wire, "list", exporter, host=None, kind="users") == (401, "Not administrator user")
    assert ask(wire, "purge_queue", exporter, host=None, name="other") == (401, "Not administrator user")


def test_failed_logins_are_throttled_per_address(wire: ManagementWire, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    wire.broker.now = clock.now
    for _ in range(10):
        assert ask(wire, "whoami", login("admin", "guess"), host="192.0.2.1") == (401, "Login failed")
    # The bucket is empty: even the right password is refused from that address, not another's.
    assert ask(wire, "whoami", login("admin", "a"), host="192.0.2.1") == (401, "Login failed")
    assert ask(wire, "whoami", login("admin", "a"), host="192.0.2.2")["name"] == "admin"
    assert "too many failed logins from 192.0.2.1" in caplog.text
    assert "guess" not in caplog.text  # passwords are never logged
    wire.broker.now = clock.advance(1.0)  # one token back: one try
    assert ask(wire, "whoami", login("admin", "a"), host="192.0.2.1")["name"] == "admin"
