"""zbroker: RabbitMQ's messaging model as a small, fast Python broker on ZeroMQ."""

from zbroker import build as _build

__version__ = "0.1.0"

DEFAULT_PORT = 5680
DEFAULT_BIND = f"tcp://127.0.0.1:{DEFAULT_PORT}"

# Before any compiled module can be imported: compiled or pure Python (``build.py``).
_build.choose()
