"""The wire between zbroker clients and the broker: commands and their frames.

Pure: imports msgpack and ``zbroker.errors`` only, never zmq, never the broker.
"""
from zbroker.protocol.native_codec import HEADER, ProtocolError, check_header, decode_command, decode_message, encode
from zbroker.protocol.native_commands import BODY_OPS, PROTOCOL_VERSION, SPECS, Op

__all__ = [
    "BODY_OPS", "HEADER", "Op", "PROTOCOL_VERSION", "ProtocolError", "SPECS",
    "check_header", "decode_command", "decode_message", "encode",
]
