"""Embedding-table lookups with skewed access: a memory-heavy Python workload to profile.

A recommendation-style model keeps several embedding tables of different sizes. Each
training batch looks up rows with Zipf-distributed popularity (a few rows are very hot,
most are cold), sum-pools them per sample, scores the pooled vector with a small dense
layer, and every ``--update-every`` batches applies a gradient step to the looked-up rows
(sparse writes). A large request log is written once at start and read once at the end:
a big, cold object. Each large array is allocated on its own line in its own function, so
tracemalloc (and ``placer profile``) tells them apart by Python call site.

Deterministic for a given ``--seed`` and arguments; prints one line ending in a checksum.
Footprint at ``--scale 1``: about 780 MiB (tables 520 MiB, request log 256 MiB).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

#: Row multiplier for Zipf rank -> row: a prime, so the mapping is a bijection for any
#: table size not divisible by it, and hot rows scatter across the table as hashed ids do.
RANK_SCATTER = 2_654_435_761
LEARNING_RATE = 0.05


def alloc_user_table(rng: np.random.Generator, rows: int) -> np.ndarray:
    table = np.empty((rows, 32), dtype=np.float32)
    rng.random(out=table, dtype=np.float32)
    return table


def alloc_item_table(rng: np.random.Generator, rows: int) -> np.ndarray:
    table = np.empty((rows, 64), dtype=np.float32)
    rng.random(out=table, dtype=np.float32)
    return table


def alloc_ad_table(rng: np.random.Generator, rows: int) -> np.ndarray:
    table = np.empty((rows, 32), dtype=np.float32)
    rng.random(out=table, dtype=np.float32)
    return table


def alloc_category_table(rng: np.random.Generator, rows: int) -> np.ndarray:
    table = np.empty((rows, 16), dtype=np.float32)
    rng.random(out=table, dtype=np.float32)
    return table


def alloc_request_log(rng: np.random.Generator, nbytes: int) -> np.ndarray:
    return rng.integers(0, 256, size=nbytes, dtype=np.uint8)


def zipf_cdf(rows: int, exponent: float) -> np.ndarray:
    """Cumulative popularity of ranks 0..rows-1 with weight 1 / (rank + 1) ** exponent."""
    weights = 1.0 / np.power(np.arange(1, rows + 1, dtype=np.float64), exponent)
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    return cdf


def lookup_rows(rng: np.random.Generator, cdf: np.ndarray, count: int) -> np.ndarray:
    """``count`` row ids drawn with Zipf popularity, hot ranks scattered over the table."""
    ranks = np.searchsorted(cdf, rng.random(count), side="right")
    np.minimum(ranks, cdf.size - 1, out=ranks)
    return (ranks.astype(np.int64) * RANK_SCATTER) % cdf.size


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiplies every table's rows (default 1)"
    )
    parser.add_argument("--batches", type=int, default=300, help="batches (default 300)")
    parser.add_argument("--batch-size", type=int, default=512, help="samples per batch")
    parser.add_argument("--bag", type=int, default=8, help="lookups per table per sample")
    parser.add_argument("--zipf", type=float, default=1.05, help="Zipf exponent (default 1.05)")
    parser.add_argument(
        "--update-every", type=int, default=4, help="gradient step every N batches (default 4)"
    )
    parser.add_argument(
        "--log-mib", type=float, default=256.0, help="cold request log size at scale 1 (MiB)"
    )
    args = parser.parse_args(argv)
    for name in ("batches", "batch_size", "bag", "update_every"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not (args.scale > 0 and np.isfinite(args.scale)):
        parser.error("--scale must be a positive number")
    if not args.zipf > 0:
        parser.error("--zipf must be positive")
    if args.log_mib < 0:
        parser.error("--log-mib must not be negative")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rng = np.random.default_rng(args.seed)
    start = time.monotonic()

    def rows(base: int) -> int:
        return max(16, int(base * args.scale))

    tables = {
        "user": alloc_user_table(rng, rows(2_000_000)),
        "item": alloc_item_table(rng, rows(1_000_000)),
        "ad": alloc_ad_table(rng, rows(250_000)),
        "category": alloc_category_table(rng, rows(20_000)),
    }
    log = alloc_request_log(rng, max(4096, int(args.log_mib * args.scale * 2**20)))
    cdfs = {name: zipf_cdf(t.shape[0], args.zipf) for name, t in tables.items()}
    dense = rng.standard_normal(sum(t.shape[1] for t in tables.values())) / 8.0

    batch, bag = args.batch_size, args.bag
    loss_sum = 0.0
    updates = 0
    for step in range(args.batches):
        ids = {name: lookup_rows(rng, cdfs[name], batch * bag) for name in tables}
        pooled = np.concatenate(
            [tables[n][ids[n]].reshape(batch, bag, -1).sum(axis=1) for n in tables], axis=1
        ).astype(np.float64)
        target = rng.random(batch)
        error = (pooled * dense).sum(axis=1) / bag - target
        loss_sum += float(np.mean(error * error))
        if (step + 1) % args.update_every == 0:
            grad = (2.0 / batch / bag) * np.outer(error, dense)  # d loss / d row, per sample
            col = 0
            for name, table in tables.items():
                dim = table.shape[1]
                rows_grad = np.repeat(grad[:, col : col + dim], bag, axis=0)
                np.add.at(table, ids[name], (-LEARNING_RATE * rows_grad).astype(np.float32))
                col += dim
            updates += 1

    table_sums = sum(
        float(t[:: max(1, t.shape[0] // 4096)].sum(dtype=np.float64)) for t in tables.values()
    )
    log_sum = int(log.sum(dtype=np.uint64))
    checksum = loss_sum + table_sums + log_sum * 1e-6
    elapsed = time.monotonic() - start
    table_bytes = sum(t.nbytes for t in tables.values())
    print(
        f"embedding: tables={len(tables)} table_bytes={table_bytes} log_bytes={log.nbytes} "
        f"lookups={args.batches * batch * bag * len(tables)} updates={updates} "
        f"loss={loss_sum / args.batches:.9f} checksum={checksum:.9f} time_s={elapsed:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
