#!/usr/bin/python3
"""Writes the seed corpora of the fuzz targets, tests/fuzz/corpus/<target>/, from the schemas
(schemas/event.avsc and tests/data/schemas/*.avsc), the property table (CONFIGURATION.md) and
the config files in deploy/, and tests/fuzz/conf.dict from the same table.

The seeds are committed; run this again (from anywhere) after a schema or property change:
    /usr/bin/python3 tests/fuzz/make_seeds.py
Records are written with the Avro reference implementation (python3-avro), not with our encoder,
so that the seeds do not share its mistakes. Seed names say what they hold; files named
regress-* are regression inputs of fixed bugs and are never rewritten here.
"""
import io
import json
import os
import re
import struct

import avro.io
import avro.schema

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(SRC, "tests", "fuzz", "corpus")
WATERMARK = 1700000000000  # the decode target's watermark (ms); seeds sit just before it


def read(*parts):
    with open(os.path.join(SRC, *parts), encoding="utf-8") as f:
        return f.read()


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def clean(target):
    d = os.path.join(OUT, target)
    if os.path.isdir(d):
        for n in os.listdir(d):
            if not n.startswith("regress-"):
                os.unlink(os.path.join(d, n))


def plain(node):
    """The schema without logical types: same bytes, and ts stays a number of ms."""
    if isinstance(node, dict):
        return {k: plain(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [plain(v) for v in node]
    return node


def avro_bytes(schema_text, record):
    schema = avro.schema.parse(json.dumps(plain(json.loads(schema_text))))
    buf = io.BytesIO()
    avro.io.DatumWriter(schema).write(record, avro.io.BinaryEncoder(buf))
    return buf.getvalue()


# ---- decode: first byte picks the decoder (see fuzz_decode.c) --------------------------------
def decode_seeds():
    clean("decode")
    reader = read("schemas", "event.avsc")
    v0 = read("tests", "data", "schemas", "event_v0.avsc")
    v2 = read("tests", "data", "schemas", "event_v2.avsc")
    no_user = read("tests", "data", "schemas", "event_no_user.avsc")
    base = {"event_id": "e-1", "user_id": "u42", "type": "VIEW", "ts": WATERMARK - 60000,
            "session_id": None, "item_id": None, "category": None, "price": None,
            "quantity": None, "order_id": None}
    full = dict(base, type="PURCHASE", session_id="s-9", item_id="sku-123",
                category="shoes/running", price=59.9, quantity=2, order_id="o-77")
    events = {
        "view-minimal": base,
        "purchase-full": full,
        "refund": dict(full, type="REFUND", price=19.99, quantity=1),
        "search-unicode": dict(base, type="SEARCH", category="caf\u00e9 \u2615", session_id=""),
        "empty-user": dict(base, user_id=""),  # dead-lettered: no user id
        "negative-price": dict(full, price=-1.0),  # dead-lettered: bad price
        "old-ts": dict(base, ts=0),  # dead-lettered: too far behind the watermark
    }
    current = {"dwell_ms": None, "device": None, "country": None}
    for name, ev in events.items():
        ev_now = dict(ev, **current)
        if name == "purchase-full":
            ev_now.update(dwell_ms=1500, device="mobile", country="DE")
        body = avro_bytes(reader, ev_now)
        write("decode", "avro-" + name, b"\x00" + body)
        write("decode", "confluent-" + name, b"\x03\x00" + struct.pack(">i", 1) + body)
    for name in ("view-minimal", "purchase-full", "refund"):
        body = avro_bytes(v0, events[name])
        write("decode", "v0-" + name, b"\x01" + body)
        write("decode", "confluent-v0-" + name, b"\x03\x00" + struct.pack(">i", 2) + body)
    ev2 = dict(events["purchase-full"], referrer="https://example.com/", tags=["a", "b"],
               attrs={"k": 1, "z": -7}, score=0.25, dwell_ms=10, device="web", country="FR",
               price=12.5)
    ev2_min = dict(events["view-minimal"], type="WISHLIST", referrer=None, tags=[], attrs={}, score=-1.0,
                   dwell_ms=None, device=None, country="NL")
    for name, ev in (("purchase", ev2), ("wishlist", ev2_min)):
        body = avro_bytes(v2, ev)
        write("decode", "v2-" + name, b"\x02" + body)
        write("decode", "confluent-v2-" + name, b"\x03\x00" + struct.pack(">i", 3) + body)
    body = avro_bytes(no_user, {"event_id": "e", "type": "CLICK", "ts": WATERMARK})
    write("decode", "confluent-incompatible", b"\x03\x00" + struct.pack(">i", 4) + body)
    write("decode", "confluent-unknown-id", b"\x03\x00" + struct.pack(">i", 99) + body)
    write("decode", "confluent-bad-magic", b"\x03\x01" + struct.pack(">i", 1) + body)


# ---- registry: first byte even = the answer, odd = a schema text to wrap (fuzz_registry.c) ---
def registry_seeds():
    clean("registry")
    texts = {
        "event": read("schemas", "event.avsc"),
        "v0": read("tests", "data", "schemas", "event_v0.avsc"),
        "v2": read("tests", "data", "schemas", "event_v2.avsc"),
        "no-user": read("tests", "data", "schemas", "event_no_user.avsc"),
    }
    for name, text in texts.items():
        compact = json.dumps(json.loads(text), separators=(",", ":"))
        # What Confluent's registry sends: the schema as a compact JSON string.
        write("registry", "confluent-" + name,
              b"\x00" + json.dumps({"schema": compact}).encode())
        write("registry", "wrap-" + name, b"\x01" + text.encode())
    ev = json.dumps(json.loads(texts["event"]), separators=(",", ":"))
    answers = {
        "full": {"subject": "shop.events-value", "version": 3, "id": 7, "schemaType": "AVRO",
                 "references": [{"name": "x.Item", "subject": "item", "version": 1}],
                 "schema": ev},
        "schema-first": {"schema": ev, "deleted": False, "ruleSet": None, "score": -1.5e3},
        "protobuf": {"schemaType": "PROTOBUF", "schema": "syntax = \"proto3\";"},
        "json-schema": {"schema": "{\"type\":\"object\"}", "schemaType": "JSON"},
        "not-found": {"error_code": 40403, "message": "Schema 99 not found"},
        "schema-not-string": {"schema": {"type": "string"}},
        "duplicate-schema": {"schema": "\"string\"", "metadata": {"schema": "\"int\""}},
        "unicode": {"schema": json.dumps({"type": "enum", "name": "E",
                                          "doc": "caf\u00e9 \u2615 \U0001F600",
                                          "symbols": ["A"]})},
    }
    for name, doc in answers.items():
        write("registry", "answer-" + name, b"\x00" + json.dumps(doc).encode())
        write("registry", "answer-" + name + "-utf8",
              b"\x02" + json.dumps(doc, ensure_ascii=False, indent=2).encode())
    write("registry", "answer-escapes",
          b'\x00{"schema":"\\"str\\u0069ng\\"\\/\\b\\f\\n\\r\\t\\\\ \\ud83d\\ude00"}')
    write("registry", "answer-trailing", b'\x00 {"schema":"\\"int\\""} trailing')
    write("registry", "answer-empty-object", b"\x00{}")
    write("registry", "answer-deep", b'\x00{"a":' + b"[" * 32 + b"]" * 32 + b',"schema":"1"}')
    write("registry", "wrap-controls", b"\x01" + bytes(range(0, 0x80)) + "\u00e9\U0001F600".encode())
    write("registry", "wrap-invalid-utf8", b"\x03" + b"\xff\xfe\xc0\x80\xed\xa0\x80")


# ---- conf: first byte 0 = a config file, 1 = -X lines, 2 = keyed -X lines (fuzz_conf.c) ------
def conf_seeds():
    clean("conf")
    props = re.findall(r"^\| `([a-z0-9.]+)` \|.*?\| `([^`]*)` \|",
                       read("CONFIGURATION.md"), re.M)
    if len(props) < 20:
        raise SystemExit("make_seeds.py: cannot read the property table from CONFIGURATION.md")
    defaults = "".join("%s=%s\n" % kv for kv in props)
    # The dictionary: every key, and tokens of values.
    tokens = ["kafka.", "kafka.sasl.password=", "=", "#", "\\x0A", "\\x0D", " ", ",", "K", "M", "G",
              "B", "true", "false", "e+308", "e-320", "0x1p-1074", "9223372036854775807", "-",
              "inf", "nan", "avro", "confluent", "json", "debug", "mbgnbd", "weeks", "wall"]
    with open(os.path.join(SRC, "tests", "fuzz", "conf.dict"), "w", encoding="utf-8") as f:
        f.write("# libFuzzer dictionary of fuzz_conf: the keys of CONFIGURATION.md and value\n"
                "# tokens (written by tests/fuzz/make_seeds.py).\n")
        f.writelines('"%s="\n' % k for k, _ in props)
        f.writelines('"%s"\n' % t for t in tokens)
    write("conf", "file-defaults", b"\x00# every property at its default\n" + defaults.encode())
    write("conf", "args-defaults", b"\x01" + defaults.encode())
    write("conf", "file-example", b"\x00" + b"""# streamseg.conf
input.topic = shop.events
input.format=confluent
schema.registry.url=http://127.0.0.1:8081
  state.dir = /var/lib/streamseg\t
state.cache.max.bytes=2G
commit.interval.ms=250

churn.levels=0.3,0.6,0.9
churn.horizon=1e2
segments.hysteresis=0x1p-3
kafka.bootstrap.servers=broker1:9092,broker2:9092
kafka.sasl.password=s3cr=t
kafka.client.id=streamseg-1\r
""")
    # The shipped config files (deploy/; the example is `streamseg config-doc --conf`).
    for name, parts in (("file-deploy-example", ("deploy", "streamseg.conf.example")),
                        ("file-deploy-docker", ("deploy", "docker", "streamseg.conf"))):
        if os.path.exists(os.path.join(SRC, *parts)):
            write("conf", name, b"\x00" + read(*parts).encode())
    write("conf", "file-errors", b"\x00input.topic=a\nno.such.key=1\n")
    write("conf", "file-bad-value", b"\x00commit.interval.ms=5\n")
    write("conf", "file-no-newline", b"\x00log.level=debug")
    write("conf", "args-mixed", b"\x01state.cache.max.bytes=64Kb\n log.format = json \n"
          b"novalue\nkafka.=x\n=x\nchurn.levels=0.6,0.3\nsegments.k=-1\n"
          b"input.max.skew.ms=9223372036854775807\nchurn.prior.r=1e-6\x00segments.seed=42")
    # keyed: each line's first byte picks a key (index modulo the number of keys)
    write("conf", "keyed-values", b"\x02" + b"\n".join(
        bytes([i]) + v for i, v in enumerate([b"x", b"json", b"", b"-5", b"1T", b"0.5,0.9",
                                              b"nan", b"1e308", b"true", b"0x10", b"  7  "])))


# ---- watch: 0/1 Avro segment_stats / churn_alert, 2/3 the same in JSON (see fuzz_watch.c) --


def watch_seeds():
    clean("watch")
    stats_schema = read("schemas", "segment_stats.avsc")
    alert_schema = read("schemas", "churn_alert.avsc")
    feat = [{"feature": n, "unit": u, "value": v, "z": z} for n, u, v, z in (
        ("events_7d", "log1p(events)", 2.5, 0.4), ("orders", "log1p(orders)", 1.1, 1.2),
        ("net_revenue", "log1p(currency)", 5.2, 0.9), ("recency", "log1p(days)", 0.7, -0.8))]
    stats = {"segment": 3, "k": 8, "size": 42, "share": 0.25, "weight": 12.5,
             "description": "frequent high-spend buyers (orders +1.2 sd)", "centroid": feat,
             "model_version": 7, "drift": 0.125, "previous_ts": WATERMARK - 10000,
             "inertia": 3.5, "users_assigned": 168, "ts": WATERMARK}
    first = dict(stats, segment=0, drift=None, previous_ts=None, centroid=[],
                 description="new visitors \u00e9")
    alert = {"id": "u1:3:0:1:rising", "user_id": "u1", "partition": 2, "direction": "RISING",
             "trigger": "TIMER", "basis": "PURCHASE", "level": 1, "previous_level": 0,
             "level_threshold": 0.8, "score": 0.81, "previous_score": 0.6, "p_alive": 0.19,
             "expected_purchases": 0.3, "clv": 12.5, "x": 3.0, "t_x": 10.0, "T": 40.0,
             "time_unit": "days", "horizon": 90.0, "last_purchase_ts": WATERMARK - 86400000,
             "model_version": 0, "ts": WATERMARK}
    recovered = dict(alert, id="\u00fcser:9:1:-1:recovered", user_id="\u00fcser",
                     direction="RECOVERED", trigger="EVENT", basis="ENGAGEMENT", level=-1,
                     previous_level=0, level_threshold=0.5, score=0.2, previous_score=None,
                     last_purchase_ts=None, model_version=3)
    for name, rec, schema, b in (("stats", stats, stats_schema, 0),
                                 ("stats-first", first, stats_schema, 0),
                                 ("alert-rising", alert, alert_schema, 1),
                                 ("alert-recovered", recovered, alert_schema, 1)):
        write("watch", "avro-" + name, bytes([b]) + avro_bytes(schema, rec))
        write("watch", "json-" + name, bytes([b + 2]) + json.dumps(rec).encode())


if __name__ == "__main__":
    decode_seeds()
    registry_seeds()
    conf_seeds()
    watch_seeds()
    for t in sorted(os.listdir(OUT)):
        print("%s: %d seeds" % (t, len(os.listdir(os.path.join(OUT, t)))))
