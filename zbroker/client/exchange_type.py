"""``pika.exchange_type.ExchangeType``: the exchange types, as a str enum."""
from enum import Enum


class ExchangeType(str, Enum):
    direct = "direct"
    fanout = "fanout"
    headers = "headers"
    topic = "topic"
