"""zbroker's client: pika's blocking API, so ``import zbroker.client as pika`` ports a program.

The names here are pika 1.x's module-level names; the default port is zbroker's (5680).
``RobustConnection`` (``robust.py``) is an extension: a connection that heals itself.
"""
from zbroker import __version__
from zbroker.client import exceptions, frame, spec
from zbroker.client import exchange_type
from zbroker.client.channel import BlockingChannel, ReturnedMessage
from zbroker.client.connection import BlockingConnection
from zbroker.client.delivery_mode import DeliveryMode
from zbroker.client.exchange_type import ExchangeType
from zbroker.client.parameters import ConnectionParameters, PlainCredentials, URLParameters
from zbroker.client.robust import RobustConnection
from zbroker.client.spec import BasicProperties

__all__ = [
    "BasicProperties", "BlockingChannel", "BlockingConnection", "ConnectionParameters", "DeliveryMode",
    "ExchangeType", "PlainCredentials", "ReturnedMessage", "RobustConnection", "URLParameters", "__version__", "exceptions",
    "exchange_type", "frame", "spec",
]
