#!/usr/bin/env python
"""Hello world, producer: one message to the queue 'hello' through the default exchange."""
import zbroker.client as pika

connection = pika.BlockingConnection(pika.ConnectionParameters(host='localhost'))
channel = connection.channel()

channel.queue_declare(queue='hello')

channel.basic_publish(exchange='', routing_key='hello', body='Hello World!')
print(" [x] Sent 'Hello World!'")
connection.close()
