"""``zbroker ctl``: rabbitmqctl's verbs, column names and output, against a running broker.

Rules:
- Output as rabbitmqctl's: an info line (``Listing queues for vhost / ...``, left out
  with ``--quiet``), a header of column names (left out with ``--no-table-headers``),
  then one tab-separated row per object; booleans ``true``/``false``, tables as JSON.
  ``--formatter json`` prints a JSON array of objects instead.
- Columns are rabbitmqctl's names, each read from the management view's field of the
  same name, except where the table ``ALIASES`` says (``source_name`` is a binding's
  ``source``; the channel ``pid`` columns, which name an Erlang process in RabbitMQ,
  show the channel's name). An unknown column is an error naming the ones there are.
  A column a queue's type lacks is empty, as rabbitmqctl's (a stream's memory and
  ``*_ram``). Beyond rabbitmqctl: list_queues' ``segments``, a stream's log segment count
  (RabbitMQ's stream info key from 3.13.3, which ``rabbitmq-streams stream_status``
  shows but rabbitmqctl's list_queues refuses), and a stream's ``message_bytes``, its
  log's bytes (rabbitmqctl's is empty for a stream).
- The broker asked is ``--broker``, else where ``zbroker.client`` connects by default:
  ``tcp://$ZBROKER_HOST:$ZBROKER_PORT`` (127.0.0.1 and 5680 for what is unset).
- A broker that is down or does not answer is one line on stderr and exit status 69
  (EX_UNAVAILABLE, as rabbitmqctl); a refused request is ``Error: <reason>`` and 1,
  except for the policy verbs (``ctl_policies.py``), which print it as rabbitmqctl does:
  ``Error:``, the reason on the next line, and 69.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, NoReturn

import click
import zmq

from zbroker import DEFAULT_PORT
from zbroker.management import ctl_parameters, ctl_policies, ctl_shovels
from zbroker.management.client import ManagementClient, RequestFailed, Unreachable

EX_UNAVAILABLE = 69
#: How rabbitmqctl prints a command the broker refused (its ``format_error``), exiting
#: with ``EX_UNAVAILABLE`` (``Ctl.ask_as_rabbitmqctl``).
RABBITMQCTL_REFUSED = "Error:\n{reason}"

#: list verb -> (management list, the info line, default columns, columns).
LISTS: dict[str, tuple[str, str, tuple[str, ...], tuple[str, ...]]] = {
    "list_queues": ("queues", "Listing queues for vhost {vhost} ...", ("name", "messages"), (
        "name", "durable", "auto_delete", "arguments", "policy", "exclusive", "exclusive_consumer_tag",
        "messages_ready", "messages_unacknowledged", "messages", "messages_ready_ram", "messages_ram",
        "messages_paged_out", "message_bytes", "message_bytes_ready", "consumers", "memory", "state",
        "type", "single_active_consumer_tag", "idle_since", "owner_pid", "segments")),
    "list_exchanges": ("exchanges", "Listing exchanges for vhost {vhost} ...", ("name", "type"), (
        "name", "type", "durable", "auto_delete", "internal", "arguments", "policy")),
    "list_bindings": ("bindings", "Listing bindings for vhost {vhost} ...", (
        "source_name", "source_kind", "destination_name", "destination_kind", "routing_key", "arguments"), (
        "source_name", "source_kind", "destination_name", "destination_kind", "routing_key", "arguments")),
    "list_connections": ("connections", "Listing connections ...", ("user", "peer_host", "peer_port", "state"), (
        "name", "user", "vhost", "peer_host", "peer_port", "host", "port", "state", "channels",
        "protocol", "timeout", "frame_max", "channel_max", "client_properties", "connected_at",
        "ssl", "auth_mechanism", "type")),
    "list_channels": ("channels", "Listing channels ...", ("pid", "user", "consumer_count", "messages_unacknowledged"), (
        "pid", "name", "connection", "number", "user", "vhost", "transactional", "confirm",
        "consumer_count", "messages_unacknowledged", "messages_unconfirmed", "messages_uncommitted",
        "prefetch_count", "global_prefetch_count", "state")),
    "list_users": ("users", "Listing users ...", ("user", "tags"), ("user", "tags", "hashing_algorithm")),
    "list_vhosts": ("vhosts", "Listing vhosts ...", ("name",), ("name", "description", "tags", "tracing",
                                                                "default_queue_type")),
    "list_topic_permissions": ("topic_permissions", 'Listing topic permissions for vhost "{vhost}" ...',
                               ("user", "exchange", "write", "read"), ("user", "exchange", "write", "read")),
    "list_vhost_limits": ("vhost_limits", "Listing limits for all vhosts ...", ("vhost", "value"), ("vhost", "value")),
    "list_user_limits": ("user_limits", "Listing limits for all users ...", ("user", "value"), ("user", "value")),
    "list_permissions": ("permissions", 'Listing permissions for vhost "{vhost}" ...', ("user", "configure", "write", "read"),
                         ("user", "configure", "write", "read")),
    "list_consumers": ("consumers", "Listing consumers for vhost {vhost} ...", (
        "queue_name", "channel_pid", "consumer_tag", "ack_required", "prefetch_count", "active",
        "arguments"), (
        "queue_name", "channel_pid", "consumer_tag", "ack_required", "prefetch_count", "active",
        "activity_status", "arguments", "exclusive", "priority")),
}

#: rabbitmqctl column -> how to read it from the management view.
ALIASES: dict[str, Callable[[dict], Any]] = {
    "source_name": lambda b: b["source"],
    "source_kind": lambda b: "exchange",
    "destination_name": lambda b: b["destination"],
    "destination_kind": lambda b: b["destination_type"],
    "pid": lambda c: c["name"],
    "connection": lambda c: c["connection_details"]["name"],
    "queue_name": lambda c: c["queue"]["name"],
    "channel_pid": lambda c: c["channel_details"]["name"],
    "owner_pid": lambda q: (q.get("owner_pid_details") or {}).get("name", ""),
    "host": lambda c: c.get("host", ""),
    "user": lambda u: u.get("user", u.get("name")),
    "port": lambda c: c.get("port", ""),
}


def cell(value: Any) -> str:
    """One value as rabbitmqctl's tab-separated output shows it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def pick(item: dict, column: str) -> Any:
    reader = ALIASES.get(column)
    return reader(item) if reader is not None else item.get(column)


