"""The wires' method tables take every field's name and place from ``methods.FIELDS``: the
zbroker wire's command table adds only types, the AMQP tables read and write fields by
those names, and the per-message fast paths keep the same order."""
from __future__ import annotations

import inspect

import pytest
from pamqp import commands as C
from pamqp import frame

from zbroker import methods
from zbroker.methods import FIELDS, Method as M
from zbroker.protocol import ProtocolError, amqp_codec as codec, amqp_methods, decode_command, encode
from zbroker.protocol.native_commands import EXCEPTIONS, SPECS, TYPES


def test_the_command_table_names_fields_as_methods_does_and_adds_their_types() -> None:
    assert set(SPECS) == set(M)
    for op, spec in SPECS.items():
        assert tuple(name for name, _ in spec.fields) == FIELDS[op], op
        assert spec.has_body == (op in methods.BODY_METHODS)
        for name, types in spec.fields:
            assert types == EXCEPTIONS.get((op, name), TYPES[name])


def test_a_per_method_exception_is_that_methods_alone() -> None:
    """HELLO's heartbeat may be None (take the broker's); HELLO_OK's may not."""
    assert decode_command(encode(M.HELLO, None, "/", "u", "p", {})) == (M.HELLO, [None, "/", "u", "p", {}])
    with pytest.raises(ProtocolError, match="HELLO_OK.heartbeat must be int, got NoneType"):
        decode_command(encode(M.HELLO_OK, None, 1, {}))


def test_inbound_methods_become_commands_with_the_cores_fields_in_order() -> None:
    renamed = {"no_ack": "auto_ack", "global_": "global_qos"}
    for cls, spec in amqp_methods.INBOUND.items():
        names = [renamed.get(a, a) for a in spec.attributes if a is not None]
        assert tuple(names) == tuple(n for n in FIELDS[M(spec.method)][1:] if n != "properties"), cls
    method = C.Basic.Consume(queue="q", consumer_tag="t", no_ack=True, exclusive=True, arguments={"x-priority": 3})
    spec, fields, nowait = amqp_methods.to_command(7, method)
    command = methods.named([spec.method, *fields])
    assert (command.channel, command.queue, command.consumer_tag, command.auto_ack, command.exclusive,
            command.arguments) == (7, "q", "t", True, True, {"x-priority": 3})
    assert nowait is False
    _, _, nowait = amqp_methods.to_command(7, C.Basic.Consume(queue="q", nowait=True))
    assert nowait is True


def test_a_publish_becomes_a_command_with_its_properties_to_come() -> None:
    payload = frame.marshal(C.Basic.Publish(exchange="ex", routing_key="rk", mandatory=True), 3)[7:-1]
    fast = methods.named(amqp_methods.fast_command(3, payload))
    slow = methods.named([M.BASIC_PUBLISH, *amqp_methods.to_command(3, codec.decode_method(payload))[1]])
    for command in (fast, slow):
        assert (command.channel, command.exchange, command.routing_key, command.mandatory,
                command.properties) == (3, "ex", "rk", True, {})


def test_outbound_arguments_are_the_event_fields_of_the_same_names() -> None:
    for op, (cls, arguments) in amqp_methods.OUTBOUND.items():
        values = [f"v{i}" if name.endswith(("text", "tag", "queue", "reason")) else i
                  for i, name in enumerate(FIELDS[op])]
        event = methods.NAMED[op](*values)
        expected = tuple(getattr(event, name) if name in FIELDS[op] else amqp_methods._PAMQP_DEFAULTS[name]
                         for name in cls.__slots__)
        assert arguments(event) == expected, cls.name
        assert arguments(tuple(event)) == expected  # a plain tuple reads the same


def test_a_reply_text_goes_out_cut_to_an_amqp_short_string() -> None:
    _, arguments = amqp_methods.OUTBOUND[M.CHANNEL_CLOSE]
    assert arguments(methods.ChannelClose(1, 404, "x" * 300)) == (404, "x" * 255, 0, 0)


def test_the_deliver_fast_path_takes_the_events_fields_before_its_properties() -> None:
    assert tuple(inspect.signature(codec.deliver_frame).parameters) == FIELDS[M.BASIC_DELIVER][:-1]
    assert amqp_methods.PROPERTIES_AT[M.BASIC_DELIVER] == len(FIELDS[M.BASIC_DELIVER])
