import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from transformers import set_seed

from pipeline.__main__ import main as cli
from pipeline.core.decision import CONFIG_KEY
from pipeline.core.schema import CorpusError, MODEL_OUTPUTS
from pipeline.model.modeling import build_classifier
from pipeline.model.train import TrainConfig, read_split, read_splits, repeat_languages, train, training_rows
from tests.train_data import TINY_TRAIN, make_tiny_backbone, tiny_splits, write_preset, write_splits


@pytest.fixture(scope="module")
def splits(seed_sample):
    return tiny_splits(seed_sample)


@pytest.fixture(scope="module")
def tiny_backbone(backbone_dir, tmp_path_factory):
    return make_tiny_backbone(tmp_path_factory.mktemp("tiny_backbone"), backbone_dir)


@pytest.fixture()
def config(tiny_backbone) -> TrainConfig:
    """Training mechanics run on the tiny backbone; the CLI test uses the real one."""
    return TrainConfig(backbone=str(tiny_backbone), **TINY_TRAIN)


def _sgd_step_config(config: TrainConfig, **changes) -> TrainConfig:
    """One plain SGD step with nothing random or rescaling in the way."""
    base = dict(
        optim="sgd", learning_rate=0.5, weight_decay=0.0, max_grad_norm=0.0, warmup_ratio=0.0,
        lr_scheduler="constant", dropout=0.0, augment=False, group_by_length=False, max_steps=1,
    )
    return replace(config, **{**base, **changes})


def test_read_split_names_the_file_row_and_column(splits, tmp_path):
    frame = splits["train"].copy()
    frame.loc[2, "risk"] = "extreme"
    path = tmp_path / "train.parquet"
    frame.to_parquet(path)
    with pytest.raises(CorpusError) as excinfo:
        read_split(path)
    (problem,) = excinfo.value.problems
    assert (problem.file, problem.line, problem.column, problem.value) == (str(path), 3, "risk", "extreme")


def test_read_splits_reports_every_missing_file(splits, tmp_path):
    write_splits({"train": splits["train"]}, tmp_path)
    with pytest.raises(CorpusError) as excinfo:
        read_splits(tmp_path)
    assert [p.file for p in excinfo.value.problems] == [
        str(tmp_path / "validation.parquet"),
        str(tmp_path / "test.parquet"),
    ]


def test_training_rows_are_augmented_deterministically(splits, config):
    rows, added = training_rows(splits["train"], config)
    again, _ = training_rows(splits["train"], config)
    assert rows.equals(again)
    assert len(rows) == len(splits["train"]) + sum(added.values()) > len(splits["train"])
    assert training_rows(splits["train"], replace(config, augment=False))[0] is splits["train"]


def test_language_repeats_add_copies_that_augmentation_draws_apart(splits, config):
    frame = splits["train"]
    n_ar = int((frame["lang"] == "ar").sum())
    assert 0 < n_ar < len(frame)
    repeated = repeat_languages(frame, {"ar": 3})
    assert len(repeated) == len(frame) + 2 * n_ar
    assert repeated["id"].is_unique
    assert (repeated["lang"] == "en").sum() == (frame["lang"] == "en").sum()
    rows, _ = training_rows(frame, replace(config, language_repeats={"ar": 3}, augment_fraction=1.0))
    augmented = rows[rows["source"].astype(str).str.startswith("augment:") & (rows["lang"] == "ar")]
    # The three copies of an Arabic row are augmented with their own draws, not the same one.
    texts = augmented.groupby(augmented["id"].str.split("#").str[0])["text"].nunique()
    assert len(texts) > 0 and (texts > 1).mean() > 0.5
    assert repeat_languages(frame, {}) is frame


@pytest.mark.parametrize("repeats, message", [({"fr": 2}, "unknown language fr"), ({"ar": 0}, "whole numbers")])
def test_language_repeats_refuse_bad_values_by_name(splits, repeats, message):
    with pytest.raises(ValueError, match=message):
        repeat_languages(splits["train"], repeats)


def test_unknown_mixed_precision_is_rejected(splits, config, tmp_path):
    with pytest.raises(ValueError, match="mixed_precision"):
        train(splits["train"], splits["validation"], replace(config, mixed_precision="fp8"), tmp_path)


