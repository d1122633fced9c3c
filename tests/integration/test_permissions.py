"""Permissions against a real broker, on both wires (zbroker's client on the zbroker
wire, real pika over AMQP): each operation of RabbitMQ's table refused with its
``ChannelClosedByBroker(403, ...)`` and allowed on a name the user's expressions match."""
from __future__ import annotations

import subprocess
import sys
from types import ModuleType
from typing import Any, Callable

import pytest

from tests.support import CHANNEL_CLOSED, ROOT, Broker, child_env


def ctl(broker: Broker, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "zbroker", "ctl", "--broker", broker.endpoint, *args], check=True,
                   capture_output=True, env=child_env(), cwd=ROOT, timeout=30)


def refused(access: str, kind: str, name: str) -> str:
    return f"ACCESS_REFUSED - {access} access to {kind} '{name}' in vhost '/' refused for user 'app'"


#: (operation, what it does on a channel given a name prefix, the refusal for "other").
OPERATIONS: list[tuple[str, Callable[[Any, str], Any], str]] = [
    ("exchange_declare", lambda ch, p: ch.exchange_declare(f"{p}x2", "fanout"), refused("configure", "exchange", "otherx2")),
    ("exchange_declare passive", lambda ch, p: ch.exchange_declare(f"{p}x", passive=True),
     refused("configure", "exchange", "otherx")),
    ("exchange_delete", lambda ch, p: ch.exchange_delete(f"{p}x"), refused("configure", "exchange", "otherx")),
    ("queue_declare", lambda ch, p: ch.queue_declare(f"{p}q2"), refused("configure", "queue", "otherq2")),
    ("queue_declare passive", lambda ch, p: ch.queue_declare(f"{p}q", passive=True),
     refused("configure", "queue", "otherq")),
    ("queue_delete", lambda ch, p: ch.queue_delete(f"{p}q"), refused("configure", "queue", "otherq")),
    ("queue_purge", lambda ch, p: ch.queue_purge(f"{p}q"), refused("read", "queue", "otherq")),
    ("queue_bind", lambda ch, p: ch.queue_bind(f"{p}q", f"{p}x", "k"), refused("write", "queue", "otherq")),
    ("queue_unbind", lambda ch, p: ch.queue_unbind(f"{p}q", f"{p}x", "k"), refused("write", "queue", "otherq")),
    ("exchange_bind", lambda ch, p: ch.exchange_bind(f"{p}x", "app.x", "k"), refused("write", "exchange", "otherx")),
    ("basic_get", lambda ch, p: ch.basic_get(f"{p}q"), refused("read", "queue", "otherq")),
    ("basic_consume", lambda ch, p: ch.basic_consume(f"{p}q", lambda *a: None), refused("read", "queue", "otherq")),
    ("basic_publish", lambda ch, p: (ch.confirm_delivery(), ch.basic_publish(f"{p}x", "k", b"m")),
     refused("write", "exchange", "otherx")),
]


@pytest.fixture
def app_connect(broker: Broker, pika: ModuleType, connect: Callable[..., Any]) -> Callable[[], Any]:
    """Connections as ``app``, whose three expressions are ``^app\\.``; ``other*`` and
    ``app.*`` exist (made by guest)."""
    ctl(broker, "add_user", "app", "pw")
    ctl(broker, "set_permissions", "app", "^app\\.", "^app\\.", "^app\\.")
    channel = connect().channel()
    for prefix in ("other", "app."):
        channel.exchange_declare(f"{prefix}x", "direct")
        channel.queue_declare(f"{prefix}q")
        channel.queue_bind(f"{prefix}q", f"{prefix}x", "k")
    return lambda: connect(credentials=pika.PlainCredentials("app", "pw"))


@pytest.mark.parametrize("name,operation,text", OPERATIONS, ids=[o[0] for o in OPERATIONS])
def test_operation_needs_its_permission(app_connect: Callable[[], Any], name: str,
                                        operation: Callable[[Any, str], Any], text: str) -> None:
    conn = app_connect()
    with pytest.raises(CHANNEL_CLOSED) as err:
        operation(conn.channel(), "other")
    assert (err.value.reply_code, err.value.reply_text) == (403, text)
    assert conn.is_open  # a channel error: the connection goes on
    operation(conn.channel(), "app.")  # the same operation on a name app may use


def test_default_exchange_is_amq_default_and_no_permissions_means_no_vhost(
        broker: Broker, app_connect: Callable[[], Any], pika: ModuleType, wire: str) -> None:
    conn = app_connect()
    channel = conn.channel()
    channel.confirm_delivery()
    with pytest.raises(CHANNEL_CLOSED) as err:
        channel.basic_publish("", "app.q", b"m")
    assert err.value.reply_text == refused("write", "exchange", "amq.default")
    ctl(broker, "clear_permissions", "app")
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError, match="access to vhost '/' refused for user 'app'"):
        app_connect()


def test_topic_permissions_with_ctl(broker: Broker, app_connect: Callable[[], Any], pika: ModuleType) -> None:
    ctl(broker, "set_topic_permissions", "app", "app.logs", "^{username}\\.", "^(public|app)\\.")
    listed = subprocess.run([sys.executable, "-m", "zbroker", "ctl", "--broker", broker.endpoint,
                             "list_topic_permissions", "-q"], capture_output=True, text=True, env=child_env(),
                            cwd=ROOT, timeout=30).stdout.splitlines()
    assert listed == ["user\texchange\twrite\tread", "app\tapp.logs\t^{username}\\.\t^(public|app)\\."]
    conn = app_connect()
    channel = conn.channel()
    channel.exchange_declare("app.logs", "topic")
    channel.confirm_delivery()
    channel.basic_publish("app.logs", "app.start", b"mine")  # {username} is app
    with pytest.raises(CHANNEL_CLOSED) as err:
        channel.basic_publish("app.logs", "billing.start", b"not mine")
    assert (err.value.reply_code, err.value.reply_text) == (
        403, "ACCESS_REFUSED - write access to topic 'billing.start' in exchange 'app.logs' in vhost '/' "
             "refused for user 'app'")
    channel = conn.channel()
    channel.queue_bind("app.q", "app.logs", "public.#")
    with pytest.raises(CHANNEL_CLOSED, match="read access to topic 'billing.#'"):
        channel.queue_bind("app.q", "app.logs", "billing.#")
    ctl(broker, "clear_topic_permissions", "app")
    conn.channel().basic_publish("app.logs", "billing.start", b"allowed again")
