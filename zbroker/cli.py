"""The ``zbroker`` command: ``serve`` the broker, ``bench`` it. Only here is logging configured.

Every option can also come from the environment as ``ZBROKER_<OPTION>``
(``ZBROKER_SERVE_BIND=tcp://0.0.0.0:5680``), through click's ``auto_envvar_prefix``.
"""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import click

from zbroker import DEFAULT_BIND, __version__, build, collector, resources
from zbroker.bench import WORKLOADS
from zbroker.core.broker import DEFAULT_HEARTBEAT_S, DEFAULT_MAX_BODY_BYTES
from zbroker.core.messaging.consumer_timeout import DEFAULT_CONSUMER_TIMEOUT_MS
from zbroker.core.access.limits import DEFAULT_CHANNEL_MAX, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_QUEUES, Limits

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def _size_option(parse):
    """A click callback turning a size text into bytes, with the parser's error."""
    def convert(_ctx: click.Context, _param: click.Parameter, value: str) -> int:
        try:
            return parse(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    return convert


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
@click.option("--consumer-timeout", type=click.IntRange(min=0), default=DEFAULT_CONSUMER_TIMEOUT_MS,
              show_default=True, metavar="MS",
              help="RabbitMQ's consumer_timeout: a delivery unacknowledged for this many milliseconds "
                   "closes its channel (406) and is requeued; 0 turns it off. A queue's or a consumer's "
                   "x-consumer-timeout argument overrides it.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where durable queues, exchanges and persistent messages are kept; one broker "
                   "per directory.  [default: $XDG_DATA_HOME/zbroker, i.e. ~/.local/share/zbroker]")
@click.option("--in-memory", is_flag=True,
              help="Keep nothing on disk: durable things last only as long as the process.")
@click.option("--channel-max", type=click.IntRange(min=0, max=65535), default=DEFAULT_CHANNEL_MAX,
              show_default=True, help="Channels one connection may open (RabbitMQ's default; 0: 65535).")
@click.option("--max-connections", type=click.IntRange(min=0), default=DEFAULT_MAX_CONNECTIONS,
              show_default=True, help="Connections the broker accepts at once (0: no limit).")
@click.option("--max-queues", type=click.IntRange(min=0), default=DEFAULT_MAX_QUEUES, show_default=True,
              help="Queues the broker holds at once (0: no limit).")
@click.option("--memory-limit", default=resources.DEFAULT_MEMORY_LIMIT, show_default=True,
              callback=_size_option(resources.memory_limit),
              help="Memory alarm: while the broker's resident memory is at or above this, publishing "
                   "connections are blocked (consumers go on). A fraction of the machine's memory "
                   "(0.4, like RabbitMQ's vm_memory_high_watermark) or a size (1GiB, 512MB).")
@click.option("--disk-free-limit", default=resources.DEFAULT_DISK_FREE_LIMIT, show_default=True,
              callback=_size_option(resources.parse_size),
              help="Disk alarm: while the data directory's filesystem has less free space than "
                   "this, publishing connections are blocked (RabbitMQ's disk_free_limit). "
                   "Refused with --in-memory, which has no disk.")
@click.option("--amqp", "amqp", default=None, metavar="HOST:PORT", is_flag=False, flag_value="127.0.0.1:5672",
              help="Also speak AMQP 0-9-1 here, so unmodified RabbitMQ clients (pika, aio-pika, kombu, "
                   "Celery, ...) connect to the same broker; '--amqp' alone is 127.0.0.1:5672 "
                   "(tcp://HOST:PORT also works). Off unless given: 5672 is RabbitMQ's own port, and "
                   "a second broker answering on it by default would take its clients unnoticed.")
@click.option("--amqps", "amqps", default=None, metavar="HOST:PORT", is_flag=False, flag_value="127.0.0.1:5671",
              help="AMQP 0-9-1 over TLS here (amqps://); '--amqps' alone is 127.0.0.1:5671, RabbitMQ's "
                   "TLS port. Needs --tls-cert and --tls-key.")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The --amqps listener's certificate (PEM, the chain after it).")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The private key of --tls-cert (PEM).")
@click.option("--tls-ca", type=click.Path(exists=True, dir_okay=False), default=None,
              help="CA certificates (PEM) that client certificates are checked against; a client "
                   "presenting one it does not sign is refused.")
@click.option("--tls-require-client-cert", is_flag=True,
              help="Refuse TLS clients without a certificate signed by --tls-ca.")
@click.option("--curve-secret-key", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Encrypt the zbroker wire with ZeroMQ CURVE, with this broker key file (NAME.key_secret "
                   "from `zbroker keygen`); clients and `zbroker ctl` then need the public key "
                   "(NAME.key).")
@click.option("--curve-client-keys", type=click.Path(exists=True, file_okay=False), default=None,
              help="Only clients whose CURVE public key is one of the *.key files in this directory "
                   "may connect (checked at the handshake, before any login). Needs --curve-secret-key.")
@click.option("--http", "http", default=None, metavar="HOST:PORT", is_flag=False, flag_value="127.0.0.1:15680",
              help="Serve the HTTP API (RabbitMQ's management paths), the dashboard and Prometheus "
                   "metrics here; '--http' alone is 127.0.0.1:15680. Off unless given; the API asks "
                   "for a login (basic auth), /metrics does not.")
@click.option("--stats-interval", type=click.FloatRange(min=0.1), default=5.0, show_default=True,
              help="Seconds between statistics samples; rates are over this interval "
                   "(RabbitMQ's collect_statistics_interval).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True)
def serve(bind: str, heartbeat: int, max_body_bytes: int, consumer_timeout: int, data_dir: Path | None,
          in_memory: bool,
          channel_max: int, max_connections: int, max_queues: int, memory_limit: int,
          disk_free_limit: int, amqp: str | None, amqps: str | None, tls_cert: str | None,
          tls_key: str | None, tls_ca: str | None, tls_require_client_cert: bool, curve_secret_key: str | None,
          curve_client_keys: str | None, http: str | None, stats_interval: float, log_level: str) -> None:
    """Run the broker until Ctrl-C or SIGTERM.

    Limits and alarms: a publisher gets 4 MiB of publish credit and a consumer a 4 MiB
    delivery window (flow control); a command frame is at most 128 KiB (header tables
    included); queue and exchange names at most 255 bytes; see also the options below.
    """
    from zbroker.core import Broker
    from zbroker.server import Server, raise_descriptor_limit
    from zbroker.storage import DiskStore, MemoryStore, StoreError
    from zbroker.storage.datadir import default_data_dir

    collector.tune_for_serving()  # (before the store and the broker: what they make is not frozen)
    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT, stream=sys.stderr)
    if in_memory and data_dir is not None:
        raise click.UsageError("--in-memory and --data-dir exclude each other")
    given = click.get_current_context().get_parameter_source("disk_free_limit")
    if in_memory and given not in (click.core.ParameterSource.DEFAULT, None):
        raise click.UsageError("--disk-free-limit has no meaning with --in-memory: there is no disk to watch")
    tls = _tls_context(amqps, tls_cert, tls_key, tls_ca, tls_require_client_cert)
    curve = _curve(curve_secret_key, curve_client_keys)
    data_dir = None if in_memory else (data_dir or default_data_dir())
    store = MemoryStore() if data_dir is None else DiskStore(data_dir)
    fit = raise_descriptor_limit()
    if not max_connections or max_connections > fit:
        logging.getLogger("zbroker").warning(
            "--max-connections %s lowered to %d: the open-file limit leaves room for no more "
            "(raise it with ulimit -n or LimitNOFILE=)", max_connections or "unlimited", fit)
        max_connections = fit
    try:
        broker = Broker(heartbeat=heartbeat, max_body_bytes=max_body_bytes, store=store, now=time.time(),
                        limits=Limits(channel_max or 65535, max_connections, max_queues),
                        consumer_timeout_ms=consumer_timeout)
    except (StoreError, OSError) as exc:
        raise click.ClickException(f"cannot open the store: {exc}") from None
    server = Server(broker, bind, monitor=resources.Monitor(memory_limit, data_dir, disk_free_limit), amqp=amqp,
                    amqps=amqps, tls=tls, curve=curve)
    try:
        endpoint = server.open()
    except (OSError, ValueError) as exc:
        broker.close()
        raise click.ClickException(str(exc)) from None
    server.data_dir = str(data_dir) if data_dir is not None else None
    _warn_if_only_guest(broker, [endpoint] + [listener.endpoint for listener in server.listeners])
    broker.stats.interval = stats_interval
    web = None
    if http:
        from zbroker.management.http import HttpServer
        try:
            web = HttpServer(http, server.inproc, server.context, server.relay_token)
            server.http_endpoint = web.start()
        except (OSError, ValueError) as exc:
            server.close()
            raise click.ClickException(str(exc)) from None
        click.echo(f"zbroker HTTP API and dashboard on http://{server.http_endpoint}/", err=True)
    if server.amqp is not None:
        click.echo(f"zbroker AMQP 0-9-1 listener on {server.amqp.endpoint}", err=True)
    if server.amqps is not None:
        click.echo(f"zbroker AMQP 0-9-1 TLS listener on {server.amqps.endpoint}", err=True)
    server.install_signal_handlers()
    logging.getLogger("zbroker").info("running the %s", build.describe())
    # Printed whatever the log level: people and scripts wait for this line.
    click.echo(f"zbroker {__version__} ready on {endpoint}", err=True)
    try:
        server.serve_forever()
    finally:
        if web is not None:
            web.stop()


def _warn_if_only_guest(broker: Any, endpoints: list[str]) -> None:
    """RabbitMQ's default user logs in from loopback only: on a LAN address with no other
    user, nobody but local programs can connect; say so, and how to fix it."""
    from zbroker.core.access.users import DEFAULT_USER, is_loopback

    if set(broker.users.users) - {DEFAULT_USER}:
        return
    hosts = {e.split("://", 1)[-1].rpartition(":")[0].strip("[]") for e in endpoints}
    remote = sorted(h for h in hosts if h and h != "localhost" and not is_loopback(h))
    if remote:
        logging.getLogger("zbroker").warning(
            "listening on %s, but the only user is 'guest', who may connect from localhost only; add "
            "one: zbroker ctl add_user NAME PASSWORD", ", ".join(remote))


def _curve(secret_key: str | None, client_keys: str | None) -> tuple[bytes, set[bytes] | None] | None:
    """The broker's CURVE secret key and the client keys allowed (None: any), or None."""
    from zbroker.curve import KeyError_, load_public_keys, load_secret_key
    if secret_key is None:
        if client_keys is not None:
            raise click.UsageError("--curve-client-keys needs --curve-secret-key")
        return None
    try:
        return load_secret_key(secret_key)[1], load_public_keys(client_keys) if client_keys else None
    except KeyError_ as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.argument("name")
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=".", show_default=True,
              help="Where to write NAME.key and NAME.key_secret.")
def keygen(name: str, directory: str) -> None:
    """Make a CURVE key pair NAME: NAME.key (public: give it to clients, or to
    --curve-client-keys) and NAME.key_secret (secret: for --curve-secret-key or a client)."""
    from zbroker.curve import keygen as make
    public_file, secret_file = make(directory, name)
    from zbroker.curve import load_secret_key
    public, _ = load_secret_key(secret_file)
    click.echo(f"public key:  {public.decode()}  ({public_file})")
    click.echo(f"secret key file: {secret_file} (keep it private: mode 0600)")


def _tls_context(amqps: str | None, cert: str | None, key: str | None, ca: str | None,
                 require_client_cert: bool) -> Any:
    """The --amqps listener's TLS context; TLS options without --amqps are refused, not ignored."""
    if amqps is None:
        if cert or key or ca or require_client_cert:
            raise click.UsageError("--tls-cert, --tls-key, --tls-ca and --tls-require-client-cert are for --amqps")
        return None
    if not cert or not key:
        raise click.UsageError("--amqps needs --tls-cert and --tls-key")
    if require_client_cert and not ca:
        raise click.UsageError("--tls-require-client-cert needs --tls-ca to check client certificates against")
    import ssl

    from zbroker.listener import server_context
    try:
        return server_context(cert, key, ca, require_client_cert)
    except (ssl.SSLError, OSError) as exc:
        raise click.ClickException(f"cannot load the TLS certificate or key: {exc}") from None


@main.command()
@click.option("--runs", type=click.IntRange(min=1), default=3, show_default=True,
              help="Rounds of every workload; the table shows medians.")
@click.option("--quick", is_flag=True, help="Small message counts: a smoke run, not a measurement.")
@click.option("--against", metavar="AMQP_URL",
              help="Also run every workload with real pika against this RabbitMQ "
                   "(e.g. amqp://guest:guest@127.0.0.1:5672/); needs 'pip install pika'.")
@click.option("--timeout", type=float, default=300.0, show_default=True, help="Seconds one workload may take.")
@click.option("--workload", "workloads", multiple=True, type=click.Choice(list(WORKLOADS)),
              help="Run only these workloads (repeatable) [default: all].")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the results as JSON [default: bench-results/bench-<time>.json].")
@click.option("--amqp", "amqp", is_flag=True,
              help="Also run every workload with real pika against the same zbroker's AMQP 0-9-1 "
                   "listener (the zbroker-amqp column); needs 'pip install pika'.")
@click.option("--secure", is_flag=True,
              help="Also measure the encrypted wires beside the plain ones: zbroker.client with CURVE "
                   "(zbroker-curve, a second broker with --curve-secret-key) and real pika over TLS "
                   "(zbroker-amqps); needs pika and trustme (pip install 'zbroker[test]').")
@click.option("--watched", is_flag=True,
              help="Run the broker with --http and poll its API and metrics every second meanwhile "
                   "(what an open dashboard and a Prometheus scrape cost).")
@click.option("--stream-messages", type=click.IntRange(min=1), default=None, metavar="N",
              help="Messages in the stream that the stream workload's consumers read from first (filled "
                   "once per target); large counts need a larger --timeout  [default: 200,000; 5,000 with --quick].")
def bench(runs: int, quick: bool, against: str | None, timeout: float, workloads: tuple[str, ...],
          json_path: Path | None, amqp: bool, secure: bool, watched: bool, stream_messages: int | None) -> None:
    """Measure zbroker, side by side with the raw-ZeroMQ ceiling (and RabbitMQ with --against)."""
    from zbroker.bench import runner

    if against or amqp or secure:
        try:
            import pika  # noqa: F401
        except ImportError:
            raise click.ClickException("--against, --amqp and --secure need pika: pip install 'zbroker[rabbitmq]'") from None
    if secure:
        try:
            import trustme  # noqa: F401
        except ImportError:
            raise click.ClickException("--secure needs trustme for its throwaway certificates: pip install trustme") from None
    try:
        results = runner.run(runs, quick, against, timeout, list(workloads or WORKLOADS),
                             lambda msg: click.echo(f"  {msg}", err=True), watched, amqp, secure, stream_messages)
    except runner.BenchError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(runner.table(results))
    path = json_path or Path("bench-results") / time.strftime("bench-%Y%m%d-%H%M%S.json")
    runner.write_json(results, path)
    click.echo(f"results written to {path}", err=True)


def _add_ctl() -> None:
    from zbroker.management.ctl import ctl
    main.add_command(ctl)


_add_ctl()

if __name__ == "__main__":
    main()
