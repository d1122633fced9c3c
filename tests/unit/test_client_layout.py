"""The client's shape holds: a channel and its connection meet only at their interfaces
(``zbroker/client/link.py``), modules stay readable in one sitting and import each other
without cycles, and pika's public surface grows only by the documented internals."""
from __future__ import annotations

import ast
import inspect
import typing
from pathlib import Path

from tests.support import ROOT
from zbroker.client import BlockingChannel, BlockingConnection
from zbroker.client.link import ChannelLink, Link, LinkedChannel
from zbroker.client.robust import RobustChannel, RobustConnection

CLIENT = ROOT / "zbroker" / "client"
MAX_LINES = 600
#: pika 1.x's BlockingConnection and BlockingChannel, as zbroker.client offers them.
PIKA_CONNECTION = {
    "add_callback_threadsafe", "add_on_connection_blocked_callback", "add_on_connection_unblocked_callback",
    "basic_nack", "basic_nack_supported", "call_later", "channel", "close", "consumer_cancel_notify",
    "consumer_cancel_notify_supported", "exchange_exchange_bindings", "exchange_exchange_bindings_supported",
    "is_closed", "is_open", "process_data_events", "publisher_confirms", "publisher_confirms_supported",
    "remove_timeout", "sleep", "update_secret"}
PIKA_CHANNEL = {
    "add_on_cancel_callback", "add_on_return_callback", "basic_ack", "basic_cancel", "basic_consume",
    "basic_get", "basic_nack", "basic_publish", "basic_qos", "basic_recover", "basic_reject", "cancel",
    "channel_number", "close", "confirm_delivery", "connection", "consume", "consumer_tags", "exchange_bind",
    "exchange_declare", "exchange_delete", "exchange_unbind", "flow", "get_waiting_message_count", "is_closed",
    "is_open", "publish", "queue_bind", "queue_declare", "queue_delete", "queue_purge", "queue_unbind",
    "start_consuming", "stop_consuming", "tx_commit", "tx_rollback", "tx_select"}
#: zbroker's extensions: pipelined confirms; a robust connection's own calls.
CHANNEL_EXTENSIONS = {"publish_nowait", "wait_for_confirms"}
ROBUST_CONNECTION = {"add_on_connection_lost_callback", "add_on_reconnect_callback", "alias", "retrying"}
ROBUST_CHANNEL_INTERNALS = {"drop_deliveries", "restore"}
INTERNAL = "Internal to zbroker's client"


def _modules() -> list[Path]:
    return sorted(CLIENT.rglob("*.py"))


def _public(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")}


def _members(protocol: type) -> set[str]:
    """A protocol's members, its bases' included (EventTarget's in LinkedChannel)."""
    own = [cls for cls in protocol.__mro__ if cls not in (typing.Protocol, typing.Generic, object)]
    return {name for cls in own for name in vars(cls) if not name.startswith("_")}


def test_no_client_module_is_over_the_limit() -> None:
    sizes = {path.name: len(path.read_text().splitlines()) for path in _modules()}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def _foreign_private(tree: ast.AST) -> list[str]:
    """``x._name`` where ``x`` is not the object itself (self, cls, super(), or an explicit
    base class's method called on self)."""
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")):
            continue
        value = node.value
        if isinstance(value, ast.Name) and (value.id in ("self", "cls") or value.id[:1].isupper()):
            continue
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "super":
            continue
        found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_client_module_reaches_into_another_objects_privates() -> None:
    offenders = {path.name: hits for path in _modules() if (hits := _foreign_private(ast.parse(path.read_text())))}
    assert offenders == {}


def _runtime_imports(path: Path) -> set[str]:
    """The zbroker.client modules ``path`` imports when it runs (not under TYPE_CHECKING)."""
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("zbroker.client"):
            if node.module == "zbroker.client":  # from zbroker.client import exceptions, spec
                names.update(f"zbroker.client.{alias.name}" for alias in node.names)
            else:
                names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("zbroker.client."))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return names


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_client_modules_import_each_other_without_cycles() -> None:
    graph = {_module_name(p): _runtime_imports(p) for p in _modules() if p.name != "__init__.py"}
    cycles = []

    def walk(module: str, path: list[str]) -> None:
        for target in sorted(graph.get(module, ())):
            if target in path:
                cycles.append(path[path.index(target):] + [target])
            else:
                walk(target, path + [target])

    for module in graph:
        walk(module, [module])
    assert cycles == []
    # The check itself can fail: the connection does import the channel at run time.
    assert "zbroker.client.channel" in graph["zbroker.client.connection"]


def test_the_link_offers_everything_a_channel_may_use() -> None:
    provided = _public(Link) | set(Link.__slots__)
    assert _members(ChannelLink) - provided == set()


def test_channels_offer_everything_a_connection_calls_and_say_it_is_internal() -> None:
    for cls in (BlockingChannel, RobustChannel):
        assert _members(LinkedChannel) <= _public(cls)
    for name in _members(LinkedChannel) - {"channel_number"}:
        for cls in (BlockingChannel, RobustChannel):
            assert inspect.getdoc(getattr(cls, name)).startswith(INTERNAL), (cls.__name__, name)
    for name in ROBUST_CHANNEL_INTERNALS:
        assert inspect.getdoc(getattr(RobustChannel, name)).startswith(INTERNAL), name


def test_pika_surface_grows_only_by_the_documented_internals() -> None:
    assert _public(BlockingConnection) == PIKA_CONNECTION | {"link"}
    assert inspect.getdoc(BlockingConnection.link).startswith(INTERNAL)
    assert _public(RobustConnection) == PIKA_CONNECTION | {"link"} | ROBUST_CONNECTION
    internals = _members(LinkedChannel) - {"channel_number"}
    assert _public(BlockingChannel) == PIKA_CHANNEL | CHANNEL_EXTENSIONS | internals
    assert _public(RobustChannel) == PIKA_CHANNEL | CHANNEL_EXTENSIONS | internals | ROBUST_CHANNEL_INTERNALS


def test_the_interfaces_are_protocols() -> None:
    for protocol in (ChannelLink, LinkedChannel):
        assert typing.Protocol in protocol.__mro__
