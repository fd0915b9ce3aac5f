#!/usr/bin/python3
"""peer_pipeline: the pipeline a data team would write instead of streamseg, as the yardstick
of issue 5's benchmark harness (run by `bench_pipeline --peer yes` on the same events in the
same run; it can also run on its own).

Python 3 with the Debian packages only: confluent-kafka (librdkafka) consumes the Avro events
(schemas/event.avsc, plain Avro binary: input.format=avro), python3-avro decodes them
(fastavro is not packaged in Debian 12), a dict holds the state of every user, scikit-learn's
StandardScaler.partial_fit + MiniBatchKMeans.partial_fit learn the segments on the users
changed by each batch, and each changed user's profile goes out as JSON to --out-topic.

Per user (the core of streamseg's features, docs/features.md): events by type, decayed event
counts (half-lives 1, 7, 30 days, referred to the user's last event), orders, revenue, refunds,
first/last seen, last purchase, sessions (session_id or a 30-minute gap), dwell. The feature
vector (8 values: log1p of events, 7-day decayed views, orders, revenue, sessions; cart and
purchase conversion; days since last seen) is standardised and clustered (K = --k).

What it does not do, and streamseg does: persist state (a restart loses it), exactly-once
(offsets are auto-committed by the consumer, state is not), dead-lettering, churn scores,
hysteresis, segment-change records. So its rate is an upper bound of what such a script costs.

Rate: events / (time of the last event processed - time the first event arrived), as
bench_pipeline measures streamseg's end-to-end rate. Prints its figures and method; the last
line is machine-readable: `peer_rate EVENTS_PER_S events N seconds S`.

  peer_pipeline.py --bootstrap HOST:PORT --topic T [--events N] [--out-topic T] [--k 8]
                   [--batch 10000] [--group G] [--idle-s 20] [--schema PATH]
"""
import argparse
import io
import json
import math
import os
import sys
import time

import numpy as np
from confluent_kafka import Consumer, KafkaError, Producer
import avro.io
import avro.schema
from sklearn.cluster import MiniBatchKMeans
from sklearn.preprocessing import StandardScaler

DAY_MS = 86400000.0
HALFLIVES = (1.0, 7.0, 30.0)
SESSION_GAP_MS = 30 * 60 * 1000
TYPES = ("VIEW", "CLICK", "SEARCH", "ADD_TO_CART", "REMOVE_FROM_CART", "PURCHASE", "REFUND")
T_IDX = {t: i for i, t in enumerate(TYPES)}


