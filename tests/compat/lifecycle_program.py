"""One pika program for both brokers: RabbitMQ (real pika) and zbroker (zbroker.client).

    python tests/compat/lifecycle_program.py rabbit [PORT]     # needs pika and a RabbitMQ
    python tests/compat/lifecycle_program.py zbroker PORT

It prints one line per check (argument texts, expiration texts, reply-to and CC errors,
CC/BCC routing, the x-death shape, reject-publish, cycles, priorities, the retry loop,
expiry behind a longer-lived message); ``bin/compare-rabbitmq`` runs it against both and
diffs the output. Not part of the suite, which must pass without a RabbitMQ.
"""
import sys, time
which = sys.argv[1]
if which == "rabbit":
    import pika
    params = pika.ConnectionParameters("127.0.0.1", int(sys.argv[2]) if len(sys.argv) > 2 else 5672)
else:
    import zbroker.client as pika
    params = pika.ConnectionParameters("127.0.0.1", int(sys.argv[2]))
conn = pika.BlockingConnection(params)
out = []

def ch():
    global conn
    if conn.is_closed:
        conn = pika.BlockingConnection(params)
    return conn.channel()

def attempt(label, fn):
    c = ch()
    try:
        r = fn(c)
        out.append((label, "ok", repr(r)[:200]))
    except Exception as e:
        out.append((label, type(e).__name__, str(getattr(e, "reply_code", "")), getattr(e, "reply_text", str(e))[:300]))
    try:
        c.close()
    except Exception:
        pass

c0 = ch()
for q in ["cmp-q", "cmp-dead", "cmp-work", "cmp-copy", "cmp-hidden", "cmp-bounded", "cmp-prio", "cmp-loop"]:
    c0.queue_delete(q)
c0.exchange_delete("cmp-hx")
args = [
    {"x-max-priority": 300}, {"x-max-priority": -1}, {"x-message-ttl": -1}, {"x-message-ttl": "60000"},
    {"x-message-ttl": 1.5}, {"x-expires": 0}, {"x-max-length": -2}, {"x-max-length-bytes": True},
    {"x-overflow": "drop-tail"}, {"x-dead-letter-exchange": 7}, {"x-dead-letter-routing-key": "k"},
    {"x-single-active-consumer": 1}, {"x-delivery-limit": 3}, {"x-queue-type": "stream2"},
    {"x-max-priority": 0}, {"x-queue-mode": "lazy"},
]
for a in args:
    attempt(f"declare {a}", lambda c, a=a: c.queue_declare("cmp-q", arguments=a).method.queue and c.queue_delete("cmp-q"))
attempt("quorum + max-priority", lambda c: c.queue_declare("cmp-q", durable=True, arguments={"x-queue-type": "quorum", "x-max-priority": 5}))
for exp in ["abc", "-5", "10s", "0"]:
    def pub(c, exp=exp):
        c.queue_declare("cmp-q")
        c.basic_publish("", "cmp-q", b"x", pika.BasicProperties(expiration=exp))
        c.queue_declare("cmp-q", passive=True)
        return "published"
    attempt(f"expiration {exp!r}", pub)
attempt("x-priority str", lambda c: c.basic_consume("cmp-q", lambda *a: None, arguments={"x-priority": "high"}))
attempt("reply-to without consumer", lambda c: (c.basic_publish("", "cmp-q", b"q", pika.BasicProperties(reply_to="amq.rabbitmq.reply-to")), c.queue_declare("cmp-q", passive=True)))
attempt("reply consumer acking", lambda c: c.basic_consume("amq.rabbitmq.reply-to", lambda *a: None, auto_ack=False))
attempt("CC of str", lambda c: (c.basic_publish("", "cmp-q", b"q", pika.BasicProperties(headers={"CC": "x"})), c.queue_declare("cmp-q", passive=True)))