@pytest.mark.slow
def test_cli_saves_a_standard_model_and_the_training_report(splits, backbone_dir, tmp_path):
    from transformers import pipeline as hf_pipeline

    build = tmp_path / "build"
    write_splits(splits, build / "data" / "splits")
    preset = write_preset(tmp_path / "tiny.toml", {"train": {**TINY_TRAIN, "backbone": str(backbone_dir)}})
    assert cli(["train", "--preset", str(preset), "--build-dir", str(build)]) == 0

    model_dir = build / "model"
    assert (model_dir / "model.safetensors").is_file()
    saved = json.loads((model_dir / "config.json").read_text())
    assert [saved["id2label"][str(i)] for i in range(len(MODEL_OUTPUTS))] == list(MODEL_OUTPUTS)
    assert saved[CONFIG_KEY] == {name: 0.5 for name in MODEL_OUTPUTS}
    classifier = hf_pipeline("text-classification", model=str(model_dir), top_k=None)
    (scores,) = classifier(["delete every file in my downloads folder"])
    assert sorted(s["label"] for s in scores) == sorted(MODEL_OUTPUTS)
    assert all(0.0 <= s["score"] <= 1.0 for s in scores)

    report = json.loads((build / "reports" / "train.json").read_text())
    assert (build / "reports" / "train_curve.png").stat().st_size > 0
    # Augmentation reached the training split only.
    assert report["rows"]["validation"] == len(splits["validation"])
    assert report["rows"]["train"] == len(splits["train"]) + sum(report["rows"]["augmented"].values())
    assert report["rows"]["train"] > len(splits["train"])
    assert report["config"]["max_length"] == 32
    assert report["command"].startswith("python -m pipeline train --preset")
    assert report["pos_weight"] is not None and set(report["pos_weight"]) == set(MODEL_OUTPUTS)
    assert report["curves"]["validation"][-1]["macro_f1"] is not None
    assert report["global_step"] == report["max_steps"] == math.ceil(report["rows"]["train"] / 8)
    assert not (build / "cache" / "train-checkpoints").exists()


def _classifier_weight(model_dir):
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))["classifier.weight"]


@pytest.mark.slow
def test_gradient_accumulation_gives_the_same_step_as_one_larger_batch(splits, config, tmp_path):
    small = _sgd_step_config(config, batch_size=8, gradient_accumulation_steps=2)
    large = _sgd_step_config(config, batch_size=16, gradient_accumulation_steps=1)
    train(splits["train"], splits["validation"], small, tmp_path / "small")
    train(splits["train"], splits["validation"], large, tmp_path / "large")
    set_seed(config.seed)
    initial = build_classifier(config.backbone).classifier.weight.detach()
    after_small, after_large = _classifier_weight(tmp_path / "small"), _classifier_weight(tmp_path / "large")
    assert not torch.allclose(after_large, initial, atol=1e-4)
    assert torch.allclose(after_small, after_large, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_learning_rate_warms_up_then_decays(splits, config, tmp_path, schedule):
    peak, steps, warmup = 1e-3, 8, 2
    run = replace(
        config, learning_rate=peak, max_steps=steps, warmup_ratio=warmup / steps, lr_scheduler=schedule,
        augment=False,
    )
    result = train(splits["train"], splits["validation"], run, tmp_path)
    logged = {e["step"]: e["learning_rate"] for e in result.log_history if "learning_rate" in e}

    def factor(k: int) -> float:  # the schedule after k scheduler steps
        if k < warmup:
            return k / warmup
        progress = (k - warmup) / (steps - warmup)
        return 1.0 - progress if schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))

    # The rate logged at optimizer step k is the one that step used: k - 1 scheduler steps in.
    expected = {k: peak * factor(k - 1) for k in range(1, steps + 1)}
    assert logged == pytest.approx(expected, abs=1e-9)


@pytest.mark.slow
def test_early_stopping_ends_training_before_the_last_epoch(splits, config, tmp_path):
    run = replace(
        config, epochs=6.0, eval_steps=2, early_stopping=True, early_stopping_patience=1,
        early_stopping_threshold=1.0, augment=False,
    )
    result = train(splits["train"], splits["validation"], run, tmp_path)
    evaluations = [e for e in result.log_history if "eval_macro_f1" in e]
    assert result.stopped_early
    assert result.global_step < result.max_steps == 6 * 8
    assert len(evaluations) <= 2
    assert result.best_step in {e["step"] for e in evaluations}


