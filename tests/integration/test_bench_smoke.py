"""The benchmark command keeps working: tiny counts, no figures asserted."""
import json
import subprocess
import sys

from tests.support import ROOT, child_env


def test_bench_quick_run_writes_a_table_and_json(tmp_path) -> None:
    out_json = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "zbroker", "bench", "--quick", "--runs", "1", "--timeout", "60",
                           "--json", str(out_json)], capture_output=True, text=True, env=child_env(), cwd=ROOT,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "publish" in proc.stdout and "workqueue" in proc.stdout
    data = json.loads(out_json.read_text())
    for target, workload in (("zbroker", "publish"), ("zbroker", "workqueue"), ("ceiling", "push_pull")):
        assert data["results"][target][workload]["median"] > 0