class Ctl:
    """What every ctl verb shares: the broker to ask, the output format."""

    def __init__(self, broker: str, timeout: float, formatter: str, quiet: bool, headers: bool,
                 credentials: dict | None = None, curve_server_key: bytes | None = None) -> None:
        self.broker = broker
        self.credentials = credentials
        self.curve_server_key = curve_server_key
        self.timeout = timeout
        self.formatter = formatter
        self.quiet = quiet
        self.headers = headers

    def ask(self, verb: str, **arguments: Any) -> Any:
        return self.request(verb, arguments)

    def request(self, verb: str, arguments: dict[str, Any], refused: str = "Error: {reason}",
                refused_status: int = 1) -> Any:
        """The broker's answer; a refusal is printed as ``refused`` says and ends the
        program with ``refused_status``."""
        try:
            with ManagementClient(self.broker, self.timeout, credentials=self.credentials,
                                  curve_server_key=self.curve_server_key) as client:
                return client.request(verb, **arguments)
        except Unreachable as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(EX_UNAVAILABLE)
        except RequestFailed as exc:
            click.echo(refused.format(reason=exc.reason), err=True)
            sys.exit(refused_status)
        except zmq.ZMQError as exc:
            click.echo(f"Error: cannot use the broker endpoint {self.broker!r}: {exc}", err=True)
            sys.exit(EX_UNAVAILABLE)

    def ask_as_rabbitmqctl(self, verb: str, **arguments: Any) -> Any:
        """``ask``, with a refusal printed as rabbitmqctl prints a failed command."""
        return self.request(verb, arguments, RABBITMQCTL_REFUSED, EX_UNAVAILABLE)

    def fail_as_rabbitmqctl(self, reason: str) -> NoReturn:
        click.echo(RABBITMQCTL_REFUSED.format(reason=reason), err=True)
        sys.exit(EX_UNAVAILABLE)

    def info(self, text: str) -> None:
        if not self.quiet and self.formatter != "json":
            click.echo(text)

    def table(self, verb: str, columns: tuple[str, ...], vhost: str | None = None) -> None:
        kind, what, default, known = LISTS[verb]
        chosen = columns or default
        unknown = [c for c in chosen if c not in known]
        if unknown:
            click.echo(f"Error: Info key(s) {','.join(unknown)} are not supported. "
                       f"Supported info keys are: {', '.join(known)}", err=True)
            sys.exit(64)  # EX_USAGE, as rabbitmqctl
        self.info(what.format(vhost=vhost))
        self.rows(chosen, self.ask("list", kind=kind, **({"vhost": vhost} if vhost is not None else {})))

    def rows(self, chosen: tuple[str, ...], items: list[dict]) -> None:
        """The items as rabbitmqctl's table (or JSON), ``chosen`` columns."""
        rows = [[pick(item, c) for c in chosen] for item in items]
        if self.formatter == "json":
            click.echo(json.dumps([dict(zip(chosen, row)) for row in rows], default=str))
            return
        if self.headers:
            click.echo("\t".join(chosen))
        for row in rows:
            click.echo("\t".join(cell(v) for v in row))


