"""Password hashes in RabbitMQ's scheme: checked against hashes a real RabbitMQ 3.10.8 made
(``rabbitmqctl add_user`` then ``export_definitions``), and the other way round by shape."""
import base64
import hashlib

from zbroker.core.access.passwords import SHA256, check_password, hash_password

#: From RabbitMQ 3.10.8's definitions export: guest/guest and bob/'s3cret pässword'.
RABBITMQ_GUEST = "OftrWJ2x5kPfL0/nijcHnetd1fqdKZHksGvC/qNNNjDl65Et"
RABBITMQ_BOB = "ooMPgzRYBMKwvKWuVxKxThC5on5YMRLL5bz+oCxZL0cXvks1"


def test_hashes_rabbitmq_made_check_here() -> None:
    assert check_password(RABBITMQ_GUEST, "guest")
    assert check_password(RABBITMQ_BOB, "s3cret pässword")
    assert not check_password(RABBITMQ_BOB, "s3cret password")
    assert not check_password(RABBITMQ_GUEST, "Guest")


def test_hashes_made_here_have_rabbitmqs_shape() -> None:
    made = hash_password("s3cret pässword", salt=base64.b64decode(RABBITMQ_BOB)[:4])
    assert made == RABBITMQ_BOB  # same salt, same bytes as RabbitMQ's
    fresh = hash_password("x")
    raw = base64.b64decode(fresh)
    assert len(raw) == 4 + 32 and raw[4:] == hashlib.sha256(raw[:4] + b"x").digest()
    assert hash_password("x") != fresh  # a new salt each time
    assert check_password(fresh, "x", SHA256)


def test_other_algorithms_and_bad_hashes() -> None:
    for algorithm in ("rabbit_password_hashing_sha512", "rabbit_password_hashing_md5"):
        assert check_password(hash_password("pw", algorithm), "pw", algorithm)
        assert not check_password(hash_password("pw", algorithm), "pw", SHA256)
    for bad in ("", "not base64!", base64.b64encode(b"short").decode()):
        assert not check_password(bad, "")
    assert not check_password(RABBITMQ_GUEST, "guest", "rabbit_password_hashing_unknown")
