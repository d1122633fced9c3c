"""The pure layers import without zmq: protocol/ and core/ never touch a socket."""
import subprocess
import sys

from tests.support import ROOT, child_env

CODE = """
import sys
sys.modules['zmq'] = None  # any 'import zmq' now fails
import zbroker.protocol, zbroker.core, zbroker.core.topic, zbroker.errors
from zbroker.core import Broker
Broker()
assert not any(m == 'zmq' or m.startswith('zmq.') for m in sys.modules if sys.modules[m] is not None)
print('pure')
"""


def test_protocol_and_core_import_without_zmq() -> None:
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, env=child_env(), cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "pure"
