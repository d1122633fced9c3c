"""Third-party AMQP clients' own test suites against zbroker (and, for comparison, against
another broker such as RabbitMQ): ``python -m tests.peer_suites`` (``bin/peer-suites``).

* aio-pika 10.2.1: its released sdist ships its tests; it is downloaded
  (``pip download --no-deps --no-binary aio-pika``) into ``.peer-suites/cache`` and
  unpacked into ``.peer-suites/src``. Their conftest starts RabbitMQ containers through
  Docker; ``tests/peer_plugin/peer_aio_pika.py`` (``-p``) replaces the Docker client with
  one whose "containers" are zbroker processes (or the broker under ``--against``).
* pika 1.4.4: its sdist ships no tests, so ``--pika-repo PATH`` names a checkout of
  pika's repository at that tag; its blocking and async acceptance tests run with
  ``tests/peer_plugin/peer_pika.py``, which points their ``localhost:5672`` at the broker
  (suite ``pika``), and the async ones again with their ``--use-tls`` (suite
  ``pika-tls``: their client certificate, zbroker serving their test certificates).

Their files are never modified or copied into this project. Their tests run in a
virtualenv of their own, ``.peer-suites/venv`` (pytest and the suites' test
dependencies), never in ``.venv``. Per suite the command prints passed / failed / errors /
skipped and every failing test id with a one-line reason; with ``--against URL
--compare`` it runs both brokers and lists the tests that pass there and fail on zbroker
(grouped by reason first), those that fail on both and those that fail only there; it
exits 1 when some test passes there and fails on zbroker.
Results are kept in ``.peer-suites/results/`` (``--reuse`` takes the other broker's from
there instead of running it again), pytest's output and the brokers' logs of the last
run of each suite against each broker in ``.peer-suites/logs/SUITE@BROKER/``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from tests.peer_plugin.peer_brokers import Zbroker

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".peer-suites"
PLUGINS = ROOT / "tests" / "peer_plugin"
VENV = CACHE / "venv"
AIO_PIKA_VERSION = "10.2.1"
PIKA_VERSION = "1.4.4"
#: The suites' test dependencies (aio-pika's ``test`` group minus coverage and doc tools;
#: gevent and tornado for pika's async adapter tests), at the versions the figures in
#: the project's notes were taken with.
PEER_REQUIREMENTS = [
    f"aio-pika=={AIO_PIKA_VERSION}", "aiormq==7.2.4", "pamqp==4.0.1",
    "pytest==9.2.0", "aiomisc==18.0.37", "aiomisc-pytest==2.0.0", "shortuuid", "timeout-decorator",
    "gevent==26.9.0", "tornado==6.6.1",
]
PIKA_TESTS = ["tests/acceptance/blocking_adapter_test.py", "tests/acceptance/async_adapter_tests.py"]
PIKA_TLS_TESTS = ["tests/acceptance/async_adapter_tests.py"]  # the blocking ones ignore --use-tls
SUITES = ("aio-pika", "pika", "pika-tls")


def say(*args: object) -> None:
    print(*args, file=sys.stderr, flush=True)


# -- preparing ----------------------------------------------------------------------------

def ensure_venv() -> Path:
    """``.peer-suites/venv`` with the suites' test dependencies (made once)."""
    python = VENV / "bin" / "python"
    stamp = VENV / ".peer-suites-installed"
    wanted = "\n".join(PEER_REQUIREMENTS)
    if stamp.exists() and stamp.read_text() == wanted:
        return python
    say(f"setting up {VENV} for the peer suites (first run only) ...")
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    log = VENV / "install.log"
    with open(log, "w") as out:
        done = subprocess.run([str(python), "-m", "pip", "install", "--quiet", *PEER_REQUIREMENTS],
                              stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        sys.exit(f"installing the peer suites' dependencies failed; see {log}")
    stamp.write_text(wanted)
    return python


def ensure_aio_pika() -> Path:
    """aio-pika's released sdist, unpacked (its ``tests/`` included)."""
    src = CACHE / "src" / f"aio_pika-{AIO_PIKA_VERSION}"
    if (src / "tests" / "conftest.py").exists():
        return src
    cache = CACHE / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    sdist = cache / f"aio_pika-{AIO_PIKA_VERSION}.tar.gz"
    if not sdist.exists():
        say(f"downloading aio-pika {AIO_PIKA_VERSION}'s sdist ...")
        # --no-binary for aio-pika alone: ':all:' would also build its build backend from source.
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        "--no-binary", "aio-pika", f"aio-pika=={AIO_PIKA_VERSION}", "-d", str(cache)], check=True)
    with tarfile.open(sdist) as tar:
        tar.extractall(CACHE / "src", filter="data")
    return src


