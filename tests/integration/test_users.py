"""Users against a real broker: added, changed and deleted with ``zbroker ctl``, logging
in over both wires, refused as RabbitMQ and pika do, and kept across a kill -9."""
from __future__ import annotations

import subprocess
import sys

import pytest

import zbroker.client as zpika
from tests.support import Broker, child_env

pika = pytest.importorskip("pika")


def ctl(broker: Broker, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zbroker", "ctl", "--broker", broker.endpoint, *args],
                          capture_output=True, text=True, env=child_env(), timeout=30)


def login_amqp(broker: Broker, user: str, password: str) -> None:
    credentials = pika.PlainCredentials(user, password)
    pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.amqp_port, credentials=credentials)).close()


def login_zbroker(broker: Broker, user: str, password: str) -> None:
    credentials = zpika.PlainCredentials(user, password)
    zpika.BlockingConnection(zpika.ConnectionParameters(port=broker.port, credentials=credentials)).close()


def test_users_are_managed_with_ctl_and_checked_on_both_wires(tmp_path) -> None:  # noqa: ANN001
    broker = first = Broker(data_dir=tmp_path)
    try:
        assert ctl(broker, "add_user", "bob", "s3cret").returncode == 0
        assert ctl(broker, "set_user_tags", "bob", "monitoring").returncode == 0
        assert ctl(broker, "set_permissions", "bob", ".*", ".*", ".*").returncode == 0
        for login in (login_amqp, login_zbroker):
            login(broker, "bob", "s3cret")
            with pytest.raises((pika.exceptions.ProbableAuthenticationError,
                                zpika.exceptions.ProbableAuthenticationError)):
                login(broker, "bob", "wrong")
        listed = ctl(broker, "list_users", "-q")
        assert listed.stdout.splitlines() == ["user\ttags", 'bob\t["monitoring"]', 'guest\t["administrator"]']
        assert "already exists" in ctl(broker, "add_user", "bob", "x").stderr
        assert ctl(broker, "change_password", "bob", "n3w").returncode == 0
        login_amqp(broker, "bob", "n3w")
        broker.kill()  # SIGKILL: the users were saved with the topology
        broker = Broker(data_dir=tmp_path)
        login_zbroker(broker, "bob", "n3w")
        assert ctl(broker, "delete_user", "bob").returncode == 0
        with pytest.raises(pika.exceptions.ProbableAuthenticationError):
            login_amqp(broker, "bob", "n3w")
        broker.wait_for(r"PLAIN login refused( from 127\.0\.0\.1)?: user 'bob' does not exist")
    finally:
        broker.stop()
        broker.remove_data()
    log = first.log() + broker.log()  # whole: kill() and stop() waited for the end of the output
    assert "s3cret" not in log and "n3w" not in log and "wrong" not in log  # passwords are never logged


def test_permissions_with_ctl_and_management_logins(tmp_path) -> None:  # noqa: ANN001
    broker = Broker(data_dir=tmp_path)
    try:
        ctl(broker, "add_user", "app", "pw-9f3k")
        ctl(broker, "set_user_tags", "app", "management")
        # No permissions yet: the vhost is refused on both wires (530).
        with pytest.raises(pika.exceptions.ProbableAccessDeniedError, match="access to vhost '/' refused"):
            login_amqp(broker, "app", "pw-9f3k")
        with pytest.raises(zpika.exceptions.ProbableAccessDeniedError, match="access to vhost '/' refused"):
            login_zbroker(broker, "app", "pw-9f3k")
        done = ctl(broker, "set_permissions", "-p", "/", "app", "^app\\.", "^app\\.", "^app\\.")
        assert done.stdout == 'Setting permissions for user "app" in vhost "/" ...\n'
        login_amqp(broker, "app", "pw-9f3k")
        assert ctl(broker, "list_permissions", "-q").stdout.splitlines() == [
            "user\tconfigure\twrite\tread", "app\t^app\\.\t^app\\.\t^app\\.", "guest\t.*\t.*\t.*"]
        assert ctl(broker, "list_user_permissions", "app").stdout.splitlines() == [
            'Listing permissions for user "app" ...', "vhost\tconfigure\twrite\tread", "/\t^app\\.\t^app\\.\t^app\\."]
        assert ctl(broker, "list_vhosts", "-q").stdout.splitlines() == ["name", "/"]
        # ctl logs in: app (management) reads, but may not change users; a wrong password is refused.
        as_app = ("--user", "app", "--password", "pw-9f3k")
        assert ctl(broker, *as_app, "list_queues").returncode == 0
        denied = ctl(broker, *as_app, "add_user", "eve", "x")
        assert (denied.returncode, denied.stderr) == (1, "Error: Not administrator user\n")
        wrong = ctl(broker, "--user", "app", "--password", "nope", "list_queues")
        assert (wrong.returncode, wrong.stderr) == (1, "Error: Login failed\n")
        broker.kill()  # permissions are durable with the users
        broker = Broker(data_dir=tmp_path)
        login_zbroker(broker, "app", "pw-9f3k")
        assert ctl(broker, "clear_permissions", "app").returncode == 0
        with pytest.raises(pika.exceptions.ProbableAccessDeniedError):
            login_amqp(broker, "app", "pw-9f3k")
    finally:
        broker.stop()
        broker.remove_data()
    assert "pw-9f3k" not in broker.log() and "nope" not in broker.log()  # passwords are never logged