# x-death shape and CC/BCC
c = ch()
c.queue_declare("cmp-dead")
c.queue_declare("cmp-copy")
c.queue_declare("cmp-hidden")
c.queue_declare("cmp-work", arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "cmp-dead"})
c.basic_publish("", "cmp-work", b"job", pika.BasicProperties(expiration="60000", headers={"CC": ["cmp-copy"], "BCC": ["cmp-hidden"], "app": 1}, delivery_mode=2))
time.sleep(0.2)
for q in ("cmp-copy", "cmp-hidden"):
    m, p, b = c.basic_get(q, auto_ack=True)
    out.append((f"cc/bcc {q}", b, sorted((p.headers or {}).items())))
m, p, b = c.basic_get("cmp-work")
c.basic_reject(m.delivery_tag, requeue=False)
time.sleep(0.2)
m, p, b = c.basic_get("cmp-dead", auto_ack=True)
h = dict(p.headers)
death = h.pop("x-death")
out.append(("dead exchange/rk", m.exchange, m.routing_key, "expiration", p.expiration, "delivery_mode", p.delivery_mode))
out.append(("x-death keys", [sorted(d) for d in death]))
out.append(("x-death values", [{k: int(v) if k == "count" else v for k, v in d.items() if k != "time"} for d in death]))
out.append(("other headers", sorted(h.items())))

# reject-publish confirms
c = ch()
c.queue_declare("cmp-bounded", arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
c.confirm_delivery()
c.basic_publish("", "cmp-bounded", b"1")
try:
    c.basic_publish("", "cmp-bounded", b"2")
    out.append(("reject-publish", "no error"))
except Exception as e:
    out.append(("reject-publish", type(e).__name__, [m.body for m in e.messages]))

# cycle: TTL queue dead-lettering to itself
c = ch()
c.queue_declare("cmp-loop", arguments={"x-message-ttl": 100, "x-dead-letter-exchange": ""})
c.basic_publish("", "cmp-loop", b"x")
time.sleep(0.5)
out.append(("self cycle count after 0.5 s", c.queue_declare("cmp-loop", passive=True).method.message_count))

# priorities
c.queue_declare("cmp-prio", arguments={"x-max-priority": 5})
for i, pr in enumerate([None, 1, 9, 5, 0, 1]):
    c.basic_publish("", "cmp-prio", str(i).encode(), pika.BasicProperties(priority=pr))
time.sleep(0.2)
got = []
while True:
    m, p, b = c.basic_get("cmp-prio", auto_ack=True)
    if m is None:
        break
    got.append(b.decode())
out.append(("priority order", got))
for q in ["cmp-q", "cmp-dead", "cmp-work", "cmp-copy", "cmp-hidden", "cmp-bounded", "cmp-prio", "cmp-loop"]:
    ch().queue_delete(q)
c = ch()
for q in ("r-work", "r-wait"): c.queue_delete(q)
c.exchange_delete("r-retry")
c.exchange_declare("r-retry", "fanout")
c.queue_declare("r-work", arguments={"x-dead-letter-exchange": "r-retry"})
c.queue_declare("r-wait", arguments={"x-message-ttl": 200, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "r-work"})
c.queue_bind("r-wait", "r-retry")
c.basic_publish("", "r-work", b"job", pika.BasicProperties(headers={"h": 1}))
for attempt in range(3):
    for _ in range(50):
        m, p, b = c.basic_get("r-work")
        if m: break
        time.sleep(0.05)
    deaths = [(d["queue"], d["reason"], int(d["count"]), d["exchange"], d["routing-keys"]) for d in (p.headers or {}).get("x-death", [])]
    out.append((f"retry {attempt}", m.exchange, m.routing_key, deaths, sorted(k for k in p.headers if k.startswith("x-first"))))
    c.basic_reject(m.delivery_tag, requeue=False)
# expiry at head vs behind: RabbitMQ keeps the short one behind the long one
c.queue_delete("r-exp"); c.queue_declare("r-exp")
c.basic_publish("", "r-exp", b"long", pika.BasicProperties(expiration="5000"))
c.basic_publish("", "r-exp", b"short", pika.BasicProperties(expiration="100"))
time.sleep(0.4)
out.append(("count after the short-lived one expired (RabbitMQ 2: head-only expiry; zbroker 1)", c.queue_declare("r-exp", passive=True).method.message_count))
for q in ("r-work", "r-wait", "r-exp"): c.queue_delete(q)

for row in out:
    print(*row, sep=" | ")