class User:
    __slots__ = ("n", "by_type", "decayed", "first_ts", "last_ts", "orders", "order_ids",
                 "revenue", "refunds", "last_purchase_ts", "sessions", "last_session",
                 "dwell_ms", "segment")

    def __init__(self, ts):
        self.n = 0
        self.by_type = [0] * len(TYPES)
        self.decayed = [[0.0] * len(HALFLIVES) for _ in TYPES]
        self.first_ts = ts
        self.last_ts = ts
        self.orders = 0
        self.order_ids = set()
        self.revenue = 0.0
        self.refunds = 0
        self.last_purchase_ts = 0
        self.sessions = 0
        self.last_session = None
        self.dwell_ms = 0
        self.segment = -1

    def apply(self, e):
        ts = e["ts"]
        t = T_IDX[e["type"]]
        if ts >= self.last_ts:
            dt = ts - self.last_ts
            if dt > 0:
                f = [2.0 ** (-dt / (hl * DAY_MS)) for hl in HALFLIVES]
                for row in self.decayed:
                    for h in range(len(HALFLIVES)):
                        row[h] *= f[h]
            for h in range(len(HALFLIVES)):
                self.decayed[t][h] += 1.0
            sid = e.get("session_id") or None
            new_session = sid != self.last_session if sid is not None else dt > SESSION_GAP_MS
            if self.n == 0 or new_session:
                self.sessions += 1
            self.last_session = sid
            self.last_ts = ts
        else:
            for h, hl in enumerate(HALFLIVES):
                self.decayed[t][h] += 2.0 ** (-(self.last_ts - ts) / (hl * DAY_MS))
        self.first_ts = min(self.first_ts, ts)
        self.n += 1
        self.by_type[t] += 1
        price = e.get("price") or 0.0
        qty = e.get("quantity")
        amount = price * (1 if qty is None else qty)
        if t == T_IDX["PURCHASE"]:
            self.revenue += amount
            oid = e.get("order_id")
            if oid and oid not in self.order_ids:
                self.order_ids.add(oid)
                self.orders += 1
            elif not oid:
                self.orders += 1
            self.last_purchase_ts = max(self.last_purchase_ts, ts)
        elif t == T_IDX["REFUND"]:
            self.refunds += 1
        if e.get("dwell_ms") is not None:
            self.dwell_ms += e["dwell_ms"]

    def vector(self, now_ms):
        views = self.by_type[T_IDX["VIEW"]]
        carts = self.by_type[T_IDX["ADD_TO_CART"]]
        return (math.log1p(self.n), math.log1p(self.decayed[T_IDX["VIEW"]][1]),
                math.log1p(self.orders), math.log1p(self.revenue), math.log1p(self.sessions),
                carts / views if views else 0.0, self.orders / carts if carts else 0.0,
                max(0.0, (now_ms - self.last_ts) / DAY_MS))

    def profile(self, uid, now_ms):
        return {"user_id": uid, "n_events": self.n, "events_by_type": dict(zip(TYPES, self.by_type)),
                "orders": self.orders, "revenue": round(self.revenue, 2), "refunds": self.refunds,
                "sessions": self.sessions, "first_ts": self.first_ts, "last_ts": self.last_ts,
                "last_purchase_ts": self.last_purchase_ts, "segment": self.segment,
                "views_7d": self.decayed[T_IDX["VIEW"]][1], "updated_ts": now_ms}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--events", type=int, default=0, help="stop after N events (0: when idle)")
    ap.add_argument("--out-topic", default="peer.profiles")
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--batch", type=int, default=10000)
    ap.add_argument("--group", default="peer-pipeline-%d" % os.getpid())
    ap.add_argument("--idle-s", type=float, default=20.0,
                    help="stop when no record arrived for this long")
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--schema", default=os.path.join(here, "..", "schemas", "event.avsc"))
    a = ap.parse_args()

    with open(a.schema) as f:
        # Without the logical types: ts stays a long in ms (python3-avro would build a datetime
        # per event, which no data team would keep in a hot loop).
        schema = avro.schema.parse(f.read().replace('"logicalType": "timestamp-millis"',
                                                    '"doc": "ms"'))
    reader = avro.io.DatumReader(schema)
    consumer = Consumer({"bootstrap.servers": a.bootstrap, "group.id": a.group,
                         "auto.offset.reset": "earliest", "fetch.wait.max.ms": 10,
                         "enable.auto.commit": True})
    producer = Producer({"bootstrap.servers": a.bootstrap, "linger.ms": 5,
                         "queue.buffering.max.messages": 2000000})
    consumer.subscribe([a.topic])
    scaler = StandardScaler()
    km = MiniBatchKMeans(n_clusters=a.k, random_state=1, n_init=3)
    users = {}
    fitted = False
    n = bad = 0
    t_first = t_last = None
    cost = {"decode": 0.0, "state": 0.0, "kmeans": 0.0, "produce": 0.0}
    last_arrival = time.monotonic()
    pending = []  # users seen before K-means had enough of them for its first step
    while True:
        if a.events and n + bad >= a.events:
            break
        msgs = consumer.consume(num_messages=a.batch, timeout=0.1)
        now = time.monotonic()
        if not msgs:
            if now - last_arrival > a.idle_s:
                break
            continue
        last_arrival = now
        if t_first is None:
            t_first = now
        t0 = time.monotonic()
        events = []
        for m in msgs:
            if m.error():
                if m.error().code() != KafkaError._PARTITION_EOF:
                    print("peer: consume error: %s" % m.error(), file=sys.stderr)
                continue
            try:
                events.append(reader.read(avro.io.BinaryDecoder(io.BytesIO(m.value()))))
            except Exception:  # a bad record: counted, skipped
                bad += 1
        t1 = time.monotonic()
        changed = {}
        wm = 0
        for e in events:
            u = users.get(e["user_id"])
            if u is None:
                u = users[e["user_id"]] = User(e["ts"])
            u.apply(e)
            changed[e["user_id"]] = u
            wm = max(wm, e["ts"])
        n += len(events)
        t2 = time.monotonic()
        ids = pending + list(changed.keys())
        if len(ids) >= a.k:
            X = np.array([users[i].vector(wm) for i in ids], dtype=np.float64)
            scaler.partial_fit(X)
            Xs = scaler.transform(X)
            km.partial_fit(Xs)
            fitted = True
            seg = km.predict(Xs)
            for i, s in zip(ids, seg):
                users[i].segment = int(s)
            pending = []
        else:
            pending = ids
        t3 = time.monotonic()
        for uid, u in changed.items():
            while True:
                try:
                    producer.produce(a.out_topic, key=uid, value=json.dumps(u.profile(uid, wm)))
                    break
                except BufferError:
                    producer.poll(0.01)
        producer.poll(0)
        t4 = time.monotonic()
        t_last = t4
        cost["decode"] += t1 - t0
        cost["state"] += t2 - t1
        cost["kmeans"] += t3 - t2
        cost["produce"] += t4 - t3
    producer.flush(30)
    consumer.close()
    secs = (t_last - t_first) if t_first is not None and t_last > t_first else 0.0
    rate = n / secs if secs > 0 else 0.0
    busy = sum(cost.values()) or 1.0
    print("peer: %d events (%d undecodable), %d users, K-means fitted %s, %.2f s from the first "
          "record to the last processed: %.0f events/s" % (n, bad, len(users), fitted, secs, rate))
    print("peer: time split " + ", ".join("%s %.0f%%" % (k, 100 * v / busy) for k, v in cost.items()))
    print("peer: method: confluent-kafka %s (librdkafka %s) consume batches of %d, python3-avro "
          "decode, dict state, StandardScaler + MiniBatchKMeans(K=%d).partial_fit per batch, JSON "
          "profile per changed user to %s" % (__import__("confluent_kafka").version()[0],
                                              __import__("confluent_kafka").libversion()[0],
                                              a.batch, a.k, a.out_topic))
    print("peer_rate %.1f events %d seconds %.3f" % (rate, n, secs))
    return 0 if n > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
