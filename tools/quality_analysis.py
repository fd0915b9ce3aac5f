#!/usr/bin/python3
"""quality_analysis: what the figures of tools/quality (build/quality) could be, from its export.

  build/quality --users 20000 --days 90 --features --export q.csv
  /usr/bin/python3 tools/quality_analysis.py q.csv [--days 90] [--start-ms 1704067200000]

Prints, from the CSV (needs --features for the last two):
  1. the churn AUC against the grace period: the headline leaves out drop-outs less than
     --grace-days before the end (not observable yet); how the figure moves with that choice;
  2. a ceiling for K-means on this feature vector: scikit-learn KMeans (k = the number of
     personas, k-means++, 10 restarts) on the users' vectors at their last event, standardised
     over the users, against the personas; the pipeline's online model cannot be expected to
     beat the batch algorithm on the same vectors;
  3. a ceiling for the features themselves: a supervised classifier (random forest, 5-fold
     cross-validated predictions) told the personas, scored with the same ARI. Between 2 and 3
     lies what no choice of K-means settings recovers: personas that are not compact,
     separated clusters of this vector.
Needs python3-sklearn (Debian). Prints figures; asserts nothing.
"""
import argparse
import csv
import math
import sys

import numpy as np
from sklearn.cluster import KMeans
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import adjusted_rand_score, roc_auc_score
from sklearn.model_selection import cross_val_predict
from sklearn.preprocessing import StandardScaler

DAY = 86400000
BASE = ["user_id", "persona", "dropped", "segment", "score", "auc", "score_stored",
        "dropout_ts_ms", "purchases", "events"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("export")
    ap.add_argument("--days", type=float, default=90, help="the run's --days")
    ap.add_argument("--start-ms", type=int, default=1704067200000, help="the generator's start")
    a = ap.parse_args()
    with open(a.export) as f:
        rows = list(csv.DictReader(f))
    end = a.start_ms + int(a.days * DAY)
    persona = np.array([r["persona"] for r in rows])
    segment = np.array([int(r["segment"]) for r in rows])
    k = len(set(persona))
    print("%d users, %d personas; pipeline ARI %.4f" %
          (len(rows), k, adjusted_rand_score(persona, segment)))

    buyers = [r for r in rows if int(r["purchases"]) > 0 and not math.isnan(float(r["score"]))]
    y = np.array([int(r["dropped"]) for r in buyers])
    s = np.array([float(r["score"]) for r in buyers])
    st = np.array([float(r["score_stored"]) for r in buyers])
    d = np.array([int(r["dropout_ts_ms"]) for r in buyers])
    print("\n1. churn AUC (buyers) against the grace period")
    print("   grace days   buyers  dropped   AUC end score   AUC stored score")
    for g in (0, 1, 3, 7, 14, 21, 30):
        m = (y == 0) | (d <= end - g * DAY)
        ms = m & ~np.isnan(st)
        print("   %10g %8d %8d   %13.4f   %16.4f" %
              (g, m.sum(), y[m].sum(), roc_auc_score(y[m], s[m]), roc_auc_score(y[ms], st[ms])))

    names = [c for c in rows[0].keys() if c not in BASE]
    if not names:
        print("\n(no feature columns: run build/quality with --features for 2 and 3)")
        return
    X = np.array([[float(r[c]) for c in names] for r in rows])
    ok = ~np.isnan(X).any(axis=1)
    X, yp = X[ok], persona[ok]
    Z = StandardScaler().fit_transform(X)
    print("\n2. batch K-means on the vectors at the last event (%d users with a state)" % len(X))
    km = KMeans(n_clusters=k, n_init=10, random_state=0).fit(Z)
    print("   ARI %.4f   (compare the tool's 'final model, every user re-assigned' line)" %
          adjusted_rand_score(yp, km.labels_))
    labels = sorted(set(yp))
    print("   persona x cluster:")
    for p in labels:
        print("   %-8s %s" % (p, " ".join("%6d" % v for v in
                                            np.bincount(km.labels_[yp == p], minlength=k))))
    print("\n3. supervised (random forest, 5-fold cross-validated), same features")
    pred = cross_val_predict(RandomForestClassifier(n_estimators=100, random_state=0), X, yp,
                             cv=5)
    print("   ARI %.4f, accuracy %.3f" % (adjusted_rand_score(yp, pred), (pred == yp).mean()))
    print("\n   persona means of the features (original units):")
    print("   %-20s %s" % ("", " ".join("%8s" % p[:8] for p in labels)))
    for j, c in enumerate(names):
        print("   %-20s %s" % (c, " ".join("%8.2f" % X[yp == p, j].mean() for p in labels)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
