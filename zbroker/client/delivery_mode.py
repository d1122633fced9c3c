"""``pika.DeliveryMode``: 1 keeps a message in memory, 2 asks for it to be persisted."""
from enum import Enum


class DeliveryMode(Enum):
    Transient = 1
    Persistent = 2