def status_lines(overview: dict, vhosts: int = 1) -> list[str]:
    """``zbroker ctl status`` as text: the facts a RabbitMQ user looks for first."""
    memory = overview.get("memory", {})
    totals = overview["object_totals"]
    queue_totals = overview["queue_totals"]
    lines = [
        f"Status of node {overview['node']} ...",
        "", "Runtime", "",
        f"Product: {overview['product_name']} {overview['product_version']}",
        f"OS PID: {overview.get('pid', '')}",
        f"Uptime (seconds): {overview['uptime'] // 1000}",
        "", "Data directory", "",
        f"Node data directory: {overview.get('data_directory') or '(none: --in-memory)'}",
        "", "Memory", "",
        f"Total memory used: {memory.get('resident', 0) / 2**20:.1f} MiB",
        f"Memory high watermark: {memory.get('limit', 0) / 2**20:.1f} MiB",
    ]
    disk = overview.get("disk")
    if disk:
        lines += ["", "Free Disk Space", "",
                  f"Low free disk space watermark: {disk['limit'] / 2**20:.1f} MiB",
                  f"Free disk space: {disk['free'] / 2**20:.1f} MiB"]
    alarms = overview.get("alarms") or []
    lines += ["", "Alarms", "", *([f"{a} resource limit alarm set" for a in alarms] or ["(none)"])]
    lines += ["", "Listeners", ""]
    for listener in overview.get("listeners", []):
        lines.append(f"Interface: {listener['ip_address']}, port: {listener['port']}, "
                     f"protocol: {listener['protocol']}")
    lines += ["", "Totals", "",
              f"Connection count: {totals['connections']}",
              f"Queue count: {totals['queues']}",
              f"Virtual host count: {vhosts}",
              f"Messages: {queue_totals['messages']} ({queue_totals['messages_ready']} ready, "
              f"{queue_totals['messages_unacknowledged']} unacknowledged)"]
    return lines


def _formatting(f: Callable) -> Callable:
    for option in reversed([
        click.option("--formatter", type=click.Choice(["table", "json"]), default="table",
                     show_default=True, help="Output: tab-separated rows, or JSON."),
        click.option("-q", "--quiet", is_flag=True, help="Leave out the informational line."),
        click.option("-s", "--silent", "quiet", is_flag=True, help="Same as --quiet."),
        click.option("--no-table-headers", "no_headers", is_flag=True, help="Leave out the header row."),
    ]):
        f = option(f)
    return f


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--broker", default=None, metavar="ENDPOINT",
              help="The broker's endpoint  [default: tcp://$ZBROKER_HOST:$ZBROKER_PORT, the variables "
                   "zbroker.client reads, each 127.0.0.1 and 5680 when unset]")
@click.option("--timeout", "-t", type=float, default=10.0, show_default=True,
              help="Seconds to wait for the broker's answer.")
@click.option("--user", default="guest", show_default=True, envvar="ZBROKER_USER",
              help="Log in as USER (env ZBROKER_USER); reading needs a management tag, changing "
                   "administrator.")
@click.option("--password", default="guest", envvar="ZBROKER_PASSWORD",
              help="USER's password (env ZBROKER_PASSWORD, which keeps it out of the process list)  "
                   "[default: guest]")
@click.option("--curve-server-key", default=None, envvar="ZBROKER_CURVE_SERVER_KEY", metavar="KEY",
              help="The broker's CURVE public key (Z85 text or its .key file), when it runs with "
                   "--curve-secret-key (env ZBROKER_CURVE_SERVER_KEY).")
