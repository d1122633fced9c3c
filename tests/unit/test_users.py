"""Users in the pure core: logins on both wires, the operations, persistence in the
topology snapshot, definitions with RabbitMQ's hashes."""
import pytest

from tests.unit.wire import FakePeer
from zbroker.core import Broker
from zbroker.core.management import definitions
from zbroker.core.durability import snapshot
from zbroker.core.management.requests import Management, ManagementError
from zbroker.core.access.users import UserError, Users
from zbroker.protocol import Op

#: bob / 's3cret pässword' as RabbitMQ 3.10.8 exported him.
BOB = {"name": "bob", "password_hash": "ooMPgzRYBMKwvKWuVxKxThC5on5YMRLL5bz+oCxZL0cXvks1",
       "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ["monitoring"], "limits": {}}


def test_a_fresh_broker_has_guest_from_loopback_only() -> None:
    users = Users()
    assert users.authenticate("guest", "guest", "127.0.0.1") is None
    assert users.authenticate("guest", "guest", None) is None  # ipc/inproc: local
    assert users.authenticate("guest", "guest", "::1") is None
    assert users.authenticate("guest", "guest", "192.0.2.7") == "user 'guest' can only connect via localhost"
    assert users.authenticate("guest", "nope", "127.0.0.1") == "user 'guest' - invalid credentials"
    assert users.authenticate("mallory", "x", "127.0.0.1") == "user 'mallory' does not exist"
    assert users.users["guest"].tags == ["administrator"]


def test_user_operations() -> None:
    users = Users()
    users.add("alice", "pw", ["management"])
    assert users.authenticate("alice", "pw", "192.0.2.7") is None  # not a loopback-only user
    with pytest.raises(UserError, match="already exists"):
        users.add("alice", "again")
    users.change_password("alice", "new")
    assert users.authenticate("alice", "pw", None) and users.authenticate("alice", "new", None) is None
    users.set_tags("alice", ["administrator"])
    users.delete("alice")
    assert users.authenticate("alice", "new", None) == "user 'alice' does not exist"
    for bad in (lambda: users.delete("alice"), lambda: users.add("", "x"), lambda: users.add("x" * 256, "x"),
                lambda: users.set_tags("nobody", [])):
        with pytest.raises(UserError):
            bad()


def test_the_zbroker_wire_refuses_a_wrong_password_with_403() -> None:
    broker = Broker()
    broker.topology.users.add("bob", "pw")
    broker.topology.users.set_permissions("bob", "/", ".*", ".*", ".*")
    assert FakePeer(broker, b"ok").send(Op.HELLO, None, "/", "bob", "pw", {})[0][0] == Op.HELLO_OK
    [(op, fields, _)] = FakePeer(broker, b"no").send(Op.HELLO, None, "/", "bob", "wrong", {})
    assert (op, fields) == (Op.CONNECTION_CLOSE, [403, "ACCESS_REFUSED - Login was refused using authentication "
                                                       "mechanism PLAIN. For details see the broker logfile."])
    assert b"no" not in broker.connections


def test_users_survive_in_the_topology_snapshot() -> None:
    broker = Broker()
    broker.topology.users.add("bob", "pw", ["monitoring"])
    broker.topology.users.delete("guest")
    saved = snapshot.snapshot(broker.vhosts)
    again = Broker()
    snapshot.restore(again.vhosts, saved)
    assert sorted(again.topology.users.users) == ["bob"]
    assert again.topology.users.authenticate("bob", "pw", None) is None
    older = {k: v for k, v in saved.items() if k != "users"}  # an older zbroker's snapshot
    third = Broker()
    snapshot.restore(third.vhosts, older)
    assert sorted(third.topology.users.users) == ["guest"]
    before_permissions = {k: v for k, v in saved.items() if k != "permissions"}
    fourth = Broker()
    snapshot.restore(fourth.vhosts, before_permissions)  # its users could do everything: they still can
    assert fourth.topology.users.permissions.rows() == [["bob", "/", ".*", ".*", ".*"]]


def test_definitions_carry_users_and_their_hashes_both_ways() -> None:
    broker = Broker()
    m = Management(broker)
    result = m.handle("import_definitions", {"definitions": {"users": [BOB]}})
    assert result["users"] == 1
    assert broker.topology.users.authenticate("bob", "s3cret pässword", "192.0.2.7") is None
    exported = definitions.export(broker)
    assert {u["name"]: u["password_hash"] for u in exported["users"]}["bob"] == BOB["password_hash"]
    assert {p["user"] for p in exported["permissions"]} == {"guest"}  # bob came with none
    with_permissions = {"users": [BOB], "permissions": [
        {"user": "bob", "vhost": "/", "configure": "^bob-", "write": ".*", "read": ""}]}
    assert m.handle("import_definitions", {"definitions": with_permissions})["permissions"] == 1
    assert {p["user"]: (p["configure"], p["read"]) for p in definitions.export(broker)["permissions"]} == {
        "guest": (".*", ".*"), "bob": ("^bob-", "")}
    for bad, text in (({"users": [{**BOB, "hashing_algorithm": "rot13"}]}, "unknown hashing_algorithm"),
                      ({"users": [{"name": "x"}]}, "lacks a password_hash"),
                      ({"users": [{**BOB, "tags": 5}]}, "tags must be a list")):
        with pytest.raises(ManagementError) as err:
            m.handle("import_definitions", {"definitions": bad})
        assert text in err.value.reason
    listed = m.handle("list", {"kind": "users"})
    assert sorted((u["name"], u["tags"]) for u in listed) == [("bob", ["monitoring"]), ("guest", ["administrator"])]
    assert all(u["password_hash"] for u in listed)  # (administrators only: test_management_access.py)


def test_a_user_id_property_must_be_the_logged_in_user() -> None:
    """RabbitMQ's validated user-id: a publish claiming another user closes the channel."""
    broker = Broker()
    peer = FakePeer(broker, b"p").open()
    peer.send(Op.QUEUE_DECLARE, 1, "q", False, False, False, False, {})
    peer.send(Op.BASIC_PUBLISH, 1, "", "q", False, {"user_id": "guest"}, body=b"ok")
    got = peer.send(Op.BASIC_PUBLISH, 1, "", "q", False, {"user_id": "bob"}, body=b"claims bob")
    assert (got[0][0], got[0][1][1:]) == (Op.CHANNEL_CLOSE, [406, "PRECONDITION_FAILED - user_id property set to "
                                                                 "'bob' but authenticated user was 'guest'"])
    assert broker.topology.queues["q"].message_count == 1


def test_a_hello_without_a_password_is_refused_not_taken_as_authenticated() -> None:
    """The core reads password None as "the wire checked the login" (AMQP does at
    start-ok): the zbroker wire must never let a peer send None there."""
    broker = Broker()
    [(op, fields, _)] = FakePeer(broker, b"x").send(Op.HELLO, None, "/", "guest", None, {})
    assert (op, fields) == (Op.CONNECTION_CLOSE, [502, "SYNTAX_ERROR - HELLO.password must be str, got NoneType"])
    assert broker.connections == {}


def test_update_secret_on_the_zbroker_wire_is_answered_and_keeps_the_user() -> None:
    """As RabbitMQ's internal database: nothing expires, so update-secret-ok, same user;
    the broker-only answer sent by a client closes that connection (503)."""
    broker = Broker()
    peer = FakePeer(broker, b"p").open()
    assert peer.send(Op.CONNECTION_UPDATE_SECRET, "t0ken", "rotation") == [(Op.CONNECTION_UPDATE_SECRET_OK, [], None)]
    assert broker.connections[b"p"].user == "guest"
    assert peer.declare("still-open")[0][0] == Op.QUEUE_DECLARE_OK
    [(op, fields, _)] = peer.send(Op.CONNECTION_UPDATE_SECRET_OK)
    assert (op, fields[0]) == (Op.CONNECTION_CLOSE, 503)
