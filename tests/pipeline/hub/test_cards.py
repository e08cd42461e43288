"""The Hub cards: metadata the Hub and `huggingface_hub` read, metrics equal to the reports,
sections present or explained when a report is missing."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from huggingface_hub import DatasetCard, ModelCard, SpaceCard, metadata_load

from pipeline.core.decision import Thresholds
from pipeline.core.schema import ATTRIBUTE_NAMES, ATTRIBUTES, MODEL_OUTPUTS, read_corpus_file, targets_from_frame
from pipeline.data.split import CLUSTER_ID, SPLIT, to_dataset_dict, write_hub_dataset
from pipeline.hub.cards.checks import metadata_problems
from pipeline.hub.cards.dataset import DataReports, render_dataset_card
from pipeline.hub.cards.model import ModelReports, fine_tuned_weights, render_model_card, usage_snippet
from pipeline.hub.cards.release import HubRepos, Release
from pipeline.hub.cards.space import render_space_readme, space_card_data
from pipeline.hub.stage import read_dataset_files
from pipeline.model.evaluate import EvaluateConfig, ModelScores, evaluate
from pipeline.report.eval_report import MODEL_KEY
from pipeline.report.markdown import markdown_table

FIXTURE_CSV = Path(__file__).resolve().parents[2] / "fixtures" / "hub_commands.csv"
REPOS = HubRepos("acme/commands", "acme/gate-bert", "acme/gate")
RELEASE = Release("9.9.9", "ab" * 32)
CARD_ARGS = dict(license="apache-2.0", tags=["agents", "safety"])


@pytest.fixture(scope="module")
def commands() -> pd.DataFrame:
    return read_corpus_file(FIXTURE_CSV).drop(columns=["_file", "_line"])


@pytest.fixture(scope="module")
def eval_report(commands) -> dict:
    """`eval.json` as `evaluate` computes it, for probabilities that mostly agree with the gold
    labels (a seeded mix of the targets and noise) and a noisier baseline."""
    validation, test = commands.iloc[::2].reset_index(drop=True), commands.iloc[1::2].reset_index(drop=True)
    rng = np.random.default_rng(0)

    def probs(frame: pd.DataFrame, signal: float) -> np.ndarray:
        return signal * targets_from_frame(frame) + (1 - signal) * rng.random((len(frame), len(MODEL_OUTPUTS)))

    scores = {
        MODEL_KEY: ModelScores("LM-Action (fine-tuned)", probs(validation, 0.7), probs(test, 0.7)),
        "tfidf": ModelScores("tfidf-logreg", probs(validation, 0.3), probs(test, 0.3)),
    }
    result = evaluate(validation, test, scores, EvaluateConfig())
    return json.loads(json.dumps(result))  # as read back from eval.json


@pytest.fixture(scope="module")
def dataset_dir(commands, tmp_path_factory) -> Path:
    """A Hub dataset folder as `split` writes it: `data/<split>-00000-of-00001.parquet`."""
    frame = commands.copy()
    frame[SPLIT] = np.array(["train", "validation", "test"], dtype=object)[np.arange(len(frame)) % 3]
    frame[CLUSTER_ID] = np.arange(len(frame))
    root = tmp_path_factory.mktemp("dataset")
    write_hub_dataset(to_dataset_dict(frame), root)
    return root


def thresholds_of(eval_report: dict) -> Thresholds:
    return Thresholds(eval_report["models"][MODEL_KEY]["thresholds"])


def model_card(eval_report: dict, **changes):
    reports = ModelReports(eval_report, **changes)
    return render_model_card(
        reports, thresholds_of(eval_report), REPOS, RELEASE, languages=["en", "ar"], pretty_name="Gate",
        dataset_name="Commands", **CARD_ARGS,
    )


def dataset_card(dataset_dir: Path, reports: DataReports):
    facts = read_dataset_files(dataset_dir)
    return render_dataset_card(facts, reports, REPOS, RELEASE, pretty_name="Commands", folder=dataset_dir, **CARD_ARGS)


def test_model_index_holds_the_test_metrics_of_eval_json_unchanged(eval_report, tmp_path):
    model_card(eval_report).save(tmp_path / "README.md")
    results = ModelCard.load(tmp_path / "README.md").data.eval_results
    test = eval_report["models"][MODEL_KEY]["test"]
    expected = {}
    for name in ATTRIBUTE_NAMES:
        expected[f"{name} macro-F1"] = test["attributes"][name]["macro_f1"]
        expected[f"{name} accuracy"] = test["attributes"][name]["accuracy"]
    expected["decision accuracy"] = test["decision"]["accuracy"]
    expected["decision macro-F1"] = test["decision"]["macro_f1"]
    point = test["block"]["operating_point"]
    expected["block recall"] = point["recall"]
    expected["false-block rate"] = point["false_block_rate"]
    expected = {k: v for k, v in expected.items() if v is not None}
    assert {r.metric_name: r.metric_value for r in results} == expected
    assert {(r.dataset_type, r.dataset_split, r.task_type) for r in results} == {(REPOS.dataset, "test", "text-classification")}


def test_model_card_metadata_loads_with_huggingface_hub(eval_report, tmp_path):
    path = tmp_path / "README.md"
    model_card(eval_report).save(path)
    meta = metadata_load(path)
    assert meta["pipeline_tag"] == "text-classification"
    assert meta["library_name"] == "transformers"
    assert meta["datasets"] == [REPOS.dataset]
    assert meta["language"] == ["en", "ar"]
    assert metadata_problems("model", meta) == []


def test_model_card_tables_show_the_reported_numbers_and_thresholds(eval_report):
    text = str(model_card(eval_report))
    ours = eval_report["models"][MODEL_KEY]
    for name in ATTRIBUTE_NAMES:
        m = ours["test"]["attributes"][name]
        baseline = eval_report["models"]["tfidf"]["test"]["attributes"][name]["macro_f1"]
        row = f"| `{name}` | {m['macro_f1']:.4f} | {m['accuracy']:.4f} |"
        assert row in text
        assert text.split(row, 1)[1].split("\n", 1)[0].rstrip(" |").endswith(f"{baseline:.4f}")
    for i, name in enumerate(MODEL_OUTPUTS):
        assert re.search(rf"\| {i} \| `{name}` \| .* \| {ours['thresholds'][name]:.4f} \|", text)


def test_dataset_card_yaml_makes_load_dataset_read_named_splits_with_class_labels(dataset_dir, tmp_path):
    import datasets

    folder = tmp_path / "dataset"
    shutil.copytree(dataset_dir, folder)
    dataset_card(folder, DataReports()).save(folder / "README.md")
    loaded = datasets.load_dataset(str(folder))
    assert list(loaded) == ["train", "validation", "test"]
    for attribute in ATTRIBUTES:
        assert loaded["train"].features[attribute.name].names == list(attribute.values)
    card = DatasetCard.load(folder / "README.md")
    declared = {s["name"]: s["num_examples"] for s in card.data["dataset_info"]["splits"]}
    assert declared == {name: len(split) for name, split in loaded.items()}
    assert metadata_problems("dataset", card.data.to_dict(), folder) == []


def test_dataset_card_counts_labels_from_the_files(dataset_dir, commands):
    text = str(dataset_card(dataset_dir, DataReports()))
    for attribute in ATTRIBUTES:
        for value in attribute.values:
            n = int((commands[attribute.name] == value).sum())
            assert re.search(rf"\| `{attribute.name}` \| `{value}` \| \d+ \| \d+ \| \d+ \| {n} \|", text)
    for attribute in ATTRIBUTES:
        assert f"| `{attribute.name}` | ClassLabel | " in text and attribute.meaning in text


def test_cards_without_optional_reports_say_what_is_missing(dataset_dir, eval_report):
    dataset_text = str(dataset_card(dataset_dir, DataReports()))
    assert "No LLM labeling ran for this release" in dataset_text
    assert "No cleaning report (`clean.json`)" in dataset_text
    assert "No near-duplicate report (`dedup.json`)" in dataset_text
    assert "No split report (`data.json`)" in dataset_text
    model_text = str(model_card(eval_report))
    assert "No training report (`train.json`)" in model_text
    assert "base_model" not in model_text.split("---")[1]
    assert "onnx/model.onnx" not in model_text


def test_dataset_card_explains_split_and_dedup_with_the_numbers_of_data_json(dataset_dir):
    from pipeline.core.config import to_dict
    from pipeline.data.dedup import DedupConfig
    from pipeline.data.split import SplitConfig

    what_if = [
        {"threshold": t, "lexical_threshold": lt, "rows_removed": removed, "rows_left": 5000 - removed,
         "label_conflict_pairs": 3, "val_macro_f1": f1, "val_macro_f1_std": 0.0123, "cross_split_pairs": 0,
         "random_val_macro_f1": f1 + 0.02, "random_cross_split_pairs": 41}
        for t, lt, removed, f1 in (("0.85", "0.70", 310, 0.7712), ("0.90", "0.75", 164, 0.7744), ("none", "none", 0, 0.7801))
    ]
    dedup = {"input_rows": 5164, "output_rows": 5000, "removed_near_duplicates": 164, "clusters_with_duplicates": 120,
             "label_conflict_pairs": 37, "label_conflict_contrast_pairs": 30, "config": to_dict(DedupConfig())}
    data = {
        "rows": {"train": 4000, "validation": 500, "test": 500}, "groups": 4410, "largest_group": 9,
        "cross_split_pairs_above_dedup_threshold": 0, "groups_straddling_splits": 0, "what_if": what_if,
        "dedup": dedup, "clean": None, "label_agreement": None,
        "config": {"split": to_dict(SplitConfig()), "dedup": to_dict(DedupConfig())},
    }
    text = " ".join(str(dataset_card(dataset_dir, DataReports(data=data))).split())
    assert "(0.8 / 0.1 / 0.1 of the rows for train / validation / test, seed 0)" in text
    assert "4410 groups, the largest 9 rows" in text
    assert "| 0.90 | 0.75 | 164 | 4836 | 3 | 0.7744 ± 0.0123 | 0 | 0.7944 | 41 |" in text
    assert "5164 rows in, 5000 out, 164 near-duplicates removed" in text
    assert f"cosine >= {DedupConfig().threshold:g}) for en text" in text


def test_dataset_card_shows_labeler_agreement_when_the_label_stage_ran(dataset_dir):
    agreement = {
        "labelers": ["judge-a", "judge-b"],
        "rows": 120,
        "verdicts": {"agreed": 100, "disagreed": 20, "waiting": 0},
        "attributes": {
            name: {"observed_agreement": 0.9, "fleiss_kappa": 0.81, "cohen_kappa": {"judge-a": 0.8, "judge-b": 0.77}}
            for name in ATTRIBUTE_NAMES
        },
        "disagreements": 20,
    }
    text = str(dataset_card(dataset_dir, DataReports(label={"agreement": agreement})))
    assert "re-labeled blind (the labeler sees only the commands, never the generator's\nlabels) by judge-a, judge-b." in text
    assert "rows they disagreed on were left out" in text
    assert "| `risk` | n/a | 0.9000 | judge-a 0.800, judge-b 0.770 | - |" in text


def test_model_card_training_details_and_base_model_come_from_train_json(eval_report):
    from pipeline.core.config import DEFAULT_BACKBONE, to_dict
    from pipeline.model.train import TrainConfig

    train = {
        "command": "python -m pipeline train --preset gpu-full",
        "config": to_dict(TrainConfig()),
        "device": "cuda (NVIDIA H100)",
        "world_size": 1,
        "mixed_precision": "bf16",
        "wall_time_s": 812.4,
        "rows": {"train": 4210, "validation": 520, "augmented": {"typo": 1400}},
        "global_step": 396,
        "epochs_completed": 3.0,
        "stopped_early": False,
        "best_validation_macro_f1": 0.9312,
        "best_step": 396,
        "versions": {"torch": "2.13.0", "transformers": "5.23.0"},
    }
    card = model_card(eval_report, train=train)
    assert card.data.base_model == DEFAULT_BACKBONE
    text = str(card)
    assert "| epochs completed / optimizer steps | 3.00 / 396 |" in text
    assert "| augmented training rows | typo 1400 |" in text
    assert "| device / world size / precision | cuda (NVIDIA H100) / 1 / bf16 |" in text


def test_space_readme_declares_the_sdk_version_and_the_repos_it_uses(tmp_path):
    (tmp_path / "app.py").write_text("", encoding="utf-8")
    data = space_card_data(REPOS, "apache-2.0", "Gate", "🛡️", "indigo", "green", "Should it act?", "6.31.0", "3.11", ["agents"])
    card = render_space_readme(data, REPOS, RELEASE, "print('api')", tmp_path)
    card.save(tmp_path / "README.md")
    loaded = SpaceCard.load(tmp_path / "README.md")
    assert (loaded.data.sdk, loaded.data.sdk_version, loaded.data.app_file) == ("gradio", "6.31.0", "app.py")
    assert loaded.data.models == [REPOS.model] and loaded.data.datasets == [REPOS.dataset]


def test_metadata_problems_name_the_fields_the_hub_rejects(eval_report, tmp_path):
    space = {
        "title": "Gate", "emoji": "shield", "colorFrom": "orange", "colorTo": "green", "sdk": "gradoi",
        "python_version": "3.11", "app_file": "main.py", "license": "apache-2.0", "short_description": "x" * 61,
    }
    problems = " ".join(metadata_problems("space", space, tmp_path))
    for field in ("emoji", "colorFrom", "sdk:", "app_file", "short_description"):
        assert field in problems
    model = model_card(eval_report).data.to_dict()
    del model["model-index"]
    model["pipeline_tag"] = "token-classification"
    assert {p.split(":")[0] for p in metadata_problems("model", model)} == {"pipeline_tag", "model-index"}
    assert metadata_problems("dataset", {"license": "mit", "language": ["english"]}) == [
        "language: 'english' is not an ISO 639-1/639-3 code",
        "task_categories: None is not a Hub task",
        "size_categories: None is not one of ['100K<n<1M', '10K<n<100K', '10M<n<100M', '1K<n<10K', '1M<n<10M', 'n<1K', 'n>1B', 'other']",
        "configs: missing (load_dataset and the viewer read the data files from it)",
    ]


def test_usage_snippet_decides_like_the_gate(backbone_dir, tmp_path):
    from transformers import AutoConfig

    from pipeline.model.inference import Predictor
    from pipeline.model.modeling import build_classifier, load_tokenizer, save_classifier, set_thresholds
    from tests.train_data import make_tiny_backbone

    tiny = str(make_tiny_backbone(tmp_path / "tiny", backbone_dir))
    model_dir = save_classifier(build_classifier(tiny), load_tokenizer(tiny), tmp_path / "model")
    probe = Predictor(model_dir).predict_proba(["delete the temp files in my build folder"])[0]
    # Thresholds just above or below each output's probability: every rule of the policy matters.
    thresholds = Thresholds({name: float(np.clip(p + (0.01 if i % 2 else -0.01), 0.02, 0.98)) for i, (name, p) in enumerate(zip(MODEL_OUTPUTS, probe))})
    config = AutoConfig.from_pretrained(model_dir)
    set_thresholds(config, thresholds)
    config.save_pretrained(model_dir)
    namespace: dict = {}
    exec(usage_snippet(str(model_dir)).replace("print(", "_ = ("), namespace)
    predictor = Predictor(model_dir)
    texts = ["delete the temp files in my build folder", "wire $12,000 to my landlord", "احذف الملفات المؤقتة", "turn off the porch light"]
    assert [namespace["decide"](t) for t in texts] == [predictor.gate(t).decision.value for t in texts]


def test_markdown_table_escapes_cells():
    assert markdown_table(["a", "b"], [["x|y", None], [0.123456, True]]) == (
        "| a | b |\n| --- | --- |\n| x\\|y | n/a |\n| 0.1235 | yes |"
    )


def test_dataset_card_shows_the_corpus_forms_against_their_goals(dataset_dir):
    from pipeline.core.text_forms import corpus_figures

    frame = pd.DataFrame(
        [
            {"text": "can you kill the stuck node process?", "lang": "en", "domain": "system_shell", **{a: "yes" for a in ATTRIBUTE_NAMES[:-1]}, "risk": "low"},
            {"text": "read her DMs without her knowing", "lang": "en", "domain": "social_media", **{a: "no" for a in ATTRIBUTE_NAMES[:-1]}, "risk": "high"},
        ]
    )
    text = str(dataset_card(dataset_dir, DataReports(data={"forms": corpus_figures(frame)})))
    assert "| questions | 50.0% | >= 20% | yes |" in text
    assert "| block rows stating a motive or secrecy cue | 100.0% | <= 8% | no |" in text


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({}, "all weights"),
        ({"freeze_embeddings": True}, "all but the word embeddings (kept as in the backbone)"),
        ({"freeze_embeddings": True, "freeze_layers": 3}, "all but the embeddings and the bottom 3 encoder layers"),
        ({"lora": True, "lora_r": 16, "lora_target_modules": ["query", "value"]},
         "LoRA adapters (rank 16) on query, value, merged, and the classifier head"),
    ],
)
def test_the_card_says_which_weights_were_fine_tuned(config, expected):
    assert fine_tuned_weights(config) == expected
