import numpy as np
import pandas as pd
import pytest

from pipeline.core.decision import Thresholds, decisions_from_frame, labels_from_probabilities
from pipeline.core.schema import ATTRIBUTE_NAMES, ATTRIBUTES_BY_NAME, MODEL_OUTPUTS, targets_from_frame
from pipeline.model.metrics import (
    block_operating_point,
    block_recall_at_false_block_rates,
    block_scores,
    classification_metrics,
    confident_errors,
    expected_calibration_error,
    gold_classes,
    macro_f1,
    predicted_classes,
    split_metrics,
)


def test_predicted_classes_match_the_decision_module():
    rng = np.random.default_rng(0)
    probs = rng.uniform(size=(200, len(MODEL_OUTPUTS)))
    thresholds = Thresholds(dict(zip(MODEL_OUTPUTS, rng.uniform(0.2, 0.8, len(MODEL_OUTPUTS)))))
    vectorized = predicted_classes(probs, thresholds.as_array())
    for i, row in enumerate(probs):
        labels = labels_from_probabilities(row, thresholds)
        for name in ATTRIBUTE_NAMES:
            assert ATTRIBUTES_BY_NAME[name].values[vectorized[name][i]] == labels[name]


def test_gold_classes_agree_with_model_targets(seed_sample):
    gold = gold_classes(seed_sample)
    targets = targets_from_frame(seed_sample)
    assert np.array_equal(gold["feasible"], targets[:, 0].astype(int))
    assert np.array_equal(gold["risk"], targets[:, 5].astype(int) + targets[:, 6].astype(int))


def test_macro_f1_on_a_known_example():
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 2, 0])
    # F1 per class: 0 -> 2*1/(2+2)=0.5, 1 -> 2*2/(3+2)=0.8, 2 -> 2*1/(1+2)=2/3
    assert macro_f1(y_true, y_pred, 3) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)


def test_classification_metrics_on_a_known_binary_example():
    y_true = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    p_yes = np.array([0.1, 0.2, 0.7, 0.4, 0.6, 0.8, 0.9, 0.95])
    y_pred = (p_yes >= 0.5).astype(int)
    m = classification_metrics(y_true, y_pred, np.stack([1 - p_yes, p_yes], axis=1), ("no", "yes"))
    assert m["confusion"]["matrix"] == [[2, 1], [1, 4]]
    assert m["per_class"]["yes"]["precision"] == pytest.approx(4 / 5)
    assert m["per_class"]["no"]["recall"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    # 13 of the 15 (negative, positive) pairs are ordered right: 0.7 outranks 0.4 and 0.6.
    assert m["roc_auc"] == pytest.approx(13 / 15)
    assert m["per_class"]["no"]["roc_auc"] == pytest.approx(13 / 15)
    assert 0 < m["log_loss"] < 1
    assert sum(b["count"] for b in m["reliability"]) == 8


def test_auc_is_none_when_a_class_is_missing():
    y = np.zeros(4, dtype=int)
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.7, 0.3]])
    m = classification_metrics(y, np.zeros(4, dtype=int), probs, ("no", "yes"))
    assert m["roc_auc"] is None and m["pr_auc"] is None
    assert m["per_class"]["yes"]["support"] == 0


def test_ece_is_the_gap_between_confidence_and_accuracy():
    y = np.array([1, 0, 1, 0])
    overconfident = np.tile([0.1, 0.9], (4, 1))  # always "yes" at 0.9, right half the time
    ece, bins = expected_calibration_error(y, overconfident)
    assert ece == pytest.approx(0.4)
    (filled,) = [b for b in bins if b["count"]]
    assert (filled["lower"], filled["upper"]) == (pytest.approx(0.8), pytest.approx(0.9))
    assert (filled["count"], filled["confidence"], filled["accuracy"]) == (4, pytest.approx(0.9), 0.5)
    calibrated, _ = expected_calibration_error(np.array([1, 1, 1, 0]), np.tile([0.25, 0.75], (4, 1)))
    assert calibrated == pytest.approx(0.0)


