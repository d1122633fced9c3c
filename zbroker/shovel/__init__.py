"""Dynamic shovels' worker: the part of RabbitMQ's rabbitmq_shovel that moves messages,
over AMQP 0-9-1 with pika, from any broker to any broker (this one included).

Modules, by duty (each opens with its rules):
- ``worker.py``: the contract with the broker's supervisor (``python -m
  zbroker.shovel.worker``: a JSON object on stdin, status lines on stdout) and ``run``
  for a thread; the attempts loop and reconnect-delay.
- ``link.py``: one attempt: connect, declare, consume, forward, settle, per ack-mode.
- ``forwarding.py``: a message's destination routing and properties (forward headers).
- ``uris.py``: shovel URIs (RabbitMQ's amqp_uri) to pika parameters, the internal login.
- ``definition.py``: the shovel definition's keys and RabbitMQ's defaults.
- ``writes.py``: pika's frames sent together (the worker's largest cost was ``send()``).
- ``bench.py``: ``python -m zbroker.shovel.bench``, a worker's messages per second.

The package imports nothing else of zbroker: the worker runs as a process of its own,
and talks to this broker as any AMQP client does.
"""
from __future__ import annotations

from typing import Any

__all__ = ["run"]


def __getattr__(name: str) -> Any:
    """``zbroker.shovel.run`` is ``worker.run``, imported on first use: importing it here
    would load ``worker`` before ``python -m zbroker.shovel.worker`` runs it (runpy warns)."""
    if name == "run":
        from zbroker.shovel.worker import run
        return run
    raise AttributeError(name)
