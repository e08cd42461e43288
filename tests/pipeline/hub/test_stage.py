"""`stage`: the three Hub folders hold what users load, with cards from the real reports."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.__main__ import main as cli
from pipeline.core.config import REPO_ROOT, BuildLayout
from pipeline.core.decision import CONFIG_KEY
from pipeline.core.io import StageInputError
from pipeline.core.schema import ATTRIBUTES, ID2LABEL, MODEL_OUTPUTS
from pipeline.hub.cards.release import HubRepos, Release
from pipeline.hub.manifest import CARD, MANIFEST, data_hash, folder_hashes, model_data_hash, staged_files
from pipeline.hub.stage import StageConfig, module_closure, read_dataset_files, stage_dataset, stage_model
from pipeline.model.inference import ONNX_DIR, ONNX_FP32, ONNX_INT8
from pipeline.report.eval_report import MODEL_KEY
from tests.hub_build import staged_build  # noqa: F401 (fixture)

REPOS = HubRepos("lm-action/lm-action-commands", "lm-action/lm-action-bert", "lm-action/lm-action-gate")


def manifest(build) -> dict:
    return json.loads((build.layout.reports / MANIFEST).read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------
# Without a build


def test_data_hash_covers_the_data_files_only(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train-00000-of-00001.parquet").write_bytes(b"rows")
    first = data_hash(tmp_path)
    (tmp_path / "README.md").write_text("a card", encoding="utf-8")
    assert data_hash(tmp_path) == first
    (data / "train-00000-of-00001.parquet").write_bytes(b"rowz")
    assert data_hash(tmp_path) != first


def test_stage_without_split_output_says_which_stage_to_run(tmp_path, capsys):
    assert cli(["stage", "--build-dir", str(tmp_path)]) == 2
    assert "run `python -m pipeline split` first" in capsys.readouterr().err
    assert not (tmp_path / "reports" / MANIFEST).exists()


def test_dataset_files_must_hold_the_schema_class_labels(tmp_path):
    import datasets

    (tmp_path / "data").mkdir()
    datasets.Dataset.from_dict({"text": ["a"], "risk": ["low"]}).to_parquet(str(tmp_path / "data" / "train.parquet"))
    with pytest.raises(StageInputError) as excinfo:
        read_dataset_files(tmp_path)
    message = str(excinfo.value)
    assert all(f"column '{a.name}' must be ClassLabel" in message for a in ATTRIBUTES)
    assert str(tmp_path / "data" / "train.parquet") in message


def test_onnx_tolerances_outside_zero_to_one_are_refused(tmp_path, capsys):
    assert cli(["stage", "--build-dir", str(tmp_path), "--set", "stage.onnx_max_label_change_int8=1.5"]) == 2
    assert "[stage] onnx_max_label_change_int8 must be in [0, 1], got 1.5" in capsys.readouterr().err


def test_the_space_gets_the_modules_space_app_imports():
    modules = module_closure("space.app")
    assert {"space", "space.app", "pipeline", "pipeline.model.inference", "pipeline.core.decision", "pipeline.core.schema", "pipeline.core.config"} <= set(modules)
    assert not {"pipeline.model.train", "pipeline.llm.generate", "pipeline.hub.stage"} & set(modules)


# ---------------------------------------------------------------------------------------------
# The staged build


@pytest.mark.slow
def test_staged_dataset_loads_with_named_splits_and_class_labels(staged_build):
    import datasets

    loaded = datasets.load_dataset(str(staged_build.layout.hub_dataset))
    assert list(loaded) == ["train", "validation", "test"]
    for attribute in ATTRIBUTES:
        assert isinstance(loaded["test"].features[attribute.name], datasets.ClassLabel)
        assert loaded["test"].features[attribute.name].names == list(attribute.values)
    data_report = json.loads((staged_build.layout.hub_dataset / "reports" / "data.json").read_text(encoding="utf-8"))
    assert {name: len(split) for name, split in loaded.items()} == data_report["rows"]


def test_each_staged_repo_carries_its_own_licence(staged_build):
    from huggingface_hub import DatasetCard, ModelCard

    layout = staged_build.layout
    assert DatasetCard.load(layout.hub_dataset / CARD).data.license == "cc-by-4.0"
    assert ModelCard.load(layout.hub_model / CARD).data.license == "apache-2.0"


@pytest.mark.slow
def test_staged_dataset_card_shows_the_data_report_and_its_figures(staged_build):
    from huggingface_hub import DatasetCard

    folder = staged_build.layout.hub_dataset
    card = DatasetCard.load(folder / CARD)
    figures = re.findall(r"!\[[^\]]*\]\((reports/[^)]+\.png)\)", card.text)
    assert figures and all((folder / f).is_file() for f in figures)
    assert sorted(figures) == sorted(f"reports/{p.name}" for p in staged_build.layout.reports.glob("data*.png"))
    data_report = json.loads((folder / "reports" / "data.json").read_text(encoding="utf-8"))
    flat = " ".join(card.text.split())
    assert f"{data_report['groups']} groups, the largest {data_report['largest_group']} rows" in flat
    assert "No split report" not in card.text and "No near-duplicate report" not in card.text


@pytest.mark.slow
def test_staged_model_loads_with_the_auto_class_and_pipeline(staged_build):
    from transformers import AutoModelForSequenceClassification, pipeline

    folder = str(staged_build.layout.hub_model)
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    assert model.config.id2label == ID2LABEL
    evaluated = json.loads((staged_build.layout.hub_model / "reports" / "eval.json").read_text(encoding="utf-8"))
    assert getattr(model.config, CONFIG_KEY) == evaluated["models"][MODEL_KEY]["thresholds"]
    classify = pipeline("text-classification", model=folder, top_k=None)
    (scores,) = classify(["turn off the porch light"])
    assert sorted(s["label"] for s in scores) == sorted(MODEL_OUTPUTS)
    assert all(0.0 <= s["score"] <= 1.0 for s in scores)
    # The README's snippet: a command longer than the model's positions runs with truncation.
    (long_scores,) = classify(["please book a table for two at a nice italian place. " * 120], truncation=True)
    assert len(long_scores) == len(MODEL_OUTPUTS)
    # Published tokenizer files hold what the tokenizer is, not how it was loaded here.
    tokenizer_config = json.loads((staged_build.layout.hub_model / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert not {"is_local", "local_files_only", "max_length"} & set(tokenizer_config)


@pytest.mark.slow
def test_staged_model_carries_onnx_exports_close_to_torch(staged_build):
    from pipeline.model.inference import Predictor, PredictorConfig

    folder = staged_build.layout.hub_model
    assert (folder / ONNX_DIR / ONNX_FP32).is_file() and (folder / ONNX_DIR / ONNX_INT8).is_file()
    texts = ["turn off the porch light", "احذف الملفات المؤقتة"]
    torch_probs = Predictor(folder, PredictorConfig(backend="torch", device="cpu")).predict_proba(texts)
    onnx_probs = Predictor(folder, PredictorConfig(backend="onnx", onnx_file=ONNX_FP32)).predict_proba(texts)
    assert abs(torch_probs - onnx_probs).max() < 1e-4
    assert set(manifest(staged_build)["onnx"]["files"]) == {ONNX_FP32, ONNX_INT8}
    assert set(manifest(staged_build)["onnx"]["labels_changed"]) == {ONNX_FP32, ONNX_INT8}


@pytest.mark.slow
def test_an_onnx_export_beyond_its_tolerance_fails_stage_and_keeps_the_staged_model(staged_build, tmp_path, capsys):
    layout = BuildLayout(tmp_path / "build")
    shutil.copytree(staged_build.layout.root, layout.root)
    staged = folder_hashes(layout.hub_model)
    before = manifest(staged_build)
    assert cli(["stage", "--build-dir", str(layout.root), "--set", "stage.onnx_max_abs_diff_int8=0"]) == 2
    error = capsys.readouterr().err
    measured = before["onnx"]["max_abs_diff"][ONNX_INT8]  # the same weights export to the same file
    assert f"{layout.model}: the ONNX export fails its parity check against torch" in error
    assert f"{ONNX_DIR}/{ONNX_INT8}: probabilities differ from torch's by up to {measured:.3g}" in error
    assert "(tolerance 0)" in error and f"{ONNX_DIR}/{ONNX_FP32}:" not in error
    assert folder_hashes(layout.hub_model) == staged
    assert not list(layout.hub.glob(".*")), "no partial folder is left behind"
    assert json.loads((layout.reports / MANIFEST).read_text(encoding="utf-8")) == before


@pytest.mark.slow
def test_the_staged_model_card_gives_back_the_data_hash(staged_build):
    assert model_data_hash(staged_build.layout.hub_model) == manifest(staged_build)["data_hash"]
    assert model_data_hash(staged_build.layout.model) is None  # trained, not staged: no card


@pytest.mark.slow
def test_staged_model_card_metrics_equal_the_staged_eval_json(staged_build):
    from huggingface_hub import ModelCard

    folder = staged_build.layout.hub_model
    card = ModelCard.load(folder / CARD)
    test = json.loads((folder / "reports" / "eval.json").read_text(encoding="utf-8"))["models"][MODEL_KEY]["test"]
    metrics = {r.metric_name: r.metric_value for r in card.data.eval_results}
    for name in (a.name for a in ATTRIBUTES):
        assert metrics[f"{name} macro-F1"] == test["attributes"][name]["macro_f1"]
        assert metrics[f"{name} accuracy"] == test["attributes"][name]["accuracy"]
    assert metrics["decision macro-F1"] == test["decision"]["macro_f1"]
    for figure in ("eval_reliability.png", "eval_confusion_attributes.png", "train_curve.png"):
        assert f"(reports/{figure})" in card.text and (folder / "reports" / figure).is_file()
    assert manifest(staged_build)["data_hash"] in card.text


@pytest.mark.slow
def test_staged_folders_match_the_manifest(staged_build):
    recorded = manifest(staged_build)
    folders = {"dataset": staged_build.layout.hub_dataset, "model": staged_build.layout.hub_model, "space": staged_build.layout.hub_space}
    for kind, folder in folders.items():
        assert recorded["folders"][kind]["files"] == folder_hashes(folder)
    assert recorded["data_hash"] == data_hash(staged_build.layout.hub_dataset)
    assert recorded["repos"] == {"dataset": REPOS.dataset, "model": REPOS.model, "space": REPOS.space}
    assert not list(staged_build.layout.hub.glob(".*")), "no partial folders are left behind"


@pytest.mark.slow
def test_staged_space_runs_its_own_copy_of_the_pipeline(staged_build):
    import gradio

    folder = staged_build.layout.hub_space
    assert {"app.py", "requirements.txt", "README.md", "space/app.py", "pipeline/model/inference.py"} <= set(staged_files(folder))
    assert (folder / "requirements.txt").read_text(encoding="utf-8") == (REPO_ROOT / "space" / "requirements.txt").read_text(encoding="utf-8")
    from huggingface_hub import SpaceCard

    card = SpaceCard.load(folder / CARD)
    assert card.data.sdk_version == gradio.__version__
    assert card.data.models == [REPOS.model] and card.data.datasets == [REPOS.dataset]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = "import json, app, pipeline, space.app; print(json.dumps([pipeline.__file__, space.app.__file__, app.os.environ['MODEL_ID']]))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=folder, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    pipeline_file, app_file, model_id = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(pipeline_file).parent.parent == folder and Path(app_file).parent.parent == folder
    assert model_id == REPOS.model


@pytest.mark.slow
def test_staging_the_dataset_again_writes_the_same_card(staged_build, tmp_path):
    layout = BuildLayout(tmp_path / "build")
    shutil.copytree(staged_build.layout.hub_dataset, layout.hub_dataset)
    shutil.copytree(staged_build.layout.reports, layout.reports)
    (layout.hub_dataset / "stale.txt").write_text("from an older staging", encoding="utf-8")
    release = Release(manifest(staged_build)["version"], data_hash(layout.hub_dataset))
    folder, _ = stage_dataset(layout, StageConfig(), REPOS, release)
    assert (layout.hub_dataset / CARD).read_bytes() == (staged_build.layout.hub_dataset / CARD).read_bytes()
    assert sorted(folder.files) == staged_files(staged_build.layout.hub_dataset)


@pytest.mark.slow
def test_a_model_whose_thresholds_differ_from_eval_json_is_refused_and_the_old_folder_kept(staged_build, tmp_path):
    layout = BuildLayout(tmp_path / "build")
    shutil.copytree(staged_build.layout.model, layout.model)
    layout.reports.mkdir(parents=True)
    report = json.loads((staged_build.layout.reports / "eval.json").read_text(encoding="utf-8"))
    report["models"][MODEL_KEY]["thresholds"]["legal"] = 0.31
    (layout.reports / "eval.json").write_text(json.dumps(report), encoding="utf-8")
    layout.hub_model.mkdir(parents=True)
    (layout.hub_model / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(StageInputError, match="differ from eval.json for legal"):
        stage_model(layout, StageConfig(), REPOS, Release("0", "0" * 64), ["en"])
    assert staged_files(layout.hub_model) == ["config.json"]


def test_requirement_pins_read_exact_pins_and_skip_the_rest(tmp_path):
    from pipeline.hub.stage import requirement_pins

    path = tmp_path / "requirements.txt"
    path.write_text(
        "# the Space\n--extra-index-url https://download.pytorch.org/whl/cpu\n"
        "torch==2.13.0\npsycopg[binary]==3.3.9  # with libpq\n"
        'tomli==2.0.1; python_version < "3.11"\nrich>=13\n\nPyYAML==6.0.3\n',
        encoding="utf-8",
    )
    assert requirement_pins(path) == {"torch": "2.13.0", "psycopg": "3.3.9", "tomli": "2.0.1", "PyYAML": "6.0.3"}
