"""A user's own torchdata.nodes graph: sampler → decode (threads) → batch → collate."""

from __future__ import annotations

from typing import Any

import numpy as np
import torchdata.nodes as tn
from torch.utils.data import SequentialSampler


def decode(i: int) -> np.ndarray:
    rng = np.random.default_rng(i)
    signal = rng.standard_normal(16384)
    for _ in range(4):
        signal = np.abs(np.fft.rfft(np.resize(signal, 16384))) ** 0.5
    return signal[:256].astype(np.float32)


def stack(batch: list[np.ndarray]) -> np.ndarray:
    return np.stack(batch)


def make_nodes() -> Any:
    node: Any = tn.SamplerWrapper(SequentialSampler(range(1024)))
    node = tn.ParallelMapper(node, decode, num_workers=1)
    node = tn.Batcher(node, batch_size=32, drop_last=False)
    node = tn.Mapper(node, stack)
    return tn.Loader(node)


def without_maps() -> Any:
    return tn.Batcher(tn.IterableWrapper(range(64)), batch_size=8)


def empty_nodes() -> Any:
    node: Any = tn.SamplerWrapper(SequentialSampler(range(0)))
    return tn.Loader(tn.Batcher(tn.ParallelMapper(node, decode, num_workers=1), batch_size=8))
