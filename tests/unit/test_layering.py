"""The layers keep to their places: protocol/ and core/ never touch a socket, the core
reads no clock and knows no wire, and the only module that reads the clock is the server."""
import ast
import subprocess
import sys

from tests.support import ROOT, child_env

CODE = """
import sys
sys.modules['zmq'] = None  # any 'import zmq' now fails
import zbroker.protocol, zbroker.core, zbroker.core.messaging.topic, zbroker.errors, zbroker.wires.native
from zbroker.core import Broker
Broker()
assert not any(m == 'zmq' or m.startswith('zmq.') for m in sys.modules if sys.modules[m] is not None)
print('pure')
"""


def test_protocol_and_core_import_without_zmq() -> None:
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, env=child_env(), cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "pure"


def _imports(path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_core_imports_no_wire_no_clock_no_sockets() -> None:
    forbidden = ("time", "zmq", "msgpack", "socket", "threading", "asyncio", "zbroker.protocol",
                 "zbroker.wires", "zbroker.server", "zbroker.transport", "zbroker.client")
    offenders = {}
    for path in sorted((ROOT / "zbroker" / "core").rglob("*.py")):
        bad = {name for name in _imports(path) for f in forbidden if name == f or name.startswith(f + ".")}
        if bad:
            offenders[path.name] = sorted(bad)
    assert offenders == {}
    # The check itself can fail: the server does import what the core may not.
    assert {"time", "zmq"} <= _imports(ROOT / "zbroker" / "server.py")
