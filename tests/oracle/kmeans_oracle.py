#!/usr/bin/python3
"""kmeans_oracle: scikit-learn as the reference for streamseg's online K-means.

quality: reads the vectors a C test exported (already standardised by the model, one row per
line, in stream order) and the model's centres in the same units; writes to --out one line
"ours kmeans minibatch": the objective (sum of squared distances to the nearest centre) of
our centres, of sklearn KMeans(init="k-means++", n_init=10), and of sklearn MiniBatchKMeans
fed the same batches in the same order with partial_fit. The C test asserts on the numbers.

bench: reads float32 batches (raw little-endian, B x D each) written by tools/bench_kmeans and
prints two vectors/s figures of MiniBatchKMeans.partial_fit over them (after 4 warm-up calls):
with scikit-learn's default reassignment_ratio=0.01, and with reassignment off.

Exits 2 (loudly) when numpy or sklearn is missing: the quality test must fail, not skip.
"""
import argparse
import sys
import time

try:
    import numpy as np
    from sklearn.cluster import KMeans, MiniBatchKMeans
except ImportError as e:  # pragma: no cover - the point is to fail loudly
    sys.stderr.write("kmeans_oracle: cannot import numpy/sklearn (%s): "
                     "apt-get install python3-numpy python3-sklearn\n" % e)
    sys.exit(2)


def objective(X, C):
    d2 = (X * X).sum(1)[:, None] - 2 * X @ C.T + (C * C).sum(1)[None, :]
    return float(np.maximum(d2, 0).min(1).sum())


def quality(a):
    X = np.loadtxt(a.vectors, dtype=np.float64, ndmin=2)
    C = np.loadtxt(a.centres, dtype=np.float64, ndmin=2)
    if C.shape != (a.k, X.shape[1]):
        sys.stderr.write("kmeans_oracle: centres have shape %s, expected (%d, %d)\n" %
                         (C.shape, a.k, X.shape[1]))
        return 1
    ours = objective(X, C)
    km = KMeans(n_clusters=a.k, init="k-means++", n_init=10, random_state=0).fit(X)
    ref = objective(X, km.cluster_centers_)
    mbk = MiniBatchKMeans(n_clusters=a.k, init="k-means++", n_init=3, random_state=0,
                          batch_size=a.batch)
    for i in range(0, X.shape[0], a.batch):
        mbk.partial_fit(X[i:i + a.batch])
    mb = objective(X, mbk.cluster_centers_)
    with open(a.out, "w") as f:
        f.write("%.10g %.10g %.10g\n" % (ours, ref, mb))
    print("kmeans_oracle: n=%d d=%d k=%d ours=%.2f KMeans(n_init=10)=%.2f (ours %+.3f%%) "
          "MiniBatchKMeans.partial_fit=%.2f (ours %+.3f%%)" %
          (X.shape[0], X.shape[1], a.k, ours, ref, 100 * (ours / ref - 1), mb,
           100 * (ours / mb - 1)))
    return 0


def bench(a):
    raw = np.fromfile(a.batches, dtype="<f4")
    per = a.batch * a.dim
    nb = raw.size // per
    X = raw[:nb * per].reshape(nb, a.batch, a.dim).astype(np.float32)
    rates = []
    # scikit-learn's default (random reassignment of small centres, reassignment_ratio=0.01)
    # and without it: the fastest sklearn configuration is the fair baseline.
    for ratio in (0.01, 0.0):
        mbk = MiniBatchKMeans(n_clusters=a.k, n_init=3, random_state=0, batch_size=a.batch,
                              reassignment_ratio=ratio)
        for b in X[:min(nb, 4)]:  # warm-up: initialisation and first steps are not timed
            mbk.partial_fit(b)
        t0 = time.perf_counter()
        for b in X:
            mbk.partial_fit(b)
        rates.append(nb * a.batch / (time.perf_counter() - t0))
    print("%.6g %.6g" % tuple(rates))
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--vectors", required=True)
    q.add_argument("--centres", required=True)
    q.add_argument("--k", type=int, required=True)
    q.add_argument("--batch", type=int, required=True)
    q.add_argument("--out", required=True)
    b = sub.add_parser("bench")
    b.add_argument("--batches", required=True)
    b.add_argument("--k", type=int, required=True)
    b.add_argument("--dim", type=int, required=True)
    b.add_argument("--batch", type=int, required=True)
    a = p.parse_args()
    return quality(a) if a.cmd == "quality" else bench(a)


if __name__ == "__main__":
    sys.exit(main())
