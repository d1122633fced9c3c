# The README's example of the pytest plugin: a pika-style worker tested against a real broker.
import zbroker.client as pika


def handle(channel, method, properties, body):  # the worker under test
    channel.basic_publish("", properties.reply_to, body.upper(),
                          pika.BasicProperties(correlation_id=properties.correlation_id))
    channel.basic_ack(method.delivery_tag)


def test_worker_answers(zbroker_channel):
    ch = zbroker_channel
    ch.queue_declare("jobs")
    reply = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_consume("jobs", handle)
    ch.basic_publish("", "jobs", b"hello", pika.BasicProperties(reply_to=reply, correlation_id="1"))
    for method, properties, body in ch.consume(reply, auto_ack=True, inactivity_timeout=30):
        assert method is not None, "no reply within 30 s"
        assert (body, properties.correlation_id) == (b"HELLO", "1")
        break


def test_each_test_starts_empty(zbroker, zbroker_channel):
    assert [q["name"] for q in zbroker.management("list", kind="queues")] == []


def test_durable_broker_survives_a_kill(zbroker_factory):
    broker = zbroker_factory(durable=True)
    c = pika.BlockingConnection(broker.parameters())
    c.channel().queue_declare("kept", durable=True)
    c.close()
    broker.kill()
    broker.start()
    c = pika.BlockingConnection(broker.parameters())
    assert c.channel().queue_declare("kept", passive=True).method.message_count == 0
    c.close()


def test_kombu_code_against_the_same_broker(zbroker):
    """Code written for RabbitMQ (here kombu) runs unmodified against zbroker.amqp_url."""
    from kombu import Connection

    with Connection(zbroker.amqp_url.replace("amqp://", "pyamqp://")) as conn:
        queue = conn.SimpleQueue("kombu-jobs")
        queue.put({"n": 1})
        message = queue.get(timeout=5)
        assert message.payload == {"n": 1}
        message.ack()
        queue.close()
