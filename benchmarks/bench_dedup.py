"""`python -m benchmarks.bench_dedup`: seconds to embed N synthetic commands and to find all near-duplicate pairs.

Synthetic commands recombine parts of the English seed commands (a main clause of one command
with a follow-up clause of another, polite openers and closers, other names and numbers), and
about a tenth of them repeat an earlier one with a change of case, punctuation or one word, as
generators do. Embedding and search are timed separately; search runs exact (blockwise
products, on the GPU when `--device cuda`) and with the FAISS IVF index, and the ANN recall
against the exact pairs is reported where both ran. Past `--skip-embed-above` rows, vectors are
not embedded but derived from embedded ones (each a real command's vector plus a small random
perturbation, renormalized) so the search still sees the real embeddings' distribution.

    python -m benchmarks.bench_dedup --sizes 10000,100000,1000000 --device cuda --out bench_dedup.json
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.cli.options import script_main
from pipeline.core.config import DEFAULT_BACKBONE, SEED_DIR
from pipeline.core.host import host_meta
from pipeline.core.io import write_json
from pipeline.data.dedup import ann_pairs, exact_pairs, faiss_available

log = logging.getLogger(__name__)

_SPLIT_CLAUSES = re.compile(r"(?:, (?:and |then |but |so )?| and then | and | then | so | but | because )")
OPENERS = ("", "", "", "please ", "can you ", "hey, ", "could you ", "I need you to ", "quickly ", "go ahead and ")
CLOSERS = ("", "", "", " please", " asap", " when you get a chance", " for me", " tonight", " before noon", " thanks")
CONNECTORS = (", then ", " and ", ", and also ", " and then ", ", after that ")
NAMES = ("Karen", "Omar", "Priya", "Lucas", "Mei", "Ahmed", "Sofia", "Dan", "Fatima", "Noah", "Elena", "Yusuf")
SWAPS = {"my": "the", "the": "my", "all": "every", "delete": "remove", "send": "email", "find": "look up", "show": "list"}


def command_parts(texts: list[str]) -> tuple[list[str], list[str]]:
    """Main clauses (first clause of each command) and follow-up clauses (the others)."""
    heads, tails = [], []
    for text in texts:
        clauses = [c.strip(" ,.") for c in _SPLIT_CLAUSES.split(text) if c and c.strip(" ,.")]
        if not clauses:
            continue
        heads.append(clauses[0])
        tails.extend(c for c in clauses[1:] if len(c.split()) >= 2)
    return heads, tails or heads


def near_variant(text: str, rng: np.random.Generator) -> str:
    """A generator-style repeat: another case, punctuation, or one word swapped."""
    kind = rng.integers(0, 3)
    if kind == 0:
        return text.capitalize() if text[:1].islower() else text.lower()
    if kind == 1:
        return text.rstrip(".!?") + rng.choice([".", "!", " pls", "?"])
    words = text.split()
    swappable = [i for i, w in enumerate(words) if w.lower() in SWAPS]
    if swappable:
        i = int(rng.choice(swappable))
        words[i] = SWAPS[words[i].lower()]
    return " ".join(words)


def synthetic_commands(texts: list[str], n: int, seed: int = 0, repeat_share: float = 0.1) -> list[str]:
    """`n` commands recombined from `texts` (see the module docstring), deterministic in `seed`."""
    rng = np.random.default_rng(seed)
    heads, tails = command_parts(texts)
    head_pick = rng.integers(0, len(heads), n)
    tail_pick = rng.integers(0, len(tails), n)
    with_tail = rng.random(n) < 0.97
    with_third = rng.random(n) < 0.2
    third_pick = rng.integers(0, len(tails), n)
    opener = rng.integers(0, len(OPENERS), n)
    closer = rng.integers(0, len(CLOSERS), n)
    connector = rng.integers(0, len(CONNECTORS), n)
    repeat = rng.random(n) < repeat_share
    names = re.compile(r"\b(?:" + "|".join(NAMES) + r")\b")
    out: list[str] = []
    for k in range(n):
        if repeat[k] and out:
            out.append(near_variant(out[int(rng.integers(0, len(out)))], rng))
            continue
        text = OPENERS[opener[k]] + heads[head_pick[k]]
        if with_tail[k]:
            text += CONNECTORS[connector[k]] + tails[tail_pick[k]]
            if with_third[k]:
                text += CONNECTORS[(connector[k] + 1) % len(CONNECTORS)] + tails[third_pick[k]]
        text += CLOSERS[closer[k]]
        if k % 7 == 0:
            text = names.sub(NAMES[k % len(NAMES)], text)
        if k % 11 == 0:
            text = re.sub(r"\d+", str(int(rng.integers(2, 500))), text, count=1)
        out.append(text)
    return out


def derived_vectors(base: np.ndarray, n: int, seed: int, noise: float = 0.5, repeat_share: float = 0.1) -> np.ndarray:
    """`n` unit vectors: each a random row of `base` plus Gaussian noise of norm about `noise`
    (cosine about 0.9 to it, 0.8 to its siblings), and `repeat_share` of them near-copies
    (cosine about 0.995) of an earlier vector, like generator repeats."""
    rng = np.random.default_rng(seed)
    d = base.shape[1]
    out = base[rng.integers(0, len(base), n)].astype(np.float32)
    out += rng.standard_normal(out.shape, dtype=np.float32) * (noise / np.sqrt(d))
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    repeats = np.flatnonzero(rng.random(n) < repeat_share)
    repeats = repeats[repeats > 0]
    sources = (rng.random(len(repeats)) * repeats).astype(np.int64)
    copies = out[sources] + rng.standard_normal((len(repeats), d), dtype=np.float32) * (0.1 / np.sqrt(d))
    out[repeats] = copies / np.linalg.norm(copies, axis=1, keepdims=True)
    return out


@dataclass(frozen=True)
class BenchConfig:
    """What to run: sizes, device, methods and limits (CLI arguments)."""

    sizes: list[int]
    device: str = "auto"
    search_device: str = ""  # exact search device; "" = same as device
    model: str = DEFAULT_BACKBONE
    batch_size: int = 0
    threshold: float = 0.90
    methods: tuple[str, ...] = ("exact", "ann")
    skip_embed_above: int = 0  # 0: embed every size
    exact_max: int = 0  # 0: no limit
    ann_max: int = 0
    ann_cell_rows: int = 256
    ann_nprobe: int = 16
    reference_rows: int = 0  # also time plain SentenceTransformer.encode on this many texts
    seed: int = 0


@dataclass
class BenchResult:
    environment: dict
    config: dict
    runs: list[dict] = field(default_factory=list)


def environment(device: str, model: str = DEFAULT_BACKBONE) -> dict:
    """The host (`pipeline.core.host.host_meta`), the devices and thread pools, and the embedding
    model's data hash when it is a staged LM-Action folder (None otherwise)."""
    import torch

    from pipeline.hub.manifest import model_data_hash

    env = {
        **host_meta(),
        "model_data_hash": model_data_hash(Path(model)),
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "faiss": faiss_available(),
    }
    if device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name(0)
    if faiss_available():
        import faiss

        env["faiss_version"] = faiss.__version__
        env["faiss_threads"] = faiss.omp_get_max_threads()
    return env


