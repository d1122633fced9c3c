"""pika's ``pika.adapters`` path, for programs that import the blocking classes from there."""
from zbroker.client.connection import BlockingConnection

__all__ = ["BlockingConnection"]
