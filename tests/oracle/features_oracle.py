#!/usr/bin/python3
"""features_oracle: an independent reimplementation of the per-user features (docs/features.md)
in plain Python, used to check the C engine's user-profile output.

It reads events as JSON lines (the event.avsc field names, "type" as the enum symbol, null for
an absent field; unknown keys such as "partition" and "offset" are ignored), applies them per
user in file order, and compares its profile of every user with the last profile of that user
in a JSONL file of UserProfile objects (output.format=json; a line may carry a kcat key prefix:
the object starts at the first '{'). Each profile is recomputed as of its own updated_ts.

  features_oracle.py --events EVENTS.jsonl --profiles PROFILES.jsonl [--now-ms N]
                     [--allow-missing]
  features_oracle.py --events EVENTS.jsonl --now-ms N          (prints the profiles)

Exit status: 0 and "N users matched", or 1 and one line per mismatch. Model outputs (segment,
churn, rfm) and bookkeeping owned elsewhere (seq, partition) are not compared.

The state mirrors the storage precision of sseg_user_t: fields stored as float32 are rounded
to float32 after every update (f32()), so long event sequences do not drift from the engine by
accumulated rounding. Everything else is written from the specification, not from features.c.
Standard library only.
"""
import argparse
import json
import math
import struct
import sys

DAY = 86400000
HOUR = 3600000
GAP = 30 * 60 * 1000
HALFLIVES = (1.0, 7.0, 30.0)
TYPES = ("VIEW", "CLICK", "SEARCH", "ADD_TO_CART", "REMOVE_FROM_CART", "PURCHASE", "REFUND")
FIELDS = ("view", "click", "search", "add_to_cart", "remove_from_cart", "purchase", "refund")
TOPCAT = 8
NAME_MAX = 23
REL_TOL_FLOAT = 1e-5
ABS_TOL = 1e-12  # only for values that are 0 on one side


