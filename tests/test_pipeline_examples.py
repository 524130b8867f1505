"""Every example pipeline builds and yields correct batches on tiny generated data."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from placer.collectors.pipeline.registry import example_names, load_pipeline
from placer.errors import InvalidInputError, NotFoundError

REPO = Path(__file__).resolve().parent.parent
ENGINES = ("python", "torchdata", "dataloader")


@pytest.fixture(scope="module", autouse=True)
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("pipeline-data")
    saved = {k: os.environ.get(k) for k in ("PLACER_PIPELINE_DATA", "PLACER_PIPELINE_SIZE")}
    os.environ["PLACER_PIPELINE_DATA"] = str(root)
    os.environ["PLACER_PIPELINE_SIZE"] = "tiny"
    yield root
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _np(x):  # type: ignore[no-untyped-def]
    return x.numpy() if hasattr(x, "numpy") else np.asarray(x)


def test_registry_names_every_example_on_every_engine() -> None:
    names = set(example_names())
    for ex in ("images", "text", "tabular", "remote"):
        for engine in ENGINES:
            assert f"{ex}-{engine}" in names
    for ex in ("images", "tabular"):
        assert {f"{ex}-tfdata", f"{ex}-tfdata-autotune"} <= names


@pytest.mark.parametrize("engine", ENGINES)
def test_images(engine: str) -> None:
    defn = load_pipeline(f"images-{engine}")
    assert [s.name for s in defn.stages if s.random] == ["crop", "flip"]
    assert defn.knobs["cache"].choices == (None, "read", "decode")  # type: ignore[union-attr]
    assert set(defn.materialized_bytes) >= {"read", "decode", "normalize"}
    batches = [_np(b) for b in defn.build(defn.naive_config, None)]
    assert [b.shape for b in batches] == [(8, 3, 32, 32)] * 6  # 48 images, batch 8, crop 32
    assert batches[0].dtype == np.float32 and -3 < batches[0].mean() < 3  # normalized


@pytest.mark.parametrize("engine", ENGINES)
def test_text(engine: str) -> None:
    defn = load_pipeline(f"text-{engine}")
    cfg = {"num_workers": 1} if engine == "dataloader" else {"parallelism.tokenize": 2}
    batches = list(defn.build(cfg, None))
    assert sum(int(b["num_samples"]) for b in batches) == 64 == defn.dataset_samples
    ids, mask = _np(batches[0]["input_ids"]), _np(batches[0]["attention_mask"])
    assert ids.shape[1] == 64 and ids.shape == mask.shape
    assert mask[:-1].all() and ids.max() < 500  # packed rows full except the last; vocab 500


@pytest.mark.parametrize("engine", ENGINES)
def test_tabular(engine: str) -> None:
    defn = load_pipeline(f"tabular-{engine}")
    batches = list(defn.build(defn.naive_config, None))
    assert sum(int(b["num_samples"]) for b in batches) == 4096 == defn.dataset_samples
    cat, dense, label = (_np(batches[0][k]) for k in ("categorical", "dense", "label"))
    assert cat.shape == (1024, 5) and dense.shape == (1024, 2) and label.shape == (1024,)
    assert 0 <= cat.min() and cat.max() < 1 << 20
    assert set(np.unique(label)) <= {0.0, 1.0}


@pytest.mark.parametrize("engine", ENGINES)
def test_remote(engine: str) -> None:
    defn = load_pipeline(f"remote-{engine}")
    assert defn.source and defn.source.startswith("http://127.0.0.1:")
    cfg = {"num_workers": 2} if engine == "dataloader" else {"parallelism.fetch": 4}
    batches = list(defn.build(cfg, None))
    feats = np.concatenate([_np(b["features"]) for b in batches])
    assert feats.shape == (64, 64) and 0 <= feats.min() and feats.max() < 1


def test_remote_dataloader_gains_workers_in_the_same_process() -> None:
    """A job that ran with no workers, then gets workers (the daemon's knobs at an epoch
    boundary): forked workers must not reuse the parent's keep-alive connection."""
    defn = load_pipeline("remote-dataloader")
    first = list(defn.build({"num_workers": 0}, None))
    again = list(defn.build({"num_workers": 2}, None))
    assert len(first) == len(again) > 0
    feats = np.concatenate([_np(b["features"]) for b in again])
    assert feats.shape == (64, 64) and 0 <= feats.min() and feats.max() < 1


@pytest.mark.slow
def test_tfdata_examples_in_a_fresh_process(tiny_data: Path) -> None:
    from placer.collectors.pipeline.adapters.tfdata import tf_available

    reason = tf_available()
    if reason:
        pytest.skip(reason)
    code = """
import numpy as np
from placer.collectors.pipeline.registry import load_pipeline
from placer.collectors.pipeline.probe import Probes
names = ["images-tfdata", "images-tfdata-autotune", "tabular-tfdata", "tabular-tfdata-autotune"]
for name in names:
    d = load_pipeline(name)
    probes = Probes()
    cfg = dict(d.naive_config)
    if d.knobs:
        cfg["cache"] = d.knobs["cache"].choices[-1]
    pipe = d.build(cfg, probes)
    for epoch in range(2):
        batches = list(pipe)
    if name.startswith("images"):
        shapes = {tuple(b.shape) for b in batches}
        assert shapes == {(8, 3, 32, 32)}, shapes
    else:
        assert sum(int(b["label"].shape[0]) for b in batches) == 4096
        assert tuple(batches[0]["categorical"].shape) == (1024, 5)
    stats = {s.name: s for s in probes.stats()}
    assert stats["batch"].elements_out == 2 * len(batches), name
    print(name, "ok")
"""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count(" ok") == 4


def test_unknown_names_and_bad_user_builders() -> None:
    with pytest.raises(NotFoundError, match="images-torchdata"):
        load_pipeline("imagez-torchdata")
    with pytest.raises(InvalidInputError, match="does not import"):
        load_pipeline("no_such_module_xyz:make")
    with pytest.raises(InvalidInputError, match="has no function"):
        load_pipeline("placer.collectors.pipeline.spec:nope")
    with pytest.raises(InvalidInputError, match="raised"):
        load_pipeline("placer.collectors.pipeline.adapters:pipeline_def")  # needs arguments
    with pytest.raises(InvalidInputError, match="not a PipelineDef"):
        load_pipeline("placer.collectors.pipeline.registry:example_names")
