"""`python -m pipeline all` runs every stage in order into one build folder whose model and
dataset load with standard `transformers` and `datasets` code; a failing stage stops the run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from pipeline.core.config import REPO_ROOT
from pipeline.core.schema import MODEL_OUTPUTS

FIXTURE = REPO_ROOT / "tests" / "fixtures" / "hub_commands.csv"


def run_all(build, seed_dir, *extra):
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "all", "--build-dir", str(build), "--set", f"clean.seed_dir={seed_dir}", *extra],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )


@pytest.mark.slow
def test_all_builds_a_model_and_dataset_that_load_with_standard_code(tmp_path):
    seed = tmp_path / "seed"
    seed.mkdir()
    shutil.copyfile(FIXTURE, seed / FIXTURE.name)
    build = tmp_path / "build"
    out = run_all(build, seed, "--set", "train.epochs=1", "--set", "train.max_length=32", "--set", "evaluate.baselines=tfidf")
    assert out.returncode == 0, out.stderr[-3000:]

    from datasets import load_dataset
    from transformers import pipeline

    dataset = load_dataset(str(build / "hub" / "dataset"))
    assert set(dataset) == {"train", "validation", "test"}
    assert dataset["train"].features["risk"].names == ["low", "medium", "high"]
    classifier = pipeline("text-classification", model=str(build / "hub" / "model"), top_k=None)
    scores = classifier("delete the temp files in my build folder")[0]
    assert sorted(s["label"] for s in scores) == sorted(MODEL_OUTPUTS)
    for report in ("data.md", "eval.md", "eval.json", "train.json", "stage.json"):
        assert (build / "reports" / report).is_file(), report
    timings = json.loads((build / "reports" / "pipeline_timings.json").read_text())
    assert set(timings["stages_s"]) >= {"clean", "dedup", "split", "train", "evaluate", "stage"}
    assert timings["total_s"] == pytest.approx(sum(timings["stages_s"].values()), abs=0.5)


def test_a_failing_stage_stops_the_run_and_names_the_problem(tmp_path):
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "bad.csv").write_text(
        "id,text,lang,domain,feasible,legal,ethical,within_boundaries,reversible,risk\n"
        "b-1,empty my trash,en,files,yes,yes,yes,yes,no,catastrophic\n"
    )
    build = tmp_path / "build"
    out = run_all(build, seed)
    assert out.returncode == 2
    assert "bad.csv:2: column 'risk' = 'catastrophic'" in out.stderr
    assert "stage clean failed" in out.stderr
    assert not (build / "data" / "splits").exists()
