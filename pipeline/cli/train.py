"""`python -m pipeline train`: fine-tune the seven-output BERT classifier.
Parses the arguments, reads the files, calls `pipeline.model.train` and writes what it returns."""

from __future__ import annotations

import argparse
import shlex
import shutil
from pathlib import Path

from pipeline.core.config import BuildLayout, stage_config
from pipeline.model.train import TrainConfig, plot_training_curve, read_splits, train, train_report


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--splits-dir", type=Path, help="folder with train/validation parquet files (default: <build>/data/splits)"
    )
    parser.add_argument("--model-dir", type=Path, help="where to save the model (default: <build>/model)")


def stage_command(args: argparse.Namespace, world_size: int = 1) -> str:
    """The command line that runs this stage with these arguments."""
    argv = ["python", "-m", "pipeline", "train", "--preset", str(args.preset), "--build-dir", str(args.build_dir)]
    for override in args.overrides:
        argv += ["--set", override]
    if args.splits_dir:
        argv += ["--splits-dir", str(args.splits_dir)]
    if args.model_dir:
        argv += ["--model-dir", str(args.model_dir)]
    if world_size > 1:
        argv = ["accelerate", "launch", f"--num_processes={world_size}", "-m", *argv[2:]]
    return " ".join(shlex.quote(a) for a in argv)


def main(args: argparse.Namespace) -> int:
    import json

    config = stage_config(TrainConfig, "train", args.preset, args.overrides)
    layout = BuildLayout(args.build_dir)
    splits = read_splits(args.splits_dir or layout.splits, ("train", "validation"))
    model_dir = args.model_dir or layout.model
    result = train(
        splits["train"],
        splits["validation"],
        config,
        model_dir,
        work_dir=layout.cache / "train-checkpoints",
        cache_dir=layout.cache,
    )
    if not result.is_main_process:
        return 0
    shutil.rmtree(layout.cache / "train-checkpoints", ignore_errors=True)
    command = stage_command(args, result.world_size)
    report = train_report(result, config, command, str(args.preset))
    layout.reports.mkdir(parents=True, exist_ok=True)
    (layout.reports / "train.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    plot_training_curve(report["curves"], layout.reports / "train_curve.png")
    best = "n/a" if result.best_metric is None else f"{result.best_metric:.4f}"
    print(
        f"trained {result.global_step} steps ({result.epochs_completed:.2f} epochs) in {result.wall_time_s:.0f}s "
        f"on {result.device}; best validation macro-F1 {best}; model in {model_dir}"
    )
    return 0
