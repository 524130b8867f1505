"""(b) Text: JSONL corpus → read → tokenize (BPE trained locally with ``tokenizers``) →
batch → pack into fixed-length rows.

Data: a deterministic synthetic corpus (Zipf-distributed words built from syllables,
documents of varying length) and a BPE tokenizer trained on it once; no hub downloads.
A sample is one document; ``num_samples`` in a batch says how many documents it packs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from placer.collectors.pipeline.spec import PipelineSpec, StageSpec
from examples.pipelines.common import cached_dataset, size_name

PARAMS = {
    "tiny": {"docs": 64, "words": (20, 80), "vocab": 500, "seq": 64, "batch": 8},
    "small": {"docs": 3000, "words": (80, 600), "vocab": 4000, "seq": 256, "batch": 32},
}
SYLLABLES = [c + v for c in "bcdfghjklmnprstvwz" for v in ("a", "e", "i", "o", "u", "ai", "ou")]


def _make(docs: int, words: tuple[int, int], vocab: int) -> Any:
    def make(out: Path) -> None:
        from tokenizers import Tokenizer, models, pre_tokenizers, trainers

        rng = np.random.default_rng(7)
        lexicon = ["".join(rng.choice(SYLLABLES, size=rng.integers(1, 4))) for _ in range(20000)]
        ranks = np.arange(1, len(lexicon) + 1)
        p = 1.0 / ranks**1.1
        p /= p.sum()
        offsets = []
        with open(out / "corpus.jsonl", "wb") as fh:
            for i in range(docs):
                n = int(rng.integers(*words))
                ws = rng.choice(len(lexicon), size=n, p=p)
                text = " ".join(lexicon[w] for w in ws) + "."
                line = json.dumps({"id": i, "text": text}).encode() + b"\n"
                offsets.append((fh.tell(), len(line)))
                fh.write(line)
        (out / "offsets.json").write_text(json.dumps(offsets))
        tok = Tokenizer(models.BPE(unk_token="[UNK]"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab, special_tokens=["[UNK]", "[PAD]", "[EOS]"], show_progress=False
        )

        def texts() -> Any:
            with open(out / "corpus.jsonl", encoding="utf-8") as fh:
                for line in fh:
                    yield json.loads(line)["text"]

        tok.train_from_iterator(texts(), trainer=trainer)
        tok.save(str(out / "tokenizer.json"))

    return make


def dataset(size: str | None = None) -> tuple[Path, dict[str, Any]]:
    size = size or size_name()
    p = PARAMS[size]
    params = {"size": size, "docs": p["docs"], "words": list(p["words"]), "vocab": p["vocab"]}
    root = cached_dataset("text", {**params, "v": 1}, _make(p["docs"], p["words"], p["vocab"]))
    return root, p


class ReadLine:
    """Read document ``(offset, length)`` of the JSONL file and return its text."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._pid = -1

    def __call__(self, item: tuple[int, int]) -> str:
        if self._fd is None or self._pid != os.getpid():
            self._fd = os.open(self.path, os.O_RDONLY)
            self._pid = os.getpid()
        off, n = item
        return str(json.loads(os.pread(self._fd, n, off))["text"])

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])  # type: ignore[misc]


class Tokenize:
    """Text → token ids with the locally trained tokenizer (loaded once per process)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._tok: Any = None

    def __call__(self, text: str) -> np.ndarray:
        if self._tok is None:
            from tokenizers import Tokenizer

            self._tok = Tokenizer.from_file(self.path)
        return np.asarray(self._tok.encode(text).ids, dtype=np.int32)

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])  # type: ignore[misc]


class Pack:
    """Concatenate a batch of documents (each + EOS) and cut rows of ``seq`` tokens.

    The last row is padded with PAD; ``attention_mask`` marks real tokens.
    """

    def __init__(self, seq: int, eos: int, pad: int) -> None:
        self.seq = seq
        self.eos = eos
        self.pad = pad

    def __call__(self, docs: list[np.ndarray]) -> dict[str, Any]:
        eos = np.array([self.eos], dtype=np.int32)
        flat = np.concatenate([x for d in docs for x in (d, eos)])
        rows = -(-len(flat) // self.seq)
        ids = np.full(rows * self.seq, self.pad, dtype=np.int64)
        ids[: len(flat)] = flat
        mask = np.zeros(rows * self.seq, dtype=np.int8)
        mask[: len(flat)] = 1
        return {
            "input_ids": ids.reshape(rows, self.seq),
            "attention_mask": mask.reshape(rows, self.seq),
            "num_samples": len(docs),
        }


def spec(size: str | None = None) -> PipelineSpec:
    # Import the stages' libraries now, as a job does at start: trials fork from this
    # process and would otherwise pay the import inside their first epoch.
    import tokenizers  # noqa: F401

    root, p = dataset(size)
    offsets = [tuple(o) for o in json.loads((root / "offsets.json").read_text())]
    corpus = str(root / "corpus.jsonl")
    tok_path = str(root / "tokenizer.json")
    vocab = json.loads(Path(tok_path).read_text())["model"]["vocab"]
    corpus_bytes = os.path.getsize(corpus)
    text_bytes = corpus_bytes - 20 * len(offsets)  # minus the JSON wrapper, roughly
    return PipelineSpec(
        name="text",
        items=lambda: offsets,
        stages=[
            StageSpec("read", ReadLine(corpus), kind="source", max_parallelism=8),
            StageSpec("tokenize", Tokenize(tok_path)),
            StageSpec("pack", Pack(p["seq"], vocab["[EOS]"], vocab["[PAD]"]), kind="collate"),
        ],
        batch_size=p["batch"],
        description=(
            f"{len(offsets)} JSONL docs → tokenize (BPE {p['vocab']}) → batch {p['batch']} "
            f"→ pack rows of {p['seq']}"
        ),
        source=corpus,
        # tokens take ~4 bytes each and ~1 token per 4-5 characters of text
        materialized_bytes={
            "read": text_bytes,
            "tokenize": text_bytes,
            "pack": 2 * text_bytes,
        },
    )
