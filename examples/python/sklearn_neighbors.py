"""Nearest-neighbour search in scikit-learn: a KD-tree over dense clustered points.

Fits ``NearestNeighbors`` on ``--points`` points in ``--dim`` dimensions (clustered, so the
trees are unbalanced) and queries ``--queries`` points for their ``--k`` nearest. Memory
behaviour: tree nodes and point arrays visited in data-dependent order (pointer-chasing-like
traversal over arrays), plus result arrays. Deterministic for a given ``--seed``.
Footprint at the defaults: about 150 MiB.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.neighbors import NearestNeighbors


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--points", type=int, default=300_000)
    p.add_argument("--queries", type=int, default=8_000)
    p.add_argument("--dim", type=int, default=8)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    centers = rng.normal(size=(64, args.dim)) * 5
    pts = centers[rng.integers(0, 64, args.points)] + rng.normal(size=(args.points, args.dim))
    queries = pts[rng.integers(0, args.points, args.queries)] + rng.normal(
        scale=0.1, size=(args.queries, args.dim)
    )
    total = 0.0
    nn = NearestNeighbors(n_neighbors=args.k, algorithm="kd_tree", leaf_size=30).fit(pts)
    dist, idx = nn.kneighbors(queries)
    total += float(dist.sum()) + float(idx[:, -1].sum() % 1_000_003)
    print(
        f"sklearn_neighbors: points={args.points} queries={args.queries} k={args.k} "
        f"checksum={total:.6e} time_s={time.perf_counter() - t0:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