def test_limits_with_ctl_on_both_wires(tmp_path) -> None:  # noqa: ANN001
    broker = Broker(data_dir=tmp_path)
    try:
        ctl(broker, "add_user", "bob", "pw")
        ctl(broker, "set_permissions", "bob", ".*", ".*", ".*")
        done = ctl(broker, "set_user_limits", "bob", '{"max-connections": 1}')
        assert done.returncode == 0, done.stderr
        assert ctl(broker, "list_user_limits", "-q").stdout.splitlines() == ["user\tvalue",
                                                                          'bob\t{"max-connections": 1}']
        first = pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", broker.amqp_port, credentials=pika.PlainCredentials("bob", "pw")))
        for login in (login_amqp, login_zbroker):
            with pytest.raises((pika.exceptions.ProbableAccessDeniedError, zpika.exceptions.ProbableAccessDeniedError),
                               match="user connection limit \\(1\\) is reached"):
                login(broker, "bob", "pw")
        first.close()
        assert ctl(broker, "set_vhost_limits", "{not json").returncode == 2  # a usage error, nothing sent
        bad = ctl(broker, "set_vhost_limits", '{"max-exchanges": 1}')
        assert bad.returncode == 1 and "unrecognised limit 'max-exchanges'" in bad.stderr
        assert ctl(broker, "set_vhost_limits", "-p", "/", '{"max-queues": 0}').returncode == 0
        ch = zpika.BlockingConnection(zpika.ConnectionParameters(port=broker.port)).channel()
        with pytest.raises(zpika.exceptions.ChannelClosedByBroker, match="queue limit in vhost '/' \\(0\\)"):
            ch.queue_declare("q")
        assert ctl(broker, "clear_vhost_limits").returncode == 0
        assert ctl(broker, "list_vhost_limits", "-q").stdout.splitlines() == ["vhost\tvalue"]
    finally:
        broker.stop()
        broker.remove_data()


def test_vhosts_keep_apart_on_both_wires_and_survive_a_restart(tmp_path) -> None:  # noqa: ANN001
    broker = Broker(data_dir=tmp_path)
    try:
        assert ctl(broker, "add_vhost", "staging").returncode == 0
        assert "already exists" in ctl(broker, "add_vhost", "staging").stderr
        assert ctl(broker, "list_vhosts", "-q").stdout.splitlines() == ["name", "/", "staging"]
        ctl(broker, "add_user", "app", "pw")
        ctl(broker, "set_permissions", "-p", "staging", "app", ".*", ".*", ".*")
        # app may use staging only; guest has no permissions there (a new vhost grants none).
        with pytest.raises(pika.exceptions.ProbableAccessDeniedError, match="access to vhost '/' refused"):
            login_amqp(broker, "app", "pw")
        with pytest.raises(zpika.exceptions.ProbableAccessDeniedError, match="access to vhost 'staging' refused"):
            zpika.BlockingConnection(zpika.ConnectionParameters(port=broker.port, virtual_host="staging"))
        amqp = pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", broker.amqp_port, "staging", pika.PlainCredentials("app", "pw")))
        native = zpika.BlockingConnection(zpika.ConnectionParameters(
            port=broker.port, virtual_host="staging", credentials=zpika.PlainCredentials("app", "pw")))
        guest = zpika.BlockingConnection(zpika.ConnectionParameters(port=broker.port)).channel()
        for ch in (amqp.channel(), native.channel(), guest):
            ch.queue_declare("orders", durable=True)  # the same name in two vhosts: two queues
        amqp.channel().basic_publish("", "orders", b"staged", pika.BasicProperties(delivery_mode=2))
        assert native.channel().basic_get("orders", auto_ack=True)[2] == b"staged"  # across wires, same vhost
        assert guest.basic_get("orders")[0] is None  # nothing crossed into '/'
        native.channel().basic_publish("", "orders", b"kept", zpika.BasicProperties(delivery_mode=2))
        with pytest.raises(zpika.exceptions.ChannelClosedByBroker, match="no exchange 'x' in vhost 'staging'"):
            native.channel().exchange_declare("x", passive=True)
        rows = ctl(broker, "list_queues", "-q", "-p", "staging", "name", "messages").stdout.splitlines()
        assert rows == ["name\tmessages", "orders\t1"]
        assert ctl(broker, "list_queues", "-p", "nowhere").returncode == 1
        broker.kill()  # the vhost, its durable queue and message, and app's permissions there survive
        broker = Broker(data_dir=tmp_path)
        native = zpika.BlockingConnection(zpika.ConnectionParameters(
            port=broker.port, virtual_host="staging", credentials=zpika.PlainCredentials("app", "pw")))
        assert native.channel().basic_get("orders", auto_ack=True)[2] == b"kept"
        assert ctl(broker, "delete_vhost", "staging").returncode == 0
        with pytest.raises(zpika.exceptions.ConnectionClosedByBroker, match="vhost 'staging' is deleted"):
            native.channel().queue_declare("orders", passive=True)
        assert ctl(broker, "list_permissions", "-q", "-p", "/").stdout.splitlines() == [
            "user\tconfigure\twrite\tread", "guest\t.*\t.*\t.*"]
        assert "cannot be deleted" in ctl(broker, "delete_vhost", "/").stderr
    finally:
        broker.stop()
        broker.remove_data()
