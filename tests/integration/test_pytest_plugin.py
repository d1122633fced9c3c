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


CONNECTING = '''
import zbroker.client as pika


def test_every_way_to_connect(zbroker, zbroker_factory):
    own = zbroker_factory()
    for broker in (zbroker, own):
        assert broker.url == f"zbroker://guest:guest@127.0.0.1:{broker.port}/%2F"
        assert broker.endpoint == f"tcp://127.0.0.1:{broker.port}"
        for parameters in (pika.URLParameters(broker.url), broker.parameters(),
                           pika.ConnectionParameters(broker.host, broker.port)):
            connection = pika.BlockingConnection(parameters)
            connection.channel().queue_declare("q")
            connection.close()
    assert own.port != zbroker.port
'''


def test_plugin_brokers_say_where_to_connect(tmp_path: Path) -> None:
    """``url``, ``parameters()``, ``host``/``port``: what the README's table promises, on the
    session broker and on a factory's."""
    (tmp_path / "test_connecting.py").write_text(CONNECTING)
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                         capture_output=True, text=True, env=child_env(), cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 passed" in out.stdout
