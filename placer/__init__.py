"""placer: ML-driven data placement for tiered memory and ML input-pipeline autotuning."""

from __future__ import annotations

__version__ = "0.1.0"