def f32(x):
    """Round a Python float to IEEE single precision, as the C struct stores it."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for byte in data:
        h ^= byte
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h or 1


def decay(dt_ms, hl_days):
    """Weight of something dt_ms old with half-life hl_days (no growth for dt <= 0)."""
    if dt_ms <= 0:
        return 1.0
    return 2.0 ** (-dt_ms / (hl_days * DAY))


def opt(s):
    """An optional string counts only when present and non-empty."""
    return s if isinstance(s, str) and s != "" else None


def display_name(cat):
    raw = cat.encode("utf-8")[:64]
    if len(raw) > NAME_MAX:
        n = NAME_MAX
        while n > 0 and (raw[n] & 0xC0) == 0x80:
            n -= 1
        raw = raw[:n]
    return raw.decode("utf-8", errors="replace")


class User:
    def __init__(self):
        self.n = 0
        self.first_ts = self.last_ts = 0
        self.by_type = [0] * 7
        self.dec = [[0.0] * 3 for _ in range(7)]
        self.orders = 0
        self.refunds = 0
        self.revenue = 0.0
        self.refunded = 0.0
        self.last_order = None  # order_id string of the previous purchase, None: none/absent
        self.first_pts = self.last_pts = None
        self.amounts = []  # purchase line amounts, in arrival order
        self.last_z = 0.0
        self.intervals = []  # inter-order intervals, days
        self.pdays = set()  # distinct UTC purchase days (exact; see note in pday())
        self.pday_first = self.pday_last = None
        self.sessions = []  # closed sessions' durations (ms)
        self.cur = None  # current session: dict(sid, start, last, cart, purchase)
        self.cart_sessions = 0
        self.cart_purchase_sessions = 0
        self.dwell_sum = 0
        self.dwell_n = 0
        self.night = 0
        self.cats = []  # [name_key(str), weight(f32), error(f32)] in slot order

    # -- decayed counts and categories -------------------------------------------------------
    def apply_decay(self, ev):
        ts = ev["ts"]
        t = ev["t"]
        if self.n == 0 or ts >= self.last_ts:
            if self.n == 0:
                self.first_ts = self.last_ts = ts
            elif ts > self.last_ts:
                dt = ts - self.last_ts
                for h, hl in enumerate(HALFLIVES):
                    k = decay(dt, hl)
                    for row in self.dec:
                        row[h] = f32(row[h] * k)
                k = decay(dt, HALFLIVES[2])
                for c in self.cats:
                    c[1] = f32(c[1] * k)
                    c[2] = f32(c[2] * k)
                self.last_ts = ts
            add = [1.0, 1.0, 1.0]
        else:
            add = [decay(self.last_ts - ts, hl) for hl in HALFLIVES]
        self.first_ts = min(self.first_ts, ts)
        for h in range(3):
            self.dec[t][h] = f32(self.dec[t][h] + add[h])
        cat = opt(ev.get("category"))
        if cat is not None:
            self.add_category(cat, add[2])

    def add_category(self, cat, w):
        key = cat.encode("utf-8")[:64]
        for c in self.cats:
            if c[0] == key:
                c[1] = f32(c[1] + w)
                return
        if len(self.cats) < TOPCAT:
            self.cats.append([key, f32(w), 0.0, display_name(cat)])
            return
        # space-saving: evict the lightest entry (first one on ties), inherit its weight
        lightest = min(range(TOPCAT), key=lambda i: (self.cats[i][1], i))
        old = self.cats[lightest]
        self.cats[lightest] = [key, f32(old[1] + w), old[1], display_name(cat)]

    # -- purchases ----------------------------------------------------------------------------
    def pday(self, ts):
        day = ts // DAY
        if self.pday_first is None:
            self.pday_first = self.pday_last = day
            self.pdays.add(day)
            return
        if day > self.pday_last or self.pday_last - day < 64 or day < self.pday_first:
            self.pdays.add(day)
        # else: older than 64 days before the latest purchase day and inside the known span;
        # the engine assumes such a day is already counted: so do we (add nothing)
        self.pday_last = max(self.pday_last, day)
        self.pday_first = min(self.pday_first, day)

    def purchase(self, ev, amount, bought_before):
        ts = ev["ts"]
        oid = opt(ev.get("order_id"))
        if oid is None or oid != self.last_order:
            self.orders += 1
            if bought_before and ts >= self.last_pts:
                self.intervals.append((ts - self.last_pts) / DAY)
        self.last_order = oid
        if not bought_before:
            self.first_pts = self.last_pts = ts
        else:
            self.first_pts = min(self.first_pts, ts)
            self.last_pts = max(self.last_pts, ts)
        self.revenue += amount
        self.last_z = 0.0
        if len(self.amounts) >= 2:
            mean, m2 = welford(self.amounts)
            sd = math.sqrt(m2 / (len(self.amounts) - 1))
            if sd > 0:
                self.last_z = f32((amount - mean) / sd)
        self.amounts.append(amount)
        self.pday(ts)

    # -- sessions ----------------------------------------------------------------------------
    def session(self, ev):
        ts = ev["ts"]
        sid = opt(ev.get("session_id"))
        cur = self.cur
        if cur is None:
            self.open(sid, ts)
        elif sid is not None and sid == cur["sid"]:
            pass
        elif sid is not None:
            if ts < cur["start"]:
                return False
            self.open(sid, ts)
        else:
            if ts - cur["last"] > GAP:
                self.open(None, ts)
            elif cur["start"] - ts > GAP:
                return False
        cur = self.cur
        cur["start"] = min(cur["start"], ts)
        cur["last"] = max(cur["last"], ts)
        return True

    def open(self, sid, ts):
        if self.cur is not None:
            self.sessions.append(self.cur["last"] - self.cur["start"])
        # an id-less session keeps None; an id-defined one its id (compared by value)
        self.cur = {"sid": sid, "start": ts, "last": ts, "cart": False, "purchase": False}

    def apply(self, ev):
        t = ev["t"]
        bought_before = self.by_type[5] > 0
        self.apply_decay(ev)
        self.n += 1
        self.by_type[t] += 1
        qty = ev.get("quantity")
        price = ev.get("price")
        amount = (0.0 if price is None else float(price)) * (1 if qty is None else int(qty))
        if t == 5:
            self.purchase(ev, amount, bought_before)
        elif t == 6:
            self.refunds += 1
            self.refunded += amount
        if self.session(ev):
            cur = self.cur
            if t == 3 and not cur["cart"]:
                cur["cart"] = True
                self.cart_sessions += 1
                if cur["purchase"]:
                    self.cart_purchase_sessions += 1
            elif t == 5 and not cur["purchase"]:
                cur["purchase"] = True
                if cur["cart"]:
                    self.cart_purchase_sessions += 1
        dw = ev.get("dwell_ms")
        if dw is not None and dw >= 0:
            self.dwell_sum += int(dw)
            self.dwell_n += 1
        if (ev["ts"] % DAY) // HOUR < 6:
            self.night += 1

    # -- profile -----------------------------------------------------------------------------
    def profile(self, now):
        p = {}
        seen = self.n > 0
        bought = self.by_type[5] > 0
        age = now - self.last_ts
        p["first_ts"] = self.first_ts
        p["last_ts"] = self.last_ts
        p["n_events"] = self.n
        p["counts"] = dict(zip(FIELDS, self.by_type))
        for h, name in enumerate(("decayed_1d", "decayed_7d", "decayed_30d")):
            k = decay(age, HALFLIVES[h]) if seen else 1.0
            p[name] = {FIELDS[t]: self.dec[t][h] * k for t in range(7)}
        p["orders"] = self.orders
        p["revenue"] = self.revenue
        p["refunded"] = self.refunded
        p["aov"] = self.revenue / self.orders if self.orders else 0.0
        p["first_purchase_ts"] = self.first_pts if bought else None
        p["last_purchase_ts"] = self.last_pts if bought else None
        p["recency_days"] = max(age, 0) / DAY if seen else 0.0
        p["purchase_recency_days"] = max(now - self.last_pts, 0) / DAY if bought else None
        p["tenure_days"] = max(now - self.first_ts, 0) / DAY if seen else 0.0
        p["ipi_count"] = len(self.intervals)
        mean, m2 = welford(self.intervals)
        p["ipi_mean_days"] = mean
        p["ipi_std_days"] = math.sqrt(m2 / (len(self.intervals) - 1)) if len(self.intervals) >= 2 else 0.0
        if self.pdays:
            t_x = self.pday_last - self.pday_first
            p["bgnbd_x"] = len(self.pdays) - 1
            p["bgnbd_t_x_days"] = t_x
            p["bgnbd_T_days"] = max(now // DAY - self.pday_first, t_x)
        else:
            p["bgnbd_x"] = 0
            p["bgnbd_t_x_days"] = None
            p["bgnbd_T_days"] = None
        nsess = len(self.sessions) + (1 if self.cur else 0)
        p["sessions"] = nsess
        if nsess:
            total = sum(self.sessions) + (self.cur["last"] - self.cur["start"])
            p["events_per_session"] = self.n / nsess
            p["avg_session_min"] = total / nsess / 60000.0
        else:
            p["events_per_session"] = p["avg_session_min"] = 0.0
        p["avg_dwell_s"] = self.dwell_sum / self.dwell_n / 1000.0 if self.dwell_n else 0.0
        views, carts = self.by_type[0], self.by_type[3]
        p["view_to_cart"] = carts / views if views else 0.0
        if self.cart_sessions:
            p["cart_to_purchase"] = self.cart_purchase_sessions / self.cart_sessions
            p["cart_abandonment"] = 1.0 - p["cart_to_purchase"]
        else:
            p["cart_to_purchase"] = p["cart_abandonment"] = 0.0
        p["refund_rate"] = self.refunds / self.by_type[5] if self.by_type[5] else 0.0
        p["night_share"] = self.night / self.n if self.n else 0.0
        p["last_amount_z"] = self.last_z
        p["purchase_velocity"] = p["decayed_1d"]["purchase"]
        k = decay(age, HALFLIVES[2]) if seen else 1.0
        order = sorted(range(len(self.cats)), key=lambda i: (-self.cats[i][1], i))
        p["top_categories"] = [{"name": self.cats[i][3], "weight": self.cats[i][1] * k} for i in order]
        ws = [c[1] for c in self.cats if c[1] > 0]
        total = sum(ws)
        ent = 0.0
        if total > 0:
            for w in ws:
                q = w / total
                ent -= q * math.log2(q)
        p["category_entropy"] = max(ent, 0.0)
        return p


def welford(xs):
    mean = m2 = 0.0
    for i, x in enumerate(xs, 1):
        d = x - mean
        mean += d / i
        m2 += d * (x - mean)
    return mean, m2


def read_events(path):
    """Yields (user_id, event dict with the type index in "t"); skips contract violations."""
    skipped = 0
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            i = line.find("{")
            if i < 0:
                continue
            ev = json.loads(line[i:])
            uid, typ, ts = ev.get("user_id"), ev.get("type"), ev.get("ts")
            price = ev.get("price")
            bad = (not isinstance(uid, str) or uid == "" or typ not in TYPES
                   or not isinstance(ts, int)
                   or (price is not None and (not math.isfinite(price) or price < 0))
                   or (ev.get("quantity") is not None and ev["quantity"] < 0))
            if bad:
                skipped += 1
                continue
            ev["t"] = TYPES.index(typ)
            yield uid, ev
    if skipped:
        print(f"oracle: skipped {skipped} events that violate the input contract",
              file=sys.stderr)


def compute(events_path):
    users = {}
    for uid, ev in read_events(events_path):
        users.setdefault(uid, User()).apply(ev)
    return users


def close(a, b):
    return math.isclose(a, b, rel_tol=REL_TOL_FLOAT, abs_tol=ABS_TOL)


def diff(path, want, got, out):
    """Appends "path: want != got" lines for every difference of want against got."""
    if isinstance(want, dict):
        if not isinstance(got, dict):
            out.append(f"{path}: expected an object, got {got!r}")
            return
        for k, v in want.items():
            if k not in got:
                out.append(f"{path}.{k}: missing")
            else:
                diff(f"{path}.{k}", v, got[k], out)
    elif isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            out.append(f"{path}: expected {len(want)} items, got {got!r}")
            return
        # categories of (nearly) equal weight may come in either order: compare by name
        if want and isinstance(want[0], dict) and "name" in want[0]:
            want = sorted(want, key=lambda c: (c["name"], c["weight"]))
            got = sorted(got, key=lambda c: (c.get("name", ""), c.get("weight", 0)))
        for i, (w, g) in enumerate(zip(want, got)):
            diff(f"{path}[{i}]", w, g, out)
    elif want is None or got is None:
        if want is not got:
            out.append(f"{path}: expected {want!r}, got {got!r}")
    elif isinstance(want, str) or isinstance(got, str):
        if want != got:
            out.append(f"{path}: expected {want!r}, got {got!r}")
    elif isinstance(want, int) and not isinstance(want, bool) and isinstance(got, int):
        if want != got:
            out.append(f"{path}: expected {want}, got {got}")
    elif not close(float(want), float(got)):
        out.append(f"{path}: expected {want!r}, got {got!r}")


def read_profiles(path):
    last = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            i = line.find("{")
            if i < 0:
                continue
            prof = json.loads(line[i:])
            last[prof["user_id"]] = prof
    return last


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", required=True, help="events, one JSON object per line")
    ap.add_argument("--profiles", help="UserProfile JSON lines to check")
    ap.add_argument("--now-ms", type=int,
                    help="time of the printed profiles; with --profiles: overrides updated_ts")
    ap.add_argument("--allow-missing", action="store_true",
                    help="do not count users with events but no profile as mismatches")
    args = ap.parse_args()
    users = compute(args.events)
    if not args.profiles:
        if args.now_ms is None:
            ap.error("--now-ms is needed to print profiles")
        for uid in sorted(users):
            prof = {"user_id": uid, "updated_ts": args.now_ms}
            prof.update(users[uid].profile(args.now_ms))
            print(json.dumps(prof, separators=(",", ":")))
        return 0
    profiles = read_profiles(args.profiles)
    problems = []
    for uid, prof in sorted(profiles.items()):
        if uid not in users:
            problems.append(f"{uid}: profile for a user without events")
            continue
        now = args.now_ms if args.now_ms is not None else prof["updated_ts"]
        diff(uid, users[uid].profile(now), prof, problems)
    if not args.allow_missing:
        for uid in sorted(set(users) - set(profiles)):
            problems.append(f"{uid}: no profile")
    if problems:
        for p in problems:
            print(p)
        print(f"{len(problems)} mismatches over {len(profiles)} profiles", file=sys.stderr)
        return 1
    print(f"{len(profiles)} users matched")
    return 0


if __name__ == "__main__":
    sys.exit(main())
