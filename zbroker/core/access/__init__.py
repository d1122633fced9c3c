"""Access control: who may connect, to which vhost, and do what there.

What lives here: users and their password hashes (``users.py``, ``passwords.py``), the
failed-login throttle, permissions and topic permissions (``permissions.py``), vhosts
and their topologies (``vhosts.py``), counted limits of the node, of vhosts and of users
(``limits.py``, ``access_limits.py``), management's tag rules (``management_access.py``)
and the checks a command passes before it acts (``checks.py``).

Rules of this package:
- Every refusal is RabbitMQ's: the same reply code and text, so a pika program sees
  what it would see there (403 ACCESS_REFUSED, 530 NOT_ALLOWED, 406 for limits).
- A check either returns or raises; it never changes state.
- Pure, like the rest of the core: passwords are hashed here, but no clock is read
  (the throttle is given ``now``).
"""
