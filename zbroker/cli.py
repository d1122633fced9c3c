"""The ``zbroker`` command: ``serve`` the broker, ``bench`` it. Only here is logging configured.

Every option can also come from the environment as ``ZBROKER_<OPTION>``
(``ZBROKER_BIND=tcp://0.0.0.0:5680``), through click's ``auto_envvar_prefix``.
"""
from __future__ import annotations

import logging
import sys

import click

from zbroker import DEFAULT_BIND, __version__
from zbroker.core.broker import DEFAULT_HEARTBEAT_S, DEFAULT_MAX_BODY_BYTES

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


@click.group(context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "ZBROKER"})
@click.version_option(__version__, prog_name="zbroker")
def main() -> None:
    """zbroker: RabbitMQ's messaging model on ZeroMQ, with a pika-compatible client."""


@main.command()
@click.option("--bind", default=DEFAULT_BIND, show_default=True,
              help="ZeroMQ endpoint to listen on; tcp://0.0.0.0:5680 serves a LAN, port 0 picks a free port.")
@click.option("--heartbeat", type=click.IntRange(min=0), default=DEFAULT_HEARTBEAT_S, show_default=True,
              help="Heartbeat timeout offered to clients, in seconds (0 disables).")
@click.option("--max-body-bytes", type=click.IntRange(min=1), default=DEFAULT_MAX_BODY_BYTES,
              show_default=True, help="Largest message body accepted.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True)
def serve(bind: str, heartbeat: int, max_body_bytes: int, log_level: str) -> None:
    """Run the broker until Ctrl-C or SIGTERM."""
    from zbroker.core import Broker
    from zbroker.server import Server

    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT, stream=sys.stderr)
    server = Server(Broker(heartbeat=heartbeat, max_body_bytes=max_body_bytes), bind)
    try:
        endpoint = server.open()
    except OSError as exc:
        raise click.ClickException(str(exc)) from None
    server.install_signal_handlers()
    logging.getLogger("zbroker").info("zbroker %s ready on %s", __version__, endpoint)
    server.serve_forever()


if __name__ == "__main__":
    main()
