#!/usr/bin/env python
"""A producer that survives broker restarts (``RobustConnection``): persistent tasks,
publisher confirms; a message not yet confirmed when the broker went away is published
again once the connection is restored, so every task is on the broker's disk at least
once when this program says so.

usage: robust_producer.py [COUNT] [QUEUE] [PAUSE]    (ZBROKER_HOST / ZBROKER_PORT: the broker)
PAUSE: seconds to wait after each batch of 50 (a steady trickle instead of a burst).
"""
import hashlib
import logging
import os
import sys

import zbroker.client as pika

count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
queue = sys.argv[2] if len(sys.argv) > 2 else "robust_tasks"
pause = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
logging.basicConfig(level=logging.INFO, format="%(asctime)s producer %(message)s", stream=sys.stderr)


def main():
    connection = pika.RobustConnection(pika.ConnectionParameters(heartbeat=2), reconnect_delay=0.2,
                                       max_reconnect_delay=2.0)
    channel = connection.channel()
    channel.queue_declare(queue=queue, durable=True)
    channel.confirm_delivery()
    print(f" [x] Sending {count} tasks", flush=True)
    for task_id in range(count):
        payload = os.urandom(64 + task_id % 512)
        properties = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent,
                                          headers={"sha256": hashlib.sha256(payload).hexdigest()})
        channel.publish_nowait("", queue, f"{task_id}:".encode() + payload, properties)
        if task_id % 50 == 49:
            channel.wait_for_confirms()
            if pause:
                connection.sleep(pause)
    channel.wait_for_confirms()
    print(f" [x] {count} tasks confirmed after {connection.reconnects} reconnection(s)", flush=True)
    connection.close()


if __name__ == '__main__':
    try:
        main()
    except KeyboardInterrupt:
        print('Interrupted')
    except pika.exceptions.AMQPConnectionError as exc:  # no broker at the start (later cuts are healed)
        sys.exit(repr(exc))
