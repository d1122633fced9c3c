"""``zbroker bench``: workloads run as separate processes, side by side, reported as medians.

Every workload role speaks only the pika API, so the same code measures zbroker (through
``zbroker.client``) and, with ``--against``, RabbitMQ (through real pika).
"""

#: The workloads, in the order they run and print.
WORKLOADS = ("publish", "workqueue", "fanout", "rpc", "fanin", "persistent", "stream")
