"""The Python API: ``import placer`` is light, a tuned config drops into a training script.

Finding 2 of issue 14: ``DataLoader(ds, **json.load(f))`` failed on ``cache``,
``build_dataloader(MyDataset(), ...)`` asked for ``staged_dataset()``, ``placer`` exported
only ``__version__``, and ``num_workers=4`` on a 2-core host made PyTorch warn.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

import placer
from placer.collectors.pipeline.engine import usable_cores

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "lightgbm", "optuna", "tensorflow", "sqlalchemy", "numpy")


def test_import_placer_pulls_no_heavy_library() -> None:
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import placer"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    modules = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines()}
    assert "placer" in modules
    assert not {m for m in modules if m.split(".")[0] in HEAVY}


def test_every_public_name_resolves_and_says_what_it_is() -> None:
    assert {"build_dataloader", "build_nodes", "build_tf_dataset", "tune", "profile"} <= set(
        placer.__all__
    )
    assert {"read_plan", "PlacerError"} <= set(placer.__all__)
    assert set(placer._LAZY) <= set(placer.__all__)
    for name in placer.__all__:
        value = getattr(placer, name)
        if name != "__version__":
            assert (value.__doc__ or "").strip(), name
    with pytest.raises(AttributeError):
        placer.no_such_name  # noqa: B018
    assert issubclass(placer.InvalidInputError, placer.PlacerError)


def test_tune_and_profile_from_python_fail_in_one_line(sqlite_url: str) -> None:
    with pytest.raises(placer.PlacerError) as info:
        placer.tune("no-such-pipeline", store=sqlite_url)
    assert "\n" not in str(info.value) and "no-such-pipeline" in str(info.value)
    with pytest.raises(placer.PlacerError, match="nothing to profile") as info:
        placer.profile([], store=sqlite_url)
    assert "\n" not in str(info.value)


torch = pytest.importorskip("torch")


class Squares(torch.utils.data.Dataset):  # type: ignore[misc]
    """A user's own dataset (not built by placer) that counts its reads."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.reads = 0

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Any:
        self.reads += 1
        return torch.tensor([float(i * i)])


def _tuned(tmp_path: Path, **config: Any) -> Path:
    """A config file as ``placer tune -o`` writes it."""
    path = tmp_path / "tuned.json"
    path.write_text(json.dumps(config))
    return path


def _expected(ds: Squares, batch_size: int) -> list[Any]:
    collate = torch.utils.data.default_collate
    idx = list(range(len(ds)))
    return [
        collate([ds[i] for i in idx[k : k + batch_size]]) for k in range(0, len(idx), batch_size)
    ]


def test_one_line_gives_a_real_dataloader_over_any_dataset_with_the_cache(
    tmp_path: Path,
) -> None:
    cfg = _tuned(tmp_path, num_workers=0, prefetch_factor=2, pin_memory=False, cache="decode")
    ds = Squares(10)
    expected = _expected(Squares(10), 4)
    loader = placer.build_dataloader(ds, cfg, batch_size=4)
    assert isinstance(loader, torch.utils.data.DataLoader)
    for _epoch in range(2):
        batches = list(loader)
        assert len(batches) == len(expected)
        assert all(torch.equal(b, e) for b, e in zip(batches, expected, strict=True))
    assert ds.reads == 10  # the second epoch came from the cache
    # spawn and forkserver workers get the dataset pickled
    again = pickle.loads(pickle.dumps(loader.dataset))
    assert torch.equal(again[3], expected[0][3]) and len(again) == 10


def test_transform_runs_after_the_cache_every_epoch(tmp_path: Path) -> None:
    cfg = _tuned(tmp_path, num_workers=0, cache="decode")
    ds = Squares(6)
    calls: list[int] = []

    def augment(x: Any) -> Any:
        calls.append(1)
        return x + 1

    loader = placer.build_dataloader(ds, cfg, batch_size=3, transform=augment)
    first, second = list(loader), list(loader)
    assert ds.reads == 6 and len(calls) == 12
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert torch.equal(first[0], torch.tensor([[1.0], [2.0], [5.0]]))


def test_workers_fit_the_host_without_pytorchs_warning(tmp_path: Path) -> None:
    cores = usable_cores()
    cfg = _tuned(tmp_path, num_workers=cores + 2, persistent_workers=True, cache="decode")
    expected = _expected(Squares(8), 4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loader = placer.build_dataloader(Squares(8), cfg, batch_size=4)
        for _epoch in range(2):
            batches = list(loader)
            assert all(torch.equal(b, e) for b, e in zip(batches, expected, strict=True))
    assert loader.num_workers == cores
    assert not [w for w in caught if issubclass(w.category, UserWarning)]
    # asked for explicitly, the count stands (and PyTorch says what it thinks of it)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loader = placer.build_dataloader(Squares(8), cfg, batch_size=4, max_workers=cores + 2)
    assert loader.num_workers == cores + 2
    assert any("This DataLoader will create" in str(w.message) for w in caught)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{not json", "not JSON"),
        ('{"num_workers": "four"}', "num_workers"),
        ('{"parallelism.decode": 2}', "parallelism.decode"),
        ('{"num_workers": 0, "cache": "decode"}', None),
    ],
)
def test_a_bad_config_is_one_placer_error_line(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "tuned.json"
    path.write_text(text)
    if match is None:  # fine for a map-style dataset, not for an iterable one
        dataset: Any = iter([1, 2, 3])
        match = "map-style"
    else:
        dataset = Squares(3)
    with pytest.raises(placer.PlacerError, match=match) as info:
        placer.build_dataloader(dataset, path, batch_size=2)
    assert "\n" not in str(info.value)
    with pytest.raises(placer.PlacerError, match="cannot read") as info:
        placer.build_dataloader(Squares(3), tmp_path / "missing.json")
    assert "\n" not in str(info.value)


def test_read_plan_is_a_one_line_error_on_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_text("[]")
    with pytest.raises(placer.PlacerError) as info:
        placer.read_plan(path)
    assert "\n" not in str(info.value) and "plan" in str(info.value)


@pytest.mark.slow
def test_tf_dataset_from_a_tuned_config(tmp_path: Path) -> None:
    """In a fresh process: TensorFlow and torch in one interpreter is not what users run."""
    from placer.collectors.pipeline.adapters.tfdata import tf_available

    reason = tf_available()
    if reason:
        pytest.skip(reason)
    cfg = _tuned(tmp_path, **{"parallelism.read": 2, "prefetch": 2, "cache": "read"})
    code = f"""
import tensorflow as tf
import placer
ds = placer.build_tf_dataset(
    list(range(10)), [("read", lambda x: x * x), ("half", lambda x: x // 2)], {str(cfg)!r},
    batch_size=4,
)
assert isinstance(ds, tf.data.Dataset)
for _ in range(2):
    got = [b.numpy().tolist() for b in ds]
    assert got == [[0, 0, 2, 4], [8, 12, 18, 24], [32, 40]], got
"""
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=300)
