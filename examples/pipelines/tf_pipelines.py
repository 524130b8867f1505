"""tf.data versions of (a) images and (c) tabular, in native TF ops on the same data."""

from __future__ import annotations

from typing import Any

from placer.collectors.pipeline.adapters.tfdata import TfSpec, TfStage, _tf
from examples.pipelines import images, tabular


def images_spec(size: str | None = None) -> TfSpec:
    tf = _tf()
    root, p = images.dataset(size)
    files = sorted(str(f) for f in root.glob("*.jpg"))
    crop = p["crop"]
    # numpy constants, not tf.constant: no TF runtime may start before measure() forks
    mean = images.MEAN.reshape(3, 1, 1)
    std = images.STD.reshape(3, 1, 1)

    def read(path: Any) -> Any:
        return tf.io.read_file(path)

    def decode(data: Any) -> Any:
        return tf.io.decode_jpeg(data, channels=3)

    def random_resized_crop(img: Any) -> Any:
        begin, size, _ = tf.image.sample_distorted_bounding_box(
            tf.shape(img),
            bounding_boxes=tf.zeros([1, 0, 4]),
            area_range=(0.35, 1.0),
            aspect_ratio_range=(3 / 4, 4 / 3),
            max_attempts=10,
            use_image_if_no_bounding_boxes=True,
        )
        return tf.image.resize(tf.slice(img, begin, size), [crop, crop])

    def flip(img: Any) -> Any:
        return tf.image.random_flip_left_right(img)

    def normalize(img: Any) -> Any:
        return (tf.transpose(img, [2, 0, 1]) / 255.0 - mean) / std

    base = images.spec(size)
    return TfSpec(
        name="images",
        items=lambda: files,
        stages=[
            TfStage("read", read, max_parallelism=16),
            TfStage("decode", decode),
            TfStage("crop", random_resized_crop, random=True),
            TfStage("flip", flip, random=True),
            TfStage("normalize", normalize),
        ],
        batch_size=p["batch"],
        description=base.description,
        source=str(root),
        materialized_bytes={k: v for k, v in base.materialized_bytes.items() if k != "collate"},
    )


def tabular_spec(size: str | None = None) -> TfSpec:
    tf = _tf()
    root, p = tabular.dataset(size)
    files = sorted(str(f) for f in (root / "chunks").glob("part_*.csv"))
    n_cat = len(tabular.CATEGORICAL)

    def read(path: Any) -> Any:
        return tf.io.read_file(path)

    def parse(data: Any) -> Any:
        lines = tf.strings.split(tf.strings.strip(data), "\n")
        # built while tracing (in the measuring process), not before measure() forks
        defaults = [tf.constant([], tf.int64)] + [tf.constant([], tf.string)] * n_cat
        defaults += [tf.constant([], tf.float32), tf.constant([], tf.int32)]
        cols = tf.io.decode_csv(lines, record_defaults=defaults)
        return dict(zip(tabular.COLUMNS, cols, strict=True))

    def hash_features(row: Any) -> Any:
        cats = tf.stack(
            [
                tf.strings.to_hash_bucket_fast(row[c], tabular.HASH_BUCKETS)
                for c in tabular.CATEGORICAL
            ],
            axis=1,
        )
        hour = tf.cast((row["ts"] // 3600) % 24, tf.float32)
        dense = tf.stack([tf.math.log1p(row["price"]), hour / 23.0], axis=1)
        return {"categorical": cats, "dense": dense, "label": tf.cast(row["clicked"], tf.float32)}

    def flatten(batch: Any) -> Any:
        return {
            "categorical": tf.reshape(batch["categorical"], [-1, n_cat]),
            "dense": tf.reshape(batch["dense"], [-1, 2]),
            "label": tf.reshape(batch["label"], [-1]),
        }

    base = tabular.spec(size)
    return TfSpec(
        name="tabular",
        items=lambda: files,
        stages=[
            TfStage("read", read),
            TfStage("parse", parse),
            TfStage("hash", hash_features),
        ],
        batch_size=p["batch"],
        samples_per_element=p["chunk_rows"],
        description=base.description,
        source=str(root / "chunks"),
        materialized_bytes={k: v for k, v in base.materialized_bytes.items() if k != "collate"},
        finalize=flatten,
    )
