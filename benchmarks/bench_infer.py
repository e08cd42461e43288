"""`python -m benchmarks.bench_infer`: single-command latency (p50/p95) and batch throughput of every inference
backend in one run, with the ratio to PyTorch fp32, and each backend's macro-F1, label flips and
decision agreement against PyTorch fp32 on the test split. A benchmark, not a test: numbers
depend on the machine and its load.

Two PyTorch fp32 rows: `torch-fp32` goes through the project's `Predictor` (Rust tokenizer,
batches sorted by token count) and is the baseline for every ratio; `transformers-loop` is the
loop people write without it (tokenizer with `padding=True`, batches of 32 in input order), shown
so the batching's own gain is visible.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
import pandas as pd

from pipeline.cli.options import script_main, show_table
from pipeline.core.config import BuildLayout
from pipeline.core.decision import Thresholds, decisions_from_probabilities
from pipeline.core.host import host_meta
from pipeline.core.schema import ATTRIBUTE_NAMES, ATTRIBUTES_BY_NAME, TEXT
from pipeline.hub.manifest import model_data_hash
from pipeline.model.inference import ONNX_DIR, ONNX_FP32, ONNX_INT8, Predictor, PredictorConfig
from pipeline.model.metrics import gold_classes, macro_f1, predicted_classes
from pipeline.model.onnx_export import VARIANTS as VARIANT_NOTES
from pipeline.report.markdown import fmt, markdown_table

log = logging.getLogger(__name__)

BASELINE = "torch-fp32"
PLAIN = "transformers-loop"
PLAIN_BATCH_SIZE = 32
VERIFY_MARGIN = 0.05  # the onnx-int8-verify row: fp32 re-score within this of a threshold
CALIBRATION_ROWS = 512  # validation commands for the static variant's activation ranges


class Model(Protocol):
    thresholds: Thresholds
    backend_detail: str

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray: ...


class TransformersLoop:
    """The reference loop: `AutoTokenizer` + `AutoModelForSequenceClassification`, fixed-size
    batches in input order, each padded to its longest member."""

    def __init__(self, model_dir: Path, threads: int | None, batch_size: int = PLAIN_BATCH_SIZE):
        import torch
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
        self.thresholds = Thresholds.from_config(AutoConfig.from_pretrained(model_dir))
        self.batch_size = batch_size
        self.backend_detail = f"transformers torch cpu, batches of {batch_size} in input order"

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                enc = self.tokenizer(
                    list(texts[i : i + self.batch_size]),
                    padding=True,
                    truncation=True,
                    max_length=128,
                    return_tensors="pt",
                )
                out.append(torch.sigmoid(self.model(**enc).logits).numpy())
        return np.vstack(out)


@dataclass(frozen=True)
class Backend:
    name: str
    config: PredictorConfig | None  # None: the plain transformers loop


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
    throughput_vs_plain: float = 1.0
    label_flips: int = 0  # attribute labels that differ from torch-fp32's, over the test split
    decision_agreement: float = 1.0  # share of test commands with torch-fp32's gate decision
    max_abs_diff: float = 0.0  # largest probability difference from torch-fp32
    p99_abs_diff: float = 0.0  # 99th percentile over commands of each command's largest difference
    # the farthest from its threshold that a torch-fp32 probability was while this backend put it
    # on the other side: decisions agree wherever every probability is farther than this
    flip_margin: float = 0.0


def backends(
    model_dir: Path, threads: int, batch_size: int, plain: bool = True, variants: dict[str, Path] | None = None
) -> list[Backend]:
    """torch fp32 first (the baseline), the plain loop, torch int8, every ONNX file present and
    the quantization `variants` (name -> ONNX file)."""
    common = dict(num_threads=threads, batch_size=batch_size, device="cpu")
    out = [Backend(BASELINE, PredictorConfig(backend="torch", **common))]
    if plain:
        out.append(Backend(PLAIN, None))
    out.append(Backend("torch-int8", PredictorConfig(backend="torch", torch_int8=True, **common)))
    for name, file in (("onnx-fp32", ONNX_FP32), ("onnx-int8", ONNX_INT8)):
        if (model_dir / ONNX_DIR / file).is_file():
            out.append(Backend(name, PredictorConfig(backend="onnx", onnx_file=file, **common)))
    if all((model_dir / ONNX_DIR / f).is_file() for f in (ONNX_FP32, ONNX_INT8)):
        config = PredictorConfig(backend="onnx", onnx_file=ONNX_INT8, verify_margin=VERIFY_MARGIN, **common)
        out.append(Backend("onnx-int8-verify", config))
    for name, path in (variants or {}).items():
        out.append(Backend(f"onnx-{name}", PredictorConfig(backend="onnx", onnx_file=str(Path(path).resolve()), **common)))
    return out


def latency_ms(model: Model, texts: list[str], warmup: int = 20) -> np.ndarray:
    """Wall time of one `predict_proba([text])` call per text, in milliseconds."""
    for text in texts[:warmup]:
        model.predict_proba([text])
    times = []
    for text in texts:
        start = time.perf_counter()
        model.predict_proba([text])
        times.append((time.perf_counter() - start) * 1000)
    return np.asarray(times)


def throughput(model: Model, texts: list[str], repeats: int = 3) -> tuple[float, np.ndarray]:
    """Commands per second over `texts` in one call (best of `repeats`), and its probabilities."""
    model.predict_proba(texts[:64])
    best, probs = 0.0, None
    for _ in range(repeats):
        start = time.perf_counter()
        probs = model.predict_proba(texts)
        best = max(best, len(texts) / (time.perf_counter() - start))
    return best, probs


def _load(model_dir: Path, backend: Backend, threads: int) -> Model:
    if backend.config is None:
        return TransformersLoop(model_dir, threads)
    return Predictor(model_dir, backend.config)


@dataclass
class Measurement:
    detail: str
    thresholds: Thresholds
    latencies_ms: np.ndarray
    throughput_per_s: float
    probs: np.ndarray


def measure(model_dir: Path, backend: Backend, threads: int, texts: list[str], single: list[str], repeats: int) -> Measurement:
    """Load one backend and time it; a top-level function so it can run in a fresh process."""
    model = _load(model_dir, backend, threads)
    latencies = latency_ms(model, single)
    rate, probs = throughput(model, texts, repeats)
    return Measurement(model.backend_detail, model.thresholds, latencies, rate, probs)


def _measure_isolated(*args) -> Measurement:
    """`measure` in a fresh interpreter, so no backend runs beside another's idle thread pools."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(measure, *args).result()


