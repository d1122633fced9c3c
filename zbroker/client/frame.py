"""``pika.frame.Method``: what synchronous channel calls return (``frame.method`` is the reply)."""
from __future__ import annotations

from zbroker.client.amqp_object import AMQPObject, Method as _MethodObject

FRAME_METHOD = 1


class Frame(AMQPObject):
    NAME = "Frame"

    def __init__(self, frame_type: int, channel_number: int) -> None:
        self.frame_type = frame_type
        self.channel_number = channel_number


class Method(Frame):
    NAME = "METHOD"

    def __init__(self, channel_number: int, method: _MethodObject) -> None:
        super().__init__(FRAME_METHOD, channel_number)
        self.method = method
