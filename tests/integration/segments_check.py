#!/usr/bin/python3
"""Helper of test_segments.sh: scripted event streams and independent checks of the
segmentation outputs (docs/segments.md).

  segments_check.py read --bootstrap B --topic T --schema S.avsc --format avro|json --out FILE
        every record of T, partition by partition in offset order (Avro decoded with
        python3-avro against schemas/S.avsc, every byte used), as JSONL with _key, _partition,
        _offset and _id (the sseg.id header)
  segments_check.py flap-events FILE CYCLES R_LO R_HI
        the flapping story (below), one cycle = FLAP_CYCLE events
  segments_check.py drift-events DIR
        the drift story: DIR/drift_a.jsonl (before the shift and H points after it),
        DIR/drift_b.jsonl (2H more points); prints the events per cycle
  segments_check.py e2e CHANGES STATS DUMP MODEL_K
        end to end: per user the changes chain (first previous null, then each previous = the
        last segment; versions increase); ids are <user>:<version> and equal the header;
        every stats set has k records whose sizes equal the assignments replayed from the
        change stream up to its model version, and sum to users_assigned; the users assigned
        in the dump are the users with a change, in their last segment
  segments_check.py flap CHANGES CONTROL_CHANGES
  segments_check.py drift STATS_A STATS_B HALFLIFE
  segments_check.py same REF_CHANGES RUN_CHANGES REF_DUMP RUN_DUMP
        the restarted run's changes equal the reference's by id (identical content but for
        processed_ts; replayed duplicates identical too) and the dumps are equal
"""
import io
import json
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMAS = os.path.join(HERE, "..", "..", "schemas")
DAY = 86400000
T0 = 1704067200000  # 2024-01-01T00:00Z


def plain_schema(path):
    """The schema with logical types stripped (python3-avro would make datetimes)."""
    def strip(t):
        if isinstance(t, dict):
            if t.get("logicalType"):
                return t["type"]
            if t.get("type") == "record":
                for f in t["fields"]:
                    f["type"] = strip(f["type"])
            if t.get("type") == "array":
                t["items"] = strip(t["items"])
            return t
        if isinstance(t, list):
            return [strip(u) for u in t]
        return t
    return json.dumps(strip(json.load(open(path))))


