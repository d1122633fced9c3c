"""``zbroker ctl``'s policy verbs against real broker processes, as rabbitmqctl's: the info
lines, ``list_policies``' columns, errors as ``Error:`` and the reason with exit status 69,
a policy that trims a queue at once, operator policies for administrators only, and
policies that outlive a restart."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import zbroker.client as pika
from tests.support import ROOT, Broker, child_env

HEADER = "vhost\tname\tpattern\tapply-to\tdefinition\tpriority"


def ctl(broker: Broker, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zbroker", "ctl", "--broker", broker.endpoint, *args],
                          capture_output=True, text=True, env=child_env(), cwd=ROOT, timeout=30)


def ok(broker: Broker, *args: str) -> str:
    done = ctl(broker, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def ready_count(channel: object, queue: str) -> int:
    """The queue's messages, asked on the channel that published them (so after them)."""
    return channel.queue_declare(queue, passive=True).method.message_count  # type: ignore[attr-defined]


def publish(broker: Broker, queue: str, count: int) -> int:
    """Declare the durable ``queue``, publish ``count`` messages to it; its length after."""
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port))
    channel = connection.channel()
    channel.queue_declare(queue, durable=True)
    for i in range(count):
        channel.basic_publish("", queue, b"m%d" % i)
    length = ready_count(channel, queue)
    connection.close()
    return length


def stop(broker: Broker) -> None:
    assert broker.stop() == 0, broker.log()
    assert "Traceback" not in broker.log(), broker.log()


def test_set_list_clear_errors_and_restart(tmp_path: Path) -> None:
    broker = Broker(data_dir=tmp_path)
    try:
        assert publish(broker, "q", 5) == 5
        assert ok(broker, "set_policy", "--priority", "1", "--apply-to", "queues", "lim", "^q$",
                  '{"max-length": 2}') == \
            'Setting policy "lim" for pattern "^q$" to "{"max-length": 2}" with priority "1" for vhost "/" ...\n'
        assert ok(broker, "list_queues", "name", "messages").splitlines()[1:] == ["name\tmessages", "q\t2"]
        assert ok(broker, "set_policy", "all-ttl", ".*", '{"message-ttl": 60000, "expires": 3600000}') \
            .startswith('Setting policy "all-ttl" for pattern ".*"')
        assert ok(broker, "list_policies").splitlines() == [
            'Listing policies for vhost "/" ...', HEADER,
            '/\tall-ttl\t.*\tall\t{"expires":3600000,"message-ttl":60000}\t0',
            '/\tlim\t^q$\tqueues\t{"max-length":2}\t1']

        bad = ctl(broker, "set_policy", "bad", ".*", '{"max-lenth": 1}')
        assert bad.returncode == 69
        assert bad.stderr == 'Error:\nValidation failed\n\n[{<<"max-lenth">>,1}] are not recognised policy settings\n\n'
        not_json = ctl(broker, "set_policy", "bad", ".*", '{"max-length": ')
        assert (not_json.returncode, not_json.stderr) == (69, "Error:\nJSON decoding error. Reason: badarg\n")
        missing = ctl(broker, "clear_policy", "nope")
        assert (missing.returncode, missing.stderr) == (69, "Error:\nParameter does not exist\n")

        # Operator policies are an administrator's; a policymaker sets policies only.
        ok(broker, "add_user", "maker", "s3cret")
        ok(broker, "set_user_tags", "maker", "policymaker")
        ok(broker, "set_permissions", "maker", ".*", ".*", ".*")
        as_maker = ("--user", "maker", "--password", "s3cret")
        refused = ctl(broker, *as_maker, "set_operator_policy", "cap", ".*", '{"max-length": 1}')
        assert (refused.returncode, refused.stderr) == (69, "Error:\nNot administrator user\n")
        ok(broker, *as_maker, "clear_policy", "all-ttl")
        assert ok(broker, "set_operator_policy", "cap", "^q", '{"max-length": 100}') == (
            'Setting operator policy override "cap" for pattern "^q" to "{"max-length": 100}" with priority "0" '
            'for vhost "/" ...\n')
        stop(broker)

        broker = Broker(data_dir=tmp_path)
        assert ok(broker, "list_policies", "--quiet").splitlines() == [
            HEADER, '/\tlim\t^q$\tqueues\t{"max-length":2}\t1']
        assert ok(broker, "list_operator_policies").splitlines() == [
            'Listing operator policy overrides for vhost "/" ...', HEADER, '/\tcap\t^q\tall\t{"max-length":100}\t0']
        assert publish(broker, "q", 3) == 2  # the policy still applies
        assert ok(broker, "clear_policy", "lim") == 'Clearing policy "lim" on vhost "/" ...\n'
        assert ok(broker, "clear_operator_policy", "cap") == 'Clearing operator policy "cap" on vhost "/" ...\n'
        assert ok(broker, "list_policies").splitlines() == ['Listing policies for vhost "/" ...', HEADER]
        assert publish(broker, "q", 3) == 5  # no limit any more
        stop(broker)
    finally:
        broker.stop()