def ensure_tls() -> tuple[str, str]:
    """A self-signed certificate for localhost (zbroker's --amqps for aio-pika's TLS tests)."""
    folder = CACHE / "tls"
    cert, key = folder / "cert.pem", folder / "key.pem"
    if not (cert.exists() and key.exists()):
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                        "-days", "3650", "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
        cert.chmod(0o644)
        key.chmod(0o644)
    return str(cert), str(key)


def pika_version(repo: Path) -> str:
    for line in (repo / "pika" / "__init__.py").read_text().splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip("'\"")
    return "?"


def zbroker_source(rev: str | None) -> tuple[dict[str, str], str]:
    """The environment that makes ``python -m zbroker`` run ``rev`` (a ``git archive`` of it
    on PYTHONPATH) or the work tree, and a label saying which."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout.strip()
    if rev is None:
        dirty = "+dirty" if git("status", "--porcelain", "--", "zbroker") else ""
        return {}, f"work tree at {git('rev-parse', '--short', 'HEAD')}{dirty}"
    sha = git("rev-parse", "--short", f"{rev}^{{commit}}")
    dest = CACHE / "rev" / sha
    if not (dest / "zbroker" / "__init__.py").exists():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", sha, "zbroker"], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return {"PYTHONPATH": str(dest), "REV": sha}, f"commit {sha} (git archive)"


def server_product(host: str, port: int) -> str:
    """``product version`` from the broker's connection.start (pika in .venv)."""
    try:
        import pika  # noqa: PLC0415 -- in .venv with the test extras
        conn = pika.BlockingConnection(pika.ConnectionParameters(host, port, connection_attempts=3, retry_delay=1))
        props = conn._impl.server_properties
        conn.close()
        text = lambda v: v.decode() if isinstance(v, bytes) else str(v)  # noqa: E731
        return f"{text(props.get('product', '?'))} {text(props.get('version', ''))}".strip()
    except Exception as exc:  # noqa: BLE001 -- only a label
        return f"? ({exc.__class__.__name__})"


# -- targets --------------------------------------------------------------------------------

@dataclass
class Target:
    kind: str                     # "zbroker" | "external"
    label: str                    # "zbroker" | "rabbitmq" | host:port
    url: str = ""
    amqps_port: int | None = None
    local_rabbitmq: bool = False
    zbroker_env: dict[str, str] = field(default_factory=dict)
    description: str = ""
    in_memory: bool = False


def zbroker_target(rev: str | None, in_memory: bool) -> Target:
    env, where = zbroker_source(rev)
    label = f"zbroker-{env.pop('REV')}" if "REV" in env else "zbroker"
    return Target("zbroker", label, zbroker_env=env, description=f"zbroker, {where}", in_memory=in_memory)


def external_target(url: str, amqps_port: int | None, local_rabbitmq: bool) -> Target:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5672
    product = server_product(host, port)
    label = "rabbitmq" if product.lower().startswith("rabbitmq") else f"{host}-{port}"
    return Target("external", label, url=f"amqp://{host}:{port}/", amqps_port=amqps_port,
                  local_rabbitmq=local_rabbitmq, description=f"{product} at {host}:{port}")


# -- running --------------------------------------------------------------------------------

@dataclass
class Outcome:
    outcome: str        # passed | failed | error | skipped
    reason: str = ""
    when: str = ""


