#!/usr/bin/python3
"""Helper of test_watch.sh: an independent read of streamseg's output topics and its
comparison with a `streamseg watch --once` report.

  watch_check.py read --bootstrap B --topic T --schema S.avsc --format avro|json --out FILE
        every record of T, partition by partition in offset order (Avro decoded with
        python3-avro against schemas/S.avsc, every byte used; JSON with json.loads), as JSONL
        with _partition, _offset and _kts (the Kafka timestamp, ms); prints the count
  watch_check.py compare REPORT STATS ALERTS --count C [--tail]
        the report agrees with the records: records read per topic; the segment table holds
        segments 0..k-1 of the latest statistics record with, per segment, the size of its
        latest record; the header's model version and k; the alert counts per (level,
        direction); the latest-alerts list has min(C, alerts) rows, each one of the alerts
        with the latest Kafka timestamps. --tail: watch started without --from-beginning, so
        it read the last 64 statistics and the last C alerts of each partition.
"""
import argparse
import collections
import io
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from segments_check import SCHEMAS, plain_schema  # noqa: E402

STATS_TAIL = 64  # SSEG_WATCH_SEG_MAX: statistics records read per partition from the tail


def cmd_read(argv):
    from confluent_kafka import Consumer, TopicPartition
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--schema", required=True)
    ap.add_argument("--format", required=True, choices=["avro", "json"])
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    if a.format == "avro":
        import avro.io
        import avro.schema
        reader = avro.io.DatumReader(avro.schema.parse(
            plain_schema(os.path.join(SCHEMAS, a.schema))))
    c = Consumer({"bootstrap.servers": a.bootstrap, "group.id": "watch-check",
                  "enable.auto.commit": False})
    md = c.list_topics(a.topic, timeout=10)
    tmd = md.topics.get(a.topic)
    if tmd is None or tmd.error is not None:
        raise SystemExit("read: no topic %s" % a.topic)
    out = []
    for pid in sorted(tmd.partitions):
        lo, hi = c.get_watermark_offsets(TopicPartition(a.topic, pid), timeout=10)
        if hi <= lo:
            continue
        c.assign([TopicPartition(a.topic, pid, lo)])
        got = 0
        while got < hi - lo:
            m = c.poll(10)
            if m is None:
                raise SystemExit("read: timed out reading %s [%d]" % (a.topic, pid))
            if m.error():
                continue
            got += 1
            v = m.value()
            if a.format == "avro":
                buf = io.BytesIO(v)
                rec = reader.read(avro.io.BinaryDecoder(buf))
                assert buf.tell() == len(v), "trailing bytes in an Avro record"
            else:
                rec = json.loads(v)
            rec["_partition"] = pid
            rec["_offset"] = m.offset()
            rec["_kts"] = m.timestamp()[1]
            out.append(rec)
    c.close()
    with open(a.out, "w") as f:
        for r in out:
            f.write(json.dumps(r) + "\n")
    print(len(out))


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def tail(recs, n):
    """The last n records of each partition."""
    by = collections.defaultdict(list)
    for r in recs:
        by[r["_partition"]].append(r)
    out = []
    for p in sorted(by):
        out.extend(sorted(by[p], key=lambda r: r["_offset"])[-n:])
    return out


def parse_report(path):
    rep = {"segments": {}, "alerts": {}, "latest": [], "read": {}}
    section = None
    with open(path) as f:
        lines = f.read().split("\n")
    for ln in lines:
        m = re.match(r"^topics\s+(\S+) \((.*?)\), (\S+) \((.*?)\);", ln)
        if m:
            for name, what in ((m.group(1), m.group(2)), (m.group(3), m.group(4))):
                r = re.search(r"(\d+) records? read", what)
                rep["read"][name] = int(r.group(1)) if r else None
                if "undecodable" in what:
                    rep.setdefault("undecodable", []).append(name)
        m = re.match(r"^segments\s+model v(\d+), k=(\d+), (\d+) users assigned", ln)
        if m:
            rep["model_version"], rep["k"], rep["users"] = map(int, m.groups())
        if ln == "SEGMENTS":
            section = "seg"
            continue
        if ln.startswith("CHURN ALERTS ("):
            section = "alerts"
            rep["alerts_total"] = int(re.match(r"CHURN ALERTS \((\d+) read", ln).group(1))
            continue
        if ln.startswith("LATEST ALERTS ("):
            section = "latest"
            m = re.match(r"LATEST ALERTS \((\d+) of (\d+)", ln)
            rep["latest_n"], rep["latest_of"] = int(m.group(1)), int(m.group(2))
            continue
        if section == "seg":
            m = re.match(r"^\s*(\d+)\s+(\d+|-)\s", ln)
            if m:
                seg = int(m.group(1))
                assert seg not in rep["segments"], "segment %d twice" % seg
                rep["segments"][seg] = None if m.group(2) == "-" else int(m.group(2))
        elif section == "alerts":
            m = re.match(r"^(none|other|-?\d+)(?: \([\d.]+\))?\s+(RISING|RECOVERED)\s+(\d+)\s+"
                         r"([\d.]+)\s+([\d.]+)$", ln)
            if m:
                level = -1 if m.group(1) == "none" else m.group(1)
                key = (int(level) if level != "other" else "other", m.group(2))
                assert key not in rep["alerts"], "alert row %s twice" % (key,)
                rep["alerts"][key] = int(m.group(3))
        elif section == "latest":
            f = ln.split()
            if len(f) == 9 and f[5] in ("RISING", "RECOVERED"):
                rep["latest"].append({"user": f[2], "score": f[3], "level": int(f[4]),
                                      "direction": f[5]})
    return rep


