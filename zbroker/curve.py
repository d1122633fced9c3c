"""Encryption of the zbroker wire: ZeroMQ CURVE, its key files, and the ZAP handler.

Rules:
- ``zbroker serve --curve-secret-key FILE`` makes the broker's ROUTER a CURVE server:
  every TCP peer (clients, ``zbroker ctl``) must know the broker's public key and
  speaks encrypted, authenticated frames; a peer without CURVE, or with another key
  for the broker, never gets a frame through (libzmq drops it at the handshake). The
  HELLO that carries a client's user and password travels inside that encryption. The
  in-process endpoint the HTTP server uses has no handshake (no network).
- Key files are ZeroMQ's certificate files (``zmq.auth``): ``NAME.key`` holds the
  public key, ``NAME.key_secret`` both; ``zbroker keygen`` writes them (the secret
  file readable by its owner only).
- The ZAP handler (RFC 27) answers libzmq's question at each CURVE handshake on the
  server loop's thread (a socket it polls, no thread of its own): every client key is
  accepted unless ``--curve-client-keys DIR`` names the public keys allowed; a refused
  key is logged with the peer's address and answered 400, which the client sees as a
  failed authentication (``zbroker.client`` says so in its error).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import zmq
import zmq.auth

log = logging.getLogger(__name__)

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
ZAP_VERSION = b"1.0"
Z85_ALPHABET = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#")


class KeyError_(ValueError):
    """A key file that cannot be used, with the reason."""


def load_secret_key(path: str | Path) -> tuple[bytes, bytes]:
    """(public, secret) from a ``.key_secret`` file."""
    public, secret = _load(path)
    if secret is None:
        raise KeyError_(f"{path} holds no secret key (give the .key_secret file, not the .key one)")
    return public, secret


def load_public_keys(directory: str | Path) -> set[bytes]:
    """The public keys of every ``*.key`` file in ``directory``."""
    folder = Path(directory)
    if not folder.is_dir():
        raise KeyError_(f"{directory} is not a directory of public key files")
    keys = {_load(path)[0] for path in sorted(folder.glob("*.key"))}
    if not keys:
        raise KeyError_(f"{directory} holds no public key files (*.key)")
    return keys


def _load(path: str | Path) -> tuple[bytes, bytes | None]:
    try:
        public, secret = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise KeyError_(f"cannot read the key file {path}: {exc}") from None
    if public is None or len(public) != 40:
        raise KeyError_(f"{path} holds no CURVE public key")
    return public, secret


def server_key(value: str | bytes) -> bytes:
    """A broker's public key as a client gives it: the 40-character Z85 text, or a
    ``.key`` file's path."""
    text = value.decode() if isinstance(value, bytes) else str(value)
    if len(text) == 40 and not os.path.exists(text):
        if not set(text) <= Z85_ALPHABET:
            raise KeyError_(f"{text!r} is not a CURVE public key (40 Z85 characters)")
        return text.encode()
    return _load(text)[0]


def keygen(directory: str | Path, name: str) -> tuple[Path, Path]:
    """Write ``NAME.key`` and ``NAME.key_secret`` in ``directory``; the secret file 0600."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    public_file, secret_file = zmq.auth.create_certificates(str(folder), name)
    os.chmod(secret_file, 0o600)
    return Path(public_file), Path(secret_file)


def secure_client(sock: zmq.Socket, server_public: bytes, client_keys: tuple[bytes, bytes] | None = None) -> None:
    """Make ``sock`` a CURVE client of the broker whose public key is ``server_public``
    (its own key pair made for the connection unless given)."""
    public, secret = client_keys or zmq.curve_keypair()
    sock.curve_serverkey = server_public
    sock.curve_publickey = public
    sock.curve_secretkey = secret


class ZapHandler:
    """Answers libzmq's authentication requests (rule 3); the server loop polls ``socket``."""

    def __init__(self, context: zmq.Context, allowed: set[bytes] | None) -> None:
        self.allowed = allowed
        self.socket = context.socket(zmq.REP)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.bind(ZAP_ENDPOINT)

    def handle(self) -> None:
        """Answer every request waiting."""
        while True:
            try:
                request = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.socket.send_multipart(self._answer(request))

    def _answer(self, request: list[bytes]) -> list[bytes]:
        if len(request) < 6 or request[0] != ZAP_VERSION:
            return [ZAP_VERSION, request[1] if len(request) > 1 else b"", b"500", b"bad ZAP request", b"", b""]
        request_id, address, mechanism = request[1], request[3].decode(errors="replace"), request[5]
        if mechanism != b"CURVE" or len(request) < 7:
            return [ZAP_VERSION, request_id, b"400", b"CURVE only", b"", b""]
        key = zmq.utils.z85.encode(request[6])
        if self.allowed is not None and key not in self.allowed:
            log.warning("CURVE client key %s from %s refused: not among --curve-client-keys", key.decode(), address)
            return [ZAP_VERSION, request_id, b"400", b"client key not allowed", b"", b""]
        return [ZAP_VERSION, request_id, b"200", b"OK", b"", b""]

    def close(self) -> None:
        self.socket.close(0)
