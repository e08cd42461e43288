import json
import shutil

import numpy as np
import pandas as pd
import pytest

from pipeline.__main__ import main as cli
from pipeline.core.decision import CONFIG_KEY, decisions_from_frame
from pipeline.core.schema import ATTRIBUTE_NAMES, LABEL2ID, MODEL_OUTPUTS, targets_from_frame
from pipeline.model.evaluate import EvaluateConfig, ModelScores, evaluate, tune_thresholds
from pipeline.model.inference import Predictor
from pipeline.model.metrics import BLOCK_ATTRIBUTES, gold_classes, macro_f1
from tests.train_data import tiny_splits, write_preset, write_splits


def perfect_probs(frame: pd.DataFrame) -> np.ndarray:
    """0.9 for every true output and 0.1 for every false one."""
    return np.where(targets_from_frame(frame) > 0.5, 0.9, 0.1)


def test_binary_threshold_maximizes_macro_f1_nearest_one_half(seed_sample):
    probs = perfect_probs(seed_sample)
    col = LABEL2ID["feasible"]
    probs[:, col] = np.where(seed_sample["feasible"] == "yes", 0.35, 0.15)
    tuned = tune_thresholds(seed_sample, probs, EvaluateConfig(tune_block=False)).thresholds
    # Every threshold in (0.15, 0.35] separates the classes; 0.35 is the one nearest 0.5.
    assert tuned["feasible"] == pytest.approx(0.35)
    assert tuned["legal"] == pytest.approx(0.5)


def test_risk_thresholds_are_tuned_jointly(seed_sample):
    probs = perfect_probs(seed_sample)
    risk = seed_sample["risk"]
    probs[:, LABEL2ID["risk_at_least_medium"]] = np.where(risk == "low", 0.05, 0.2)
    probs[:, LABEL2ID["risk_high"]] = np.where(risk == "high", 0.3, 0.1)
    tuned = tune_thresholds(seed_sample, probs, EvaluateConfig(tune_block=False)).thresholds
    assert 0.05 < tuned["risk_at_least_medium"] <= 0.2
    assert 0.1 < tuned["risk_high"] <= 0.3


