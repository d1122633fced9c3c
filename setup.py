"""zbroker's build: the hot path (``zbroker/build.py``'s ``COMPILED_MODULES``) compiled
with mypyc where the install can, pure Python where it cannot.

Rules:
- Everything else is in ``pyproject.toml``; this file only adds the compiled modules.
- Compiling is best effort: no mypyc, no C compiler or ``ZBROKER_PURE_BUILD=1`` give
  a pure-Python install that works the same (each extension is optional, so a compiler
  error is a warning in the build log, not a failed install).
- A type error in a compiled module fails the build: mypyc compiles what mypy accepts.
- ``zbroker/compiled-sources.json`` records a digest of each source compiled, so that a
  process can tell a compiled module from an edited source (``build.py``). It is written
  only once every extension was built: until then, and after a failed or partial build,
  it names every module unbuilt, so a process runs pure Python rather than an older
  build left in place.
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

TOP = Path(__file__).resolve().parent
RECORD = Path("zbroker", "compiled-sources.json")
#: A digest no source has: the module's compiled build is not to be used.
UNBUILT = "unbuilt"


def compiled_modules() -> list[str]:
    """``COMPILED_MODULES`` read from ``zbroker/build.py`` without importing zbroker."""
    tree = ast.parse((TOP / "zbroker" / "build.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "COMPILED_MODULES":
            return list(ast.literal_eval(node.value))
    raise SystemExit("zbroker/build.py has no COMPILED_MODULES")


def digest(path: Path) -> str:
    """A source's digest, as ``zbroker/build.py`` computes it (keep the two alike)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:32]


def extensions() -> list:
    if os.environ.get("ZBROKER_PURE_BUILD", "") not in ("", "0"):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        return []
    modules = compiled_modules()
    paths = [name.replace(".", "/") + ".py" for name in modules]
    write_record(TOP, {name: UNBUILT for name in modules})
    BuildAndRecord.digests = {name: digest(TOP / path) for name, path in zip(modules, paths)}
    built = mypycify(["--ignore-missing-imports", "--follow-imports=silent", *paths], opt_level="3",
                     multi_file=True)
    for extension in built:
        extension.optional = True
    return built


def write_record(top: Path, digests: dict[str, str]) -> None:
    (top / RECORD).write_text(json.dumps(digests, indent=1) + "\n")


class BuildAndRecord(build_ext):
    """``build_ext`` that records the sources' digests once every extension was built."""

    #: The digests of the sources compiled (set by ``extensions()``).
    digests: dict[str, str] = {}

    def run(self) -> None:
        self.failed: list[str] = []
        super().run()
        if not self.extensions or self.failed:
            return  # (the record still names every module unbuilt)
        write_record(TOP, self.digests)
        if not self.inplace and (Path(self.build_lib) / RECORD).parent.is_dir():
            write_record(Path(self.build_lib), self.digests)  # (the copy that goes in a wheel)

    def build_extension(self, ext) -> None:  # type: ignore[no-untyped-def]  # (setuptools' signature)
        try:
            super().build_extension(ext)
        except Exception:
            self.failed.append(ext.name)  # (an optional extension: setuptools warns and goes on)
            raise


# (multi_file: the C is split, so that its files compile on every core)
setup(ext_modules=extensions(), cmdclass={"build_ext": BuildAndRecord},
      options={"build_ext": {"parallel": os.cpu_count() or 1}})
