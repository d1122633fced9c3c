#!/usr/bin/env python
"""A worker that survives broker restarts and network cuts (``RobustConnection``, an
extension beyond pika): it reconnects, declares its queue again, gets its consumer back
and carries on. A task is acked after it is done; one in hand when the broker went away
is redelivered (its stale ack is dropped by the client), so a task may run twice:
make tasks idempotent, or count, as this one does.

usage: robust_worker.py [QUEUE] [RESULTS_FILE]    (ZBROKER_HOST / ZBROKER_PORT: the broker)
Each task's body is checked against its ``sha256`` header; one line per task done is
appended to RESULTS_FILE: ``<task id> ok|corrupt``.
"""
import hashlib
import logging
import signal
import sys

import zbroker.client as pika

queue = sys.argv[1] if len(sys.argv) > 1 else "robust_tasks"
results = open(sys.argv[2] if len(sys.argv) > 2 else "/dev/stdout", "a", buffering=1)
logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(message)s", stream=sys.stderr)

connection = pika.RobustConnection(pika.ConnectionParameters(heartbeat=2), reconnect_delay=0.2,
                                   max_reconnect_delay=2.0)
connection.add_on_reconnect_callback(lambda conn: print(" [*] reconnected", flush=True))
channel = connection.channel()
channel.queue_declare(queue=queue, durable=True)
channel.basic_qos(prefetch_count=10)


def callback(ch, method, properties, body):
    task_id, _, payload = body.partition(b":")
    ok = hashlib.sha256(payload).hexdigest() == (properties.headers or {}).get("sha256")
    results.write(f"{task_id.decode()} {'ok' if ok else 'corrupt'}\n")
    ch.basic_ack(delivery_tag=method.delivery_tag)


signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
channel.basic_consume(queue=queue, on_message_callback=callback)
print(" [*] Waiting for tasks", flush=True)
try:
    channel.start_consuming()
except (KeyboardInterrupt, SystemExit):
    pass
print(f" [*] stopped after {connection.reconnects} reconnection(s)", flush=True)
