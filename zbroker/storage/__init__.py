"""Where durable state lives: one ``MessageStore`` interface, a memory store and a disk store."""
from zbroker.storage.disk import DiskStore
from zbroker.storage.memory import MemoryState, MemoryStore
from zbroker.storage.store import MessageStore, Recovered, RecoveredQueue, StoredMessage, StoreError

__all__ = ["DiskStore", "MemoryState", "MemoryStore", "MessageStore", "Recovered", "RecoveredQueue", "StoredMessage",
           "StoreError"]