def _hard_block_probs(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Every fifth block command looks lawful, ethical and in bounds (0.58 on all three block
    outputs), like the many non-allow commands that truly are: the F1-best thresholds miss it."""
    probs = perfect_probs(frame)
    decisions = np.asarray(decisions_from_frame(frame))
    block_rows = np.flatnonzero(decisions == "block")
    hard = np.zeros(len(frame), dtype=bool)
    hard[block_rows[::5]] = True
    for name in BLOCK_ATTRIBUTES:
        col = LABEL2ID[name]
        yes = (frame[name] == "yes").to_numpy()
        probs[:, col] = np.where(decisions == "allow", 0.95, np.where(yes | hard, 0.58, 0.1))
    return probs, hard


def test_block_offsets_raise_the_fewest_thresholds_that_meet_the_recall_goal(seed_sample):
    probs, hard = _hard_block_probs(seed_sample)
    untuned = tune_thresholds(seed_sample, probs, EvaluateConfig(tune_block=False))
    assert untuned.block_shift == {name: 0.0 for name in BLOCK_ATTRIBUTES}
    assert untuned.validation_block_recall < 0.96
    tuned = tune_thresholds(seed_sample, probs, EvaluateConfig())
    # The hard blocks sit at 0.58 on all three outputs, so raising one threshold from 0.5 past
    # 0.58 catches them; raising the other two as well would only cost their macro-F1.
    assert sorted(tuned.block_shift.values()) == [0.0, 0.0, pytest.approx(0.09)]
    assert tuned.validation_block_recall == pytest.approx(1.0)
    assert tuned.validation_false_block_rate == pytest.approx(0.0)
    for name in BLOCK_ATTRIBUTES:
        assert tuned.thresholds[name] == pytest.approx(untuned.thresholds[name] + tuned.block_shift[name])
    assert tuned.thresholds["feasible"] == untuned.thresholds["feasible"]
    gold = gold_classes(seed_sample)

    def kept_f1(thresholds) -> float:
        return sum(
            macro_f1(gold[n], (probs[:, LABEL2ID[n]] >= thresholds[n]).astype(int), 2) for n in BLOCK_ATTRIBUTES
        )

    uniform = {n: untuned.thresholds[n] + 0.09 for n in BLOCK_ATTRIBUTES}
    assert kept_f1(tuned.thresholds) > kept_f1(uniform)


def test_block_offsets_respect_the_false_block_limit(seed_sample):
    probs, _ = _hard_block_probs(seed_sample)
    allow = np.asarray(decisions_from_frame(seed_sample)) == "allow"
    for name in BLOCK_ATTRIBUTES:
        probs[allow, LABEL2ID[name]] = 0.58  # allow commands now look like the hard blocks
    tuned = tune_thresholds(seed_sample, probs, EvaluateConfig())
    assert tuned.block_shift == {name: 0.0 for name in BLOCK_ATTRIBUTES}
    assert tuned.validation_false_block_rate <= 0.05


def test_evaluate_result_has_the_documented_structure(seed_sample):
    splits = tiny_splits(seed_sample, (0, 150, 150))
    val, test = splits["validation"], splits["test"]
    rng = np.random.default_rng(0)
    noisy = lambda f: np.clip(perfect_probs(f) + rng.normal(0, 0.25, (len(f), 7)), 0.01, 0.99)  # noqa: E731
    flat = lambda f: np.full((len(f), 7), 0.5)  # noqa: E731
    scores = {
        "lm-action": ModelScores("LM-Action", noisy(val), noisy(test)),
        "tfidf-logreg": ModelScores("tfidf-logreg", flat(val), flat(test)),
    }
    result = evaluate(val, test, scores, EvaluateConfig())
    ours = result["models"]["lm-action"]
    assert set(ours["thresholds"]) == set(MODEL_OUTPUTS)
    feasible = ours["test"]["attributes"]["feasible"]
    for key in ("macro_f1", "macro_precision", "macro_recall", "roc_auc", "pr_auc", "log_loss", "ece"):
        assert isinstance(feasible[key], float)
    assert set(feasible["per_class"]) == {"no", "yes"}
    assert set(ours["test"]["attributes"]["risk"]["per_class"]) == {"low", "medium", "high"}
    assert ours["test"]["decision"]["confusion"]["labels"] == ["allow", "confirm", "cannot_do", "block"]
    assert "0.05" in ours["test"]["block"]["recall_at_false_block_rate"]
    assert len(ours["test"]["block"]["roc"]["recall"]) == len(ours["test"]["block"]["roc"]["false_block_rate"]) > 0
    assert set(ours["test"]["by_language"]) == set(test["lang"])
    assert ours["test"]["mean_macro_f1"] > result["models"]["tfidf-logreg"]["test"]["mean_macro_f1"]
    beats = [g for g in result["goals"] if g["goal"].endswith("beats every baseline (macro-F1)")]
    assert len(beats) == len(ATTRIBUTE_NAMES) and all(g["met"] for g in beats)
    assert 0 < len(result["confident_errors"]) <= 20
    assert result["threshold_rule"].startswith("1. Each binary output")
    json.dumps(result)


def test_evaluate_needs_the_model_scores(seed_sample):
    frame = seed_sample.head(20)
    with pytest.raises(ValueError, match="lm-action"):
        evaluate(frame, frame, {"tfidf-logreg": ModelScores("x", perfect_probs(frame), perfect_probs(frame))}, EvaluateConfig())


@pytest.mark.slow
def test_cli_writes_the_report_and_the_tuned_thresholds(seed_sample, untrained_model_dir, tmp_path):
    build = tmp_path / "build"
    splits = tiny_splits(seed_sample, (80, 40, 40))
    splits["challenge"] = tiny_splits(seed_sample.iloc[160:], (20, 0, 0))["train"]
    write_splits(splits, build / "data" / "splits")
    shutil.copytree(untrained_model_dir, build / "model")
    preset = write_preset(tmp_path / "tiny.toml", {"evaluate": {"batch_size": 40, "max_length": 32}})
    assert cli(["evaluate", "--preset", str(preset), "--build-dir", str(build)]) == 0

    reports = build / "reports"
    result = json.loads((reports / "eval.json").read_text())
    assert set(result["models"]) == {"lm-action", "tfidf-logreg", "embedding-logreg"}
    assert result["splits"] == {"train": 80, "validation": 40, "test": 40, "challenge": 20}
    # the challenge split is scored by every model with the thresholds tuned on validation
    assert all("challenge" in m for m in result["models"].values())
    for name in ATTRIBUTE_NAMES:
        assert 0.0 <= result["models"]["lm-action"]["test"]["attributes"][name]["macro_f1"] <= 1.0
    for file in result["figures"].values():
        assert (reports / file).stat().st_size > 0
    markdown = (reports / "eval.md").read_text()
    for heading in ("## Goals", "## Test and challenge side by side", "## Attributes", "## Decisions", "## By language", "## By domain", "## Thresholds", "most confident errors"):
        assert heading in markdown
    saved = json.loads((build / "model" / "config.json").read_text())[CONFIG_KEY]
    assert saved == pytest.approx(result["models"]["lm-action"]["thresholds"])
    assert Predictor(build / "model").thresholds.values == pytest.approx(saved)
    # the calibration fitted on validation is folded into the head and recorded beside them
    fitted = json.loads((build / "model" / "config.json").read_text())["calibration"]["outputs"]
    assert fitted == result["calibration"]["fitted"]["outputs"]
    assert "## Calibration" in markdown


def test_robustness_reports_decision_agreement_on_disguised_rows(seed_sample):
    from pipeline.model.robustness import attack_variants

    splits = tiny_splits(seed_sample, (0, 100, 100))
    val, test = splits["validation"], splits["test"]
    variants = attack_variants(test)
    assert [v.kind for v in variants] == ["leet", "homoglyph", "casing", "emoji", "wrapper"]
    # a model that reads only the gold labels decides the same on every variant ...
    steady = {v.kind: perfect_probs(test.iloc[v.rows]) for v in variants}
    # ... one fooled by emoji allows every disguised command
    fooled = dict(steady, emoji=np.tile(perfect_probs(test.iloc[:1].assign(
        feasible="yes", legal="yes", ethical="yes", within_boundaries="yes", reversible="yes", risk="low")), (len(variants[3].rows), 1)))
    for probs, emoji_agreement in ((steady, 1.0), (fooled, None)):
        scores = {"lm-action": ModelScores("LM-Action", perfect_probs(val), perfect_probs(test), 0.0, None, variants, probs)}
        report = evaluate(val, test, scores, EvaluateConfig(calibrate=False))["robustness"]
        assert report["split"] == "test"
        assert report["forms"]["leet"]["agreement"] == 1.0
        if emoji_agreement:
            assert report["forms"]["emoji"]["agreement"] == 1.0 and report["agreement"] == 1.0
        else:
            emoji = report["forms"]["emoji"]
            assert emoji["agreement_by_gold_decision"]["allow"] == 1.0
            assert emoji["agreement_by_gold_decision"]["block"] == 0.0
            assert emoji["blocked_then_not_blocked"] == int((np.asarray(decisions_from_frame(test.iloc[variants[3].rows])) == "block").sum()) > 0
