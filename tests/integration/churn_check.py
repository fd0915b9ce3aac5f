#!/usr/bin/python3
"""Helper of test_churn.sh: the scripted events and the independent check of the alerts.

  churn_check.py events DIR         writes DIR/a.jsonl (days 0..29) and DIR/b.jsonl (30..130)
  churn_check.py alerts --bootstrap B --topic T --format avro|json --out FILE
                                    reads every alert of T (Avro decoded with python3-avro
                                    against schemas/churn_alert.avsc, or JSON) into FILE (JSONL)
  churn_check.py check FILE         checks the alerts of the scripted story (below)

The story, one partition, prior model (MBG/NBD, CDNOW prior in days, levels 0.5/0.8/0.95):
  buyer   buys on days 0, 3, 6, 9, 12, then goes silent: three RISING alerts, each fired by a
          timer (no event of its own) in the cycle of the first record whose event time
          reaches the solved due time;
  rec     buys on days 0 and 2, goes silent (a RISING timer alert), buys again on day 100:
          RECOVERED (trigger EVENT);
  steady  buys every 4 days: no alert;
  clock   views every 6 hours: drives the watermark; no alert.
The expected due times are solved here by bisection on the published MBG/NBD P(alive)
(Batislam et al. 2007), independently of churn.c's closed form.
"""
import io
import json
import math
import os
import sys

DAY = 86400000
T0 = 1704067200000  # 2024-01-01T00:00Z
HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA = os.path.join(HERE, "..", "..", "schemas", "churn_alert.avsc")
PRIOR = dict(r=0.243, alpha=30.898, a=0.793, b=2.426)
LEVELS = [0.5, 0.8, 0.95]
END_DAY = 130


def ev(uid, n, typ, ts, price=None, order=None):
    return {"event_id": "%s-%d" % (uid, n), "user_id": uid, "type": typ, "ts": ts,
            "session_id": None, "item_id": "i1" if price else None, "category": None,
            "price": price, "quantity": 1 if price else None, "order_id": order,
            "dwell_ms": None, "device": None, "country": None}


def story():
    evs = []
    for i, d in enumerate([0, 3, 6, 9, 12]):
        evs.append(ev("buyer", i, "PURCHASE", T0 + d * DAY + 10 * 3600000, 50.0, "b%d" % i))
    for i, d in enumerate([0, 2, 100]):
        evs.append(ev("rec", i, "PURCHASE", T0 + d * DAY + 11 * 3600000, 30.0, "r%d" % i))
    for i, d in enumerate(range(0, END_DAY, 4)):
        evs.append(ev("steady", i, "PURCHASE", T0 + d * DAY + 9 * 3600000, 20.0, "s%d" % i))
    # odd minutes and seconds: no clock event lands within a second of a due time by accident
    for i in range(END_DAY * 4):
        evs.append(ev("clock", i, "VIEW", T0 + i * 6 * 3600000 + 7 * 60000 + 13000))
    evs.sort(key=lambda e: (e["ts"], e["user_id"]))
    return evs


def score(x, t_x, T, p=PRIOR):
    """MBG/NBD churn score 1 - P(alive): P(alive) = 1 / (1 + a/(b+x) ((alpha+T)/(alpha+t_x))^(r+x))."""
    odds = p["a"] / (p["b"] + x) * ((p["alpha"] + T) / (p["alpha"] + t_x)) ** (p["r"] + x)
    return odds / (1 + odds)


def solve_ms(x, t_x, origin, level):
    """Smallest ms >= origin + t_x days at which the score reaches level (bisection)."""
    lo = origin + int(t_x * DAY)
    hi = lo + 1
    while score(x, t_x, (hi - origin) / DAY) < level:
        hi = lo + (hi - lo) * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if score(x, t_x, (mid - origin) / DAY) >= level:
            hi = mid
        else:
            lo = mid
    return hi


def cmd_events(d):
    evs = story()
    with open(os.path.join(d, "a.jsonl"), "w") as a, open(os.path.join(d, "b.jsonl"), "w") as b:
        for e in evs:
            (a if e["ts"] < T0 + 30 * DAY else b).write(json.dumps(e) + "\n")
    print(len(evs))


