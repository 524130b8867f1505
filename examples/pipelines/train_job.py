"""A training-style job whose input pipeline the placer daemon tunes while it runs.

    python -m examples.pipelines.train_job --pipeline remote-dataloader --epochs 12

It builds one of the example pipelines (data generated on first use, as the examples
do; ``remote-*`` starts its loopback shard server), starts from the pipeline's naive
config (no workers, no prefetch, no cache) unless ``--config`` names a tuned one, and
trains a linear classifier on the batches (one SGD step per batch). At each epoch's end
it reports samples/s and stage metrics to the daemon and applies the knobs the daemon
returns (:func:`placer.collectors.pipeline.epochs.run_epochs`). Without a daemon it runs with
its config. One line per epoch on stdout; ``--json`` adds a final JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from typing import Any

CLASSES = 10


class TrainStep:
    """One SGD step of a linear classifier on the batch's first floating/integer array.

    Labels come from ``batch["label"]`` when present, else from the features' row sums;
    the layer is created on the first batch (its width is the flattened sample size).
    """

    def __init__(self, lr: float = 0.05) -> None:
        self.lr = lr
        self.layer: Any = None
        self.opt: Any = None
        self.loss = float("nan")
        self.steps = 0

    @staticmethod
    def _tensors(batch: Any) -> tuple[Any, Any]:
        import torch

        def as_tensor(x: Any) -> Any:
            return x if isinstance(x, torch.Tensor) else torch.as_tensor(x)

        labels = None
        if isinstance(batch, Mapping):
            if "label" in batch:
                labels = as_tensor(batch["label"])
            arrays = [v for k, v in batch.items() if k not in ("label", "num_samples")]
            feats = next(a for a in arrays if hasattr(a, "shape") and len(a.shape) >= 1)
        elif isinstance(batch, tuple | list):
            feats = batch[0]
        else:
            feats = batch
        x = as_tensor(feats)
        x = x.reshape(x.shape[0], -1).float()
        if labels is None:
            labels = (x.sum(dim=1) * 1000).long() % CLASSES
        return x, labels.long() % CLASSES

    def __call__(self, batch: Any) -> None:
        import torch

        x, y = self._tensors(batch)
        if self.layer is None:
            torch.manual_seed(0)
            self.layer = torch.nn.Linear(x.shape[1], CLASSES)
            self.opt = torch.optim.SGD(self.layer.parameters(), lr=self.lr)
        self.opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(self.layer(x), y)
        loss.backward()
        self.opt.step()
        self.loss = float(loss.detach())
        self.steps += 1


def _knobs(config: dict[str, Any], keys: list[str]) -> str:
    return " ".join(f"{k}={config.get(k)}" for k in keys)


def daemon_attach(socket: str | None, say: Any) -> Any:
    """How this job attaches to the placer daemon (``run_epochs(attach=...)``), or None
    when ``PLACER_DAEMON=off``; it says which daemon job tunes it."""
    from placer.daemon.client import REGISTER_ENV, PipelineAgent, socket_path

    if os.environ.get(REGISTER_ENV, "auto").lower() in ("off", "0", "no", "false"):
        say(f"{REGISTER_ENV}=off: running with the job's own config")
        return None

    def attach(name: str, space: dict[str, Any], knobs: dict[str, Any]) -> PipelineAgent:
        agent = PipelineAgent(name, space, knobs, path=socket)
        say(f"daemon job {agent.job_id} tunes {', '.join(space)} (socket {socket_path(socket)})")
        return agent

    return attach


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m examples.pipelines.train_job",
        description="A training job on an example pipeline; the placer daemon (if one "
        "runs) tunes the pipeline's knobs between epochs.",
    )
    ap.add_argument("--pipeline", default="remote-dataloader", help="example pipeline name")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument(
        "--steps-per-epoch",
        type=int,
        metavar="N",
        help="end each epoch after N batches (default: the whole data set)",
    )
    ap.add_argument("--config", help="start from this config (JSON file) instead of naive")
    ap.add_argument(
        "--tune",
        help="comma-separated knobs the daemon may change (default: the integer knobs)",
    )
    ap.add_argument("--name", help="the job's name in `placer jobs` (default: the pipeline's)")
    ap.add_argument("--socket", help="daemon socket (default as `placer daemon`)")
    ap.add_argument("--json", action="store_true", help="print a JSON summary at the end")
    args = ap.parse_args(argv)

    from placer.collectors.pipeline.apply import load_config
    from placer.collectors.pipeline.epochs import knob_space, run_epochs
    from placer.collectors.pipeline.registry import load_pipeline
    from placer.errors import PlacerError

    def say(msg: str) -> None:
        print(f"train_job: {msg}", flush=True)

    try:
        defn = load_pipeline(args.pipeline)
        config = load_config(args.config) if args.config else dict(defn.naive_config)
        tune = [k.strip() for k in args.tune.split(",") if k.strip()] if args.tune else None
        keys = list(knob_space(defn, tune))
        say(f"{defn.name}: {defn.description}")
        step = TrainStep()
        rows: list[dict[str, Any]] = []
        for e in run_epochs(
            defn,
            config,
            args.epochs,
            step=step,
            tune=tune,
            name=args.name,
            attach=daemon_attach(args.socket, say),
            say=say,
            steps_per_epoch=args.steps_per_epoch,
        ):
            change = f" -> {_knobs(e.next_config, keys)}" if e.changed else ""
            print(
                f"epoch {e.index + 1:2d}: {e.samples_per_second:8.1f} samples/s "
                f"({e.samples} samples in {e.seconds:.2f} s, loss {step.loss:.3f}) "
                f"with {_knobs(e.config, keys)}{change}",
                flush=True,
            )
            rows.append(
                {
                    "epoch": e.index + 1,
                    "samples_per_second": e.samples_per_second,
                    "seconds": e.seconds,
                    "knobs": {k: e.config.get(k) for k in keys},
                    "next_knobs": {k: e.next_config.get(k) for k in keys},
                    "daemon": e.daemon,
                }
            )
    except PlacerError as exc:
        print(f"train_job: error: {exc}", file=sys.stderr)
        return 2
    first = rows[0]["samples_per_second"]
    best = max(rows, key=lambda r: r["samples_per_second"])
    print(
        f"first epoch {first:.1f} samples/s with {_knobs(rows[0]['knobs'], keys)}; best "
        f"{best['samples_per_second']:.1f} samples/s (epoch {best['epoch']}, "
        f"{_knobs(best['knobs'], keys)}): {best['samples_per_second'] / max(first, 1e-9):.1f}x",
        flush=True,
    )
    if args.json:
        print(json.dumps({"pipeline": defn.name, "epochs": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
