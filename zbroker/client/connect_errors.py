"""Why a connection attempt failed, said plainly: the exception a program gets when the
ZeroMQ handshake fails or nobody answers.

Rules:
- A refused CURVE key and a security mismatch (one side encrypts, the other not) are for
  good: ``ProbableAuthenticationError`` / ``IncompatibleProtocolError``, which
  ``BlockingConnection`` does not retry. Anything else (a broker dying mid-handshake)
  may pass, so it is an ordinary ``AMQPConnectionError``.
- A pika program ported with its AMQP port or URL kept reaches an AMQP server, not the
  zbroker wire: after a failed handshake the port is asked once in AMQP (its protocol
  header), and an AMQP server's answer is said as such, with the port and URL to use.
"""
from __future__ import annotations

import socket
from urllib.parse import urlsplit

import zmq

from zbroker.client import exceptions
from zbroker.client.parameters import amqp_port_hint, amqp_server_text

#: libzmq's ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH: one side uses CURVE, the other not.
MECHANISM_MISMATCH = 0x11000002
#: How long a failed handshake's peer gets to show it is an AMQP server.
AMQP_PROBE_TIMEOUT_S = 2.0
#: AMQP 0-9-1's protocol header, and the start of what a server answers it with: a method
#: frame on channel 0 (then its size), connection.start (class 10, method 10).
_AMQP_HEADER = b"AMQP\x00\x00\x09\x01"
_CONNECTION_START = (b"\x01\x00\x00", b"\x00\x0a\x00\x0a")


def speaks_amqp(host: str | None, port: int | None) -> bool:
    """Whether ``host:port`` is an AMQP server (RabbitMQ, zbroker's ``--amqp`` listener):
    asked after a ZeroMQ handshake there failed, with AMQP's own protocol header, it answers
    connection.start, or its own header if it speaks another AMQP version."""
    if host is None or port is None:
        return False
    reply = b""
    try:
        with socket.create_connection((host, port), AMQP_PROBE_TIMEOUT_S) as sock:
            sock.sendall(_AMQP_HEADER)
            while len(reply) < 11:
                more = sock.recv(11 - len(reply))
                if not more:
                    break
                reply += more
    except OSError:
        pass
    frame_start, method = _CONNECTION_START
    return reply.startswith(b"AMQP") or (reply[:3] == frame_start and reply[7:11] == method)


def refused(endpoint: str) -> exceptions.AMQPConnectionError:
    """Nobody accepted the connection at ``endpoint``."""
    return exceptions.AMQPConnectionError(f"connection refused by {endpoint}{amqp_port_hint(urlsplit(endpoint).port)}")


def handshake_failure(event: int, value: int, where: str, curve: bool) -> exceptions.AMQPConnectionError:
    """What a failed ZeroMQ handshake with ``where`` means (the rules above); ``curve``:
    this client asked for CURVE encryption."""
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return exceptions.ProbableAuthenticationError(
            f"the broker at {where} refused this client's CURVE key (it allows listed keys only: "
            "give curve_client_key_file)")
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and value == MECHANISM_MISMATCH:
        return exceptions.IncompatibleProtocolError(
            f"ZeroMQ handshake with {where} failed: the broker " + (
                "does not use CURVE (zbroker serve --curve-secret-key)" if curve else
                "requires CURVE encryption (give curve_server_key, the broker's public key)"))
    address = urlsplit(where)
    if speaks_amqp(address.hostname, address.port):  # (a pika program's port or URL, kept)
        return exceptions.IncompatibleProtocolError(amqp_server_text(where, address.hostname))
    hint = amqp_port_hint(address.port)
    if hint:  # (a TLS listener, say: it does not answer in plain AMQP)
        return exceptions.AMQPConnectionError(f"ZeroMQ handshake with {where} failed{hint}")
    if curve:
        return exceptions.AMQPConnectionError(
            f"CURVE handshake with {where} failed: is curve_server_key the broker's public key?")
    return exceptions.AMQPConnectionError(f"ZeroMQ handshake with {where} failed (does the broker require "
                                          "CURVE encryption? then give curve_server_key)")
