"""`bench-infer`: single-command latency (p50/p95) and batch throughput of every inference
backend in one run, with the ratio to plain PyTorch fp32, and each backend's macro-F1 on the
test split. A benchmark, not a test: numbers depend on the machine and its load."""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from pipeline.config import BuildLayout
from pipeline.decision import labels_from_probabilities
from pipeline.inference import ONNX_DIR, ONNX_FP32, ONNX_INT8, Predictor, PredictorConfig
from pipeline.schema import ATTRIBUTE_NAMES, TEXT

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backend:
    name: str
    config: PredictorConfig


@dataclass
class BackendResult:
    name: str
    detail: str
    p50_ms: float
    p95_ms: float
    throughput_per_s: float
    macro_f1: dict[str, float] = field(default_factory=dict)
    p50_speedup: float = 1.0
    throughput_ratio: float = 1.0


def backends(model_dir: Path, threads: int, batch_size: int) -> list[Backend]:
    """Plain torch fp32 first (the baseline), then torch int8 and every ONNX file present."""
    common = dict(num_threads=threads, batch_size=batch_size, device="cpu")
    out = [
        Backend("torch-fp32", PredictorConfig(backend="torch", **common)),
        Backend("torch-int8", PredictorConfig(backend="torch", torch_int8=True, **common)),
    ]
    for name, file in (("onnx-fp32", ONNX_FP32), ("onnx-int8", ONNX_INT8)):
        if (model_dir / ONNX_DIR / file).is_file():
            out.append(Backend(name, PredictorConfig(backend="onnx", onnx_file=file, **common)))
    return out


def latency_ms(predictor: Predictor, texts: list[str], warmup: int = 20) -> np.ndarray:
    """Wall time of one `predict_proba([text])` call per text, in milliseconds."""
    for text in texts[:warmup]:
        predictor.predict_proba([text])
    times = []
    for text in texts:
        start = time.perf_counter()
        predictor.predict_proba([text])
        times.append((time.perf_counter() - start) * 1000)
    return np.asarray(times)


def throughput(predictor: Predictor, texts: list[str], repeats: int = 2) -> float:
    """Commands per second over `texts` in batches (best of `repeats`)."""
    predictor.predict_proba(texts[: predictor.config.batch_size * 2])
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        predictor.predict_proba(texts)
        best = max(best, len(texts) / (time.perf_counter() - start))
    return best


def macro_f1(predictor: Predictor, frame: pd.DataFrame) -> dict[str, float]:
    probs = predictor.predict_proba(frame[TEXT].tolist())
    predicted = pd.DataFrame([labels_from_probabilities(p, predictor.thresholds) for p in probs])
    return {
        name: float(f1_score(frame[name], predicted[name], average="macro", zero_division=0))
        for name in ATTRIBUTE_NAMES
    }


def run_benchmark(
    model_dir: Path, test: pd.DataFrame, threads: int, batch_size: int, latency_n: int
) -> list[BackendResult]:
    texts = test[TEXT].tolist()
    rng = np.random.default_rng(0)
    single = [texts[i] for i in rng.choice(len(texts), size=min(latency_n, len(texts)), replace=False)]
    results: list[BackendResult] = []
    for backend in backends(model_dir, threads, batch_size):
        predictor = Predictor(model_dir, backend.config)
        lat = latency_ms(predictor, single)
        result = BackendResult(
            name=backend.name,
            detail=predictor.backend_detail,
            p50_ms=float(np.percentile(lat, 50)),
            p95_ms=float(np.percentile(lat, 95)),
            throughput_per_s=throughput(predictor, texts),
            macro_f1=macro_f1(predictor, test),
        )
        log.info("%s: p50 %.2f ms, p95 %.2f ms, %.0f commands/s", result.name, result.p50_ms, result.p95_ms, result.throughput_per_s)
        results.append(result)
    base = results[0]
    for r in results:
        r.p50_speedup = base.p50_ms / r.p50_ms
        r.throughput_ratio = r.throughput_per_s / base.throughput_per_s
    return results


def format_markdown(results: list[BackendResult], meta: dict) -> str:
    lines = [
        "# Inference benchmark",
        "",
        f"Model `{meta['model_dir']}`, {meta['threads']} threads, batch size {meta['batch_size']}, "
        f"{meta['latency_n']} single-command calls, {meta['test_rows']} test commands; CPU: {meta['cpu']}.",
        "",
        "| backend | p50 ms | p95 ms | speed-up (p50) | commands/s | throughput vs torch-fp32 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.name} | {r.p50_ms:.2f} | {r.p95_ms:.2f} | {r.p50_speedup:.2f}x | "
            f"{r.throughput_per_s:.0f} | {r.throughput_ratio:.2f}x |"
        )
    lines += ["", "Macro-F1 on the test split:", "", "| backend | " + " | ".join(ATTRIBUTE_NAMES) + " |"]
    lines.append("|---|" + "---:|" * len(ATTRIBUTE_NAMES))
    for r in results:
        lines.append(f"| {r.name} | " + " | ".join(f"{r.macro_f1[a]:.4f}" for a in ATTRIBUTE_NAMES) + " |")
    base = results[0].macro_f1
    lines += ["", "Largest macro-F1 loss against torch-fp32 (points):", ""]
    for r in results[1:]:
        loss = max(100 * (base[a] - r.macro_f1[a]) for a in ATTRIBUTE_NAMES)
        lines.append(f"- {r.name}: {loss:.2f}")
    return "\n".join(lines) + "\n"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, help="model folder (default: build/hub/model, else build/model)")
    parser.add_argument("--test", type=Path, help="test split parquet (default: build/data/splits/test.parquet)")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads for every backend")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--latency-n", type=int, default=300, help="single-command calls to time")
    parser.add_argument("--out", type=Path, help="JSON output (default: build/reports/bench_infer.json)")


def main(args: argparse.Namespace) -> int:
    layout = BuildLayout(args.build_dir)
    model_dir = args.model or (layout.hub_model if (layout.hub_model / "config.json").is_file() else layout.model)
    test_path = args.test or layout.splits / "test.parquet"
    if not test_path.is_file():
        raise SystemExit(f"error: {test_path} not found; run `python -m pipeline split` first")
    test = pd.read_parquet(test_path)
    results = run_benchmark(model_dir, test, args.threads, args.batch_size, args.latency_n)
    meta = {
        "model_dir": str(model_dir),
        "threads": args.threads,
        "batch_size": args.batch_size,
        "latency_n": args.latency_n,
        "test_rows": len(test),
        "cpu": f"{os.cpu_count()} logical cores",
    }
    out = args.out or layout.reports / "bench_infer.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "results": [asdict(r) for r in results]}, indent=2))
    markdown = format_markdown(results, meta)
    out.with_suffix(".md").write_text(markdown)
    print(markdown)
    return 0
