import json
import shutil
from pathlib import Path

import pytest

from pipeline.__main__ import main as cli
from pipeline.report.compare import compare, render_markdown

REPO = Path(__file__).resolve().parents[3]
BUILD = REPO / "results" / "corpus-v2" / "build"


def test_the_table_shows_what_each_run_wrote(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        shutil.copy(BUILD / "eval.json", tmp_path / name / "eval.json")
    shutil.copy(BUILD / "train.json", tmp_path / "a" / "train.json")
    result = compare({"a": tmp_path / "a", "b": tmp_path / "b"})
    evaluation = json.loads((BUILD / "eval.json").read_text())
    ours = evaluation["models"]["lm-action"]["test"]
    a, b = result["runs"]
    assert a["test"]["mean_macro_f1"] == ours["mean_macro_f1"]
    assert a["test"]["by_language"]["ar"] == ours["by_language"]["ar"]["mean_macro_f1"]
    assert a["train_wall_s"] == json.loads((BUILD / "train.json").read_text())["wall_time_s"]
    # run b has no train.json: its training figures come from the copy inside eval.json
    assert b["steps"] == evaluation["train"]["global_step"]
    markdown = render_markdown(result)
    assert f"| mean macro-F1 | {ours['mean_macro_f1']:.4f} | {ours['mean_macro_f1']:.4f} |" in markdown
    command = json.loads((BUILD / "train.json").read_text())["command"]
    assert f"`{command}`" in markdown  # how each run was trained


def test_a_missing_report_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="empty/eval.json is missing"):
        cli(["compare", "--run", f"x={tmp_path / 'empty'}", "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit, match="NAME=FOLDER"):
        cli(["compare", "--run", "nofolder", "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()
