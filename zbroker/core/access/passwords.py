"""Password hashes as RabbitMQ keeps them, so that users move between zbroker and RabbitMQ
in definitions files, passwords and all.

Rules (RabbitMQ's ``rabbit_password_hashing_*`` modules and its "Passwords" guide):
- A hash is ``base64(salt + H(salt + password))``: a 4-byte random salt, the password in
  UTF-8, H SHA-256 for ``rabbit_password_hashing_sha256`` (RabbitMQ's default and the one
  zbroker writes); SHA-512 and MD5 hashes that RabbitMQ wrote are checked too.
- A check compares digests in constant time; a hash that is not valid base64 or is too
  short never matches (it is refused where it is imported, not here).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

SHA256 = "rabbit_password_hashing_sha256"
ALGORITHMS = {SHA256: hashlib.sha256, "rabbit_password_hashing_sha512": hashlib.sha512,
              "rabbit_password_hashing_md5": hashlib.md5}
SALT_BYTES = 4


def hash_password(password: str, algorithm: str = SHA256, salt: bytes | None = None) -> str:
    """The hash RabbitMQ would store for ``password`` (a fresh salt unless one is given)."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = ALGORITHMS[algorithm](salt + password.encode()).digest()
    return base64.b64encode(salt + digest).decode()


def check_password(password_hash: str, password: str, algorithm: str = SHA256) -> bool:
    """Whether ``password`` is the one ``password_hash`` was made from."""
    hasher = ALGORITHMS.get(algorithm)
    if hasher is None:
        return False
    try:
        raw = base64.b64decode(password_hash, validate=True)
    except (binascii.Error, ValueError):
        return False
    salt, digest = raw[:SALT_BYTES], raw[SALT_BYTES:]
    if len(digest) != hasher().digest_size:
        return False
    return hmac.compare_digest(hasher(salt + password.encode()).digest(), digest)