def cmd_read(argv):
    import argparse
    from confluent_kafka import Consumer, TopicPartition
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--schema", required=True)
    ap.add_argument("--format", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    if a.format == "avro":
        import avro.io
        import avro.schema
        reader = avro.io.DatumReader(avro.schema.parse(
            plain_schema(os.path.join(SCHEMAS, a.schema))))
    c = Consumer({"bootstrap.servers": a.bootstrap, "group.id": "segments-check",
                  "enable.auto.commit": False})
    md = c.list_topics(a.topic, timeout=10)
    tmd = md.topics.get(a.topic)
    out = []
    if tmd is not None and tmd.error is None:
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
                hdr = dict(m.headers() or [])
                rec["_id"] = hdr.get("sseg.id", b"").decode()
                rec["_key"] = m.key().decode()
                rec["_partition"] = pid
                rec["_offset"] = m.offset()
                out.append(rec)
    c.close()
    with open(a.out, "w") as f:
        for r in out:
            f.write(json.dumps(r) + "\n")
    print(len(out))


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def ev(uid, n, typ, ts, price=None, order=None):
    return {"event_id": "%s-%d" % (uid, n), "user_id": uid, "type": typ, "ts": ts,
            "session_id": None, "item_id": "i1" if price else None, "category": "books",
            "price": price, "quantity": 1 if price else None, "order_id": order,
            "dwell_ms": None, "device": None, "country": None}


# --- flapping ----------------------------------------------------------------------------------
# Every cycle (FLAP_CYCLE events, 2 days of event time apart) each user does one VIEW: the 20
# "b" users at the start of the cycle, the 20 "a" users one day later (they set the watermark),
# and the user "j" in between, alternately r_lo and r_hi days before the watermark. All users
# share the same history but for that offset, so a and b form two tight clusters apart in
# recency (and the decayed counts, which decay over it), and j sits between them, jittering.
FLAP_USERS = 20
FLAP_CYCLE = 2 * FLAP_USERS + 1
FLAP_WARMUP = 30


def cmd_flap_events(path, cycles, r_lo, r_hi):
    evs = []
    for c in range(cycles):
        t = T0 + c * 2 * DAY
        for i in range(FLAP_USERS):
            evs.append(ev("b%02d" % i, c, "VIEW", t + i * 1000))
        # first a steady user while the model settles on the two groups, then jitter
        r = (r_lo + r_hi) / 2 if c < FLAP_WARMUP else r_lo if c % 2 == 0 else r_hi
        evs.append(ev("j", c, "VIEW", t + DAY - int(r * DAY)))
        for i in range(FLAP_USERS):
            evs.append(ev("a%02d" % i, c, "VIEW", t + DAY + i * 1000))
    with open(path, "w") as f:
        for e in evs:
            f.write(json.dumps(e) + "\n")
    print(len(evs))


def moves_of(changes, uid):
    return [c for c in changes if c["user_id"] == uid and c["previous_segment"] is not None]


def cmd_flap(path, control_path):
    ch, ctl = load(path), load(control_path)
    ok = True
    for name, cs in (("hysteresis", ch), ("control", ctl)):
        seg = {}
        for c in cs:
            seg[c["user_id"]] = c["segment"]
        a = {seg.get("a%02d" % i) for i in range(FLAP_USERS)}
        b = {seg.get("b%02d" % i) for i in range(FLAP_USERS)}
        if len(a) != 1 or len(b) != 1 or a == b or None in a | b:
            print("%s run: the two groups are not two segments: a %s, b %s" % (name, a, b))
            ok = False
    mj, mc = moves_of(ch, "j"), moves_of(ctl, "j")
    print("user j: %d moves with hysteresis, %d without (control)" % (len(mj), len(mc)))
    for m in mj:
        print("  move", m["previous_segment"], "->", m["segment"], "margin", m["margin"])
    if len(mc) < 10:
        print("the control run does not flap: j is not on the boundary, the test proves nothing")
        ok = False
    if len(mj) > 1:
        print("j flapped despite the hysteresis")
        ok = False
    # a and b users: a first assignment, and at most the one move when the model splits the
    # groups (the first model, initialised on two cycles, may hold both in one segment)
    for name, cs in (("hysteresis", ch), ("control", ctl)):
        per = {}
        for c in cs:
            if c["user_id"] != "j" and c["previous_segment"] is not None:
                per[c["user_id"]] = per.get(c["user_id"], 0) + 1
        if any(v > 1 for v in per.values()):
            print("%s run: a/b users moved more than once: %s" % (name, per))
            ok = False
    return 0 if ok else 1


# --- drift -------------------------------------------------------------------------------------
# Each cycle (DRIFT_CYCLE events, one hour of event time) brings new users: 10 "viewers" (3
# VIEW + 3 SEARCH; after the shift 6 VIEW) and 10 "buyers" (VIEW, ADD_TO_CART, PURCHASE, 3
# SEARCH). Every user is observed once, in the cycle of its events. The shift moves the
# viewers' views_30d from log1p(3) to log1p(6) and nothing else the centre of the viewers
# holds (events_7d, events_per_session and the rest stay), so that coordinate of their centre
# must follow: after N points it is the decayed mix of old and new mass (docs/segments.md).
DRIFT_PER = 10
DRIFT_EVENTS = 6
DRIFT_CYCLE = 2 * DRIFT_PER * DRIFT_EVENTS
DRIFT_BEFORE = 40   # cycles before the shift (n = 800 points)
DRIFT_AFTER_A = 20  # cycles after it in part a (N = 400 = H)
DRIFT_AFTER_B = 40  # cycles after it in part b (N = 1200 = 3H)


def drift_cycle(c, shifted):
    t = T0 + c * 3600000
    evs = []
    for i in range(DRIFT_PER):
        uid = "v%d-%d" % (c, i)
        base = t + i * 60000
        kinds = ["VIEW"] * 6 if shifted else ["VIEW", "SEARCH", "VIEW", "SEARCH", "VIEW", "SEARCH"]
        for n, k in enumerate(kinds):
            evs.append(ev(uid, n, k, base + n * 5000))
    for i in range(DRIFT_PER):
        uid = "p%d-%d" % (c, i)
        base = t + 30 * 60000 + i * 60000
        evs.append(ev(uid, 0, "VIEW", base))
        evs.append(ev(uid, 1, "ADD_TO_CART", base + 5000, 20.0))
        evs.append(ev(uid, 2, "PURCHASE", base + 10000, 20.0, "o%d-%d" % (c, i)))
        for n in range(3):
            evs.append(ev(uid, 3 + n, "SEARCH", base + 15000 + n * 5000))
    evs.sort(key=lambda e: (e["ts"], e["user_id"]))
    assert len(evs) == DRIFT_CYCLE
    return evs


def cmd_drift_events(d):
    a, b = [], []
    for c in range(DRIFT_BEFORE + DRIFT_AFTER_A):
        a += drift_cycle(c, c >= DRIFT_BEFORE)
    for c in range(DRIFT_BEFORE + DRIFT_AFTER_A, DRIFT_BEFORE + DRIFT_AFTER_B + DRIFT_AFTER_A):
        b += drift_cycle(c, True)
    for name, evs in (("drift_a.jsonl", a), ("drift_b.jsonl", b)):
        with open(os.path.join(d, name), "w") as f:
            for e in evs:
                f.write(json.dumps(e) + "\n")
    print(DRIFT_CYCLE)


def last_stats(path):
    """The latest complete stats set (highest model version, then ts)."""
    sets = {}
    for r in load(path):
        sets.setdefault((r["model_version"], r["ts"]), []).append(r)
    key = max(sets)
    return sets[key]


def viewers_centre(stats):
    """The centre of the viewers (no orders), as {feature: value}."""
    out = []
    for r in stats:
        c = {f["feature"]: f["value"] for f in r["centroid"]}
        if c["orders"] < 0.1:
            out.append(c)
    assert len(out) == 1, "expected one centre without orders, got %d" % len(out)
    return out[0]


def expected_fraction(halflife, n_before, n_after, init_rows):
    """The share of pre-shift mass left in the viewers' centre, replaying the model's batch
    arithmetic (docs/segments.md): every batch of B rows decays all counts by alpha^B and
    adds the batch's rows undecayed; the counts start, at initialisation, as the cluster's
    share of the decayed weight seen (the batch-wise weight W' = alpha^B W + B)."""
    alpha = 2 ** (-1.0 / halflife)
    B, m = 2 * DRIFT_PER, DRIFT_PER
    W, seen, v, old = 0.0, 0, 0.0, 0.0
    for b in range((n_before + n_after) // B):
        W = W * alpha ** B + B
        seen += B
        if seen < init_rows:
            continue
        if seen - B < init_rows:  # the initialising batch: counts = share of W, not moved
            v = W * m / B
            old = v
            continue
        v = v * alpha ** B + m
        if seen <= n_before:
            old = v  # all mass so far is pre-shift
        else:
            old = old * alpha ** B
    return old / v


def cmd_drift(path_a, path_b, halflife, init_rows):
    ok = True
    old_v, new_v = math.log1p(3), math.log1p(6)
    n = DRIFT_BEFORE * 2 * DRIFT_PER
    for path, cycles in ((path_a, DRIFT_AFTER_A), (path_b, DRIFT_AFTER_A + DRIFT_AFTER_B)):
        st = last_stats(path)
        if st[0]["model_version"] != DRIFT_BEFORE + cycles:
            print("the last statistics are of model v%d, not of the final v%d"
                  % (st[0]["model_version"], DRIFT_BEFORE + cycles))
            ok = False
        c = viewers_centre(st)
        N = cycles * 2 * DRIFT_PER
        frac = (new_v - c["views_30d"]) / (new_v - old_v)
        want = expected_fraction(halflife, n, N, init_rows)
        bound = 2 ** (-N / halflife)
        print("N=%d points after the shift (H=%g): views_30d centre %.4f, old-mass fraction "
              "%.4f; expected %.4f, bound 2^(-N/H) = %.4f"
              % (N, halflife, c["views_30d"], frac, want, bound))
        # The centre's other coordinates did not move: events_7d is log1p(6) before and after.
        if abs(c["events_7d"] - math.log1p(6)) > 0.01:
            print("events_7d of the centre moved: %.4f" % c["events_7d"])
            ok = False
        if not (frac <= bound + 0.01):
            print("the centre lags more than the half-life allows")
            ok = False
        if abs(frac - want) > 0.03:
            print("the centre does not follow the forgetting rule")
            ok = False
    return 0 if ok else 1


# --- end to end ----------------------------------------------------------------------------------
def cmd_e2e(changes_path, stats_path, dump_path, k):
    ch, st, dump = load(changes_path), load(stats_path), load(dump_path)
    ok = True

    def bad(msg):
        nonlocal ok
        if ok:
            print("FAIL:", msg)
        ok = False

    last = {}
    byuser = {}
    for c in ch:  # per partition in offset order: per key in production order
        u = c["user_id"]
        if c["_key"] != u or c["_id"] != c["id"] or c["id"] != "%s:%d" % (u, c["model_version"]):
            bad("key/id/header mismatch: %s" % c)
        if u not in last:
            if c["previous_segment"] is not None:
                bad("first change of %s has previous %s" % (u, c["previous_segment"]))
            if c["margin"] != 1:
                bad("first assignment of %s with margin %s" % (u, c["margin"]))
        else:
            if c["previous_segment"] != last[u]["segment"]:
                bad("chain broken for %s: previous %s after segment %s" %
                    (u, c["previous_segment"], last[u]["segment"]))
            if c["model_version"] <= last[u]["model_version"]:
                bad("versions of %s do not increase" % u)
            if c["segment"] == c["previous_segment"] or not (0 < c["margin"] <= 1):
                bad("not a move: %s" % c)
        if not (0 <= c["segment"] < k) or not c["description"]:
            bad("bad segment or description: %s" % c)
        last[u] = c
        byuser.setdefault(u, []).append(c)
    moves = sum(1 for c in ch if c["previous_segment"] is not None)
    print("%d changes: %d users assigned, %d moves" % (len(ch), len(last), moves))
    if moves == 0 or len(last) < 100:
        bad("too few changes to check anything")

    # stats sets against the change stream replayed up to their version
    sets = {}
    for r in st:
        sets.setdefault((r["model_version"], r["ts"]), []).append(r)
    nchecked = 0
    for (ver, ts), rs in sorted(sets.items()):
        if sorted(r["segment"] for r in rs) != list(range(k)):
            bad("stats set v%d at %d has segments %s" % (ver, ts, sorted(r["segment"] for r in rs)))
            continue
        seg = {}
        for u, cs in byuser.items():
            cur = None
            for c in cs:
                if c["model_version"] <= ver:
                    cur = c["segment"]
            if cur is not None:
                seg[u] = cur
        want = [0] * k
        for s in seg.values():
            want[s] += 1
        got = [r["size"] for r in sorted(rs, key=lambda r: r["segment"])]
        if got != want:
            bad("stats v%d sizes %s, the change stream says %s" % (ver, got, want))
        if any(r["users_assigned"] != sum(got) for r in rs):
            bad("stats v%d: users_assigned != sum of sizes" % ver)
        if any(len(r["centroid"]) != 16 or r["centroid"][0]["feature"] != "events_7d" for r in rs):
            bad("stats v%d: centroid without the 16 named features" % ver)
        if any(not r["description"] for r in rs):
            bad("stats v%d: a segment without description" % ver)
        nchecked += 1
    drifts = [r["drift"] for r in st if r["drift"] is not None]
    print("%d stats sets checked against the change stream; %d drift values (max %.3g)"
          % (nchecked, len(drifts), max(drifts) if drifts else float("nan")))
    if nchecked < 2 or not drifts:
        bad("too few stats sets (%d) or no drift" % nchecked)

    # the dump: the users assigned are those with a change, in their last segment
    dseg = {d["user_id"]: d["segment"] for d in dump if d["segment"] is not None}
    lseg = {u: c["segment"] for u, c in last.items()}
    if dseg != lseg:
        diff = [u for u in set(dseg) | set(lseg) if dseg.get(u) != lseg.get(u)]
        bad("dump and change stream disagree for %d users, e.g. %s" % (len(diff), diff[:3]))
    tiers = sum(1 for d in dump if d["rfm_r"] > 0)
    buyers = sum(1 for d in dump if d["orders"] > 0)
    print("dump: %d users, %d assigned, %d buyers, %d with RFM tiers"
          % (len(dump), len(dseg), buyers, tiers))
    if tiers == 0 or any(d["orders"] == 0 and d["rfm_r"] != 0 for d in dump):
        bad("RFM tiers missing, or given to never-buyers")
    return 0 if ok else 1


def cmd_same(ref_path, run_path, ref_dump, run_dump):
    ok = True
    ref, run = {}, {}
    for name, path, into in (("reference", ref_path, ref), ("restarted", run_path, run)):
        for c in load(path):
            c = {k: v for k, v in c.items()
                 if k not in ("processed_ts", "_partition", "_offset")}
            if c["id"] in into and into[c["id"]] != c:
                print("%s run: two different changes with id %s" % (name, c["id"]))
                ok = False
            into[c["id"]] = c
    print("changes: %d in the reference, %d distinct ids in the restarted run"
          % (len(ref), len(run)))
    if set(ref) != set(run):
        print("ids differ: %d only in the reference, %d only in the restarted run"
              % (len(set(ref) - set(run)), len(set(run) - set(ref))))
        ok = False
    diff = [i for i in set(ref) & set(run) if ref[i] != run[i]]
    if diff:
        print("%d changes differ, e.g. %s vs %s" % (len(diff), ref[diff[0]], run[diff[0]]))
        ok = False
    a, b = load(ref_dump), load(run_dump)
    if a != b:
        da = {d["user_id"]: d for d in a}
        db = {d["user_id"]: d for d in b}
        us = [u for u in set(da) | set(db) if da.get(u) != db.get(u)]
        print("dumps differ for %d users, e.g. %s" % (len(us), us[:3]))
        if us and us[0] in da and us[0] in db:
            print("  fields:", [k for k in da[us[0]] if da[us[0]][k] != db[us[0]].get(k)])
        ok = False
    else:
        print("dumps equal: %d users" % len(a))
    return 0 if ok else 1


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "read":
        return cmd_read(args)
    if cmd == "flap-events":
        return cmd_flap_events(args[0], int(args[1]), float(args[2]), float(args[3]))
    if cmd == "drift-events":
        return cmd_drift_events(args[0])
    if cmd == "e2e":
        return cmd_e2e(args[0], args[1], args[2], int(args[3]))
    if cmd == "flap":
        return cmd_flap(args[0], args[1])
    if cmd == "drift":
        return cmd_drift(args[0], args[1], float(args[2]), int(args[3]))
    if cmd == "same":
        return cmd_same(*args[:4])
    raise SystemExit("usage: see the docstring")


if __name__ == "__main__":
    sys.exit(main() or 0)
