#!/usr/bin/env python
"""Retry with a delay, through dead-lettering: a job that fails is retried later, a few
times, then parked for a person to look at.

    jobs --(reject)--> jobs.retry exchange --> jobs.wait (x-message-ttl) --(expired)--> jobs

Every failure adds to the message's x-death history, so the worker can count attempts
without keeping state. A job whose body contains "fail" always fails: it is tried
MAX_ATTEMPTS times, RETRY_DELAY_MS apart, then moved to 'jobs.parked'.
"""
import sys

import zbroker.client as pika

MAX_ATTEMPTS = 3
RETRY_DELAY_MS = int(sys.argv[1]) if len(sys.argv) > 1 else 1000


def failures(properties):
    """How many times this job was rejected from 'jobs' so far (from x-death)."""
    for death in (properties.headers or {}).get('x-death', []):
        if death['queue'] == 'jobs' and death['reason'] == 'rejected':
            return death['count']
    return 0


def main():
    connection = pika.BlockingConnection(pika.ConnectionParameters(host='localhost'))
    channel = connection.channel()

    channel.exchange_declare(exchange='jobs.retry', exchange_type='fanout', durable=True)
    channel.queue_declare(queue='jobs', durable=True,
                          arguments={'x-dead-letter-exchange': 'jobs.retry'})
    channel.queue_declare(queue='jobs.wait', durable=True,
                          arguments={'x-message-ttl': RETRY_DELAY_MS,
                                     'x-dead-letter-exchange': '',
                                     'x-dead-letter-routing-key': 'jobs'})
    channel.queue_bind(queue='jobs.wait', exchange='jobs.retry')
    channel.queue_declare(queue='jobs.parked', durable=True)
    print(' [*] Waiting for jobs. To exit press CTRL+C', flush=True)

    def callback(ch, method, properties, body):
        attempt = failures(properties) + 1
        if b'fail' not in body:
            print(f" [x] Done {body.decode()} (attempt {attempt})", flush=True)
            ch.basic_ack(delivery_tag=method.delivery_tag)
        elif attempt < MAX_ATTEMPTS:
            print(f" [!] Failed {body.decode()} (attempt {attempt}), retrying in {RETRY_DELAY_MS} ms", flush=True)
            ch.basic_reject(delivery_tag=method.delivery_tag, requeue=False)
        else:
            print(f" [!] Parked {body.decode()} after {attempt} attempts", flush=True)
            ch.basic_publish(exchange='', routing_key='jobs.parked', body=body, properties=properties)
            ch.basic_ack(delivery_tag=method.delivery_tag)

    channel.basic_qos(prefetch_count=1)
    channel.basic_consume(queue='jobs', on_message_callback=callback)
    channel.start_consuming()


if __name__ == '__main__':
    try:
        main()
    except KeyboardInterrupt:
        print('Interrupted')
    except pika.exceptions.AMQPConnectionError as exc:  # no broker, or it went away (320: stopped)
        sys.exit(repr(exc))
