"""Dataframe work in pandas: build two tables, join them, group and aggregate, sort.

A sales-style fact table (``--rows`` rows) is joined to a dimension table on a key, then
grouped by two columns with several aggregations and sorted; string columns keep Python
objects alive beside the numeric blocks. Deterministic for a given ``--seed``; prints one
line with a checksum. Footprint at the defaults: about 300 MiB.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--keys", type=int, default=200_000)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    facts = pd.DataFrame(
        {
            "key": rng.integers(0, args.keys, args.rows),
            "day": rng.integers(0, 365, args.rows).astype(np.int16),
            "qty": rng.integers(1, 10, args.rows).astype(np.int32),
            "price": rng.random(args.rows) * 100,
        }
    )
    regions = np.array([f"region-{i}" for i in range(50)], dtype=object)
    dims = pd.DataFrame(
        {
            "key": np.arange(args.keys),
            "region": regions[rng.integers(0, len(regions), args.keys)],
            "segment": rng.integers(0, 8, args.keys),
        }
    )
    joined = facts.merge(dims, on="key", how="inner")
    joined["revenue"] = joined["qty"] * joined["price"]
    agg = (
        joined.groupby(["region", "segment"])
        .agg(revenue=("revenue", "sum"), orders=("qty", "size"), days=("day", "nunique"))
        .sort_values("revenue", ascending=False)
    )
    top = joined.nlargest(1000, "revenue")
    checksum = float(agg["revenue"].sum()) + float(top["revenue"].sum())
    print(
        f"pandas_join: rows={len(joined)} groups={len(agg)} checksum={checksum:.6e} "
        f"time_s={time.perf_counter() - t0:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