def cmd_alerts(argv):
    import argparse
    from confluent_kafka import Consumer, TopicPartition
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--format", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    if a.format == "avro":
        import avro.io
        import avro.schema
        # timestamp-millis as plain longs (python3-avro would make datetimes of them)
        sj = json.load(open(SCHEMA))
        for f in sj["fields"]:
            t = f["type"]
            if isinstance(t, dict) and t.get("logicalType"):
                f["type"] = t["type"]
            if isinstance(t, list):
                f["type"] = [u["type"] if isinstance(u, dict) and u.get("logicalType") else u
                             for u in t]
        reader = avro.io.DatumReader(avro.schema.parse(json.dumps(sj)))
    c = Consumer({"bootstrap.servers": a.bootstrap, "group.id": "churn-check",
                  "enable.auto.commit": False})
    md = c.list_topics(a.topic, timeout=10)
    tmd = md.topics.get(a.topic)
    out = []
    if tmd is not None and tmd.error is None:
        for pid in tmd.partitions:
            lo, hi = c.get_watermark_offsets(TopicPartition(a.topic, pid), timeout=10)
            if hi <= lo:
                continue
            c.assign([TopicPartition(a.topic, pid, lo)])
            got = 0
            while got < hi - lo:
                m = c.poll(10)
                if m is None:
                    raise SystemExit("alerts: timed out reading %s [%d]" % (a.topic, pid))
                if m.error():
                    continue
                got += 1
                v = m.value()
                if a.format == "avro":
                    buf = io.BytesIO(v)
                    rec = reader.read(avro.io.BinaryDecoder(buf))
                    assert buf.tell() == len(v), "trailing bytes in an Avro alert"
                else:
                    rec = json.loads(v)
                hdr = dict(m.headers() or [])
                rec["_header_id"] = hdr.get("sseg.id", b"").decode()
                rec["_key"] = m.key().decode()
                out.append(rec)
    c.close()
    with open(a.out, "w") as f:
        for r in out:
            f.write(json.dumps(r) + "\n")
    print(len(out))


def cmd_check(path):
    alerts = [json.loads(l) for l in open(path)]
    evs = story()
    wms = sorted(e["ts"] for e in evs)
    names = [f["name"] for f in json.load(open(SCHEMA))["fields"]]
    ids = set()
    for a in alerts:
        assert sorted(k for k in a if not k.startswith("_")) == sorted(names), a
        assert a["id"] == a["_header_id"] and a["_key"] == a["user_id"], a
        assert a["id"] not in ids, "alert repeated: %s" % a["id"]
        ids.add(a["id"])
        assert abs(a["score"] + a["p_alive"] - 1) < 1e-12, a
        assert a["model_version"] == 0, a
    by = {}
    for a in alerts:
        by.setdefault(a["user_id"], []).append(a)
    assert set(by) == {"buyer", "rec"}, "alerts for %s" % sorted(by)

    def fire_ts(due):
        return min(w for w in wms if w >= due)

    # buyer: x = 4 (purchase days 0..12), t_x = 12 days, origin = the first purchase day
    got = by["buyer"]
    assert [(a["direction"], a["trigger"], a["level"]) for a in got] == [
        ("RISING", "TIMER", 0), ("RISING", "TIMER", 1), ("RISING", "TIMER", 2)], got
    for lv, a in enumerate(got):
        due = solve_ms(4, 12, T0, LEVELS[lv])
        want = fire_ts(due)
        assert a["ts"] == want, ("buyer level", lv, "due", due, "fired at", a["ts"], "want", want)
        assert a["x"] == 4 and a["t_x"] == 12, a
        assert abs(a["T"] - (a["ts"] - T0) / DAY) < 1e-9, a
        assert a["score"] >= LEVELS[lv] and a["level_threshold"] == LEVELS[lv], a
        assert abs(a["score"] - score(4, 12, a["T"])) < 1e-9, a
        assert a["previous_level"] == lv - 1 and a["basis"] == "PURCHASE", a
        assert a["last_purchase_ts"] == T0 + 12 * DAY + 10 * 3600000, a
        assert a["expected_purchases"] > 0 and a["clv"] > 0, a
        print("buyer: level %.2f due %d, fired at watermark %d (T = %.4f days, score %.4f)"
              % (LEVELS[lv], due, a["ts"], a["T"], a["score"]))
    # rec: x = 1, t_x = 2: RISING by timer, RECOVERED by its day-100 purchase
    got = by["rec"]
    assert [(a["direction"], a["trigger"], a["level"]) for a in got] == [
        ("RISING", "TIMER", 0), ("RECOVERED", "EVENT", -1)], got
    due = solve_ms(1, 2, T0, 0.5)
    assert got[0]["ts"] == fire_ts(due), (got[0], due)
    back = T0 + 100 * DAY + 11 * 3600000
    assert got[1]["ts"] == back and got[1]["previous_level"] == 0, got[1]
    assert got[1]["x"] == 2 and got[1]["t_x"] == 100, got[1]
    assert abs(got[1]["T"] - (back - T0) / DAY) < 1e-9, got[1]
    assert got[1]["score"] < 0.5 - 0.05 and got[1]["level_threshold"] == 0.5, got[1]
    assert abs(got[1]["previous_score"] - score(1, 2, (got[0]["ts"] - T0) / DAY)) < 1e-6, got[1]
    print("rec: RISING at %d (due %d), RECOVERED at %d" % (got[0]["ts"], due, back))
    print("%d alerts as expected" % len(alerts))


def main():
    if sys.argv[1] == "events":
        cmd_events(sys.argv[2])
    elif sys.argv[1] == "alerts":
        cmd_alerts(sys.argv[2:])
    elif sys.argv[1] == "check":
        cmd_check(sys.argv[2])
    else:
        raise SystemExit("usage: churn_check.py events|alerts|check ...")


if __name__ == "__main__":
    main()
