"""Which build runs (``zbroker/build.py``): the suite's two runs (``bin/test``) test the
build they name, and an edited source is never shadowed by an older compiled module."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT, child_env
from zbroker import build


def test_the_run_tests_the_build_it_names() -> None:
    under_test = os.environ.get("ZBROKER_BUILD_UNDER_TEST")
    if under_test is None:
        pytest.skip("bin/test names the build each run tests")
    compiled = build.compiled_modules()
    if under_test == "compiled":
        assert compiled == list(build.COMPILED_MODULES), build.describe()
    else:
        assert under_test == "pure" and compiled == [], build.describe()


def test_an_edited_source_is_stale_and_an_unchanged_one_is_not(tmp_path: Path) -> None:
    source = tmp_path / "zbroker" / "core" / "hot.py"
    source.parent.mkdir(parents=True)
    source.write_text("X = 1\n")
    record = tmp_path / "zbroker" / "compiled-sources.json"
    record.write_text(json.dumps({"zbroker.core.hot": build.digest(source)}))
    assert build.stale(tmp_path) == []
    source.write_text("X = 2\n")
    assert build.stale(tmp_path) == ["zbroker.core.hot"]
    record.unlink()  # nothing compiled: nothing to be stale
    assert build.stale(tmp_path) == []
    # A build that did not finish (setup.py records the digests only once every extension
    # was built) leaves the sources named unbuilt: an older build left in place is stale.
    record.write_text(json.dumps({"zbroker.core.hot": build.UNBUILT}))
    assert build.stale(tmp_path) == ["zbroker.core.hot"]


def test_pure_python_is_chosen_by_the_environment() -> None:
    code = "import zbroker.core.broker as b, zbroker.build as z; print(b.__file__); print(z.describe())"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**child_env(), build.PURE_ENV: "1"}).stdout.splitlines()
    assert out[0].endswith(os.path.join("zbroker", "core", "broker.py"))
    assert out[1].startswith("pure Python") and build.PURE_ENV in out[1]


def test_a_compiled_file_an_older_build_left_is_never_loaded(tmp_path: Path) -> None:
    """An in-place build leaves the extension of a module that was compiled once and is
    no longer: it would be imported ahead of its source."""
    package = tmp_path / "zbroker" / "core"
    package.mkdir(parents=True)
    suffix = ".cpython-311-x86_64-linux-gnu.so"
    for name in ("zbroker/server", "zbroker/core/broker", "zbroker/listener", "zbroker/core/gone"):
        (tmp_path / (name + suffix)).write_bytes(b"")
    (tmp_path / ("0123abcd__mypyc" + suffix)).write_bytes(b"")  # (the shared library: beside zbroker/)
    assert build.orphans(tmp_path) == ["zbroker.core.gone", "zbroker.listener"]
    (tmp_path / "zbroker" / "listener.py").write_text("X = 1\n")
    finder = build.PureFinder(frozenset(build.orphans(tmp_path)))
    spec = finder.find_spec("zbroker.listener", [str(tmp_path / "zbroker")])
    assert spec is not None and spec.origin == str(tmp_path / "zbroker" / "listener.py")
    assert finder.find_spec("zbroker.server", [str(tmp_path / "zbroker")]) is None  # (not its business)


def test_this_tree_has_no_such_file() -> None:
    assert build.orphans() == []
