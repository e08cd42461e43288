"""The benchmarks run as `python -m benchmarks.<name>` from the repository root, with the stages'
shared options, and `python -m pipeline` no longer lists them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.__main__ import STAGES

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["bench_generate", "bench_dedup", "bench_infer"])
def test_a_benchmark_runs_as_a_module_with_the_shared_options(name):
    run = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    for option in ("--preset", "--set", "--build-dir", "--out" if name != "bench_generate" else "--generate.seed"):
        assert option in run.stdout


def test_the_pipeline_command_has_no_benchmark_stages():
    assert not [name for name in STAGES if name.startswith("bench")]
