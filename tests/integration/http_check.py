#!/usr/bin/python3
"""Checks of the HTTP endpoints of a running `streamseg run` (tests/integration/test_http.sh),
as a user would see them: scrapes /metrics and compares the figures with what an independent
Kafka client (confluent-kafka) reads from the topics.

  http_check.py endpoints --port P --token T --bootstrap B --produced N --metrics-md FILE
  http_check.py dom FILE --processed N --k K    (a DOM dumped by headless Chromium)
"""
import argparse
import html.parser
import json
import re
import sys
import urllib.error
import urllib.request

from confluent_kafka import Consumer, TopicPartition

FAILS = []


def check(cond, msg):
    if not cond:
        FAILS.append(msg)
        print("FAIL: " + msg, file=sys.stderr)


def get(port, path, token=None, method="GET", data=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, data=data)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), e.headers


def read_topic(bootstrap, topic):
    """Every record of every partition of topic: (key, value, headers)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "http-check-" + topic,
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    md = c.list_topics(topic, timeout=10)
    parts = sorted(md.topics[topic].partitions) if topic in md.topics else []
    ends = {}
    for p in parts:
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        if hi > lo:
            ends[p] = hi
    c.assign([TopicPartition(topic, p, 0) for p in ends])
    out = []
    done = set()
    idle = 0
    while len(done) < len(ends) and idle < 100:
        m = c.poll(0.2)
        if m is None:
            idle += 1
            continue
        if m.error():
            continue
        idle = 0
        out.append((m.key(), m.value(), dict(m.headers() or [])))
        if m.offset() + 1 >= ends[m.partition()]:
            done.add(m.partition())
    c.close()
    check(len(done) == len(ends), f"{topic}: could not read to the end")
    return out


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prom(text):
    """{(name, frozenset(labels)): value}, and the families with HELP and TYPE."""
    samples, helps, types = {}, set(), {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helps.add(line.split()[2])
            continue
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split()
            types[name] = typ
            continue
        m = SAMPLE.match(line)
        check(m is not None, f"malformed exposition line: {line!r}")
        if not m:
            continue
        labels = frozenset(LABEL.findall(m.group(3) or ""))
        samples[(m.group(1), labels)] = float(m.group(4))
    return samples, helps, types


def family(name, types):
    for suf in ("_bucket", "_sum", "_count"):
        if name.endswith(suf) and types.get(name[: -len(suf)]) == "histogram":
            return name[: -len(suf)]
    return name


def val(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


def cmd_endpoints(a):
    # liveness and readiness need no token; everything else does
    st, body, _ = get(a.port, "/healthz")
    check(st == 200 and body.strip() == "ok", f"/healthz: {st} {body!r}")
    st, body, _ = get(a.port, "/readyz")
    check(st == 200, f"/readyz after catching up: {st} {body!r}")
    st, _, hdr = get(a.port, "/metrics")
    check(st == 401 and "Bearer" in (hdr.get("WWW-Authenticate") or ""),
          f"/metrics without a token: {st}")
    st, _, _ = get(a.port, "/metrics", "wrong-token")
    check(st == 401, f"/metrics with a wrong token: {st}")
    st, _, _ = get(a.port, "/metrics", a.token, method="POST", data=b"x=1")
    check(st in (405, 413), f"POST /metrics: {st}")
    st, _, _ = get(a.port, "/nowhere", a.token)
    check(st == 404, f"/nowhere: {st}")

    st, text, hdr = get(a.port, "/metrics", a.token)
    check(st == 200 and hdr.get("Content-Type", "").startswith("text/plain; version=0.0.4"),
          f"/metrics: {st} {hdr.get('Content-Type')}")
    samples, helps, types = parse_prom(text)
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", open(a.metrics_md).read(), re.M))
    for (name, _) in samples:
        fam = family(name, types)
        check(fam in types and fam in helps, f"{name}: no HELP/TYPE for its family")
        check(fam in documented, f"{name}: family {fam} not in METRICS.md")

    # the figures against the topics, read by an independent client
    dlq = read_topic(a.bootstrap, "streamseg.dlq")
    profiles = read_topic(a.bootstrap, "streamseg.profiles")
    changes = read_topic(a.bootstrap, "streamseg.segment-changes")
    check(val(samples, "streamseg_records_in_total") == a.produced,
          f"records_in {val(samples, 'streamseg_records_in_total')} != produced {a.produced}")
    dead = {dict(l)["reason"]: v for (n, l), v in samples.items()
            if n == "streamseg_dead_letters_total"}
    processed = val(samples, "streamseg_events_processed_total")
    check(processed + sum(dead.values()) == a.produced,
          f"processed {processed} + dead {sum(dead.values())} != produced {a.produced}")
    by_reason = {}
    for _, _, h in dlq:
        r = h.get("sseg.error", b"").decode()
        by_reason[r] = by_reason.get(r, 0) + 1
    check(sum(dead.values()) > 0, "the input had bad records: dead letters expected")
    for r in set(by_reason) | {k for k, v in dead.items() if v}:
        check(dead.get(r, 0) == by_reason.get(r, 0),
              f"dead letters {r}: metric {dead.get(r, 0)} != DLQ topic {by_reason.get(r, 0)}")
    for topic, recs in (("streamseg.profiles", profiles), ("streamseg.dlq", dlq),
                        ("streamseg.segment-changes", changes)):
        m = val(samples, "streamseg_output_records_total", topic=topic)
        check(m == len(recs), f"output_records_total{{topic={topic}}} {m} != {len(recs)} on the topic")
    users = {k for k, _, _ in profiles}
    check(val(samples, "streamseg_users_created_total") == len(users),
          f"users_created {val(samples, 'streamseg_users_created_total')} != {len(users)} profile keys")
    check(val(samples, "streamseg_consumer_lag") == 0, "lag after catching up")
    check(val(samples, "streamseg_partitions_assigned") == 2, "2 partitions assigned")
    check(val(samples, "streamseg_ready") == 1 and val(samples, "streamseg_up") == 1, "ready/up")
    cyc = val(samples, "streamseg_commit_cycles_total")
    check(cyc and val(samples, "streamseg_commit_cycle_seconds_count") == cyc,
          "histogram count == cycles")
    check(val(samples, "streamseg_cache_hits_total") + val(samples, "streamseg_cache_misses_total")
          >= processed, "cache lookups cover every event")

    # segments: the gauge, /segments and the change records agree
    sizes = {dict(l)["segment"]: v for (n, l), v in samples.items() if n == "streamseg_segment_users"}
    st, body, _ = get(a.port, "/segments", a.token)
    check(st == 200, f"/segments: {st}")
    seg = json.loads(body)
    check(seg["initialised"] and seg["k"] == 8 and len(seg["segments"]) == 8, "/segments: k=8 model")
    check(sum(s["size"] for s in seg["segments"]) == seg["users_assigned"] == sum(sizes.values())
          == len(users), f"segment sizes {sum(sizes.values())} / {seg['users_assigned']} vs {len(users)} users")
    for s in seg["segments"]:
        check(sizes.get(str(s["segment"])) == s["size"], f"segment {s['segment']} size differs")
        check(len(s["description"]) > 5 and len(s["centroid"]) > 5, "description and centroid")
    last_seg = {}
    for k, v, _ in changes:
        last_seg[k] = json.loads(v)["segment"]
    counts = {}
    for s in last_seg.values():
        counts[s] = counts.get(s, 0) + 1
    check(all(counts.get(s["segment"], 0) == s["size"] for s in seg["segments"]),
          f"sizes {[s['size'] for s in seg['segments']]} != last segment-change per user {counts}")

    # churn: every user is scored at one level
    lv = sum(v for (n, _), v in samples.items() if n == "streamseg_churn_users")
    check(0 < lv <= len(users), f"churn users by level {lv}")

    # /users/{id}: the committed state; its counts equal the user's last profile on the topic
    last = {}
    for k, v, _ in profiles:
        last[k] = json.loads(v)
    for uid in sorted(last)[:20]:
        st, body, _ = get(a.port, "/users/" + uid.decode(), a.token)
        check(st == 200, f"/users/{uid}: {st}")
        if st == 200:
            u = json.loads(body)
            for f in ("user_id", "n_events", "counts", "partition", "segment"):
                check(u.get(f) == last[uid].get(f), f"/users/{uid}: {f} {u.get(f)} != {last[uid].get(f)}")
    st, _, _ = get(a.port, "/users/no-such-user", a.token)
    check(st == 404, f"/users/no-such-user: {st}")

    st, body, _ = get(a.port, "/api/history", a.token)
    hist = json.loads(body)
    check(len(hist) >= 2 and hist[-1]["ts"] >= hist[0]["ts"], "/api/history holds snapshots")
    st, body, _ = get(a.port, "/", a.token)
    check(st == 200 and "<title>streamseg</title>" in body, "/ serves the dashboard")
    print(json.dumps({"processed": processed, "k": seg["k"], "users": len(users)}))


class Dom(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.classes, self.paths, self.body = {}, {}, [], {}
        self._cur = None

    def handle_starttag(self, tag, attrs):
        d = dict(attrs)
        if tag == "body":
            self.body = d
        for c in (d.get("class") or "").split():
            self.classes[c] = self.classes.get(c, 0) + 1
        if tag == "path":
            self.paths.append(int(d.get("data-points", "0")))
        self._cur = d.get("id")

    def handle_data(self, data):
        if self._cur and data.strip():
            self.ids[self._cur] = self.ids.get(self._cur, "") + data.strip()

    def handle_endtag(self, tag):
        self._cur = None


def fmt(n):
    # the dashboard's fmt() for integers
    if abs(n) >= 1e6:
        return f"{n / 1e6:.2f}M"
    if abs(n) >= 1e4:
        return f"{n / 1e3:.1f}k"
    return str(int(n))


def cmd_dom(a):
    d = Dom()
    d.feed(open(a.file).read())
    check(int(d.body.get("data-updates", "0")) >= 1, f"dashboard never updated: {d.body}")
    check(d.ids.get("status") in ("ready", "catching up"), f"status {d.ids.get('status')!r}")
    check(d.ids.get("kpi-processed") == fmt(a.processed),
          f"kpi-processed {d.ids.get('kpi-processed')!r} != {fmt(a.processed)!r}")
    check(d.classes.get("segment-row", 0) == a.k, f"{d.classes.get('segment-row', 0)} segment rows, want {a.k}")
    check(d.classes.get("churn-row", 0) == 3, "3 churn level rows")
    check(any(p >= 2 for p in d.paths), f"no chart with 2+ points: {d.paths}")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("endpoints")
    e.add_argument("--port", type=int, required=True)
    e.add_argument("--token", required=True)
    e.add_argument("--bootstrap", required=True)
    e.add_argument("--produced", type=int, required=True)
    e.add_argument("--metrics-md", required=True)
    d = sub.add_parser("dom")
    d.add_argument("file")
    d.add_argument("--processed", type=int, required=True)
    d.add_argument("--k", type=int, required=True)
    a = ap.parse_args()
    {"endpoints": cmd_endpoints, "dom": cmd_dom}[a.cmd](a)
    if FAILS:
        print(f"{len(FAILS)} checks failed", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
