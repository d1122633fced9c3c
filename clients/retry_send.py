#!/usr/bin/env python
"""Retry with a delay, producer: one persistent job for retry_worker.py.

    python retry_send.py "resize image 7"      # succeeds at once
    python retry_send.py "fail on purpose"     # retried, then parked
"""
import sys

import zbroker.client as pika

connection = pika.BlockingConnection(pika.ConnectionParameters(host='localhost'))
channel = connection.channel()
channel.queue_declare(queue='jobs', durable=True,
                      arguments={'x-dead-letter-exchange': 'jobs.retry'})

job = ' '.join(sys.argv[1:]) or "resize image 1"
channel.basic_publish(exchange='', routing_key='jobs', body=job,
                      properties=pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent))
print(f" [x] Sent {job}")
connection.close()
