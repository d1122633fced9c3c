"""The layers keep to their places: protocol/ and core/ never touch a socket, the core
reads no clock and knows no wire (the server's loop reads the clock once a pass; the
listener reads the monotonic one only to time a pause in accepting), and no two modules
import each other round a circle."""
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


def _module_name(path, root) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(path, name: str, modules: set[str]) -> set[str]:
    """The zbroker modules ``path`` (module ``name``) imports when it runs: every import
    statement, in functions too, but not those under ``if TYPE_CHECKING:`` (type-only).
    ``from package import submodule`` counts as the submodule (the package's own
    ``__init__`` runs first for any submodule, which is no circle between files)."""
    found: set[str] = set()

    def visit(node) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
                for alias in child.names:  # a submodule by name, else a name the module defines
                    sub = f"{child.module}.{alias.name}"
                    found.add(sub if sub in modules else child.module)
            visit(child)

    visit(ast.parse(path.read_text()))
    return {m for m in found if m in modules and m != name}


def import_cycles(root) -> list[list[str]]:
    """Groups of modules that import each other, directly or round a circle (Tarjan)."""
    paths = {_module_name(p, root): p for p in (root / "zbroker").rglob("*.py")}
    graph = {name: _runtime_imports(path, name, set(paths)) for name, path in paths.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = [stack.pop()]
            while group[-1] != v:
                group.append(stack.pop())
            if len(group) > 1:
                cycles.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return cycles


def test_no_module_imports_itself_round_a_circle() -> None:
    """Layers point one way: no two files need each other at run time (a type-only import
    under ``TYPE_CHECKING`` is allowed, e.g. between records)."""
    assert import_cycles(ROOT) == []


def test_the_cycle_check_finds_a_planted_circle(tmp_path) -> None:
    package = tmp_path / "zbroker"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from zbroker.b import x\n")
    (package / "b.py").write_text("def f():\n    from zbroker import a\n")
    (package / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from zbroker import a\n")
    assert import_cycles(tmp_path) == [["zbroker.a", "zbroker.b"]]
