"""The core's handlers read a command's fields by the names of the one method table
(``zbroker/methods.py``): a handler's parameters after ``(channel, body)`` are exactly
that method's fields after the channel number, so a field renamed or moved in the table
and not in its handler fails here, not on a client."""
import inspect

from zbroker.core import Broker
from zbroker.methods import FIELDS, Method


def test_every_handler_takes_its_methods_fields_by_name() -> None:
    broker = Broker()
    mismatched = {}
    for op, handler in broker._handlers.items():
        names = tuple(inspect.signature(handler).parameters)[2:]
        if names != FIELDS[Method(op)][1:]:
            mismatched[Method(op).name] = names
    assert mismatched == {}
    assert len(broker._handlers) == 23  # every channel command a client sends, but open/close