def run_benchmark(
    model_dir: Path,
    test: pd.DataFrame,
    threads: int,
    batch_size: int,
    latency_n: int,
    plain: bool = True,
    repeats: int = 3,
    isolate: bool = True,
    variants: dict[str, Path] | None = None,
) -> list[BackendResult]:
    from tqdm.auto import tqdm

    texts = test[TEXT].tolist()
    rng = np.random.default_rng(0)
    single = [texts[i] for i in rng.choice(len(texts), size=min(latency_n, len(texts)), replace=False)]
    gold = gold_classes(test)
    results: list[BackendResult] = []
    base_probs: np.ndarray | None = None
    base_labels = base_decisions = None
    run = _measure_isolated if isolate else measure
    for backend in tqdm(backends(model_dir, threads, batch_size, plain, variants), desc="bench-infer", unit="backend"):
        m = run(model_dir, backend, threads, texts, single, repeats)
        thresholds = m.thresholds.as_array()
        predicted = predicted_classes(m.probs, thresholds)
        labels = np.column_stack([predicted[name] for name in ATTRIBUTE_NAMES])
        decisions = np.asarray(decisions_from_probabilities(m.probs, m.thresholds))
        if base_probs is None:
            base_probs, base_labels, base_decisions = m.probs, labels, decisions
        diff = np.abs(m.probs - base_probs).max(axis=1)
        crossed = (m.probs >= thresholds) != (base_probs >= thresholds)
        margin = np.abs(base_probs - thresholds)[crossed]
        result = BackendResult(
            name=backend.name,
            detail=m.detail,
            p50_ms=float(np.percentile(m.latencies_ms, 50)),
            p95_ms=float(np.percentile(m.latencies_ms, 95)),
            throughput_per_s=m.throughput_per_s,
            macro_f1={
                name: macro_f1(gold[name], predicted[name], len(ATTRIBUTES_BY_NAME[name].values))
                for name in ATTRIBUTE_NAMES
            },
            label_flips=int((labels != base_labels).sum()),
            decision_agreement=float((decisions == base_decisions).mean()),
            max_abs_diff=float(diff.max()),
            p99_abs_diff=float(np.percentile(diff, 99)),
            flip_margin=float(margin.max()) if margin.size else 0.0,
        )
        log.info(
            "%s: p50 %.2f ms, p95 %.2f ms, %.0f commands/s",
            result.name, result.p50_ms, result.p95_ms, result.throughput_per_s,
        )
        results.append(result)
    base = results[0]
    plain_rate = next((r.throughput_per_s for r in results if r.name == PLAIN), None)
    for r in results:
        r.p50_speedup = base.p50_ms / r.p50_ms
        r.throughput_ratio = r.throughput_per_s / base.throughput_per_s
        r.throughput_vs_plain = r.throughput_per_s / plain_rate if plain_rate else float("nan")
    return results


