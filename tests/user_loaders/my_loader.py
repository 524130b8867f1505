"""A user's own training input: a map-style Dataset that does CPU work per sample, in a
plain DataLoader. Nothing here knows placer."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset


class Spectra(Dataset):  # type: ignore[type-arg]
    """Sample ``i``: a seeded random signal, its power spectrum (some CPU) and a label."""

    def __init__(self, n: int = 2048, length: int = 16384) -> None:
        self.n = n
        self.length = length

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        rng = np.random.default_rng(i)
        signal = rng.standard_normal(self.length)
        for _ in range(4):
            signal = np.abs(np.fft.rfft(np.resize(signal, self.length))) ** 0.5
        return torch.from_numpy(signal[:256].astype(np.float32)), i % 10


def make_loader() -> DataLoader:  # type: ignore[type-arg]
    """What the training script calls: shuffled batches of 32, no workers."""
    return DataLoader(Spectra(), batch_size=32, shuffle=True)


def dataset_and_kwargs() -> tuple[Dataset, dict[str, Any]]:  # type: ignore[type-arg]
    """The same data as a dataset plus the DataLoader arguments (ordered: batches cacheable)."""
    return Spectra(n=1024), {"batch_size": 64, "drop_last": True}


class Noisy(Spectra):
    """Random augmentation in ``__getitem__``: a sample differs every time it is fetched."""

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x, y = super().__getitem__(i)
        return x + torch.randn_like(x), y


def augmented_loader() -> DataLoader:  # type: ignore[type-arg]
    return DataLoader(Noisy(n=512), batch_size=32)


def empty_loader() -> DataLoader:  # type: ignore[type-arg]
    return DataLoader(Spectra(n=0), batch_size=32)


def not_a_loader() -> list[int]:
    return [1, 2, 3]


def raising_loader() -> DataLoader:  # type: ignore[type-arg]
    raise FileNotFoundError("/data/train not mounted")


def bad_kwargs() -> tuple[Dataset, dict[str, Any]]:  # type: ignore[type-arg]
    return Spectra(), {"batch_size": 32, "no_such_option": 1}


class Broken(Spectra):
    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        raise KeyError(f"sample {i} missing from the index")


def broken_items() -> DataLoader:  # type: ignore[type-arg]
    return DataLoader(Broken(), batch_size=8)


def spawned_loader() -> DataLoader:  # type: ignore[type-arg]
    """Workers started with spawn (the dataset and collate travel pickled)."""
    return DataLoader(Spectra(n=256), batch_size=32, num_workers=1, multiprocessing_context="spawn")


def batch_sampler_loader() -> DataLoader:  # type: ignore[type-arg]
    """The user's own batch sampler (batch_size is then None on the loader)."""
    from torch.utils.data import BatchSampler, SequentialSampler

    return DataLoader(
        Spectra(n=256), batch_sampler=BatchSampler(SequentialSampler(range(256)), 16, False)
    )
