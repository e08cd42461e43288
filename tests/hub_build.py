"""A small real build staged for the Hub, shared by the stage and publish tests.

`tests/fixtures/hub_commands.csv` (48 seed commands, both languages, every decision, plus one
exact and one near duplicate) goes through the real `clean`, `dedup`, `split`, `train`,
`evaluate` and `stage` (with the ONNX export) in-process. `train` fine-tunes the tiny two-layer
BERT of `tests.train_data` (the bundled tokenizer, random weights) so that training, the ONNX
export and the uploads take seconds. Built once per test session.
"""

from __future__ import annotations

import functools
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.__main__ import main as run_stage
from pipeline.core.config import BuildLayout
from tests.train_data import TINY_TRAIN, make_tiny_backbone

FIXTURE_CSV = Path(__file__).parent / "fixtures" / "hub_commands.csv"
SPLIT_FRACTIONS = "[0.5,0.25,0.25]"  # enough validation and test rows to score


@dataclass(frozen=True)
class StagedBuild:
    root: Path
    layout: BuildLayout


def run(*argv: str) -> None:
    code = run_stage(list(argv))
    assert code == 0, f"`python -m pipeline {' '.join(argv)}` exited with {code}"


@functools.cache
def build_and_stage(root: Path, tokenizer_source: Path) -> StagedBuild:
    seed = root / "seed"
    seed.mkdir(parents=True)
    shutil.copyfile(FIXTURE_CSV, seed / FIXTURE_CSV.name)
    backbone = make_tiny_backbone(root / "tiny_backbone", tokenizer_source)
    build = root / "build"
    common = ("--build-dir", str(build))
    run("clean", *common, "--set", f"clean.seed_dir={seed}", "--set", "clean.include_generated=false")
    run("dedup", *common, "--set", "dedup.cache=false")
    run("split", *common, "--set", f"split.fractions={SPLIT_FRACTIONS}", "--set", "dedup.cache=false")
    train = [f"train.{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in TINY_TRAIN.items()]
    run("train", *common, "--set", f"train.backbone={backbone}", *[a for kv in train for a in ("--set", kv)])
    run("evaluate", *common, "--set", "evaluate.baselines=tfidf")
    # The random-weight model's probabilities crowd around the tuned thresholds, where int8
    # rounding flips labels (and macro-F1) a trained model keeps; the parity check itself is tested in
    # tests/pipeline/model/test_onnx_parity.py.
    run("stage", *common, "--set", "stage.onnx_max_label_change_int8=0.5", "--set", "stage.onnx_max_macro_f1_loss_int8=1.0")
    return StagedBuild(root, BuildLayout(build))


@pytest.fixture(scope="session")
def staged_build(tmp_path_factory, backbone_dir) -> StagedBuild:
    """The staged build; tests must not change its files (copy them first)."""
    return build_and_stage(tmp_path_factory.getbasetemp() / "hub_build", backbone_dir)
