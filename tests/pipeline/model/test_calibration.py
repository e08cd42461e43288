import json
import shutil

import numpy as np
import pytest

from pipeline.core.schema import ATTRIBUTE_NAMES, MODEL_OUTPUTS, targets_from_frame
from pipeline.model.calibration import CONFIG_KEY, Calibration, fit_calibration, fold_into_model
from pipeline.model.evaluate import EvaluateConfig, ModelScores, calibrate_scores, evaluate
from pipeline.model.inference import Predictor

from tests.train_data import tiny_splits


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def test_fit_recovers_a_known_distortion():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2.0, (20000, len(MODEL_OUTPUTS)))
    targets = (rng.random(z.shape) < _sigmoid(z)).astype(float)  # z is the calibrated logit
    scale = np.linspace(0.6, 2.5, len(MODEL_OUTPUTS))
    bias = np.linspace(-1.0, 1.0, len(MODEL_OUTPUTS))
    distorted = _sigmoid((z - bias) / scale)  # a model over- or under-confident and shifted
    fitted = fit_calibration(distorted, targets)
    assert fitted.scale == pytest.approx(tuple(scale), rel=0.06)
    assert fitted.bias == pytest.approx(tuple(bias), abs=0.08)
    assert np.abs(fitted.apply(distorted) - _sigmoid(z)).max() < 0.03


def test_composition_equals_applying_in_turn():
    rng = np.random.default_rng(1)
    probs = rng.uniform(0.01, 0.99, (50, len(MODEL_OUTPUTS)))
    first = Calibration(tuple(rng.uniform(0.5, 2, 7)), tuple(rng.normal(0, 1, 7)))
    second = Calibration(tuple(rng.uniform(0.5, 2, 7)), tuple(rng.normal(0, 1, 7)))
    np.testing.assert_allclose(first.then(second).apply(probs), second.apply(first.apply(probs)), atol=1e-9)


def test_bad_scales_are_refused():
    with pytest.raises(ValueError, match="positive"):
        Calibration((1.0,) * 6 + (0.0,), (0.0,) * 7)
    with pytest.raises(ValueError, match="7 scales"):
        Calibration((1.0,), (0.0,))


def test_folding_into_the_head_gives_the_calibrated_probabilities(gate_head_model_dir, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(gate_head_model_dir, model_dir)
    texts = ["delete every file in my Downloads folder", "transfer my savings to an unknown account",
             "book a table for two tonight", "write a keylogger that hides from antivirus"]
    before = Predictor(model_dir).predict_proba(texts)
    calibration = Calibration(tuple(np.linspace(0.5, 1.5, 7)), tuple(np.linspace(-0.5, 0.5, 7)))
    composed = fold_into_model(model_dir, calibration)
    after = Predictor(model_dir).predict_proba(texts)
    np.testing.assert_allclose(after, calibration.apply(before), atol=2e-5)
    assert not np.allclose(after, before, atol=1e-3)
    saved = json.loads((model_dir / "config.json").read_text())[CONFIG_KEY]
    assert saved["method"] == "platt" and set(saved["outputs"]) == set(MODEL_OUTPUTS)
    # a second fold composes with the first in the recorded map
    again = fold_into_model(model_dir, calibration)
    assert again.scale == pytest.approx(tuple(s * s for s in calibration.scale))
    assert composed.scale == pytest.approx(calibration.scale)


def test_evaluate_calibrates_on_validation_and_reports_ece(seed_sample):
    splits = tiny_splits(seed_sample, (0, 150, 150))
    val, test = splits["validation"], splits["test"]
    rng = np.random.default_rng(0)

    def overconfident(frame):  # right more often than not, but far too sure
        truth = targets_from_frame(frame)
        flip = rng.random(truth.shape) < 0.2
        signal = np.where(flip, 1 - truth, truth)
        return _sigmoid((signal * 2 - 1) * 6 + rng.normal(0, 1, truth.shape))

    scores = {"lm-action": ModelScores("LM-Action", overconfident(val), overconfident(test))}
    _, calibrated, report = calibrate_scores(val, scores["lm-action"], {"validation": val, "test": test})
    for split in ("validation", "test"):
        before, after = report["ece"][split]["before"], report["ece"][split]["after"]
        assert np.mean(list(after.values())) < np.mean(list(before.values())) - 0.05
    result = evaluate(val, test, scores, EvaluateConfig())
    assert result["calibration"]["ece"]["test"]["after"] == pytest.approx(report["ece"]["test"]["after"])
    ece_goals = [g for g in result["goals"] if g["goal"].endswith("expected calibration error")]
    assert [g["goal"].split(" ")[0] for g in ece_goals] == list(ATTRIBUTE_NAMES)
    off = evaluate(val, test, scores, EvaluateConfig(calibrate=False))
    assert off["calibration"] is None
    assert off["models"]["lm-action"]["test"]["attributes"]["risk"]["ece"] == pytest.approx(
        report["ece"]["test"]["before"]["risk"])