@dataclass
class SuiteResult:
    suite: str
    target: str
    description: str
    seconds: float
    returncode: int
    log: str
    outcomes: dict[str, Outcome]
    note: str = ""

    def counts(self) -> dict[str, int]:
        counts = {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
        for o in self.outcomes.values():
            counts[o.outcome] += 1
        return counts

    subset: bool = False          # pytest arguments chose some tests: not a whole run

    def path(self) -> Path:
        return CACHE / "results" / f"{self.suite}@{self.target}{'.subset' if self.subset else ''}.json"

    def save(self) -> None:
        self.path().parent.mkdir(parents=True, exist_ok=True)
        self.path().write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, suite: str, target: str) -> SuiteResult | None:
        path = CACHE / "results" / f"{suite}@{target}.json"
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        data["outcomes"] = {k: Outcome(**v) for k, v in data["outcomes"].items()}
        return cls(**data)


def merge_reports(lines: list[dict]) -> dict[str, Outcome]:
    """pytest's per-phase reports -> one outcome per test (an error in setup or teardown
    is an error, as pytest counts it)."""
    outcomes: dict[str, Outcome] = {}
    for rec in lines:
        nodeid, when, outcome, reason = rec["nodeid"], rec["when"], rec["outcome"], rec["reason"]
        current = outcomes.get(nodeid)
        if when == "collect":
            outcomes[nodeid] = Outcome("error", f"collection: {reason}", when)
        elif when == "setup":
            if outcome == "failed":
                outcomes[nodeid] = Outcome("error", reason, when)
            elif outcome == "skipped":
                outcomes[nodeid] = Outcome("skipped", reason, when)
        elif when == "call":
            outcomes[nodeid] = Outcome({"failed": "failed", "skipped": "skipped"}.get(outcome, "passed"), reason, when)
        elif when == "teardown" and outcome == "failed" and (current is None or current.outcome in ("passed", "skipped")):
            outcomes[nodeid] = Outcome("error", f"in teardown: {reason}", when)
    return outcomes


def run_pytest(suite: str, target: Target, cwd: Path, args: list[str], env: dict[str, str],
               timeout: float, extra: list[str]) -> SuiteResult:
    logs = Path(env["PEER_LOG_DIR"])
    report, log = logs / "report.jsonl", logs / "pytest.log"
    env = {**os.environ, **env, "PEER_REPORT": str(report),
           "PYTHONPATH": os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(PLUGINS / ".")) if p)}
    env.pop("PYTHONSAFEPATH", None)
    argv = [str(VENV / "bin" / "python"), "-m", "pytest", "-p", "peer_report", "-p", "no:cacheprovider", *args]
    say(f"{suite} against {target.description}: {' '.join(argv[1:])}  (in {cwd}; output in {log})")
    started = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            returncode = proc.wait(timeout)
            note = ""
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            returncode = proc.wait()
            note = f"stopped after {timeout:.0f} s (--timeout)"
    lines = [json.loads(line) for line in report.read_text().splitlines()] if report.exists() else []
    result = SuiteResult(suite, target.label, target.description, round(time.monotonic() - started, 1),
                         returncode, str(log), merge_reports(lines), note, subset=bool(extra))
    if not result.outcomes:
        result.note = (result.note + "; " if result.note else "") + f"no test ran (pytest exit {returncode}); see {log}"
    result.save()
    return result


def log_dir(suite: str, target: Target, subset: bool) -> Path:
    """``.peer-suites/logs/SUITE@BROKER`` (``.subset`` when pytest arguments choose the
    tests), emptied: this run's pytest output and broker logs."""
    logs = CACHE / "logs" / f"{suite}@{target.label}{'.subset' if subset else ''}"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    return logs


def target_env(suite: str, target: Target, tls: tuple[str, str], subset: bool) -> dict[str, str]:
    logs, work = log_dir(suite, target, subset), CACHE / "work"
    work.mkdir(parents=True, exist_ok=True)
    env = {"PEER_LOG_DIR": str(logs), "PEER_WORK_DIR": str(work), "PEER_TARGET": target.kind}
    if target.kind == "zbroker":
        env |= {"PEER_ZBROKER_CMD": json.dumps(zbroker_command(target)), "PEER_TLS_CERT": tls[0],
                "PEER_TLS_KEY": tls[1], "PEER_IN_MEMORY": "1" if target.in_memory else "0"}
    else:
        env |= {"PEER_URL": target.url, "PEER_AMQPS_PORT": str(target.amqps_port or ""),
                "PEER_CONTROL": "local-rabbitmq" if target.local_rabbitmq else ""}
    return env


