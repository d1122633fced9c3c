"""The pytest plugin as a user gets it: pytest finds it through the installed entry point
(no conftest, no -p), and its fixtures give real brokers."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support import child_env

EXAMPLE = Path(__file__).parent / "plugin_example"


def test_plugin_fixtures_in_a_project_of_their_own(tmp_path: Path) -> None:
    (tmp_path / "test_worker.py").write_text((EXAMPLE / "worker.py").read_text())
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                         capture_output=True, text=True, env=child_env(), cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "4 passed" in out.stdout
