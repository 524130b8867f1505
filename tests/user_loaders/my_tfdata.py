"""A user's own tf.data pipeline: range → spectrum (one parallel call) → batch."""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402 - after the log level


def _spectrum(i: Any) -> Any:
    x = tf.random.stateless_normal([16384], seed=tf.stack([i, tf.constant(0, tf.int64)]))
    for _ in range(4):
        x = tf.abs(tf.signal.rfft(tf.reshape(tf.tile(x, [2]), [-1])[:16384])) ** 0.5
    return x[:256]


def make_dataset() -> Any:
    ds = tf.data.Dataset.range(1024).map(_spectrum, num_parallel_calls=1)
    return ds.batch(32)


def empty_dataset() -> Any:
    return tf.data.Dataset.range(0).batch(4)
