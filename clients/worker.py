#!/usr/bin/env python
"""Work queues, worker: one task at a time (prefetch 1), acked when done.

A worker killed mid-task never acks it, so the broker gives the task to another worker.
"""
import sys
import time

import zbroker.client as pika


def main():
    connection = pika.BlockingConnection(pika.ConnectionParameters(host='localhost'))
    channel = connection.channel()

    channel.queue_declare(queue='task_queue', durable=True)
    print(' [*] Waiting for messages. To exit press CTRL+C')

    def callback(ch, method, properties, body):
        print(f" [x] Received {body.decode()}")
        time.sleep(body.count(b'.'))
        print(" [x] Done")
        ch.basic_ack(delivery_tag=method.delivery_tag)

    channel.basic_qos(prefetch_count=1)
    channel.basic_consume(queue='task_queue', on_message_callback=callback)

    channel.start_consuming()


if __name__ == '__main__':
    try:
        main()
    except KeyboardInterrupt:
        print('Interrupted')
    except pika.exceptions.AMQPConnectionError as exc:  # no broker, or it went away (320: stopped)
        sys.exit(repr(exc))