def zbroker_command(target: Target) -> list[str]:
    if "PYTHONPATH" in target.zbroker_env:
        return ["env", f"PYTHONPATH={target.zbroker_env['PYTHONPATH']}", sys.executable, "-m", "zbroker"]
    return [sys.executable, "-m", "zbroker"]


def run_aio_pika(target: Target, tls: tuple[str, str], extra: list[str], timeout: float) -> SuiteResult:
    src = ensure_aio_pika()
    args = ["-p", "peer_aio_pika", "-o", "log_cli=false", "-rA", *extra, "tests"]
    return run_pytest("aio-pika", target, src, args, target_env("aio-pika", target, tls, bool(extra)), timeout, extra)


def run_pika(repo: Path, target: Target, tls: tuple[str, str], extra: list[str], timeout: float,
             use_tls: bool = False) -> SuiteResult:
    """pika's acceptance tests; ``use_tls``: the async ones over TLS with their client
    certificate (``--use-tls``, localhost:5671), zbroker serving pika's own test
    certificates and requiring a client certificate signed by their CA, as their
    testdata/rabbitmq.conf.in has RabbitMQ do."""
    suite = "pika-tls" if use_tls else "pika"
    env = target_env(suite, target, tls, bool(extra))
    broker = None
    if target.kind == "zbroker":
        certs = repo / "testdata" / "certs"
        server_tls = (str(certs / "server_certificate.pem"), str(certs / "server_key.pem")) if use_tls else tls
        client_check = ("--tls-ca", str(certs / "ca_certificate.pem"), "--tls-require-client-cert") if use_tls else ()
        broker = Zbroker(zbroker_command(target), work_dir=CACHE / "work", log_dir=Path(env["PEER_LOG_DIR"]),
                         name=f"zbroker-{suite}-{os.getpid()}", tls=server_tls, in_memory=target.in_memory,
                         extra_args=client_check)
        broker.start()
        env |= {"PEER_HOST": broker.host, "PEER_PORT": str(broker.amqp_port), "PEER_AMQPS_PORT": str(broker.amqps_port)}
    else:
        parts = urlsplit(target.url)
        env |= {"PEER_HOST": parts.hostname or "127.0.0.1", "PEER_PORT": str(parts.port or 5672),
                "PEER_AMQPS_PORT": str(target.amqps_port or "")}
    env["PYTHONPATH"] = str(repo)  # their pika, as their pyproject's pythonpath = ["."] says
    try:
        args = ["-p", "peer_pika", "-rA", *(["--use-tls"] if use_tls else []), *extra,
                *(PIKA_TLS_TESTS if use_tls else PIKA_TESTS)]
        result = run_pytest(suite, target, repo, args, env, timeout, extra)
    finally:
        if broker is not None:
            broker.remove()
    version = pika_version(repo)
    if version != PIKA_VERSION:
        result.note = (result.note + "; " if result.note else "") + f"checkout is pika {version}, not {PIKA_VERSION}"
        result.save()
    return result


# -- reporting ------------------------------------------------------------------------------

def short(reason: str, width: int = 220) -> str:
    """One line: a traceback carried in an assertion message (pika's threaded test
    wrapper) shortened to its last line, the exception."""
    if "Traceback (most recent call last)" in reason:
        lines = [line for line in reason.splitlines() if line.strip()]
        reason = lines[-1] if lines else reason
    reason = " ".join(reason.split())
    return reason if len(reason) <= width else reason[: width - 3] + "..."


def kind_of(reason: str) -> str:
    """A failure's reason with names, ids and addresses blanked, to group failures."""
    def blank(m: re.Match) -> str:  # generated names: letters with digits, or mixed case
        w = m.group(0)
        digits, upper, lower = (any(f(c) for c in w) for f in (str.isdigit, str.isupper, str.islower))
        return "…" if (digits and (upper or lower)) or (upper and lower) else w

    def names(m: re.Match) -> str:
        return re.sub(r"[A-Za-z0-9_-]{10,}", blank, m.group(0))
    reason = re.sub(r"0x[0-9a-f]+", "0x…", short(reason, 10_000))
    reason = re.sub(r"'[^']*'", names, reason)
    return short(reason, 160)