@click.pass_context
def ctl(ctx: click.Context, broker: str | None, timeout: float, user: str, password: str,
        curve_server_key: str | None) -> None:
    """Inspect and manage a running broker, as rabbitmqctl does."""
    from zbroker.curve import KeyError_, server_key
    try:
        key = server_key(curve_server_key) if curve_server_key else None
    except KeyError_ as exc:
        raise click.BadParameter(str(exc), param_hint="--curve-server-key") from None
    ctx.obj = {"broker": broker or default_broker(os.environ), "timeout": timeout,
               "credentials": {"user": user, "password": password}, "curve_server_key": key}


def default_broker(environ: Mapping[str, str]) -> str:
    """The broker ``--broker`` names when not given: where ``zbroker.client`` connects by
    default, from the same variables (ZBROKER_HOST, ZBROKER_PORT), on loopback and
    zbroker's port when they are unset."""
    host = environ.get("ZBROKER_HOST") or "127.0.0.1"
    port = environ.get("ZBROKER_PORT") or str(DEFAULT_PORT)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise click.UsageError(f"ZBROKER_PORT={port!r} is not a port number (1-65535)")
    return f"tcp://{f'[{host}]' if ':' in host else host}:{port}"


def _ctl(ctx: click.Context, formatter: str = "table", quiet: bool = False, no_headers: bool = False) -> Ctl:
    return Ctl(ctx.obj["broker"], ctx.obj["timeout"], formatter, quiet, not no_headers, ctx.obj["credentials"],
               ctx.obj["curve_server_key"])


def _list_command(verb: str) -> None:
    kind, info, default, known = LISTS[verb]

    @click.argument("columns", nargs=-1)
    @_formatting
    @click.pass_context
    def command(ctx: click.Context, columns: tuple[str, ...], formatter: str, quiet: bool,
                no_headers: bool, vhost: str | None = None) -> None:
        _ctl(ctx, formatter, quiet, no_headers).table(verb, columns, vhost)

    if "{vhost}" in info:  # a vhost's objects: rabbitmqctl's -p
        command = click.option("-p", "--vhost", default="/", show_default=True, help="The virtual host.")(command)
    ctl.command(verb, help=f"List {kind} with the columns given [default: {' '.join(default)}]; "
                           f"columns: {', '.join(known)}.")(command)


for _verb in LISTS:
    _list_command(_verb)


@ctl.command()
@_formatting
@click.pass_context
def status(ctx: click.Context, formatter: str, quiet: bool, no_headers: bool) -> None:
    """Version, uptime, data directory, memory and its limit, alarms, listeners, totals."""
    c = _ctl(ctx, formatter)
    overview = c.ask("overview")
    if formatter == "json":
        click.echo(json.dumps(overview, default=str))
    else:
        click.echo("\n".join(status_lines(overview, len(c.ask("list", kind="vhosts")))))


@ctl.command("delete_queue")
@click.argument("queue")
@click.option("--if-empty", "-e", is_flag=True, help="Only if it holds no ready messages.")
@click.option("--if-unused", "-u", is_flag=True, help="Only if it has no consumers.")
@click.option("-p", "--vhost", default="/", show_default=True, help="The virtual host.")
@click.pass_context
def delete_queue(ctx: click.Context, queue: str, if_empty: bool, if_unused: bool, vhost: str) -> None:
    """Delete QUEUE (its consumers are cancelled)."""
    c = _ctl(ctx)
    c.info(f"Deleting queue '{queue}' on vhost '{vhost}' ...")
    result = c.ask("delete_queue", name=queue, if_empty=if_empty, if_unused=if_unused, vhost=vhost)
    click.echo(f"Queue was successfully deleted with {result['message_count']} ready messages")


