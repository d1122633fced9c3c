"""pika's ``pika.adapters.blocking_connection`` names, for type hints and imports that use them."""
from zbroker.client.channel import BlockingChannel, ReturnedMessage
from zbroker.client.connection import BlockingConnection

__all__ = ["BlockingChannel", "BlockingConnection", "ReturnedMessage"]