def print_result(result: SuiteResult) -> None:
    c = result.counts()
    subset = ", the tests the pytest arguments chose" if result.subset else ""
    print(f"\n== {result.suite} against {result.description}  ({result.seconds:.0f} s{subset}; log {result.log})")
    print(f"   passed {c['passed']}  failed {c['failed']}  errors {c['error']}  skipped {c['skipped']}"
          + (f"   [{result.note}]" if result.note else ""))
    for kind in ("failed", "error"):
        for nodeid, o in sorted(result.outcomes.items()):
            if o.outcome == kind:
                print(f"   {kind.upper():6} {nodeid}\n          {short(o.reason)}")


def print_skips(result: SuiteResult) -> None:
    reasons: dict[str, int] = {}
    for o in result.outcomes.values():
        if o.outcome == "skipped":
            reasons[short(o.reason, 140)] = reasons.get(short(o.reason, 140), 0) + 1
    for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1]):
        print(f"   skipped x{n}: {reason}")


def print_comparison(ref: SuiteResult, z: SuiteResult) -> int:
    bad = ("failed", "error")
    cr, cz = ref.counts(), z.counts()
    print(f"\n== {z.suite}: {ref.description} vs {z.description}")
    w = max(12, len(ref.target) + 2, len(z.target) + 2)
    print(f"   {'':10}{ref.target:>{w}}{z.target:>{w}}")
    for key, name in (("passed", "passed"), ("failed", "failed"), ("error", "errors"), ("skipped", "skipped")):
        print(f"   {name:10}{cr[key]:>{w}}{cz[key]:>{w}}")
    regressions = sorted(n for n, o in z.outcomes.items()
                         if o.outcome in bad and n in ref.outcomes and ref.outcomes[n].outcome == "passed")
    both = sorted(n for n, o in z.outcomes.items()
                  if o.outcome in bad and n in ref.outcomes and ref.outcomes[n].outcome in bad)
    better = sorted(n for n, o in z.outcomes.items()
                    if o.outcome == "passed" and n in ref.outcomes and ref.outcomes[n].outcome in bad)
    unmatched = sorted(n for n, o in z.outcomes.items() if o.outcome in bad and n not in ref.outcomes)
    other = sorted(n for n, o in z.outcomes.items() if o.outcome in bad and n in ref.outcomes
                   and ref.outcomes[n].outcome == "skipped")
    print(f"\n   pass on {ref.target}, fail on {z.target}: {len(regressions)}")
    kinds: dict[str, int] = {}
    for n in regressions:
        kinds[kind_of(z.outcomes[n].reason)] = kinds.get(kind_of(z.outcomes[n].reason), 0) + 1
    if len(kinds) > 1 or len(regressions) > 3:
        for kind, count in sorted(kinds.items(), key=lambda kv: -kv[1]):
            print(f"     x{count:<4} {kind}")
    for n in regressions:
        print(f"   - {n}\n       {z.target}: {short(z.outcomes[n].reason)}")
    print(f"\n   fail on both: {len(both)}")
    for n in both:
        print(f"   - {n}\n       {ref.target}: {short(ref.outcomes[n].reason)}\n       {z.target}: {short(z.outcomes[n].reason)}")
    print(f"\n   fail on {ref.target} only: {len(better)}")
    for n in better:
        print(f"   - {n}\n       {ref.target}: {short(ref.outcomes[n].reason)}")
    for title, names in ((f"skipped on {ref.target}, fail on {z.target}", other),
                         (f"fail on {z.target}, not run on {ref.target}", unmatched)):
        if names:
            print(f"\n   {title}: {len(names)}")
            for n in names:
                print(f"   - {n}\n       {z.target}: {short(z.outcomes[n].reason)}")
    for r in (ref, z):
        if any(o.outcome == "skipped" for o in r.outcomes.values()):
            print(f"\n   skipped on {r.target}:")
            print_skips(r)
    return len(regressions)


