"""pytest plugin (``-p peer_report``) that writes one JSON line per test phase report to
``PEER_REPORT``: node id, phase, outcome, duration and a one-line reason (the crash
message of a failure or error, the reason of a skip), for ``bin/peer-suites``."""
from __future__ import annotations

import json
import os
from typing import Any

_out = None


def _reason(report: Any) -> str:
    longrepr = report.longrepr
    if longrepr is None:
        return ""
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # a skip: (path, line, reason)
        return str(longrepr[2]).removeprefix("Skipped: ")
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None and getattr(crash, "message", None):
        return f"{crash.message}  [{os.path.basename(str(crash.path))}:{crash.lineno}]"
    text = str(longrepr).strip().splitlines()
    return text[-1] if text else ""


def pytest_configure(config: Any) -> None:
    global _out
    if os.environ.get("PEER_REPORT"):
        _out = open(os.environ["PEER_REPORT"], "a", encoding="utf-8")


def pytest_runtest_logreport(report: Any) -> None:
    if _out is None:
        return
    _out.write(json.dumps({"nodeid": report.nodeid, "when": report.when, "outcome": report.outcome,
                           "duration": round(report.duration, 3), "reason": _reason(report)[:2000]}) + "\n")
    _out.flush()


def pytest_collectreport(report: Any) -> None:
    if _out is not None and report.failed:
        _out.write(json.dumps({"nodeid": report.nodeid or "(collection)", "when": "collect", "outcome": "failed",
                               "duration": 0, "reason": _reason(report)[:2000]}) + "\n")
        _out.flush()


def pytest_unconfigure(config: Any) -> None:
    if _out is not None:
        _out.close()
