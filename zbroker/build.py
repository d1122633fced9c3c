"""Which build of zbroker is running: the hot path compiled by mypyc, or pure Python.

Rules:
- ``COMPILED_MODULES`` lists the modules ``setup.py`` compiles with mypyc when the
  install has mypyc and a C compiler (each is the same typed Python source; nothing else
  changes). Where it cannot, the install is pure Python and behaves the same, slower.
- A compiled module is used only while its source is the one compiled (``setup.py``
  records their digests in ``compiled-sources.json``): an edited ``.py`` next to an
  older build (an editable install after a change) would otherwise run stale code. If
  any is stale, the whole process runs pure Python (compiled and interpreted modules of
  different ages are never mixed) and says so once, on stderr.
- ``ZBROKER_PURE_PYTHON=1`` runs pure Python whatever is built: the test suite runs
  once each way (``bin/test``), and it is the way out should a compiled build misbehave.
- A compiled extension of a module ``COMPILED_MODULES`` no longer names (an in-place
  build of an older revision left it; Python would import it ahead of the source, and
  it may not fit the compiled modules around it) is never loaded: that module runs from
  its source, and the process says so once, on stderr (``orphans``).
- Deciding happens at ``import zbroker``, before any compiled module is imported; the
  finder it installs only ever serves ``zbroker.*`` modules.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

#: The hot path: the wires' codecs, the wires, the loop and the core's routing, queues,
#: consumers and commit (``setup.py`` reads this tuple; keep it a literal).
COMPILED_MODULES = (
    "zbroker.transport",
    "zbroker.credit",
    "zbroker.server",
    "zbroker.protocol.tables",
    "zbroker.protocol.native_commands",
    "zbroker.protocol.native_codec",
    "zbroker.protocol.native_packed",
    "zbroker.protocol.amqp_codec",
    "zbroker.wires.flow",
    "zbroker.wires.native",
    "zbroker.wires.amqp",
    "zbroker.core.broker",
    "zbroker.core.durability.persistence",
    "zbroker.core.durability.journal",
    "zbroker.core.durability.paging",
    "zbroker.storage.arena",
    "zbroker.core.messaging.message",
    "zbroker.core.messaging.timers",
    "zbroker.core.messaging.queue_type",
    "zbroker.core.messaging.classic",
    "zbroker.core.messaging.quorum",
    "zbroker.core.messaging.stream",
    "zbroker.core.messaging.consumer_choice",
    "zbroker.core.messaging.consumers",
    "zbroker.core.messaging.session",
    "zbroker.core.messaging.confirms",
    "zbroker.core.messaging.delivery",
    "zbroker.core.messaging.consuming",
    "zbroker.core.messaging.publishing",
    "zbroker.core.messaging.exchanges",
    "zbroker.core.messaging.topic",
    "zbroker.core.messaging.topology",
    "zbroker.core.messaging.delayed",
)

PURE_ENV = "ZBROKER_PURE_PYTHON"
#: Where the ``zbroker`` package's directory is.
TOP = Path(__file__).resolve().parent.parent
#: Why this process runs pure Python although compiled modules exist (None: it does not).
pure_reason: str | None = None


def digest(path: Path) -> str:
    """A source's digest, as ``setup.py`` records it for each module it compiles."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:32]


#: What ``setup.py`` records for a module until its build finished (keep the two alike):
#: no source has this digest, so an older build left in place is never used.
UNBUILT = "unbuilt"


def _record(top: Path = TOP) -> dict[str, str]:
    """``compiled-sources.json``: module -> digest of the source compiled (empty: none)."""
    try:
        digests: dict[str, str] = json.loads((top / "zbroker" / "compiled-sources.json").read_text())
    except (OSError, ValueError):
        return {}
    return digests


def stale(top: Path = TOP) -> list[str]:
    """Compiled modules whose source is not what was compiled (edited since the build, or
    a build that did not finish); none where nothing was compiled."""
    return [name for name, compiled in _record(top).items()
            if digest(top.joinpath(*name.split(".")).with_suffix(".py")) != compiled]


def orphans(top: Path = TOP) -> list[str]:
    """Modules with a compiled extension in the tree that ``COMPILED_MODULES`` does not
    name (the compiled code's shared library lives beside ``zbroker/``, not in it)."""
    found = []
    for path in (top / "zbroker").rglob("*.so"):
        name = ".".join((*path.relative_to(top).parent.parts, path.name.split(".", 1)[0]))
        if name not in COMPILED_MODULES:
            found.append(name)
    return sorted(found)


class PureFinder:
    """Finds ``zbroker.*`` modules (``only``: these of them) as source files only,
    skipping compiled extensions."""

    def __init__(self, only: frozenset[str] | None = None) -> None:
        self.only = only

    def find_spec(self, name: str, path: Sequence[str] | None, target: Any = None) -> Any:
        if not name.startswith("zbroker.") or path is None or (self.only is not None and name not in self.only):
            return None
        leaf = name.rpartition(".")[2]
        for directory in path:
            package = os.path.join(directory, leaf, "__init__.py")
            if os.path.exists(package):
                return importlib.util.spec_from_file_location(
                    name, package, submodule_search_locations=[os.path.dirname(package)])
            module = os.path.join(directory, leaf + ".py")
            if os.path.exists(module):
                return importlib.util.spec_from_file_location(name, module)
        return None


def choose() -> None:
    """Install the pure-Python finder where this process must not load compiled code
    (called once, by ``zbroker/__init__.py``)."""
    global pure_reason
    if any(isinstance(finder, PureFinder) for finder in sys.meta_path):
        return
    if os.environ.get(PURE_ENV, "") not in ("", "0"):
        pure_reason = f"{PURE_ENV} is set"
    else:
        edited = stale()
        if not edited:
            left = orphans()
            if left:
                print(f"zbroker: ignoring compiled files of {len(left)} module(s) no longer compiled "
                      f"({left[0]}, ...): an older build left them; delete them", file=sys.stderr)
                sys.meta_path.insert(0, PureFinder(frozenset(left)))
            return
        if list(_record().values()).count(UNBUILT) == len(COMPILED_MODULES):  # (no compiler: a pure install)
            pure_reason = "the last build compiled nothing (no C compiler, or it failed: see its log)"
        else:
            pure_reason = (f"the compiled build is older than the source of {len(edited)} module(s) "
                           f"({edited[0]}, ...): rebuild it with 'pip install -e .' (bin/test does)")
            print(f"zbroker: running pure Python: {pure_reason}", file=sys.stderr)
    sys.meta_path.insert(0, PureFinder())


def compiled_modules() -> list[str]:
    """The modules of ``COMPILED_MODULES`` this process loaded compiled (importing them)."""
    out = []
    for name in COMPILED_MODULES:
        module = importlib.import_module(name)
        if not str(getattr(module, "__file__", "")).endswith(".py"):
            out.append(name)
    return out


def describe() -> str:
    """One line for logs and ``zbroker --version``: which build this process runs."""
    compiled = compiled_modules()
    if len(compiled) == len(COMPILED_MODULES):
        return f"compiled hot path ({len(compiled)} modules, mypyc)"
    if not compiled:
        reason = pure_reason or "no compiled build installed"
        return f"pure Python ({reason})"
    return f"partly compiled ({len(compiled)} of {len(COMPILED_MODULES)} modules)"
