"""Gradient-boosted trees in LightGBM: bin a dense dataset, train, predict.

Builds a ``--rows`` × ``--features`` regression problem with a nonlinear target, lets
LightGBM bin it into its histogram dataset and trains ``--rounds`` trees (one thread by
default, as placer's experiments run thread pools). Memory behaviour: the raw float
matrix read once while binning, then histogram construction streaming the binned columns
through gathered row indices every tree. Deterministic for a given ``--seed``.
Footprint at the defaults: about 200 MiB.
"""

from __future__ import annotations

import argparse
import time

import lightgbm as lgb
import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=150_000)
    p.add_argument("--features", type=int, default=30)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    x = rng.normal(size=(args.rows, args.features))
    y = np.sin(x[:, 0] * 2) + x[:, 1] * x[:, 2] + 0.3 * rng.normal(size=args.rows)
    params = {
        "objective": "regression",
        "num_leaves": 63,
        "learning_rate": 0.1,
        "num_threads": args.threads,
        "seed": args.seed,
        "deterministic": True,
        "verbose": -1,
    }
    booster = lgb.train(params, lgb.Dataset(x, label=y), num_boost_round=args.rounds)
    pred = booster.predict(x[: args.rows // 4])
    mse = float(np.mean((pred - y[: args.rows // 4]) ** 2))
    print(
        f"lightgbm_train: rows={args.rows} features={args.features} trees={booster.num_trees()} "
        f"mse={mse:.5f} time_s={time.perf_counter() - t0:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
