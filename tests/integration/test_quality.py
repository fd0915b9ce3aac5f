#!/usr/bin/python3
"""Quality report smoke run (tools/quality.c, docs/benchmarks.md "Quality").

Runs build/quality small (3000 users, 90 simulated days: a few seconds) with --export, then
recomputes every figure it printed from the export, independently, with scikit-learn
(adjusted_rand_score, roc_auc_score): they must agree to 1e-6. It also checks the export
against the definitions (one row per generated user, dropped <=> a drop-out time, the AUC rows
are buyers whose drop-out, if any, is at least --grace-days before the end), and that the
figures are far better than chance:

  ARI > 0.15  measured 0.26-0.40 over seeds 1-5 with this configuration (chance: 0, with a
              standard deviation of about 0.002 at n = 3000). segments.halflife=5000: the
              default 50000 observations is more than this 3000-user shop makes in 90 days
              (about 85000), so the default model would still be averaging its cold start,
              when every user had one session (docs/segments.md, choosing segments.halflife);
              with the default the same runs give 0.09-0.24.
  AUC > 0.80  measured 0.886-0.895 over seeds 1-5 (chance: 0.5, standard deviation about
              0.012 for ~1000 drop-outs against ~1250 active buyers).

The targets of issue 5 (ARI >= 0.8, AUC >= 0.85) are printed by the tool, not asserted here.
"""
import csv
import math
import os
import re
import subprocess
import sys
import tempfile

from sklearn.metrics import adjusted_rand_score, roc_auc_score

USERS = 3000
DAYS = 90
GRACE = 14
T0 = 1704067200000  # the generator's default start, 2024-01-01T00:00Z
DAY = 86400000


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def main():
    build = os.environ.get("SSEG_BUILD_DIR") or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "build")
    tool = os.path.join(build, "quality")
    with tempfile.TemporaryDirectory(prefix="sseg-it-quality-") as tmp:
        export = os.path.join(tmp, "quality.csv")
        cmd = [tool, "--users", str(USERS), "--days", str(DAYS), "--seed", "1",
               "--grace-days", str(GRACE), "--quiet", "-X", "segments.halflife=5000",
               "--export", export]
        run = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if run.returncode != 0:
            fail("%s exited %d: %s" % (" ".join(cmd), run.returncode, run.stderr))
        out = run.stdout
        print(out)
        full = re.search(r"^figures: ari=(\S+) auc=(\S+) auc_every=(\S+) auc_stored=(\S+)$",
                         out, re.M)
        if not full:
            fail("no 'figures:' line in the output")
        tool = [float(x) for x in full.groups()]
        with open(export) as f:
            rows = list(csv.DictReader(f))

    if len(rows) != USERS:
        fail("%d rows in the export, %d users generated" % (len(rows), USERS))
    if sorted(int(r["user_id"][1:]) for r in rows) != list(range(USERS)):
        fail("the export's user ids are not u0..u%d" % (USERS - 1))
    personas = {r["persona"] for r in rows}
    if personas != {"loyal", "bargain", "window", "new", "lapsing"}:
        fail("personas in the export: %s" % sorted(personas))
    end = T0 + DAYS * DAY
    for r in rows:
        dropped, ts, buys = int(r["dropped"]), int(r["dropout_ts_ms"]), int(r["purchases"])
        if dropped != (ts >= 0):
            fail("%s: dropped=%d with dropout_ts_ms=%d" % (r["user_id"], dropped, ts))
        if ts >= 0 and not (T0 <= ts < end and buys > 0):
            fail("%s: drop-out at %d outside the period or without a purchase" %
                 (r["user_id"], ts))
        want = buys > 0 and (not dropped or ts <= end - GRACE * DAY) and \
            not math.isnan(float(r["score"]))
        if int(r["auc"]) != want:
            fail("%s: auc=%s, the definition says %d" % (r["user_id"], r["auc"], want))
        seg = int(r["segment"])
        if not -1 <= seg < 5:
            fail("%s: segment %d out of range for k = 5" % (r["user_id"], seg))

    ari = adjusted_rand_score([r["persona"] for r in rows], [int(r["segment"]) for r in rows])
    sel = [r for r in rows if r["auc"] == "1"]
    auc = roc_auc_score([int(r["dropped"]) for r in sel], [float(r["score"]) for r in sel])
    buyers = [r for r in rows if int(r["purchases"]) > 0 and not math.isnan(float(r["score"]))]
    every = roc_auc_score([int(r["dropped"]) for r in buyers],
                          [float(r["score"]) for r in buyers])
    st = [r for r in sel if not math.isnan(float(r["score_stored"]))]
    stored = roc_auc_score([int(r["dropped"]) for r in st], [float(r["score_stored"]) for r in st])
    for name, c, py in zip(("ARI", "AUC", "AUC every drop-out", "AUC stored score"), tool,
                           (ari, auc, every, stored)):
        print("%-20s tool %.12f  scikit-learn %.12f" % (name, c, py))
        if not abs(c - py) <= 1e-6:
            fail("%s: the tool computed %.12g, scikit-learn %.12g" % (name, c, py))

    if not ari > 0.15:
        fail("ARI %.4f: segments carry no more persona than chance would (bound 0.15)" % ari)
    if not auc > 0.80:
        fail("AUC %.4f: churn scores barely rank drop-outs (bound 0.80)" % auc)
    print("ok: ARI %.4f, AUC %.4f agree with scikit-learn to 1e-6 and beat the bounds" %
          (ari, auc))


if __name__ == "__main__":
    main()
