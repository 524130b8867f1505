"""A job builds its DataLoader / torchdata.nodes pipeline from a tuned config file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from placer.collectors.pipeline.apply import (
    build_dataloader,
    build_nodes,
    load_config,
    staged_dataset,
)
from placer.errors import InvalidInputError

pytest.importorskip("torch")


def square(x: float) -> np.ndarray:
    return np.array([x * x], dtype=np.float32)


def test_config_file_flat_or_nested(tmp_path: Path) -> None:
    nested = tmp_path / "tuned.json"
    nested.write_text(json.dumps({"pipeline": "images-dataloader", "config": {"num_workers": 3}}))
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps({"prefetch": 2}))
    assert load_config(nested) == {"num_workers": 3}
    assert load_config(flat) == {"prefetch": 2}
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InvalidInputError, match="not JSON"):
        load_config(bad)
    with pytest.raises(InvalidInputError, match="cannot read"):
        load_config(tmp_path / "missing.json")
    bad.write_text("[1, 2]")
    with pytest.raises(InvalidInputError, match="JSON object"):
        load_config(bad)


def test_dataloader_gets_the_tuned_knobs_and_yields_the_data(tmp_path: Path) -> None:
    cfg = tmp_path / "tuned.json"
    cfg.write_text(
        json.dumps(
            {
                "config": {
                    "num_workers": 2,
                    "prefetch_factor": 3,
                    "persistent_workers": True,
                    "pin_memory": False,
                    "cache": "square",
                }
            }
        )
    )
    ds = staged_dataset([float(i) for i in range(10)], [("read", float), ("square", square)])
    loader = build_dataloader(ds, cfg, batch_size=4)
    assert (loader.num_workers, loader.prefetch_factor, loader.persistent_workers) == (2, 3, True)
    for _ in range(2):
        values = [v for b in loader for v in b.flatten().tolist()]
        assert values == [float(i * i) for i in range(10)]


def test_dataloader_rejects_what_it_cannot_apply() -> None:
    ds = staged_dataset([1.0, 2.0], [("read", float), ("square", square)])
    with pytest.raises(InvalidInputError, match="parallelism.decode"):
        build_dataloader(ds, {"parallelism.decode": 2}, batch_size=2)
    with pytest.raises(InvalidInputError, match="num_workers"):
        build_dataloader(ds, {"num_workers": -1}, batch_size=2)
    with pytest.raises(InvalidInputError, match="not a stage"):
        build_dataloader(ds, {"cache": "decode"}, batch_size=2)
    with pytest.raises(InvalidInputError, match="transform"):
        build_dataloader(ds, {}, batch_size=2, transform=square)


def test_torchdata_nodes_from_config() -> None:
    pytest.importorskip("torchdata.nodes")
    loader = build_nodes(
        list(range(10)),
        [("read", float), ("square", lambda x: x * x)],
        {"parallelism.square": 3, "prefetch": 2, "cache": "read"},
        batch_size=4,
        collate_fn=list,
    )
    expected = [[0.0, 1.0, 4.0, 9.0], [16.0, 25.0, 36.0, 49.0], [64.0, 81.0]]
    assert list(loader) == expected and list(loader) == expected
    with pytest.raises(InvalidInputError, match="num_workers"):
        build_nodes([1], [("read", float)], {"num_workers": 2}, batch_size=1, collate_fn=list)