def largest_f1_loss(results: list[BackendResult], name: str) -> float:
    """Largest macro-F1 drop in points, over the attributes, of backend `name` against torch-fp32."""
    base = results[0].macro_f1
    other = next(r for r in results if r.name == name).macro_f1
    return max(100 * (base[a] - other[a]) for a in ATTRIBUTE_NAMES)


def format_markdown(results: list[BackendResult], meta: dict) -> str:
    has_plain = any(r.name == PLAIN for r in results)
    libraries = ", ".join(f"{name} {version or 'not installed'}" for name, version in meta["libraries"].items())
    data_hash = f"`{meta['model_data_hash']}`" if meta.get("model_data_hash") else "none in the model folder"
    lines = [
        "# Inference benchmark",
        "",
        f"Model `{meta['model_dir']}`, {meta['threads']} threads, batch size {meta['batch_size']}, "
        f"{meta['latency_n']} single-command calls, {meta['test_rows']} test commands; CPU: {meta['cpu']}.",
        f"Libraries: {libraries}; model data hash: {data_hash}.",
        "Ratios are against `torch-fp32`: the same weights in PyTorch through the same batching.",
        f"`onnx-int8-verify`: int8, with commands that have an output within {VERIFY_MARGIN} of its "
        "threshold re-scored in fp32.",
        *[f"`onnx-{name}`: {note}." for name, note in (meta.get("variants") or {}).items()],
        "",
        "| backend | p50 ms | p95 ms | speed-up (p50) | commands/s | throughput vs torch-fp32 |"
        + (" vs transformers-loop |" if has_plain else ""),
        "|---|---:|---:|---:|---:|---:|" + ("---:|" if has_plain else ""),
    ]
    for r in results:
        lines.append(
            f"| {r.name} | {r.p50_ms:.2f} | {r.p95_ms:.2f} | {r.p50_speedup:.2f}x | "
            f"{r.throughput_per_s:.0f} | {r.throughput_ratio:.2f}x |"
            + (f" {r.throughput_vs_plain:.2f}x |" if has_plain else "")
        )
    lines += ["", "Macro-F1 on the test split:", "", "| backend | " + " | ".join(ATTRIBUTE_NAMES) + " |"]
    lines.append("|---|" + "---:|" * len(ATTRIBUTE_NAMES))
    for r in results:
        lines.append(f"| {r.name} | " + " | ".join(f"{r.macro_f1[a]:.4f}" for a in ATTRIBUTE_NAMES) + " |")
    n = meta["test_rows"]
    lines += [
        "",
        f"Against torch-fp32 on the same {n} test commands ({n * len(ATTRIBUTE_NAMES)} attribute labels):",
        "",
        "| backend | largest macro-F1 loss (points) | label flips | same decision | max abs. prob. diff | p99 "
        "| decisions agree beyond |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results[1:]:
        lines.append(
            f"| {r.name} | {largest_f1_loss(results, r.name):.2f} | {r.label_flips} | "
            f"{100 * r.decision_agreement:.1f}% | {r.max_abs_diff:.3f} | {r.p99_abs_diff:.3f} | "
            f"{r.flip_margin:.3f} |"
        )
    lines += [
        "",
        "Decisions agree beyond: no probability farther than this from its threshold (on torch-fp32's "
        "side) landed on the other side of it.",
    ]
    lines += ["", f"![latency and throughput]({meta.get('plot', 'bench_infer.png')})"]
    return "\n".join(lines) + "\n"


README_BLOCK = "bench_infer table"


def readme_table(report: dict, source: str) -> str:
    """The README's table of one benchmark report (the JSON `main` writes): speed and what each
    backend loses against torch-fp32, with the host it ran on."""
    results = [BackendResult(**r) for r in report["results"]]
    meta = report["meta"]
    rows = [
        [f"`{r.name}`", r.p50_ms, r.p95_ms, round(r.throughput_per_s),
         largest_f1_loss(results, r.name) if i else None, f"{100 * r.decision_agreement:.1f}%"]
        for i, r in enumerate(results)
    ]
    table = markdown_table(
        ["backend", "p50 ms / command", "p95 ms", "commands/s batched",
         "largest macro-F1 loss vs torch-fp32 (points)", "same decision as torch-fp32"],
        [[fmt(v, 2) if isinstance(v, float) else v for v in row] for row in rows],
        right_aligned=range(1, 6),
    )
    return (
        f"{table}\n\nFrom [`{source}`]({source}): model `{meta['model_dir']}` (data hash "
        f"`{(meta.get('model_data_hash') or 'none')[:12]}`), {meta['threads']} threads, batch size "
        f"{meta['batch_size']}, {meta['latency_n']} single-command calls, {meta['test_rows']} test "
        f"commands; CPU: {meta['cpu']}."
    )


def plot(results: list[BackendResult], path: Path) -> None:
    from pipeline.report.plots import pyplot

    plt = pyplot()
    names = [r.name for r in results]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    colors = ["#7f7f7f" if n in (BASELINE, PLAIN) else "#1f77b4" for n in names]
    left.barh(names, [r.p50_ms for r in results], color=colors)
    left.errorbar([r.p95_ms for r in results], names, fmt="|", color="black", label="p95")
    left.set_xlabel("single command, p50 ms (bar) and p95 (mark)")
    left.invert_yaxis()
    right.barh(names, [r.throughput_per_s for r in results], color=colors)
    right.set_xlabel("batch throughput, commands/s")
    right.invert_yaxis()
    right.set_yticklabels([])
    fig.suptitle("LM-Action inference on CPU")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, help="model folder (default: build/hub/model, else build/model)")
    parser.add_argument("--test", type=Path, help="test split parquet (default: build/data/splits/test.parquet)")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads for every backend")
    parser.add_argument("--batch-size", type=int, default=PredictorConfig.batch_size)
    parser.add_argument("--latency-n", type=int, default=300, help="single-command calls to time")
    parser.add_argument("--no-plain", action="store_true", help="skip the plain transformers loop")
    parser.add_argument(
        "--same-process", action="store_true", help="measure every backend in this process (faster, less fair)"
    )
    parser.add_argument(
        "--variants",
        action="store_true",
        help="also export and time the other int8 variants (dense-only, static, weight-only), "
        "calibrated on the validation split, under build/cache/onnx-variants",
    )
    parser.add_argument("--out", type=Path, help="JSON output (default: build/reports/bench_infer.json)")
    parser.add_argument("--table", type=Path, help="print (or with --readme, rewrite) the README table of this JSON")
    parser.add_argument("--readme", type=Path, help="with --table: the Markdown file whose table block to rewrite")


