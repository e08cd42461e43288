"""`compare`: one table of several trained models (backbones, presets), each read from the
reports its own run wrote (`eval.json`, `train.json` and, when present, `bench_infer.json`).

    python -m pipeline compare --run minilm=results/model-v2/minilm-gpu-full \
        --run e5=results/model-v2/e5-gpu-full --out results/model-v2

writes `comparison.json` (every figure, with the file it came from) and `comparison.md` (the
tables generated from it). Nothing in the table is typed: a run without a file leaves its
columns empty.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.core.io import read_json
from pipeline.core.schema import ATTRIBUTE_NAMES, LANGUAGES
from pipeline.data.split import CHALLENGE
from pipeline.report.eval_report import MODEL_KEY
from pipeline.report.markdown import table_lines

BENCH_BACKENDS = ("torch-fp32", "onnx-fp32", "onnx-int8")


def summarize_run(name: str, folder: Path) -> dict:
    """The figures of one run folder that the comparison shows."""
    evaluation = read_json(folder / "eval.json")
    if evaluation is None:
        raise FileNotFoundError(f"run {name!r}: {folder / 'eval.json'} is missing")
    train = read_json(folder / "train.json") or evaluation.get("train") or {}
    bench = read_json(folder / "bench_infer.json")
    ours = evaluation["models"][MODEL_KEY]
    test = ours["test"]
    out: dict = {
        "name": name,
        "folder": str(folder),
        "backbone": (train.get("config") or {}).get("backbone"),
        "device": train.get("device"),
        "command": train.get("command"),
        "train_wall_s": train.get("wall_time_s"),
        "steps": train.get("global_step"),
        "test": {
            "attributes": {a: test["attributes"][a]["macro_f1"] for a in ATTRIBUTE_NAMES},
            "mean_macro_f1": test["mean_macro_f1"],
            "by_language": {
                lang: test["by_language"][lang]["mean_macro_f1"] for lang in LANGUAGES if lang in test["by_language"]
            },
            "decision_accuracy": test["decision"]["accuracy"],
            "block_recall": test["block"]["operating_point"]["recall"],
            "false_block_rate": test["block"]["operating_point"]["false_block_rate"],
            "ece": {a: test["attributes"][a]["ece"] for a in ATTRIBUTE_NAMES},
        },
        "baselines": {
            key: m["test"]["mean_macro_f1"] for key, m in evaluation["models"].items() if key != MODEL_KEY
        },
    }
    out["test"]["max_ece"] = max(out["test"]["ece"].values())
    if CHALLENGE in ours:
        hard = ours[CHALLENGE]
        out[CHALLENGE] = {
            "mean_macro_f1": hard["mean_macro_f1"],
            "decision_accuracy": hard["decision"]["accuracy"],
            "block_recall": hard["block"]["operating_point"]["recall"],
            "false_block_rate": hard["block"]["operating_point"]["false_block_rate"],
        }
    robustness = evaluation.get("robustness")
    if robustness:
        out["disguise_agreement"] = robustness["agreement"]
    if bench:
        results = {r["name"]: r for r in bench["results"]}
        out["cpu"] = {
            "threads": bench["meta"].get("threads"),
            "cpu": bench["meta"].get("cpu"),
            **{
                backend: {"p50_ms": results[backend]["p50_ms"], "throughput_per_s": results[backend]["throughput_per_s"]}
                for backend in BENCH_BACKENDS if backend in results
            },
        }
    return out


def compare(runs: dict[str, Path]) -> dict:
    return {"runs": [summarize_run(name, folder) for name, folder in runs.items()]}


def render_markdown(result: dict) -> str:
    runs = result["runs"]
    names = [r["name"] for r in runs]
    lines = ["# Backbone comparison", "", "Each column is one run, read from the files in its folder:", ""]
    lines += [f"- `{r['name']}`: `{r['folder']}` (backbone `{r['backbone']}`, {r['device']})"
              + (f": `{r['command']}`" if r.get("command") else "") for r in runs]
    lines += ["", "## Test split (thresholds tuned on validation)", ""]
    rows = [[f"{a} macro-F1"] + [r["test"]["attributes"][a] for r in runs] for a in ATTRIBUTE_NAMES]
    rows.append(["mean macro-F1"] + [r["test"]["mean_macro_f1"] for r in runs])
    for lang in LANGUAGES:
        rows.append([f"mean macro-F1, {lang}"] + [r["test"]["by_language"].get(lang) for r in runs])
    rows.append(["decision accuracy"] + [r["test"]["decision_accuracy"] for r in runs])
    rows.append(["block recall"] + [r["test"]["block_recall"] for r in runs])
    rows.append(["false-block rate (allow rows)"] + [r["test"]["false_block_rate"] for r in runs])
    rows.append(["largest ECE (an attribute)"] + [r["test"]["max_ece"] for r in runs])
    baselines = sorted({k for r in runs for k in r["baselines"]})
    rows += [[f"{k} mean macro-F1"] + [r["baselines"].get(k) for r in runs] for k in baselines]
    lines += table_lines(["test"] + names, rows)
    if any(CHALLENGE in r for r in runs):
        lines += ["## Challenge split (written by a writer of no training row)", ""]
        keys = [("mean_macro_f1", "mean macro-F1"), ("decision_accuracy", "decision accuracy"),
                ("block_recall", "block recall"), ("false_block_rate", "false-block rate (allow rows)")]
        rows = [[label] + [r.get(CHALLENGE, {}).get(key) for r in runs] for key, label in keys]
        rows.append(["decision agreement on disguised variants"] + [r.get("disguise_agreement") for r in runs])
        lines += table_lines(["challenge"] + names, rows)
    lines += ["## Training and CPU inference", ""]
    rows = [["training wall time (s)"] + [r["train_wall_s"] for r in runs], ["optimizer steps"] + [r["steps"] for r in runs]]
    for backend in BENCH_BACKENDS:
        rows.append([f"{backend} p50 ms / command"] + [r.get("cpu", {}).get(backend, {}).get("p50_ms") for r in runs])
        rows.append([f"{backend} commands/s batched"] + [r.get("cpu", {}).get(backend, {}).get("throughput_per_s") for r in runs])
    rows.append(["benchmark CPU"] + [(r.get("cpu") or {}).get("cpu") for r in runs])
    lines += table_lines(["run"] + names, rows)
    return "\n".join(lines)
