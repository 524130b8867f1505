"""(a) Images: JPEG files on disk → read → decode → random resized crop → flip → normalize.

Data: deterministic synthetic photos (smooth gradients, blobs and sensor noise, so JPEG
decode costs what it costs on real photos of that size), generated once with Pillow.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import numpy as np

from placer.collectors.pipeline.spec import PipelineSpec, StageSpec
from examples.pipelines.common import cached_dataset, size_name, stack_collate

PARAMS = {
    "tiny": {"count": 48, "side": 64, "crop": 32, "batch": 8},
    "small": {"count": 640, "side": 192, "crop": 128, "batch": 32},
}
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(3, 1, 1)


def _make(count: int, side: int) -> Any:
    def make(out: Path) -> None:
        from PIL import Image

        for i in range(count):
            rng = np.random.default_rng(1000 + i)
            y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
            img = np.empty((side, side, 3), dtype=np.float32)
            for c in range(3):
                a, b, d = rng.uniform(-1, 1, 3)
                img[..., c] = 128 + 80 * np.sin(3 * a * x + 2 * b * y + d)
            for _ in range(6):  # blobs
                cx, cy, r = rng.uniform(0, 1, 3)
                mask = (x - cx) ** 2 + (y - cy) ** 2 < (0.05 + 0.15 * r) ** 2
                img[mask] = rng.uniform(0, 255, 3)
            img += rng.normal(0, 12, img.shape)
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
                out / f"img_{i:05d}.jpg", quality=90
            )

    return make


def dataset(size: str | None = None) -> tuple[Path, dict[str, int]]:
    size = size or size_name()
    p = PARAMS[size]
    root = cached_dataset(
        "images",
        {"size": size, "count": p["count"], "side": p["side"], "v": 1},
        _make(p["count"], p["side"]),
    )
    return root, p


def read_file(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def decode(data: bytes) -> Any:
    from PIL import Image

    img = Image.open(io.BytesIO(data))
    img.draft("RGB", img.size)
    return img.convert("RGB")


class RandomResizedCrop:
    """torchvision's RandomResizedCrop on a PIL image (area 35–100%, aspect 3/4–4/3)."""

    def __init__(self, out: int) -> None:
        self.out = out

    def __call__(self, img: Any) -> Any:
        from PIL import Image

        w, h = img.size
        for _ in range(10):
            area = w * h * random.uniform(0.35, 1.0)
            ratio = np.exp(random.uniform(np.log(3 / 4), np.log(4 / 3)))
            cw = int(round(np.sqrt(area * ratio)))
            ch = int(round(np.sqrt(area / ratio)))
            if 0 < cw <= w and 0 < ch <= h:
                left = random.randint(0, w - cw)
                top = random.randint(0, h - ch)
                break
        else:
            cw, ch, left, top = w, h, 0, 0
        return img.resize(
            (self.out, self.out), Image.Resampling.BILINEAR, box=(left, top, left + cw, top + ch)
        )


def flip(img: Any) -> Any:
    from PIL import Image

    return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if random.random() < 0.5 else img


def normalize(img: Any) -> np.ndarray:
    arr = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0
    return (arr - MEAN) / STD


def spec(size: str | None = None) -> PipelineSpec:
    # Import the stages' libraries now, as a job does at start: trials fork from this
    # process and would otherwise pay the import inside their first epoch.
    import PIL.Image  # noqa: F401

    root, p = dataset(size)
    files = sorted(str(f) for f in root.glob("*.jpg"))
    n, side, crop = len(files), p["side"], p["crop"]
    file_bytes = sum(Path(f).stat().st_size for f in files)
    return PipelineSpec(
        name="images",
        items=lambda: files,
        stages=[
            StageSpec("read", read_file, kind="source", max_parallelism=16),
            StageSpec("decode", decode),
            StageSpec("crop", RandomResizedCrop(crop), random=True),
            StageSpec("flip", flip, random=True),
            StageSpec("normalize", normalize),
            StageSpec("collate", stack_collate, kind="collate"),
        ],
        batch_size=p["batch"],
        description=f"{n} JPEGs {side}x{side} → decode → random crop {crop} → flip → normalize",
        source=str(root),
        materialized_bytes={
            "read": file_bytes,
            "decode": n * side * side * 3,
            "crop": n * crop * crop * 3,
            "flip": n * crop * crop * 3,
            "normalize": n * 3 * crop * crop * 4,
            "collate": n * 3 * crop * crop * 4,
        },
    )
