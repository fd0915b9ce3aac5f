#!/usr/bin/python3
"""Independent reference for `streamseg replay` (docs/replay.md), written from the mapping
tables, not from src/replay.c: reads a data-set file with Python's csv module (or str.split for
CDNOW) and prints the expected events, one JSON object per line, in the field order and number
format of sseg_event_to_json(), sorted by (event time, line number). With --stats it prints a
JSON summary (rows, events by type, skipped by reason) instead.

It made tests/data/replay/*.expected.jsonl:
  replay_oracle.py --format online-retail tests/data/replay/online_retail.csv \
      > tests/data/replay/online_retail.expected.jsonl
and it can check a full data set against the binary (see docs/replay.md).
"""
import argparse
import calendar
import csv
import datetime
import gzip
import io
import json
import re
import sys

MODIFIERS = set("""A AND ASSORTED BLACK BLUE BROWN CHRISTMAS COLOUR COLOURS CREAM DESIGN DESIGNS
GOLD GREEN GREY IN IVORY JUMBO LARGE MEDIUM MINI OF ORANGE PAISLEY PINK POLKADOT PURPLE RED
RETROSPOT SET SILVER SMALL SPOTTY THE WHITE WITH YELLOW""".split())


def num(v):
    """A double as sseg_buf_json_double writes it: the shortest of %.15g/%.16g/%.17g that
    reads back exactly."""
    for p in (15, 16, 17):
        s = "%.*g" % (p, v)
        if float(s) == v:
            return s
    return s


def ev_json(e):
    order = ["event_id", "user_id", "type", "ts", "session_id", "item_id", "category", "price",
             "quantity", "order_id", "dwell_ms", "device", "country"]
    parts = []
    for k in order:
        v = e.get(k)
        if v is None:
            s = "null"
        elif k == "price":
            s = num(v)
        elif isinstance(v, int):
            s = str(v)
        else:
            s = json.dumps(v)
        parts.append('"%s":%s' % (k, s))
    return "{" + ",".join(parts) + "}"


def utc_ms(dt):
    return calendar.timegm(dt.timetuple()) * 1000


def category(desc):
    words = []
    for w in desc.split(" "):
        w = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", w).upper()
        if w:
            words.append(w)
    for w in reversed(words):
        if not w.isdigit() and w not in MODIFIERS:
            return w
    return words[-1] if words else None


def retail(row):
    if len(row) != 8:
        return "malformed"
    inv, stock, desc, qty, date, price, user, country = [c.strip() for c in row]
    desc = row[2]
    qty, price = int(qty), float(price)
    ts = utc_ms(datetime.datetime.strptime(date, "%Y-%m-%d %H:%M:%S"))
    if user.endswith(".0"):
        user = user[:-2]
    if not user:
        return "no_user"
    refund = inv[0] in "Cc"
    if qty < 0 and not refund or price < 0:
        return "invalid"
    return dict(user_id=user, type="REFUND" if refund else "PURCHASE", ts=ts,
                item_id=stock or None, category=category(desc), price=price, quantity=abs(qty),
                order_id=inv, country=country or None)


def rees46(row):
    if len(row) != 9:
        return "malformed"
    t, typ, pid, cid, code, brand, price, user, sess = [c.strip() for c in row]
    ts = utc_ms(datetime.datetime.strptime(t, "%Y-%m-%d %H:%M:%S UTC"))
    types = {"view": "VIEW", "cart": "ADD_TO_CART", "remove_from_cart": "REMOVE_FROM_CART",
             "purchase": "PURCHASE"}
    if typ not in types:
        return "unknown_type"
    if not user:
        return "no_user"
    return dict(user_id=user, type=types[typ], ts=ts, session_id=sess or None,
                item_id=pid or None, category=code or cid or None,
                price=float(price) if price else None)


def taobao(row):
    if len(row) != 5:
        return "malformed"
    user, item, cat, b, ts = [c.strip() for c in row]
    types = {"pv": "VIEW", "fav": "CLICK", "cart": "ADD_TO_CART", "buy": "PURCHASE"}
    if b not in types:
        return "unknown_type"
    return dict(user_id=user, type=types[b], ts=int(ts) * 1000, item_id=item or None,
                category=cat or None)


def cdnow(row, cols):
    if len(row) != cols:
        return "malformed"
    user, date, cds, dollars = row[0], row[-3], int(row[-2]), float(row[-1])
    ts = utc_ms(datetime.datetime.strptime(date, "%Y%m%d"))
    if cds < 1 or dollars < 0:
        return "invalid"
    return dict(user_id=user, type="PURCHASE", ts=ts, price=dollars / cds, quantity=cds,
                order_id="%s-%s" % (user, date))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--format", required=True,
                    choices=["online-retail", "rees46", "taobao", "cdnow"])
    ap.add_argument("--stats", action="store_true")
    ap.add_argument("file")
    a = ap.parse_args()
    raw = open(a.file, "rb").read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    # Physical lines (LF), CR stripped, as the tool numbers them.
    lines = raw.decode("utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    headers = {"online-retail": "InvoiceNo,", "rees46": "event_time,", "taobao": "user_id,",
               "cdnow": "customer_id"}
    events, skipped, rows, seen, cols = [], {}, 0, False, None
    for n, line in enumerate(lines, 1):
        line = line[:-1] if line.endswith("\r") else line
        if not line.strip():
            continue
        if not seen:
            seen = True
            if line.strip().startswith(headers[a.format]):
                continue
        rows += 1
        try:
            if a.format == "cdnow":
                row = line.split()
                cols = cols or (len(row) if len(row) in (4, 5) else None)
                e = cdnow(row, cols)
            else:
                row = next(csv.reader(io.StringIO(line)))
                e = {"online-retail": retail, "rees46": rees46, "taobao": taobao}[a.format](row)
        except (ValueError, StopIteration):
            e = "malformed"
        if isinstance(e, str):
            skipped.setdefault(e, []).append(n)
            continue
        e["event_id"] = "%s-%d" % (a.format, n)
        events.append((e["ts"], n, e))
    events.sort(key=lambda x: (x[0], x[1]))
    if a.stats:
        by_type = {}
        for _, _, e in events:
            by_type[e["type"]] = by_type.get(e["type"], 0) + 1
        print(json.dumps(dict(rows=rows, events=len(events), by_type=by_type,
                              skipped={k: len(v) for k, v in skipped.items()},
                              skipped_lines={k: v[:5] for k, v in skipped.items()})))
        return
    out = sys.stdout
    for _, _, e in events:
        out.write(ev_json(e) + "\n")


if __name__ == "__main__":
    main()
