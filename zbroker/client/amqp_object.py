"""Base classes of pika's AMQP objects: the same repr and equality, so printed methods and
properties look as they do with pika."""
from __future__ import annotations


class AMQPObject:
    NAME = "AMQPObject"
    INDEX: int | None = None

    def __repr__(self) -> str:
        items = [f"{key}={value}" for key, value in self.__dict__.items()
                 if getattr(self.__class__, key, None) != value]
        if not items:
            return f"<{self.NAME}>"
        return f"<{self.NAME}({sorted(items)})>"

    def __eq__(self, other: object) -> bool:
        if other is None:
            return False
        return self.__dict__ == getattr(other, "__dict__", None)

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value, as in pika


class Class(AMQPObject):
    NAME = "Unextended Class"


class Method(AMQPObject):
    NAME = "Unextended Method"
    synchronous = False


class Properties(AMQPObject):
    NAME = "Unextended Properties"
