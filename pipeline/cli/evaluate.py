"""`python -m pipeline evaluate`: tune thresholds, compare with baselines, write eval report.
Parses the arguments, reads the files, calls `pipeline.model.evaluate` and writes what it returns."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from pipeline.core.config import BuildLayout, stage_config
from pipeline.core.decision import Thresholds
from pipeline.data.split import CHALLENGE
from pipeline.model.calibration import Calibration
from pipeline.model.evaluate import EvaluateConfig, evaluate, predict_all
from pipeline.report.eval_report import MODEL_KEY


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--splits-dir", type=Path, help="folder with train/validation/test parquet files (default: <build>/data/splits)"
    )
    parser.add_argument("--model-dir", type=Path, help="the trained model (default: <build>/model)")


def write_thresholds(model_dir: Path, thresholds: Thresholds) -> None:
    """Store tuned thresholds in the model's config.json (weights untouched)."""
    from transformers import AutoConfig

    from pipeline.model.modeling import set_thresholds

    model_config = AutoConfig.from_pretrained(model_dir)
    set_thresholds(model_config, thresholds)
    model_config.save_pretrained(model_dir)


def main(args: argparse.Namespace) -> int:
    from pipeline.model.train import read_splits
    from pipeline.report.eval_report import write_report

    config = stage_config(EvaluateConfig, "evaluate", args.preset, args.overrides)
    layout = BuildLayout(args.build_dir)
    model_dir = args.model_dir or layout.model
    splits_dir = args.splits_dir or layout.splits
    splits = read_splits(splits_dir)
    if (splits_dir / f"{CHALLENGE}.parquet").is_file():
        splits.update(read_splits(splits_dir, (CHALLENGE,)))
    started = time.perf_counter()
    scores = predict_all(model_dir, splits, config, layout.cache)
    result = evaluate(splits["validation"], splits["test"], scores, config, splits.get(CHALLENGE))
    result["splits"]["train"] = int(len(splits["train"]))
    result["model_dir"] = str(model_dir)
    train_json = layout.reports / "train.json"
    result["train"] = json.loads(train_json.read_text(encoding="utf-8")) if train_json.is_file() else None
    result["wall_time_s"] = round(time.perf_counter() - started, 1)
    if result["calibration"] is not None:
        from pipeline.model.calibration import fold_into_model

        fold_into_model(model_dir, Calibration.from_dict(result["calibration"]["fitted"]))
    write_thresholds(model_dir, Thresholds(result["models"][MODEL_KEY]["thresholds"]))
    paths = write_report(result, layout.reports)
    ours = result["models"][MODEL_KEY]["test"]
    met = sum(g["met"] for g in result["goals"])
    print(
        f"test mean macro-F1 {ours['mean_macro_f1']:.4f}; goals met {met}/{len(result['goals'])}; "
        f"thresholds written to {model_dir / 'config.json'}; report {paths['markdown']}"
    )
    return 0
