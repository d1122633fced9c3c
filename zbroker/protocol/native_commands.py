"""Every command on the wire, as one table.

Rules of this module:
- A command is a msgpack array ``[opcode, field, field, ...]``. Its fields, names and
  order, are ``zbroker/methods.py``'s (``FIELDS``), and so is whether a body frame
  follows it (``BODY_METHODS``); this module adds the types each field accepts
  (``TYPES``, by field name, with per-command ``EXCEPTIONS``). ``SPECS`` joins the two,
  and everything the decoder checks comes from it.
- Channel commands carry the channel number as their first field; connection commands
  have none.
- Opcodes are stable: a new command gets a new number, an old number is never reused.
  Changing a command's fields, or how commands are framed, means bumping
  ``PROTOCOL_VERSION`` (2: the packed form, ``native_packed.py``).
"""
from __future__ import annotations

from dataclasses import dataclass

from zbroker.methods import BODY_METHODS, FIELDS, Method

PROTOCOL_VERSION = 2

_STR = (str,)
_INT = (int,)
_BOOL = (bool,)
_DICT = (dict,)
_OPT_INT = (int, type(None))


#: Opcodes are the shared method numbers (``zbroker/methods.py``).
Op = Method


@dataclass(frozen=True)
class Spec:
    """What one opcode carries: field names and accepted types, and a body or not."""

    op: Op
    fields: tuple[tuple[str, tuple[type, ...]], ...]
    has_body: bool = False

    @property
    def exact_types(self) -> tuple[frozenset[type], ...]:
        """Per field, the exact types msgpack may decode it as (bool is not an int here)."""
        return tuple(frozenset(t) for _, t in self.fields)


#: The types each field accepts, by the field's name (``methods.FIELDS`` names them);
#: a name means the same thing, and takes the same types, in every command.
TYPES: dict[str, tuple[type, ...]] = {
    "channel": _INT,
    # connection
    "heartbeat": _INT, "virtual_host": _STR, "username": _STR, "password": _STR,
    "client_properties": _DICT, "max_body_bytes": _INT, "server_properties": _DICT,
    "reply_code": _INT, "reply_text": _STR, "new_secret": _STR, "reason": _STR,
    # flow control (``zbroker/wires/flow.py``): the broker returns publish credit in
    # bytes; the client reports the delivery bytes it handed to the program.
    "bytes": _INT,
    # channels, exchanges, queues
    "active": _BOOL, "exchange": _STR, "exchange_type": _STR, "passive": _BOOL, "durable": _BOOL,
    "auto_delete": _BOOL, "internal": _BOOL, "arguments": _DICT, "if_unused": _BOOL, "if_empty": _BOOL,
    "destination": _STR, "source": _STR, "routing_key": _STR, "queue": _STR, "exclusive": _BOOL,
    "message_count": _INT, "consumer_count": _INT,
    # basic
    "prefetch_size": _INT, "prefetch_count": _INT, "global_qos": _BOOL, "consumer_tag": _STR,
    "auto_ack": _BOOL, "mandatory": _BOOL, "properties": _DICT, "delivery_tag": _INT,
    "redelivered": _BOOL, "multiple": _BOOL, "requeue": _BOOL,
    # streams (``stream_entries.py``): each entry's offset and size in STREAM_DELIVER's body
    "offsets": (list,), "sizes": (list,),
}
#: Where one command takes other types for a field than ``TYPES`` says.
EXCEPTIONS: dict[tuple[Op, str], tuple[type, ...]] = {
    # HELLO: the client's wish for heartbeat; None: take the broker's.
    (Op.HELLO, "heartbeat"): _OPT_INT,
}


def _spec(op: Op) -> Spec:
    """``op``'s fields (``methods.FIELDS``) with their types, and whether a body follows."""
    names = FIELDS[op]
    missing = [name for name in names if name not in TYPES]
    assert not missing, f"{op.name}: no types for {missing}"  # this table's, not peer input
    return Spec(op, tuple((name, EXCEPTIONS.get((op, name), TYPES[name])) for name in names),
                op in BODY_METHODS)


SPECS: dict[int, Spec] = {op: _spec(op) for op in Op}
assert set(SPECS) == set(Op)  # every method has a spec
assert all(name in FIELDS[op] for op, name in EXCEPTIONS)  # every exception names a real field

#: Opcodes whose command frame is followed by a body frame (one list for every wire).
BODY_OPS: frozenset[int] = frozenset(op for op, spec in SPECS.items() if spec.has_body)

#: Fields holding a table whose nested values come from the peer: each is checked in
#: depth by the codec (``tables.py``) before any of it reaches the broker.
PROPERTY_FIELDS = frozenset({"properties"})
TABLE_FIELDS = frozenset({"arguments", "client_properties"})

#: Connection-level opcodes (no channel field): ``methods.py`` numbers them below
#: CHANNEL_OPEN.
CONNECTION_OPS: frozenset[int] = frozenset(op for op in Op if op < Op.CHANNEL_OPEN)
assert all(FIELDS[Op(op)][:1] != ("channel",) for op in CONNECTION_OPS)
assert all(FIELDS[op][:1] == ("channel",) for op in Op if op not in CONNECTION_OPS)
