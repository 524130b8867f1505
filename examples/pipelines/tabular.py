"""(c) Tabular / recsys: CSV click logs → read chunk → parse → hash categoricals → batch.

Data: deterministic synthetic click logs (users, items, categories, devices, countries with
Zipf popularity; price; click label from a hidden logistic model), written as one CSV
with a chunk index (byte ranges of ``chunk_rows`` rows), one file per chunk, and the
same rows as Parquet
(row group = chunk) for tf.data and for users who prefer it. An element is one chunk;
a sample is one row.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from placer.collectors.pipeline.spec import PipelineSpec, StageSpec
from examples.pipelines.common import cached_dataset, concat_collate, size_name

PARAMS = {
    "tiny": {"rows": 4096, "chunk_rows": 256, "batch": 4},
    "small": {"rows": 98_304, "chunk_rows": 2048, "batch": 4},
}
CATEGORICAL = ["user_id", "item_id", "category", "device", "country"]
DENSE = ["price", "hour"]
COLUMNS = ["ts", *CATEGORICAL, "price", "clicked"]
HASH_BUCKETS = 1 << 20


def _make(rows: int, chunk_rows: int) -> Any:
    def make(out: Path) -> None:
        import pandas as pd
        import pyarrow as pa
        import pyarrow.parquet as pq

        rng = np.random.default_rng(11)

        def zipf(n: int, k: int) -> np.ndarray:
            return (rng.zipf(1.3, size=n) - 1) % k

        df = pd.DataFrame(
            {
                "ts": 1_700_000_000 + np.sort(rng.integers(0, 30 * 86400, rows)),
                "user_id": [f"u{v:07d}" for v in zipf(rows, 200_000)],
                "item_id": [f"i{v:06d}" for v in zipf(rows, 50_000)],
                "category": [f"c{v:03d}" for v in zipf(rows, 300)],
                "device": rng.choice(
                    ["ios", "android", "web", "tv"], rows, p=[0.4, 0.4, 0.15, 0.05]
                ),
                "country": [chr(65 + a) + chr(65 + b) for a, b in rng.integers(0, 26, (rows, 2))],
                "price": np.round(rng.lognormal(3, 1, rows), 2),
            }
        )
        logit = -2 + 0.3 * (df["device"] == "ios") - 0.2 * np.log1p(df["price"].to_numpy())
        df["clicked"] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int8)
        index = []
        (out / "chunks").mkdir()
        with open(out / "clicks.csv", "wb") as fh:
            for start in range(0, rows, chunk_rows):
                part = df.iloc[start : start + chunk_rows]
                data = part.to_csv(header=False, index=False).encode()
                index.append((fh.tell(), len(data)))
                fh.write(data)
                # the same bytes as one file per chunk, for engines that read whole files
                (out / "chunks" / f"part_{len(index) - 1:05d}.csv").write_bytes(data)
        (out / "chunks.json").write_text(json.dumps(index))
        pq.write_table(
            pa.Table.from_pandas(df, preserve_index=False),
            out / "clicks.parquet",
            row_group_size=chunk_rows,
        )

    return make


def dataset(size: str | None = None) -> tuple[Path, dict[str, int]]:
    size = size or size_name()
    p = PARAMS[size]
    root = cached_dataset(
        "tabular",
        {"size": size, "rows": p["rows"], "chunk": p["chunk_rows"], "v": 2},
        _make(p["rows"], p["chunk_rows"]),
    )
    return root, p


class ReadChunk:
    """Byte range ``(offset, length)`` of the CSV file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._pid = -1

    def __call__(self, item: tuple[int, int]) -> bytes:
        if self._fd is None or self._pid != os.getpid():
            self._fd = os.open(self.path, os.O_RDONLY)
            self._pid = os.getpid()
        off, n = item
        return os.pread(self._fd, n, off)

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])  # type: ignore[misc]


def parse(data: bytes) -> Any:
    """CSV bytes → DataFrame with typed columns."""
    import pandas as pd

    return pd.read_csv(
        io.BytesIO(data),
        names=COLUMNS,
        dtype={c: str for c in CATEGORICAL} | {"ts": np.int64, "price": np.float32},
    )


def hash_features(df: Any) -> dict[str, np.ndarray]:
    """Categoricals → hashed ids in ``HASH_BUCKETS`` (the hashing trick); dense floats."""
    import pandas as pd

    cats = np.stack(
        [
            (
                pd.util.hash_array(df[c].to_numpy(dtype=object), categorize=True) % HASH_BUCKETS
            ).astype(np.int64)
            for c in CATEGORICAL
        ],
        axis=1,
    )
    hour = ((df["ts"].to_numpy() // 3600) % 24).astype(np.float32)
    dense = np.stack([np.log1p(df["price"].to_numpy(dtype=np.float32)), hour / 23.0], axis=1)
    return {
        "categorical": cats,
        "dense": dense.astype(np.float32),
        "label": df["clicked"].to_numpy(dtype=np.float32),
    }


def spec(size: str | None = None) -> PipelineSpec:
    # Import the stages' libraries now, as a job does at start: trials fork from this
    # process and would otherwise pay the import inside their first epoch.
    import pandas  # noqa: F401

    root, p = dataset(size)
    chunks = [tuple(c) for c in json.loads((root / "chunks.json").read_text())]
    csv = str(root / "clicks.csv")
    rows = p["rows"]
    return PipelineSpec(
        name="tabular",
        items=lambda: chunks,
        stages=[
            StageSpec("read", ReadChunk(csv), kind="source", max_parallelism=8),
            StageSpec("parse", parse),
            StageSpec("hash", hash_features),
            StageSpec("collate", concat_collate, kind="collate"),
        ],
        batch_size=p["batch"],
        samples_per_element=p["chunk_rows"],
        description=(
            f"{rows} click-log rows in CSV chunks of {p['chunk_rows']} → parse → hash "
            f"{len(CATEGORICAL)} categoricals → batch {p['batch'] * p['chunk_rows']} rows"
        ),
        source=csv,
        materialized_bytes={
            "read": os.path.getsize(csv),
            "parse": rows * (8 + 4 + 1 + 60 * len(CATEGORICAL)),  # object strings ~60 B
            "hash": rows * (8 * len(CATEGORICAL) + 4 * len(DENSE) + 4),
            "collate": rows * (8 * len(CATEGORICAL) + 4 * len(DENSE) + 4),
        },
    )
