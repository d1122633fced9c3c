"""``zbroker ctl``'s parameter verbs against real broker processes, as rabbitmqctl 3.10's:
the info lines, the lists' columns and values as JSON, errors as ``Error:`` and the
reason with exit status 69 (65 for a vhost there is not), and parameters and global
parameters that outlive a restart and a SIGKILL."""
from __future__ import annotations

from pathlib import Path

from tests.integration.test_policy_ctl import ctl, ok, publish, stop
from tests.support import Broker

LIMIT = '{"max-queues":5}'
CAP = '{"pattern":"^q$","definition":{"max-length":2},"priority":1}'


def test_parameters_with_ctl_and_across_restarts(tmp_path: Path) -> None:
    broker = Broker(data_dir=tmp_path)
    try:
        assert ok(broker, "set_parameter", "vhost-limits", "limits", LIMIT) == (
            f'Setting runtime parameter "limits" for component "vhost-limits" to "{LIMIT}" in vhost "/" ...\n')
        assert ok(broker, "set_parameter", "operator_policy", "cap", CAP).startswith("Setting runtime parameter")
        assert ok(broker, "list_parameters").splitlines() == [
            'Listing runtime parameters for vhost "/" ...', "component\tname\tvalue",
            'operator_policy\tcap\t{"apply-to":"all","definition":{"max-length":2},"pattern":"^q$","priority":1}',
            f"vhost-limits\tlimits\t{LIMIT}"]
        assert publish(broker, "q", 5) == 2  # the operator policy applies
        assert ok(broker, "set_global_parameter", "cluster_name", '"blue"') == (
            'Setting global runtime parameter "cluster_name" to ""blue"" ...\n')
        assert ok(broker, "set_global_parameter", "answer", "42").endswith("...\n")
        assert ok(broker, "list_global_parameters").splitlines() == [
            "Listing global runtime parameters ...", "name\tvalue", "answer\t42", 'cluster_name\t"blue"']

        for args, status, err in (
                (("set_parameter", "federation-upstream", "up", '{"uri":"amqp://"}'), 69,
                 "Error:\nValidation failed\n\ncomponent federation-upstream not found\n\n"),
                (("set_parameter", "policy", "p", "{}"), 69, "Error:\npolicies may not be set using this method\n"),
                (("set_parameter", "vhost-limits", "limits", "notjson"), 69,
                 "Error:\nJSON decoding error. Reason: badarg\n"),
                (("set_parameter", "vhost-limits", "limits", '{"max-queues":"x"}'), 69,
                 'Error:\nValidation failed\n\nmax-queues should be a number, actually was <<"x">>\n\n'),
                (("set_parameter", "-p", "nowhere", "vhost-limits", "limits", LIMIT), 65,
                 "Virtual host 'nowhere' does not exist\n"),
                (("list_parameters", "-p", "nowhere"), 65, "Virtual host 'nowhere' does not exist\n"),
                (("clear_parameter", "vhost-limits", "nope"), 69, "Error:\nParameter does not exist\n"),
                (("clear_parameter", "policy", "nope"), 69, "Error:\npolicies may not be cleared using this method\n"),
                (("clear_global_parameter", "nope"), 69, "Error:\nParameter does not exist\n")):
            done = ctl(broker, *args)
            assert (done.returncode, done.stderr) == (status, err), args
        ok(broker, "add_vhost", "empty")
        assert ok(broker, "list_parameters", "-p", "empty") == 'Listing runtime parameters for vhost "empty" ...\n\n'
        stop(broker)

        broker = Broker(data_dir=tmp_path)
        assert ok(broker, "list_parameters", "-q").splitlines()[1:] == [
            'operator_policy\tcap\t{"apply-to":"all","definition":{"max-length":2},"pattern":"^q$","priority":1}',
            f"vhost-limits\tlimits\t{LIMIT}"]
        assert ok(broker, "clear_global_parameter", "answer") == 'Clearing global runtime parameter "answer" ...\n'
        assert ok(broker, "clear_parameter", "operator_policy", "cap") == (
            'Clearing runtime parameter "cap" for component "operator_policy" on vhost "/" ...\n')
        ok(broker, "set_global_parameter", "after", '{"kill":true}')
        broker.kill()  # SIGKILL: what was acknowledged is on disk

        broker = Broker(data_dir=tmp_path)
        assert ok(broker, "list_global_parameters", "-q").splitlines() == [
            "name\tvalue", 'after\t{"kill":true}', 'cluster_name\t"blue"']
        assert ok(broker, "list_parameters", "-q").splitlines()[1:] == [f"vhost-limits\tlimits\t{LIMIT}"]
        assert publish(broker, "q", 3) == 3  # the operator policy is gone (the transient messages too)
        stop(broker)
    finally:
        broker.stop()