#: rabbitmqctl's verbs that name one object and say nothing back: (arguments, the first
#: naming the object; what the info line says; help).
VERBS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "purge_queue": (("queue",), "Purging queue '{queue}' in vhost '{vhost}' ...",
                    "Remove the ready messages of QUEUE (unacknowledged ones stay with their consumers)."),
    "add_vhost": (("vhost",), 'Adding vhost "{vhost}" ...',
                  "Add the virtual host VHOST (its own exchanges, queues and bindings; nobody has "
                  "permissions in it until set_permissions)."),
    "delete_vhost": (("vhost",), 'Deleting vhost "{vhost}" ...',
                     "Delete VHOST: its connections are closed, its queues and their messages deleted."),
    "add_user": (("username", "password"), 'Adding user "{username}" ...',
                 "Add USERNAME with PASSWORD (kept as a salted SHA-256 hash, as RabbitMQ keeps it)."),
    "delete_user": (("username",), 'Deleting user "{username}" ...',
                    "Delete USERNAME (its open connections stay until they close)."),
    "change_password": (("username", "password"), 'Changing password for user "{username}" ...',
                        "Give USERNAME a new PASSWORD."),
    "set_user_tags": (("username", "tags"), 'Setting tags for user "{username}" to [{tags}] ...',
                      "Set USERNAME's TAGS (administrator, monitoring, management, ...; none clears them)."),
    "set_permissions": (("username", "configure", "write", "read"),
                        'Setting permissions for user "{username}" in vhost "{vhost}" ...',
                        "Give USERNAME the CONFIGURE, WRITE and READ regular expressions in the vhost "
                        "(RabbitMQ's: '.*' allows all, '' nothing, '^app\\.' names starting 'app.')."),
    "clear_permissions": (("username",), 'Clearing permissions for user "{username}" in vhost "{vhost}" ...',
                          "Take USERNAME's permissions in the vhost away."),
    "set_topic_permissions": (("username", "exchange", "write", "read"),
                              'Setting topic permissions on "{exchange}" for user "{username}" in vhost "{vhost}" ...',
                              "Give USERNAME the WRITE and READ routing-key expressions on the topic EXCHANGE "
                              "({username} and {vhost} in them stand for those names)."),
    "clear_topic_permissions": (("username", "exchange?"),
                                'Clearing topic permissions for user "{username}" in vhost "{vhost}" ...',
                                "Take USERNAME's topic permissions on EXCHANGE (all of them without it) away."),
    "set_vhost_limits": (("definition",), 'Applying limits to vhost "{vhost}" ...',
                         "Limit the vhost: DEFINITION is JSON, e.g. '{\"max-connections\": 100, "
                         "\"max-queues\": 500}' (negative: no limit)."),
    "clear_vhost_limits": ((), 'Clearing vhost "{vhost}" limits ...', "Take the vhost's limits away."),
    "set_user_limits": (("username", "definition"), 'Setting user limits to "{definition}" for user "{username}" ...',
                        "Limit USERNAME: DEFINITION is JSON, e.g. '{\"max-connections\": 10, "
                        "\"max-channels\": 100}' (negative: no limit)."),
    "clear_user_limits": (("username", "limit"), 'Clearing "{limit}" limit for user "{username}" ...',
                          "Take USERNAME's LIMIT (max-connections, max-channels, or all) away."),
}
#: Verbs that act in a vhost (``-p``/``--vhost``, as rabbitmqctl).
IN_VHOST = frozenset({"set_permissions", "clear_permissions", "set_vhost_limits", "clear_vhost_limits",
                      "purge_queue", "set_topic_permissions", "clear_topic_permissions"})
#: Positional arguments that name the object a verb acts on (sent as ``name``).
NAMING = frozenset({"username", "queue", "vhost"})


def _json_argument(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="DEFINITION") from None


def _verb_command(verb: str) -> None:
    names, info, help_text = VERBS[verb]

    @click.pass_context
    def command(ctx: click.Context, **given: Any) -> None:
        c = _ctl(ctx)
        c.info(info.format(**{**given, "tags": ", ".join(given.get("tags", ()))}))
        arguments = {"name": given.pop(names[0])} if names and names[0] in NAMING else {}
        given = {key: value for key, value in given.items() if value is not None}
        for key, value in given.items():
            arguments[key] = list(value) if key == "tags" else _json_argument(value) if key == "definition" else value
        c.ask(verb, **arguments)

    for name in reversed(names):  # ("NAME?": optional)
        command = click.argument(name.rstrip("?"), nargs=-1 if name == "tags" else 1,
                                 required=not name.endswith("?"))(command)
    if verb in IN_VHOST:
        command = click.option("-p", "--vhost", default="/", show_default=True, help="The virtual host.")(command)
    ctl.command(verb, help=help_text)(command)