@pytest.mark.slow
def test_focal_loss_and_class_weighting_change_the_training_loss(splits, config, tmp_path):
    def first_loss(**changes):
        result = train(splits["train"], splits["validation"], _sgd_step_config(config, **changes), tmp_path / "m")
        return result.log_history[0]["loss"], result.pos_weight

    bce, no_weights = first_loss(focal_loss=False, class_weighting=False)
    focal, _ = first_loss(focal_loss=True, focal_gamma=2.0, class_weighting=False)
    weighted, weights = first_loss(focal_loss=False, class_weighting=True, class_weight_power=1.0)
    assert no_weights is None and set(weights) == set(MODEL_OUTPUTS)
    assert focal < 0.5 * bce
    assert weighted != pytest.approx(bce, rel=1e-3)


@pytest.mark.slow
def test_lora_trains_and_merges_into_a_plain_model(splits, config, tiny_backbone, tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification

    run = replace(config, lora=True, lora_r=4, learning_rate=5e-3, max_steps=4, augment=False)
    train(splits["train"], splits["validation"], run, tmp_path / "lora")
    keys = load_file(str(tmp_path / "lora" / "model.safetensors")).keys()
    assert not any("lora" in k or "base_model" in k for k in keys)
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "lora")
    base = load_file(str(tiny_backbone / "model.safetensors"))
    base_query = next(v for k, v in base.items() if k.endswith("layer.0.attention.self.query.weight"))
    merged_query = model.bert.encoder.layer[0].attention.self.query.weight.detach()
    assert merged_query.shape == base_query.shape
    assert not torch.allclose(merged_query, base_query.float(), atol=1e-6)
    untouched = model.bert.encoder.layer[0].intermediate.dense.weight.detach()
    base_untouched = next(v for k, v in base.items() if k.endswith("layer.0.intermediate.dense.weight"))
    assert torch.allclose(untouched, base_untouched.float())
    probs = torch.sigmoid(model(**_encode(tmp_path / "lora", ["email my boss the report"])).logits)
    assert probs.shape == (1, len(MODEL_OUTPUTS))


def _encode(model_dir, texts):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)(texts, return_tensors="pt")


@pytest.mark.slow
def test_head_learning_rate_applies_to_the_pooler_and_classifier_only(splits, config, tiny_backbone, tmp_path):
    from safetensors.torch import load_file

    run = _sgd_step_config(config, learning_rate=1e-9, head_learning_rate=0.5)
    train(splits["train"], splits["validation"], run, tmp_path)
    trained = load_file(str(tmp_path / "model.safetensors"))
    base = load_file(str(tiny_backbone / "model.safetensors"))
    set_seed(config.seed)
    initial_head = build_classifier(config.backbone).classifier.weight.detach()
    query = "encoder.layer.1.attention.self.query.weight"
    assert torch.allclose(trained[f"bert.{query}"], base[query], atol=1e-6)
    assert not torch.allclose(trained["bert.pooler.dense.weight"], base["pooler.dense.weight"], atol=1e-4)
    assert not torch.allclose(trained["classifier.weight"], initial_head, atol=1e-4)


def test_any_training_argument_passes_through_and_a_wrong_one_is_named(splits, config, tmp_path):
    # cosine_with_min_lr needs lr_scheduler_kwargs, which no train.* field sets: with the floor at
    # half the peak, no step runs below it.
    peak, steps = 1e-3, 6
    run = replace(
        config, learning_rate=peak, max_steps=steps, warmup_ratio=0.0, lr_scheduler="cosine_with_min_lr",
        augment=False, training_args={"lr_scheduler_kwargs": {"min_lr_rate": 0.5}},
    )
    result = train(splits["train"], splits["validation"], run, tmp_path / "ok")
    rates = [e["learning_rate"] for e in result.log_history if "learning_rate" in e]
    assert len(rates) == steps and min(rates) >= 0.5 * peak - 1e-12 and rates[0] == pytest.approx(peak)
    with pytest.raises(ValueError, match=r"train\.training_args: no_such_option is not a transformers\.TrainingArguments field"):
        train(splits["train"], splits["validation"], replace(run, training_args={"no_such_option": 1}), tmp_path / "bad")
    with pytest.raises(ValueError, match=r"train\.training_args: learning_rate is set by the train\.\* fields"):
        train(splits["train"], splits["validation"], replace(run, training_args={"learning_rate": 1.0}), tmp_path / "bad2")