def main(args: argparse.Namespace) -> int:
    if args.table:
        report = json.loads(args.table.read_text(encoding="utf-8"))
        return show_table(readme_table(report, args.table.as_posix()), README_BLOCK, args.readme)
    layout = BuildLayout(args.build_dir)
    model_dir = args.model or (layout.hub_model if (layout.hub_model / "config.json").is_file() else layout.model)
    test_path = args.test or layout.splits / "test.parquet"
    if not test_path.is_file():
        raise SystemExit(f"error: {test_path} not found; run `python -m pipeline split` first")
    if args.threads < 1 or args.batch_size < 1 or args.latency_n < 1:
        raise SystemExit("error: --threads, --batch-size and --latency-n must be at least 1")
    test = pd.read_parquet(test_path)
    variants = None
    if args.variants:
        from pipeline.model.onnx_export import export_variants

        validation_path = test_path.with_name("validation.parquet")
        if not validation_path.is_file():
            raise SystemExit(f"error: --variants calibrates on {validation_path}, which is missing")
        calibration = pd.read_parquet(validation_path)[TEXT].tolist()[:CALIBRATION_ROWS]
        variants = export_variants(model_dir, layout.cache / "onnx-variants", calibration)
    host = host_meta()
    results = run_benchmark(
        model_dir,
        test,
        args.threads,
        args.batch_size,
        args.latency_n,
        plain=not args.no_plain,
        isolate=not args.same_process,
        variants=variants,
    )
    meta = {
        "model_dir": str(model_dir),
        "threads": args.threads,
        "batch_size": args.batch_size,
        "latency_n": args.latency_n,
        "test_rows": len(test),
        "isolated": not args.same_process,
        "variants": {name: VARIANT_NOTES[name] for name in variants or {}},
        **host,
        "cpu": f"{host['usable_cores']} of {host['logical_cores']} logical cores usable, {host['cpu_model']}",
        "model_data_hash": model_data_hash(model_dir),
    }
    out = args.out or layout.reports / "bench_infer.json"
    meta["plot"] = out.with_suffix(".png").name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "results": [asdict(r) for r in results]}, indent=2))
    plot(results, out.with_suffix(".png"))
    markdown = format_markdown(results, meta)
    out.with_suffix(".md").write_text(markdown)
    print(markdown)
    return 0


def cli(argv: list[str] | None = None) -> int:
    """`python -m benchmarks.bench_infer [options]`: the options of `configure_parser` and the
    stages' `--preset`, `--set`, `--build-dir`, `-v`."""
    prog, description = "python -m benchmarks.bench_infer", __doc__.splitlines()[0]
    return script_main(prog, description, configure_parser, main, argv=argv)


if __name__ == "__main__":
    sys.exit(cli())
