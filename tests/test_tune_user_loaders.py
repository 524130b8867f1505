"""`placer tune module:function` on a user's own loader, as it is (tests/user_loaders/).

The loaders there are written the way a training script writes them (a map-style Dataset
in a plain DataLoader, a torchdata.nodes graph, a tf.data.Dataset); placer rebuilds them
per trial with its knobs. No timing is asserted: trials are short and the host is shared.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

import placer
from placer.collectors.pipeline.adapters.user import (
    BatchCache,
    same_output,
    user_pipeline_def,
)
from placer.collectors.pipeline.measure import measure
from placer.collectors.pipeline.registry import load_pipeline
from placer.errors import InvalidInputError
from tests.test_tuning_cli import _one_line_error

TESTS = str(Path(__file__).resolve().parent)
ENV = {"PYTHONPATH": TESTS, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"}
QUICK = ("--trials", "3", "--trial-seconds", "0.3", "--budget-cores", "2")
DATALOADER_KEYS = {"num_workers", "prefetch_factor", "persistent_workers", "pin_memory", "cache"}


class Counting(Dataset):  # type: ignore[type-arg]
    """Squares, counting every ``__getitem__`` (to see what a cache saves)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.calls = 0

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        self.calls += 1
        return torch.full((4,), float(i * i))


def _epoch(pipeline: Any) -> list[Any]:
    return [b.clone() if isinstance(b, torch.Tensor) else b for b in pipeline]


# --------------------------------------------------------------------------- the CLI


def test_user_dataloader_tunes_from_the_cli(run_placer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "best.json"
    res = run_placer("tune", "user_loaders.my_loader:make_loader", *QUICK, "-o", str(out), env=ENV)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "dataset is the bottleneck at" in res.stdout, res.stdout
    # shuffled: samples may be cached, batches may not; no accelerator to pin memory for
    assert "batch cache not offered: the sampler is not sequential" in res.stdout
    assert "best config (trial " in res.stdout and "vs naive" in res.stdout
    config = json.loads(out.read_text())
    assert set(config) == DATALOADER_KEYS
    assert config["cache"] in (None, "dataset")
    assert isinstance(config["num_workers"], int) and config["num_workers"] >= 0
    listed = run_placer("--format", "json", "pipelines", check=True)
    names = [p["name"] for p in json.loads(listed.stdout)["pipelines"]]
    assert names == ["user_loaders.my_loader:make_loader"]


@pytest.mark.slow
def test_user_torchdata_graph_tunes_per_stage(run_placer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "best.json"
    res = run_placer("tune", "user_loaders.my_nodes:make_nodes", *QUICK, "-o", str(out), env=ENV)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "decode is the bottleneck at" in res.stdout, res.stdout
    config = json.loads(out.read_text())
    assert set(config) == {"parallelism.decode", "parallelism.stack", "prefetch"}


@pytest.mark.slow
def test_user_tf_dataset_tunes_and_says_what_it_cannot_model(run_placer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("tensorflow")
    out = tmp_path / "best.json"
    res = run_placer("tune", "user_loaders.my_tfdata:make_dataset", *QUICK, "-o", str(out), env=ENV)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "the analysis sees it as one stage" in res.stdout, res.stdout
    config = json.loads(out.read_text())
    assert set(config) == {"parallelism.map0", "prefetch", "cache"}
    assert config["parallelism.map0"] in (-1, 1, 2, 4) or config["parallelism.map0"] > 4


@pytest.mark.parametrize(
    ("function", "needles"),
    [
        ("not_a_loader", ("returned list", "a torch DataLoader", "tf.data.Dataset")),
        ("raising_loader", ("raised FileNotFoundError", "/data/train not mounted")),
        ("empty_loader", ("yields nothing", "0 samples")),
        ("bad_kwargs", ("refused them", "no_such_option")),
        ("broken_items", ("dataset[0] raised KeyError", "missing from the index")),
    ],
)
def test_bad_user_loaders_fail_in_one_line_and_store_nothing(  # type: ignore[no-untyped-def]
    run_placer, placer_env: dict[str, str], function: str, needles: tuple[str, ...]
) -> None:
    res = run_placer("tune", f"user_loaders.my_loader:{function}", *QUICK, env=ENV)
    _one_line_error(res, *needles)
    assert not os.path.exists(os.path.join(placer_env["PLACER_DATA_DIR"], "placer.db"))


def test_a_graph_that_yields_nothing_fails_after_profiling_and_stores_nothing(run_placer) -> None:  # type: ignore[no-untyped-def]
    res = run_placer("tune", "user_loaders.my_nodes:empty_nodes", *QUICK, env=ENV)
    _one_line_error(res, "yields nothing", "no batch")
    listed = run_placer("--format", "json", "pipelines", check=True)
    assert json.loads(listed.stdout)["pipelines"] == []


def test_torchdata_graph_without_a_mapper_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="no ParallelMapper or Mapper"):
        load_pipeline("tests.user_loaders.my_nodes:without_maps")


# --------------------------------------------------------------------------- the adapter


def test_dataloader_is_rebuilt_with_the_trials_knobs_and_keeps_its_own() -> None:
    ds = Counting(40)
    seen: list[int] = []
    loader = DataLoader(ds, batch_size=8, drop_last=True, collate_fn=lambda b: torch.stack(b))
    defn = user_pipeline_def("t", loader)
    assert defn.engine == "dataloader" and defn.batch_size == 8
    assert defn.naive_config == {
        "num_workers": 0,
        "prefetch_factor": 2,
        "persistent_workers": False,
        "pin_memory": False,
        "cache": None,
    }
    assert defn.knobs["cache"].choices == (None, "dataset", "collate")  # type: ignore[union-attr]
    built = defn.build({"num_workers": 2, "prefetch_factor": 3}, None)
    rebuilt = built.loader  # type: ignore[attr-defined]
    assert (rebuilt.num_workers, rebuilt.prefetch_factor, rebuilt.drop_last) == (2, 3, True)
    batches = _epoch(built)
    assert len(batches) == 5 and all(b.shape == (8, 4) for b in batches)
    seen.extend(int(b[0, 0]) for b in batches)
    assert seen == [0, 64, 256, 576, 1024]  # the user's collate, the user's order
    with pytest.raises(InvalidInputError, match="unknown config key"):
        defn.build({"parallelism.decode": 2}, None)


def test_caches_replay_what_the_loader_delivered_without_fetching_again() -> None:
    ds = Counting(24)
    defn = user_pipeline_def("t", (ds, {"batch_size": 6}))
    batches = defn.build({"cache": "collate"}, None)
    assert isinstance(batches, BatchCache)
    before = ds.calls  # dataset[0], fetched twice to see whether samples are random
    first = _epoch(batches)
    calls = ds.calls
    assert calls - before == 24
    second = _epoch(batches)
    assert ds.calls == calls  # served from the batch cache
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    samples = defn.build({"cache": "dataset"}, None)  # the sample cache, in this process
    _epoch(samples)
    calls = ds.calls
    again = _epoch(samples)
    assert ds.calls == calls
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))


