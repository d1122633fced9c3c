"""The benchmark command keeps working: tiny counts, no figures asserted."""
import json
import subprocess
import sys

import pytest

from tests.support import ROOT, child_env
from zbroker.bench.runner import METRICS


@pytest.mark.timeout(300)  # every workload on three targets: ~50 s on an idle 2-core machine
def test_bench_quick_run_writes_a_table_and_json(tmp_path) -> None:
    out_json = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "zbroker", "bench", "--quick", "--runs", "1", "--timeout", "60",
                           "--amqp", "--json", str(out_json)], capture_output=True, text=True, env=child_env(), cwd=ROOT,
                          timeout=280)
    assert proc.returncode == 0, proc.stderr
    for label in ("publish", "workqueue", "fanout", "rpc", "fanin", "persistent", "pipelined", "stream:",
                  "stream/classic", "PUSH->PULL"):
        assert label in proc.stdout
    results = json.loads(out_json.read_text())["results"]
    relayed = {"publish", "workqueue", "fanout", "rpc", "fanin"}
    brokered = relayed | {"persistent", "stream"}
    for target, workloads in (("zbroker", brokered), ("zbroker-amqp", brokered), ("relay", relayed)):
        assert set(results[target]) == workloads
        for workload, metrics in results[target].items():
            # (broker CPU is read in clock ticks: a tiny run may round to 0)
            assert all(m["median"] > 0 or (name in ("broker_cpu_us", "read_1_broker_cores", "read_10_broker_cores")
                                           and m["median"] >= 0)
                       for name, m in metrics.items()), (target, workload)
            assert ("broker_cpu_us" in metrics) == (target != "relay" and workload not in ("persistent", "stream"))
    assert set(results["zbroker"]["persistent"]) == {"confirmed_100b_per_s", "confirmed_64k_per_s",
                                                     "pipelined_100b_per_s", "pipelined_64k_per_s"}
    for target in ("zbroker", "zbroker-amqp"):  # the stream is filled on the first round, read on every one
        assert set(results[target]["stream"]) == {metric for metric, _, _ in METRICS["stream"]} | {"fill_per_s"}
    assert results["push_pull"]["push_pull"]["msgs_per_s"]["median"] > 0


def test_stream_scale_fills_restarts_and_reads_everything(tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-m", "zbroker.bench.stream_scale", "--messages", "5000", "--dir",
                           str(tmp_path)], capture_output=True, text=True, env=child_env(), cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["filled", "broker", "read"]
    assert lines[2].startswith("read 5,000 from first") and "msgs/s" in lines[2]
    assert list(tmp_path.iterdir()) == []  # its data directory went


def test_queued_memory_measures_each_case_on_a_real_broker(tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-m", "zbroker.bench.queued_memory", "--messages", "20000", "--drain", "--dir",
                           str(tmp_path)], capture_output=True, text=True, env=child_env(), cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "--in-memory, no properties", "--in-memory, content type and delivery mode", "disk store, transient, paged",
        "disk store, persistent in a durable queue, paged"]
    assert all("(20,000 queued; broker RSS " in line and " B a queued 100 B message " in line for line in lines)
    assert all(" us a message published, " in line and " msgs/s" in line.split("drained at ")[1] for line in lines)
    assert list(tmp_path.iterdir()) == []  # its data directory went