def cmd_compare(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("report")
    ap.add_argument("stats")
    ap.add_argument("alerts")
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--tail", action="store_true")
    a = ap.parse_args(argv)
    stats, alerts = load(a.stats), load(a.alerts)
    if a.tail:
        stats, alerts = tail(stats, STATS_TAIL), tail(alerts, a.count)
    rep = parse_report(a.report)
    bad = []

    def expect(what, got, want):
        if got != want:
            bad.append("%s: the report says %r, the topics hold %r" % (what, got, want))

    assert stats and alerts, "the topics hold no statistics or no alerts: nothing to compare"
    expect("undecodable records", rep.get("undecodable"), None)
    names = list(rep["read"])
    expect("statistics records read", rep["read"].get(names[0]) if names else None, len(stats))
    expect("alerts read", rep["read"].get(names[1]) if len(names) > 1 else None, len(alerts))

    # segments: per segment its latest record; shown: 0..k-1 of the latest record
    latest = {}
    for r in stats:
        key = (r["ts"], r["_partition"], r["_offset"])
        if r["segment"] not in latest or key >= latest[r["segment"]][0]:
            latest[r["segment"]] = (key, r)
    newest = max((r for r in stats), key=lambda r: (r["ts"], r["_offset"]))
    k = newest["k"]
    want = {c: latest[c][1]["size"] if c in latest else None for c in range(k)}
    expect("segment sizes", rep["segments"], want)
    expect("k", rep.get("k"), k)
    expect("segment model version", rep.get("model_version"), newest["model_version"])

    # alerts by (level, direction)
    counts = collections.Counter((r["level"], r["direction"]) for r in alerts)
    expect("alerts by (level, direction)", rep["alerts"], dict(counts))
    expect("alerts total", rep.get("alerts_total"), len(alerts))

    # the latest alerts: min(count, total) rows, each among the alerts of the latest
    # Kafka timestamps (the order among equal timestamps is the arrival order)
    n = min(a.count, len(alerts))
    expect("latest alerts shown", (rep.get("latest_n"), len(rep["latest"])), (n, n))
    by_kts = sorted(alerts, key=lambda r: r["_kts"], reverse=True)
    cutoff = by_kts[n - 1]["_kts"]
    pool = collections.Counter((r["user_id"], "%.3f" % r["score"], r["level"], r["direction"])
                               for r in alerts if r["_kts"] >= cutoff)
    for row in rep["latest"]:
        key = (row["user"], row["score"], row["level"], row["direction"])
        if pool[key] <= 0:
            bad.append("latest alert %r is not among the alerts written last" % (key,))
        pool[key] -= 1

    if bad:
        print("\n".join(bad))
        return 1
    print("report agrees: %d statistics records, k=%d, sizes %s; %d alerts %s; %d latest"
          % (len(stats), k, [want[c] for c in range(k)], len(alerts),
             dict(sorted(("%s %s" % kk, v) for kk, v in counts.items())), n))
    return 0


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    cmd, argv = sys.argv[1], sys.argv[2:]
    if cmd == "read":
        cmd_read(argv)
        return 0
    if cmd == "compare":
        return cmd_compare(argv)
    raise SystemExit(__doc__)


if __name__ == "__main__":
    sys.exit(main())
