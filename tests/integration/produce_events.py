#!/usr/bin/python3
"""Independent test producer: encodes events with the Apache Avro Python library (not our
encoder) and produces them with confluent-kafka (not our producer), keyed by user_id.

  produce_events.py --bootstrap B --topic T --events EVENTS.jsonl [--confluent ID]
                    [--bad-mix N] [--summary FILE]

EVENTS.jsonl holds one event per line with the field names of schemas/event.avsc (what
`streamseg gen --format json` writes). --bad-mix N appends N records of each bad kind, spread
among the good ones, and --summary writes the expected counts per DLQ reason as JSON.
"""
import argparse
import io
import json
import os
import random
import struct
import sys

import avro.io
import avro.schema
from confluent_kafka import Producer

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA = os.path.join(HERE, "..", "..", "schemas", "event.avsc")


def encoder(schema):
    writer = avro.io.DatumWriter(schema)

    def enc(ev):
        buf = io.BytesIO()
        writer.write(ev, avro.io.BinaryEncoder(buf))
        return buf.getvalue()

    return enc


def bad_records(enc, n, rng, base_ts):
    """(reason, key, value) triples, n of each kind the decoder must dead-letter."""
    good = {
        "event_id": "bad", "user_id": "u-bad", "type": "VIEW", "ts": base_ts,
        "session_id": None, "item_id": None, "category": None, "price": None,
        "quantity": None, "order_id": None, "dwell_ms": None, "device": None, "country": None,
    }
    out = []
    for i in range(n):
        ev = dict(good, event_id="bad-%d" % i, user_id="u-bad-%d" % i)
        full = enc(ev)
        out.append(("undecodable", b"u-bad", full[: max(1, len(full) // 2)]))
        out.append(("undecodable", b"u-bad", bytes(rng.getrandbits(8) | 0x80 for _ in range(40))))
        out.append(("no_user", b"", enc(dict(ev, user_id=""))))
        out.append(("bad_price", ev["user_id"].encode(), enc(dict(ev, type="PURCHASE", price=-3.5, quantity=1))))
        out.append(("bad_price", ev["user_id"].encode(), enc(dict(ev, type="PURCHASE", price=float("nan"), quantity=1))))
        out.append(("bad_quantity", ev["user_id"].encode(), enc(dict(ev, type="PURCHASE", price=3.0, quantity=-2))))
        out.append(("bad_ts", ev["user_id"].encode(), enc(dict(ev, ts=base_ts + 4000 * 86400 * 1000))))
        out.append(("oversized", ev["user_id"].encode(), enc(dict(ev, category="c" * 500))))
        out.append(("bad_field", ev["user_id"].encode(), enc(dict(ev, dwell_ms=-5))))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--events", required=True)
    ap.add_argument("--confluent", type=int, default=None, help="schema id: Confluent framing")
    ap.add_argument("--bad-mix", type=int, default=0)
    ap.add_argument("--summary", default=None)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()

    # timestamp-millis is a long on the wire; python3-avro insists on datetime objects for
    # it, so the producer writes the same schema with the logical type stripped.
    sj = json.load(open(SCHEMA))
    for fld in sj["fields"]:
        t = fld["type"]
        if isinstance(t, dict) and t.get("logicalType") == "timestamp-millis":
            fld["type"] = t["type"]
    schema = avro.schema.parse(json.dumps(sj))
    enc = encoder(schema)
    rng = random.Random(a.seed)
    prefix = b"" if a.confluent is None else b"\x00" + struct.pack(">i", a.confluent)

    records = []
    first_ts = None
    with open(a.events) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            ev = json.loads(line)
            ev = {k: ev.get(k) for k in (
                "event_id", "user_id", "type", "ts", "session_id", "item_id", "category", "price",
                "quantity", "order_id", "dwell_ms", "device", "country")}
            if first_ts is None:
                first_ts = ev["ts"]
            records.append((None, ev["user_id"].encode(), prefix + enc(ev)))
    expected = {"good": len(records)}
    if a.bad_mix:
        # Bad records go after the first 200 good events, so that every partition has a
        # watermark for the skew check.
        bad = bad_records(enc, a.bad_mix, rng, first_ts or 1700000000000)
        for reason, key, val in bad:
            expected[reason] = expected.get(reason, 0) + 1
            pos = rng.randrange(min(len(records), 200) if records else 0, len(records) + 1)
            records.insert(pos, (reason, key, prefix + val))
    failures = []

    def dr(err, msg):
        if err is not None:
            failures.append(str(err))

    p = Producer({"bootstrap.servers": a.bootstrap, "linger.ms": 5,
                  "enable.idempotence": True, "queue.buffering.max.messages": 1000000})
    for _, key, val in records:
        while True:
            try:
                p.produce(a.topic, key=key, value=val, on_delivery=dr)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    left = p.flush(60)
    if left or failures:
        print("produce failed: %d undelivered, %d failed: %s" % (left, len(failures),
              failures[:3]), file=sys.stderr)
        return 1
    expected["total"] = len(records)
    if a.summary:
        with open(a.summary, "w") as f:
            json.dump(expected, f)
    print(json.dumps(expected))
    return 0


if __name__ == "__main__":
    sys.exit(main())