def test_no_cache_where_it_would_change_the_data() -> None:
    augmented = load_pipeline("tests.user_loaders.my_loader:augmented_loader")
    assert "cache" not in augmented.knobs
    assert any("differed" in n for n in augmented.notes)
    shuffled = load_pipeline("tests.user_loaders.my_loader:make_loader")
    assert shuffled.knobs["cache"].choices == (None, "dataset")  # type: ignore[union-attr]
    assert [s.random for s in shuffled.stages] == [False, False, True]


def test_measured_in_a_forked_child_with_probed_stages() -> None:
    defn = user_pipeline_def("t", (Counting(64), {"batch_size": 8}))
    m = measure(defn, {"num_workers": 1}, max_batches=6, max_seconds=5.0, warmup_batches=1)
    assert m.status == "ok" and m.batches == 6 and m.samples == 48, m.error
    by_name = {s.name: s for s in m.stages}
    assert set(by_name) == {"dataset", "batch", "collate"}
    # counted in the worker process, summed in the measuring one
    assert by_name["dataset"].elements_out > 0 and by_name["dataset"].cpu_seconds > 0
    assert by_name["collate"].elements_out > 0


def test_same_output_compares_values_not_identity() -> None:
    a = (torch.arange(6.0), {"y": np.ones(3)}, "x", 3)
    b = (torch.arange(6.0), {"y": np.ones(3)}, "x", 3)
    assert same_output(a, b)
    assert not same_output((torch.arange(6.0),), (torch.arange(6.0) + 1,))
    assert not same_output(torch.zeros(2), np.zeros(2))  # other type: not known equal


def test_tuned_loader_applies_a_written_config(tmp_path: Path) -> None:
    path = tmp_path / "tuned.json"
    path.write_text(json.dumps({"num_workers": 1, "prefetch_factor": 4, "cache": None}))
    loader = placer.tuned_loader(DataLoader(Counting(16), batch_size=4), path)
    assert isinstance(loader, DataLoader)
    assert (loader.num_workers, loader.prefetch_factor) == (1, 4)
    assert sum(b.shape[0] for b in loader) == 16


class Stream(IterableDataset):  # type: ignore[type-arg]
    """An iterable dataset that splits its stream across workers, as one must."""

    def __iter__(self) -> Any:
        info = get_worker_info()
        start, step = (0, 1) if info is None else (info.id, info.num_workers)
        return (torch.full((2,), float(i)) for i in range(start, 32, step))


def test_iterable_dataset_keeps_its_workers_and_tunes_the_rest() -> None:
    with pytest.raises(InvalidInputError, match="nothing to tune"):
        user_pipeline_def("t", DataLoader(Stream(), batch_size=4))
    defn = user_pipeline_def("t", DataLoader(Stream(), batch_size=4, num_workers=1))
    assert set(defn.knobs) == {"prefetch_factor", "persistent_workers"}
    assert defn.naive_config["num_workers"] == 1
    assert any("num_workers stays 1" in n for n in defn.notes)
    m = measure(defn, {"prefetch_factor": 3}, max_batches=4, max_seconds=5.0, warmup_batches=1)
    assert m.status == "ok" and m.batches == 4, m.error
    assert {s.name for s in m.stages} == {"dataset", "batch", "collate"}


def test_a_users_batch_sampler_is_kept() -> None:
    defn = load_pipeline("tests.user_loaders.my_loader:batch_sampler_loader")
    assert defn.batch_size == 16 and defn.dataset_samples == 256
    assert defn.knobs["cache"].choices == (None, "dataset", "collate")  # type: ignore[union-attr]
    built = defn.build({"num_workers": 1}, None)
    sizes = [len(y) for _x, y in built]
    assert sizes == [16] * 16


def test_tuned_loader_rebuilds_a_torchdata_graph_with_its_knobs() -> None:
    from tests.user_loaders.my_nodes import make_nodes

    config = {"parallelism.decode": 2, "parallelism.stack": 0, "prefetch": 3}
    loader = placer.tuned_loader(make_nodes(), config)
    root = loader.root
    assert type(root).__name__ == "Prefetcher" and root.prefetch_factor == 3
    decode = root.source.source.source  # Prefetcher <- stack <- Batcher <- decode
    assert (type(decode).__name__, decode.num_workers) == ("ParallelMapper", 2)
    assert sum(len(b) for b in loader) == 1024