for _verb in VERBS:
    _verb_command(_verb)


#: Per-user listings: verb -> (management verb, what the info line calls them, columns).
USER_LISTS = {
    "list_user_permissions": ("user_permissions", "permissions", ("vhost", "configure", "write", "read")),
    "list_user_topic_permissions": ("user_topic_permissions", "topic permissions",
                                    ("vhost", "exchange", "write", "read")),
}


def _user_list_command(verb: str) -> None:
    request, what, columns = USER_LISTS[verb]

    @click.argument("username")
    @_formatting
    @click.pass_context
    def command(ctx: click.Context, username: str, formatter: str, quiet: bool, no_headers: bool) -> None:
        c = _ctl(ctx, formatter, quiet, no_headers)
        c.info(f'Listing {what} for user "{username}" ...')
        c.rows(columns, c.ask(request, name=username))

    ctl.command(verb, help=f"List USERNAME's {what} in each vhost.")(command)


for _verb in USER_LISTS:
    _user_list_command(_verb)


@ctl.command("close_connection")
@click.argument("connection")
@click.argument("explanation")
@click.pass_context
def close_connection(ctx: click.Context, connection: str, explanation: str) -> None:
    """Close CONNECTION (its name, as list_connections name shows it) with EXPLANATION."""
    c = _ctl(ctx)
    c.info(f"Closing connection {connection}, reason: {explanation}...")
    c.ask("close_connection", name=connection, reason=explanation)


@ctl.command("export_definitions")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.pass_context
def export_definitions(ctx: click.Context, file: str) -> None:
    """Write the definitions to FILE ('-': standard output) as RabbitMQ's JSON: vhosts, users
    (with password hashes and limits), permissions, topic permissions, runtime parameters
    (vhost limits and operator policies among them), global parameters, policies,
    exchanges, queues and bindings."""
    c = _ctl(ctx, quiet=file == "-")
    c.info(f'Exporting definitions in JSON to a file at "{file}" ...')
    text = json.dumps(c.ask("definitions"), indent=2, default=str)
    if file == "-":
        click.echo(text)
    else:
        Path(file).write_text(text + "\n")


@ctl.command("import_definitions")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.pass_context
def import_definitions(ctx: click.Context, file: str) -> None:
    """Apply FILE (RabbitMQ's definitions JSON, '-': standard input): its vhosts, users,
    permissions, topic permissions, limits, policies, runtime parameters (operator policies
    among them) and global parameters, then its exchanges, queues and bindings. The file is
    checked whole first; what zbroker cannot apply is refused, and then nothing is imported."""
    c = _ctl(ctx)
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text()
        data = json.loads(text)
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot read definitions from {file}: {exc}") from None
    c.info(f'Importing definitions in JSON from a file at "{file}" ...')
    counts = c.ask("import_definitions", definitions=data)
    click.echo(imported_line(counts, data))


def imported_line(counts: dict[str, int], data: dict) -> str:
    """What an import applied, every kind named: the broker's counts, and the user limits,
    which travel inside user entries (the broker applied all of the file, or it would have
    refused it); operator policies and other parameters when the file has them."""
    def n(count: int, word: str) -> str:
        return f"{count} {word if count == 1 else word[:-1] + 'ies' if word.endswith('y') else word + 's'}"
    user_limits = sum(1 for user in data.get("users") or [] if isinstance(user, dict) and user.get("limits"))
    parts = [n(counts.get("vhosts", 0), "vhost"), n(counts.get("users", 0), "user"),
             n(counts.get("permissions", 0), "permission"), n(counts.get("topic_permissions", 0), "topic permission"),
             f"limits of {n(user_limits, 'user')} and {n(counts.get('vhost_limits', 0), 'vhost')}",
             n(counts.get("policies", 0), "policy")]
    parts += [n(counts[key], word) for key, word in (("operator_policies", "operator policy"),
                                                     ("parameters", "other parameter"),
                                                     ("global_parameters", "global parameter")) if counts.get(key)]
    parts += [n(counts["exchanges"], "exchange"), n(counts["queues"], "queue")]
    return f"Imported {', '.join(parts)} and {n(counts['bindings'], 'binding')}"


ctl_policies.register(ctl, _ctl, _formatting)
ctl_shovels.register(ctl, _ctl, _formatting)
ctl_parameters.register(ctl, _ctl, _formatting)