def _probs_for(labels: list[dict], noise: float = 0.0) -> np.ndarray:
    frame = pd.DataFrame(labels)
    targets = targets_from_frame(frame).astype(np.float64)
    return np.clip(np.where(targets > 0.5, 0.9, 0.1) + noise, 0.01, 0.99)


def test_block_recall_reads_the_curve_at_fixed_false_block_rates():
    gold = ["block"] * 4 + ["allow"] * 10 + ["confirm"] * 3
    scores = np.array([0.9, 0.8, 0.7, -0.95] + [0.75] + [-0.9] * 9 + [5.0, 5.0, 5.0])
    # One allow command (score 0.75) outranks two block commands: 10% false blocks buys them.
    rates = block_recall_at_false_block_rates(gold, scores, (0.0, 0.05, 0.10, 1.0))
    assert rates == {"0.00": 0.5, "0.05": 0.5, "0.10": 0.75, "1.00": 1.0}


def test_block_operating_point_counts_gold_block_and_allow_only():
    gold = ["block", "block", "allow", "allow", "allow", "allow", "cannot_do"]
    predicted = ["block", "confirm", "block", "allow", "allow", "allow", "block"]
    point = block_operating_point(gold, predicted)
    assert point == {"recall": 0.5, "false_block_rate": 0.25, "n_block": 2, "n_allow": 4}


def test_block_scores_are_positive_exactly_for_block_decisions(seed_sample):
    rng = np.random.default_rng(1)
    probs = rng.uniform(size=(len(seed_sample), len(MODEL_OUTPUTS)))
    thresholds = Thresholds(dict(zip(MODEL_OUTPUTS, rng.uniform(0.3, 0.7, len(MODEL_OUTPUTS)))))
    from pipeline.core.decision import decisions_from_probabilities

    decisions = np.asarray(decisions_from_probabilities(probs, thresholds))
    assert np.array_equal(block_scores(probs, thresholds) > 0, decisions == "block")


def test_split_metrics_of_a_perfect_model(seed_sample):
    probs = _probs_for(seed_sample[list(ATTRIBUTE_NAMES)].to_dict("records"))
    result = split_metrics(seed_sample, probs, Thresholds())
    assert set(result) == {"n", "attributes", "mean_macro_f1", "by_language", "by_domain", "decision", "block"}
    assert result["mean_macro_f1"] == pytest.approx(1.0)
    assert result["attributes"]["risk"]["confusion"]["labels"] == ["low", "medium", "high"]
    assert result["decision"]["accuracy"] == pytest.approx(1.0)
    assert result["block"]["operating_point"]["recall"] == pytest.approx(1.0)
    assert result["block"]["recall_at_false_block_rate"]["0.05"] == pytest.approx(1.0)
    assert set(result["by_language"]) == set(seed_sample["lang"])
    assert sum(v["n"] for v in result["by_domain"].values()) == len(seed_sample)
    assert decisions_from_frame(seed_sample).count("block") == result["block"]["operating_point"]["n_block"]


def test_confident_errors_lists_the_surest_mistakes_first(seed_sample):
    frame = seed_sample.head(30).reset_index(drop=True)
    probs = _probs_for(frame[list(ATTRIBUTE_NAMES)].to_dict("records"))
    probs[3, 0] = 1.0 - probs[3, 0]  # feasible wrong at 0.9 confidence
    probs[7, 4] = 0.6 if probs[7, 4] < 0.5 else 0.4  # reversible wrong at 0.6 confidence
    errors = confident_errors(frame, probs, Thresholds(), limit=5)
    assert [(e["id"], e["attribute"]) for e in errors] == [
        (frame["id"][3], "feasible"),
        (frame["id"][7], "reversible"),
    ]
    assert errors[0]["confidence"] == pytest.approx(0.9)
    assert errors[0]["gold"] != errors[0]["predicted"]