# -- command line ---------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bin/peer-suites", description=__doc__.split("\n\n")[0],
        epilog="Arguments after -- go to pytest (e.g. -- -k 'test_ack' -x).")
    parser.add_argument("--suite", action="append", choices=SUITES,
                        help="run only this suite (repeatable); default: aio-pika, and pika when --pika-repo is given")
    parser.add_argument("--pika-repo", type=Path, help=f"a checkout of pika's repository at tag {PIKA_VERSION}")
    parser.add_argument("--against", metavar="URL",
                        help="run against this broker (e.g. amqp://guest:guest@127.0.0.1:5672/) instead of zbroker; "
                             "the suites log in as guest/guest on vhost /")
    parser.add_argument("--against-amqps-port", type=int, metavar="PORT",
                        help="that broker's AMQP-over-TLS port (aio-pika's TLS tests), e.g. 5671")
    parser.add_argument("--against-local-rabbitmq", action="store_true",
                        help="the --against broker is a disposable RabbitMQ on this machine: its tests that restart the "
                             "broker may stop_app/start_app it, SIGKILL it and start it again (rabbitmq-server -detached, "
                             "or $PEER_RABBITMQ_START), and delete the queues of vhost /")
    parser.add_argument("--compare", action="store_true",
                        help="run the suites against --against AND zbroker; print the tests that pass there and fail on zbroker")
    parser.add_argument("--reuse", action="store_true",
                        help="with --compare: take the --against broker's results from the last run instead of running it")
    parser.add_argument("--zbroker-rev", metavar="REV",
                        help="run zbroker from `git archive REV` instead of the work tree (figures for one commit)")
    parser.add_argument("--in-memory", action="store_true", help="zbroker with --in-memory instead of a temp --data-dir")
    parser.add_argument("--timeout", type=float, default=2400, help="seconds per suite run (default 2400)")
    args, extra = parser.parse_known_args(argv)
    if extra[:1] == ["--"]:
        extra = extra[1:]
    if args.compare and not args.against:
        parser.error("--compare needs --against URL")
    suites = args.suite or (["aio-pika", "pika", "pika-tls"] if args.pika_repo else ["aio-pika"])
    if args.against and not args.against_amqps_port and "pika-tls" in suites:
        if args.suite:
            parser.error("pika-tls against another broker needs its TLS port (--against-amqps-port)")
        say("pika-tls left out: --against has no --against-amqps-port")
        suites.remove("pika-tls")
    if {"pika", "pika-tls"} & set(suites):
        if not args.pika_repo:
            parser.error("the pika suite needs --pika-repo PATH (pika's sdist ships no tests)")
        args.pika_repo = args.pika_repo.resolve()
        if not (args.pika_repo / "tests" / "acceptance" / "blocking_adapter_test.py").exists():
            parser.error(f"{args.pika_repo} is not a checkout of pika's repository (no tests/acceptance)")

    ensure_venv()
    tls = ensure_tls()
    targets: list[Target] = []
    if args.against:
        targets.append(external_target(args.against, args.against_amqps_port, args.against_local_rabbitmq))
    if not args.against or args.compare:
        targets.append(zbroker_target(args.zbroker_rev, args.in_memory))

    results: dict[tuple[str, str], SuiteResult] = {}
    for suite in suites:
        for target in targets:
            if args.reuse and target.kind == "external":
                saved = SuiteResult.load(suite, target.label)
                if saved is not None:
                    say(f"{suite} against {saved.description}: results of the last run ({saved.path()})")
                    results[suite, target.label] = saved
                    continue
            if suite == "aio-pika":
                result = run_aio_pika(target, tls, extra, args.timeout)
            else:
                result = run_pika(args.pika_repo, target, tls, extra, args.timeout, use_tls=suite == "pika-tls")
            results[suite, target.label] = result
            print_result(result)
            sys.stdout.flush()

    regressions = 0
    if args.compare:
        print("\n" + "=" * 100)
        for suite in suites:
            regressions += print_comparison(results[suite, targets[0].label], results[suite, targets[1].label])
    else:
        for result in results.values():
            if any(o.outcome == "skipped" for o in result.outcomes.values()):
                print(f"\n   {result.suite}, skipped on {result.target}:")
                print_skips(result)
    return 1 if regressions else 0


if __name__ == "__main__":
    sys.exit(main())