def timed(fn, *args, device: str = "cpu", **kwargs):
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
    started = time.perf_counter()
    value = fn(*args, **kwargs)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return value, time.perf_counter() - started


def reference_encode_seconds(texts: list[str], config: BenchConfig, device: str) -> float:
    """Plain `SentenceTransformer.encode` (float16 on GPU, batch 1024) on `texts`, seconds."""
    from sentence_transformers import SentenceTransformer

    from pipeline.core.config import resolve_model

    model = SentenceTransformer(resolve_model(config.model), device=device)
    if device.startswith("cuda"):
        model = model.half()
    model.encode(texts[:2048], batch_size=1024, show_progress_bar=False)
    _, seconds = timed(model.encode, texts, batch_size=1024, normalize_embeddings=True, show_progress_bar=False, device=device)
    return seconds


def run_bench(config: BenchConfig, seed_texts: list[str], out: Path | None = None) -> BenchResult:
    """Embed and search every size in `config.sizes`; results are written to `out` after each."""
    from pipeline.data.embeddings import TextEmbedder, auto_device

    device = auto_device() if config.device == "auto" else config.device
    result = BenchResult(environment(device, config.model), dict(config.__dict__))
    result.environment["search_device"] = config.search_device or device
    largest = max(config.sizes)
    texts = synthetic_commands(seed_texts, largest, config.seed)
    embedder = TextEmbedder(config.model, device=device, batch_size=config.batch_size)
    embedder.encode(texts[:4096], progress=False)  # warm-up: model load, kernels
    base: np.ndarray | None = None
    if config.reference_rows:
        rows = texts[: config.reference_rows]
        seconds = reference_encode_seconds(rows, config, device)
        result.runs.append({"reference_sentence_transformers_encode": {"rows": len(rows), "seconds": round(seconds, 2), "rows_per_second": round(len(rows) / seconds)}})
    for n in sorted(config.sizes):
        run: dict = {"n": n}
        if not config.skip_embed_above or n <= config.skip_embed_above:
            vectors, seconds = timed(embedder.encode, texts[:n], progress=False, device=device)
            run["embed"] = {"seconds": round(seconds, 2), "rows_per_second": round(n / seconds)}
            base = vectors
        else:
            if base is None:
                vectors = embedder.encode(texts[: min(n, 20_000)], progress=False)
                base = vectors
            vectors = derived_vectors(base, n, config.seed)
            run["embed"] = {"skipped": True, "vectors": f"derived from {len(base)} embedded commands"}
        found: dict[str, tuple] = {}
        for method in config.methods:
            limit = config.exact_max if method == "exact" else config.ann_max
            if limit and n > limit:
                run[method] = {"skipped": f"n > {limit}"}
                continue
            if method == "ann" and not faiss_available():
                run[method] = {"skipped": "faiss not installed"}
                continue
            if method == "exact":
                where = config.search_device or device
                pairs, seconds = timed(exact_pairs, vectors, config.threshold, 0, where, device=where)
            else:
                pairs, seconds = timed(ann_pairs, vectors, config.threshold, config.ann_cell_rows, config.ann_nprobe, config.seed)
            found[method] = pairs
            run[method] = {"seconds": round(seconds, 3), "pairs": int(len(pairs[0]))}
            log.info("n=%d %s: %.2fs, %d pairs", n, method, seconds, len(pairs[0]))
        if "exact" in found and "ann" in found:
            exact_set = set(zip(found["exact"][0].tolist(), found["exact"][1].tolist()))
            ann_set = set(zip(found["ann"][0].tolist(), found["ann"][1].tolist()))
            run["ann_recall"] = round(len(exact_set & ann_set) / len(exact_set), 5) if exact_set else None
        result.runs.append(run)
        log.info("n=%d: %s", n, json.dumps(run))
        if out is not None:
            write_json(out, result.__dict__)
    return result


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated row counts")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    parser.add_argument("--search-device", default="", help="device of the exact search (default: --device)")
    parser.add_argument("--model", default=DEFAULT_BACKBONE)
    parser.add_argument("--batch-size", type=int, default=0, help="0 = auto (1024 GPU, 64 CPU)")
    parser.add_argument("--threshold", type=float, default=0.90)
    parser.add_argument("--methods", default="exact,ann", help="exact, ann or both")
    parser.add_argument("--skip-embed-above", type=int, default=0, help="derive vectors instead of embedding past N rows")
    parser.add_argument("--exact-max", type=int, default=0, help="skip exact search past N rows (0: never)")
    parser.add_argument("--ann-max", type=int, default=0, help="skip ANN search past N rows (0: never)")
    parser.add_argument("--ann-cell-rows", type=int, default=256)
    parser.add_argument("--ann-nprobe", type=int, default=16)
    parser.add_argument("--reference-rows", type=int, default=0, help="also time plain SentenceTransformer.encode on N rows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="JSON output (default build/reports/bench_dedup.json)")


def main(args: argparse.Namespace) -> int:
    from pipeline.core.schema import corpus_files, load_corpus

    config = BenchConfig(
        sizes=[int(s) for s in str(args.sizes).split(",") if s],
        device=args.device,
        search_device=args.search_device,
        model=args.model,
        batch_size=args.batch_size,
        threshold=args.threshold,
        methods=tuple(m for m in args.methods.split(",") if m),
        skip_embed_above=args.skip_embed_above,
        exact_max=args.exact_max,
        ann_max=args.ann_max,
        ann_cell_rows=args.ann_cell_rows,
        ann_nprobe=args.ann_nprobe,
        reference_rows=args.reference_rows,
        seed=args.seed,
    )
    corpus = load_corpus(corpus_files(SEED_DIR))
    seed_texts = corpus.loc[corpus["lang"] == "en", "text"].tolist()
    out = args.out or Path(args.build_dir) / "reports" / "bench_dedup.json"
    result = run_bench(config, seed_texts, out)
    print(f"device: {result.environment['device']} ({result.environment.get('gpu', result.environment['cpu_model'])})")
    for run in result.runs:
        print(json.dumps(run))
    print(f"wrote {out}")
    return 0


def cli(argv: list[str] | None = None) -> int:
    """`python -m benchmarks.bench_dedup [options]`: the options of `configure_parser` and the
    stages' `--preset`, `--set`, `--build-dir`, `-v`."""
    prog, description = "python -m benchmarks.bench_dedup", __doc__.splitlines()[0]
    return script_main(prog, description, configure_parser, main, argv=argv)


if __name__ == "__main__":
    sys.exit(cli())
