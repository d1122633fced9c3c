"""Runtime parameters and global parameters in the core, as RabbitMQ 3.10's
``rabbit_runtime_parameters``: components, the ``operator_policy`` and ``vhost-limits``
components over zbroker's own stores, RabbitMQ's texts, the management requests and
who may ask them, definitions, and a restart (components told again)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_durability import Restartable
from tests.unit.test_management_access import ask, login
from zbroker.core import Broker
from zbroker.core.management.requests import Management
from zbroker.core.management.request_errors import ManagementError
from zbroker.core.parameters import ParameterError, ParameterRefused
from zbroker.wires.management import ManagementWire

CAP = {"pattern": "^q$", "definition": {"max-length": 2}, "priority": 1}


class Recorder:
    """A component that takes values with an ``ok`` key and records what it is told."""

    def __init__(self) -> None:
        self.told: list[tuple[str, str, Any]] = []

    def validate(self, vhost: str, name: str, value: Any, user: str | None) -> None:
        if not isinstance(value, dict) or "ok" not in value:
            raise ParameterError(f"{name} needs ok")

    def changed(self, vhost: str, name: str, value: Any | None) -> None:
        self.told.append((vhost, name, value))


def refusal(management: Management, verb: str, **args: Any) -> tuple[int, str]:
    with pytest.raises(ManagementError) as err:
        management.handle(verb, args)
    return err.value.status, err.value.reason


def test_a_component_validates_is_told_once_and_goes_with_its_vhost() -> None:
    broker = Broker()
    recorder = Recorder()
    broker.parameters.register("recorder", recorder)
    topology = broker.add_vhost("v")
    with pytest.raises(ParameterError, match="needs ok"):
        broker.parameters.set(topology, "recorder", "a", {"no": 1})
    assert broker.parameters.set(topology, "recorder", "a", {"ok": 1}) is True
    assert broker.parameters.set(topology, "recorder", "a", {"ok": 1}) is False  # the same: nobody told
    assert broker.parameters.set(topology, "recorder", "a", {"ok": 2}) is False
    assert recorder.told == [("v", "a", {"ok": 1}), ("v", "a", {"ok": 2})]
    assert broker.parameters.rows([topology]) == [("v", "recorder", "a", {"ok": 2})]
    broker.delete_vhost("v")
    assert recorder.told[-1] == ("v", "a", None)


def test_unknown_components_and_policies_are_refused_with_rabbitmqs_texts() -> None:
    broker = Broker()
    m = Management(broker)
    assert refusal(m, "set_parameter", component="federation-upstream", name="up", value={"uri": "amqp://"}) == (
        400, "Validation failed\n\ncomponent federation-upstream not found\n")
    assert refusal(m, "set_parameter", component="policy", name="p", value={}) == (
        400, "policies may not be set using this method")
    assert refusal(m, "clear_parameter", component="policy", name="p") == (
        400, "policies may not be cleared using this method")
    assert refusal(m, "clear_parameter", component="shovel", name="nope") == (404, "Parameter does not exist")
    assert refusal(m, "clear_parameter", component="vhost-limits", name="limits", vhost="nowhere") == (
        404, "Parameter does not exist")
    assert refusal(m, "parameter", component="vhost-limits", name="limits") == (404, "Not Found")
    assert m.handle("list", {"kind": "parameters"}) == []


def test_operator_policies_are_parameters_of_their_own_store() -> None:
    broker = Broker()
    m = Management(broker)
    m.handle("import_definitions", {"definitions": {"queues": [{"name": "q"}]}})
    assert m.handle("set_parameter", {"component": "operator_policy", "name": "cap", "value": CAP}) == {
        "created": True}
    cap = broker.topology.policies.operator["cap"]
    assert (cap.pattern, cap.apply_to, cap.priority, cap.definition) == ("^q$", "all", 1, {"max-length": 2})
    assert broker.topology.queues["q"].settings.max_length == 2
    value = {**CAP, "apply-to": "all"}
    assert m.handle("parameter", {"component": "operator_policy", "name": "cap"}) == {
        "value": value, "vhost": "/", "component": "operator_policy", "name": "cap"}
    assert m.handle("list", {"kind": "parameters", "component": "operator_policy"})[0]["value"] == value
    broker.set_policy(broker.topology, "other", ".*", {"max-length": 9}, 0, "queues", operator=True)
    assert [p["name"] for p in m.handle("list", {"kind": "parameters"})] == ["cap", "other"]
    assert m.handle("clear_parameter", {"component": "operator_policy", "name": "cap"}) == {"name": "cap"}
    assert "cap" not in broker.topology.policies.operator
    assert broker.topology.queues["q"].settings.max_length == 9


@pytest.mark.parametrize("value, text", [
    ({"pattern": "^a", "definition": {"max-length": 1}}, 'Key "priority" not found in op'),
    ({"pattern": "^a", "priority": 1}, 'Key "definition" not found in op'),
    ({"pattern": "^a", "priority": 1, "definition": {"foo": 1}, "extra": 2},
     'Unrecognised terms [{<<"extra">>,2}] in op\n[{<<"foo">>,1}] are not recognised policy settings'),
    ({"pattern": "^a", "priority": "x", "definition": {"max-length": 1}},
     'priority should be a number, actually was <<"x">>'),
    ([1, 2], 'Unrecognised terms [1,2] in op\nKey "definition" not found in op\nKey "pattern" not found in op\n'
             'Key "priority" not found in op'),
    ({"pattern": "^a", "priority": 1, "definition": {"dead-letter-exchange": "x"}},
     '[{<<"dead-letter-exchange">>,<<"x">>}] are not recognised policy settings'),
])
def test_operator_policy_values_are_checked_as_rabbitmq_checks_them(value: Any, text: str) -> None:
    m = Management(Broker())
    assert refusal(m, "set_parameter", component="operator_policy", name="op", value=value) == (
        400, f"Validation failed\n\n{text}\n")


def test_vhost_limits_are_the_limits_parameter() -> None:
    broker = Broker()
    m = Management(broker)
    limits = {"component": "vhost-limits", "name": "limits"}
    assert m.handle("set_parameter", {**limits, "value": {"max-queues": 5, "max-connections": 3}})["created"]
    assert broker.users.limits.vhosts == {"/": {"max-queues": 5, "max-connections": 3}}
    assert not m.handle("set_parameter", {**limits, "value": {"max-queues": 4}})["created"]
    assert broker.users.limits.vhosts == {"/": {"max-queues": 4}}  # replaced whole, as RabbitMQ's
    m.handle("set_vhost_limit", {"name": "max-connections", "value": 7})  # the HTTP API's: one limit
    assert m.handle("list", {"kind": "vhost_limits"}) == [{"vhost": "/", "value": {"max-queues": 4,
                                                                                    "max-connections": 7}}]
    m.handle("clear_vhost_limit", {"name": "max-queues"})
    m.handle("clear_vhost_limit", {"name": "max-queues"})  # (not set: nothing to do)
    assert m.handle("parameter", limits)["value"] == {"max-connections": 7}
    assert refusal(m, "set_vhost_limit", name="max-bogus", value=1) == (
        400, 'Validation failed\n\nUnrecognised terms [{<<"max-bogus">>,1}] in limits\n')
    for value, text in (({"max-queues": "x"}, 'max-queues should be a number, actually was <<"x">>'),
                        ({"max-connections": 1.5}, "max-connections should be a number, actually was 1.5"),
                        (5, "limits not a list 5")):
        assert refusal(m, "set_parameter", **limits, value=value) == (400, f"Validation failed\n\n{text}\n")
    assert refusal(m, "set_parameter", component="vhost-limits", name="other", value={})[1].startswith(
        "Validation failed\n\na vhost's limits are its parameter named 'limits'")
    m.handle("set_parameter", {**limits, "value": {}})  # no limits left
    assert broker.users.limits.vhosts == {} and m.handle("list", {"kind": "parameters"}) == []


def test_policies_are_listed_only_when_asked_for() -> None:
    broker = Broker()
    m = Management(broker)
    broker.set_policy(broker.topology, "ttl", ".*", {"message-ttl": 5}, 2, "queues")
    assert m.handle("list", {"kind": "parameters"}) == []
    assert m.handle("list", {"kind": "parameters", "component": "policy"}) == [
        {"value": {"pattern": ".*", "definition": {"message-ttl": 5}, "priority": 2, "apply-to": "queues"},
         "vhost": "/", "component": "policy", "name": "ttl"}]


def test_global_parameters_and_the_cluster_name() -> None:
    broker = Broker()
    m = Management(broker)
    assert m.handle("overview", {})["cluster_name"] == broker.node_name
    assert m.handle("set_global_parameter", {"name": "cluster_name", "value": "blue"}) == {"created": True}
    assert m.handle("set_global_parameter", {"name": "anything", "value": {"a": [1, 2]}}) == {"created": True}
    assert m.handle("set_global_parameter", {"name": "anything", "value": 42}) == {"created": False}
    assert m.handle("overview", {})["cluster_name"] == broker.parameters.cluster_name == "blue"
    assert m.handle("list", {"kind": "global_parameters"}) == [{"name": "anything", "value": 42},
                                                               {"name": "cluster_name", "value": "blue"}]
    assert m.handle("global_parameter", {"name": "anything"}) == {"value": 42, "name": "anything"}
    assert refusal(m, "set_global_parameter", name="cluster_name", value=7) == (
        400, "Validation failed\n\ncluster_name should be binary, actually was 7\n")
    assert m.handle("clear_global_parameter", {"name": "cluster_name"}) == {"name": "cluster_name"}
    assert refusal(m, "clear_global_parameter", name="cluster_name") == (404, "Parameter does not exist")
    assert refusal(m, "global_parameter", name="cluster_name") == (404, "Not Found")
    assert m.handle("overview", {})["cluster_name"] == broker.node_name


def test_who_may_ask() -> None:
    broker = Broker()
    users = broker.users
    users.add("maker", "m", ["policymaker"])
    users.add("viewer", "v", ["management"])
    broker.add_vhost("mine")
    users.set_permissions("maker", "mine", ".*", ".*", ".*")
    wire = ManagementWire(broker, relay_token=b"t" * 32)
    maker, viewer, admin = login("maker", "m"), login("viewer", "v"), login("guest", "guest")
    refused = (401, "User not authorised to access object")
    value = {"max-queues": 1}
    assert ask(wire, "list", viewer, kind="parameters") == refused
    assert ask(wire, "list", viewer, kind="global_parameters") == refused
    assert ask(wire, "set_parameter", maker, component="vhost-limits", name="limits", value=value,
               vhost="/") == refused
    assert ask(wire, "set_parameter", maker, component="vhost-limits", name="limits", value=value,
               vhost="mine") == (401, "Not administrator user")  # (RabbitMQ lets a policymaker)
    assert ask(wire, "set_parameter", admin, component="vhost-limits", name="limits", value=value,
               vhost="mine") == {"created": True}
    assert ask(wire, "parameter", maker, component="vhost-limits", name="limits", vhost="mine")["value"] == value
    assert ask(wire, "list", maker, kind="parameters", vhost="/") == refused
    assert ask(wire, "list", admin, kind="parameters", vhost="/") == []
    assert [p["vhost"] for p in ask(wire, "list", maker, kind="parameters")] == ["mine"]
    assert ask(wire, "set_global_parameter", maker, name="g", value=1) == {"created": True}
    assert ask(wire, "set_global_parameter", viewer, name="g", value=1) == refused
    assert ask(wire, "set_vhost_limit", maker, name="max-queues", value=1, vhost="mine") == (
        401, "Not administrator user")


RABBITMQ_310 = {  # (rabbitmqctl export_definitions of RabbitMQ 3.10.8, trimmed)
    "rabbit_version": "3.10.8", "rabbitmq_version": "3.10.8",
    "vhosts": [{"limits": [["max-connections", 50]], "metadata": {"description": "Default virtual host",
                                                                 "tags": []}, "name": "/"},
               {"limits": [], "metadata": {"description": "", "tags": []}, "name": "empty"}],
    "parameters": [
        {"component": "vhost-limits", "name": "limits", "value": {"max-connections": 50}, "vhost": "/"},
        {"component": "operator_policy", "name": "op1",
         "value": {"definition": {"max-length": 6}, "pattern": "^q", "priority": 1}, "vhost": "/"},
        {"component": "operator_policy", "name": "op2",
         "value": {"apply-to": "queues", "definition": [["max-length", 3]], "pattern": "^zz", "priority": 0},
         "vhost": "/"}],
    "global_parameters": [{"name": "cluster_name", "value": "blue"},
                          {"name": "internal_cluster_id", "value": "rabbitmq-cluster-id-x"}],
    "policies": [], "queues": [], "exchanges": [], "bindings": [],
}


def test_a_rabbitmq_export_with_operator_policies_and_limits_imports_and_comes_back_out() -> None:
    broker = Broker()
    m = Management(broker)
    counts = m.handle("import_definitions", {"definitions": RABBITMQ_310})
    assert (counts["operator_policies"], counts["vhost_limits"], counts["global_parameters"]) == (2, 1, 2)
    assert broker.topology.policies.operator["op2"].definition == {"max-length": 3}
    assert broker.users.limits.vhosts == {"/": {"max-connections": 50}}
    assert broker.parameters.cluster_name == "blue"
    exported = m.handle("definitions", {})
    assert exported["global_parameters"] == RABBITMQ_310["global_parameters"]
    assert [(p["vhost"], p["component"], p["name"]) for p in exported["parameters"]] == [
        ("/", "operator_policy", "op1"), ("/", "operator_policy", "op2"), ("/", "vhost-limits", "limits")]
    assert exported["parameters"][1]["value"] == {"pattern": "^zz", "definition": {"max-length": 3},
                                                  "priority": 0, "apply-to": "queues"}
    assert [v["limits"] for v in exported["vhosts"]] == [[["max-connections", 50]], []]
    again = Broker()
    Management(again).handle("import_definitions", {"definitions": exported})
    assert Management(again).handle("definitions", {})["parameters"] == exported["parameters"]


@pytest.mark.parametrize("change, text", [
    ({"parameters": [{"vhost": "/", "component": "federation-upstream", "name": "up", "value": {}}]},
     "Validation failed\n\ncomponent federation-upstream not found\n (//federation-upstream/up)"),
    ({"parameters": [{"vhost": "/", "component": "policy", "name": "p", "value": {}}]},
     "policies may not be set using this method (//policy/p)"),
    ({"parameters": [{"vhost": "/", "component": "vhost-limits", "name": "limits", "value": {"max-queues": "x"}}]},
     'Validation failed\n\nmax-queues should be a number, actually was <<"x">>\n (//vhost-limits/limits)'),
    ({"operator_policies": [{"name": "cap"}]}, "'operator_policies' is not a key of RabbitMQ's definitions"),
    ({"parameters": []}, "vhost '/': its limits"),
    ({"global_parameters": [{"name": "cluster_name", "value": 3}]}, "global parameter 'cluster_name' must be a"),
])
def test_what_an_import_cannot_apply_is_refused_whole(change: dict, text: str) -> None:
    broker = Broker()
    with pytest.raises(ManagementError) as err:
        Management(broker).handle("import_definitions", {"definitions": {**RABBITMQ_310, **change}})
    assert err.value.reason.startswith(text)
    assert broker.vhosts.get("empty") is None and broker.parameters.global_values == {}


def test_parameters_outlive_a_restart_and_components_are_told_again(tmp_path: Path) -> None:
    node = Restartable(tmp_path)
    recorder = Recorder()
    node.broker.parameters.register("recorder", recorder)
    m = Management(node.broker)
    m.handle("set_parameter", {"component": "recorder", "name": "a", "value": {"ok": 1}})
    m.handle("set_parameter", {"component": "operator_policy", "name": "cap", "value": CAP})
    m.handle("set_global_parameter", {"name": "cluster_name", "value": "blue"})
    node.broker.commit()
    node.restart(crash=True)
    broker = node.broker
    assert broker.parameters.cluster_name == "blue"
    assert "cap" in broker.topology.policies.operator
    assert broker.topology.parameters == {("recorder", "a"): {"ok": 1}}
    late = Recorder()
    broker.parameters.register("recorder", late)  # registered after recovery: told at once
    assert late.told == [("/", "a", {"ok": 1})]
    assert Management(broker).handle("list", {"kind": "parameters", "component": "recorder"})[0]["value"] == {
        "ok": 1}
    broker.store.close()
