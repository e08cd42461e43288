"""`evaluate`: calibrate the model's probabilities and tune the decision thresholds on
validation, score the model and both baselines on the test split once, and write
`build/reports/eval.{md,json}` with figures.

Calibration (`pipeline.model.calibration`, validation only) is folded into the model's head; the
thresholds follow `THRESHOLD_RULE` on the calibrated probabilities (validation only, the same
rule for every model) and are written to `build/model/config.json` (`decision_thresholds`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core.config import DEFAULT_BACKBONE, setting, to_dict
from pipeline.core.decision import Decision, Thresholds, decisions_from_frame, decisions_from_probabilities
from pipeline.core.schema import ATTRIBUTE_NAMES, BINARY_ATTRIBUTES, LABEL2ID, MODEL_OUTPUTS, RISK, targets_from_frame
from pipeline.data.augment import ATTACK_KINDS
from pipeline.data.split import CHALLENGE
from pipeline.model.calibration import Calibration, fit_calibration
from pipeline.model.metrics import (
    BLOCK_ATTRIBUTES,
    FALSE_BLOCK_RATES,
    block_roc,
    confident_errors,
    gold_classes,
    macro_f1,
    split_metrics,
)
from pipeline.report.eval_report import MODEL_KEY


log = logging.getLogger(__name__)

BASELINE_KINDS = ("tfidf", "embedding")
THRESHOLD_RULE = """\
1. Each binary output: the threshold in [{threshold_min}, {threshold_max}] (step {threshold_step}) \
maximizing the attribute's macro-F1; ties go to the value nearest 0.5.
2. Risk: the pair (risk_at_least_medium, risk_high) maximizing 3-class risk macro-F1 on the \
same grid.
3. Block: each of the legal, ethical and within_boundaries thresholds is then raised by its own \
offset in [0, {block_shift_max}] (step {threshold_step}). Of the offset triples at which block \
recall reaches {block_recall_target} with a false-block rate on `allow` commands of at most \
{max_false_block_rate}, the one keeping the highest sum of the three attributes' macro-F1 is \
taken (ties: the smallest total offset); when no triple meets both, the triple with the highest \
recall within the false-block limit (no offsets if none is within it). Block tuning on: \
{tune_block}."""


@dataclass
class EvaluateConfig:
    """The `[evaluate]` table of a preset."""

    batch_size: int = setting(64, "commands per forward pass of the model")
    max_length: int = setting(128, "tokens read per command at prediction time")
    backend: str = setting("torch", "Predictor backend (the model is not exported to ONNX yet here)")
    baselines: list[str] = setting(list(BASELINE_KINDS), "baselines compared with the model: tfidf, embedding")
    embedding_model: str = setting(DEFAULT_BACKBONE, "sentence-embedding model of the embedding baseline")
    embedding_batch_size: int = setting(64, "texts per embedding batch of that baseline")
    threshold_min: float = setting(0.02, "lowest threshold tried")
    threshold_max: float = setting(0.98, "highest threshold tried")
    threshold_step: float = setting(0.01, "grid step of the threshold search")
    tune_block: bool = setting(True, "raise the block thresholds (each its own offset) to meet the block goal")
    block_shift_max: float = setting(0.6, "largest rise of one block threshold tried")
    block_recall_target: float = setting(
        0.96, "validation block recall the block thresholds aim for (the goal plus a margin)"
    )
    max_false_block_rate: float = setting(0.05, "false-block limit on `allow` commands (goal too)")
    goal_block_recall: float = setting(0.95, "test block recall goal at the tuned thresholds")
    goal_binary_macro_f1: float = setting(0.90, "test macro-F1 goal of each binary attribute")
    goal_risk_macro_f1: float = setting(0.85, "test macro-F1 goal of risk")
    calibrate: bool = setting(True, "fit per-output Platt scaling on validation and fold it into the head")
    goal_max_ece: float = setting(0.05, "expected calibration error goal of each attribute (test)")
    robustness_kinds: list[str] = setting(
        list(ATTACK_KINDS), "disguises scored (challenge split, else test)"
    )
    confident_errors: int = setting(20, "most confident test errors listed in the report")
    seed: int = setting(0, "baselines' random state")


@dataclass
class ThresholdTuning:
    """Tuned thresholds and how they were reached."""

    thresholds: Thresholds
    # How far each block attribute's threshold was raised above its macro-F1 optimum.
    block_shift: dict[str, float]
    validation_block_recall: float | None
    validation_false_block_rate: float | None


def _grid(config: EvaluateConfig) -> np.ndarray:
    n = int(round((config.threshold_max - config.threshold_min) / config.threshold_step)) + 1
    return np.round(np.linspace(config.threshold_min, config.threshold_max, n), 6)


def _best(scores: np.ndarray, distance: np.ndarray) -> int:
    """Index of the best score; ties broken by the smallest distance (to 0.5 or to 0)."""
    top = np.flatnonzero(scores >= scores.max() - 1e-12)
    return int(top[np.argmin(distance[top])])


def _block_rates(
    probs: np.ndarray, thresholds: np.ndarray, gold_block: np.ndarray, gold_allow: np.ndarray
) -> tuple[float | None, float | None]:
    cols = [LABEL2ID[a] for a in BLOCK_ATTRIBUTES]
    blocked = (probs[:, cols] < thresholds[cols][None, :]).any(axis=1)
    recall = float(blocked[gold_block].mean()) if gold_block.any() else None
    fbr = float(blocked[gold_allow].mean()) if gold_allow.any() else None
    return recall, fbr


def block_offsets(
    probs: np.ndarray,
    base: np.ndarray,
    gold: dict[str, np.ndarray],
    gold_block: np.ndarray,
    gold_allow: np.ndarray,
    config: EvaluateConfig,
) -> dict[str, float]:
    """Per block attribute, the rise of its threshold above `base` chosen by rule 3 of
    `THRESHOLD_RULE`: the triple of offsets meeting the block goal on these rows that keeps the
    most macro-F1 of the three attributes."""
    n = int(round(config.block_shift_max / config.threshold_step)) + 1
    offsets = np.round(np.arange(n) * config.threshold_step, 6)
    cols = [LABEL2ID[a] for a in BLOCK_ATTRIBUTES]
    # below[a][i]: rows whose P(attribute a) falls under its threshold raised by offsets[i].
    below = [probs[:, c][None, :] < np.clip(base[c] + offsets, 0.01, 0.99)[:, None] for c in cols]
    f1 = [
        np.array([macro_f1(gold[a], (~b).astype(np.int64), 2) for b in below[i]])
        for i, a in enumerate(BLOCK_ATTRIBUTES)
    ]
    on_block = [b[:, gold_block] for b in below]
    on_allow = [b[:, gold_allow] for b in below]
    best_meets: tuple | None = None  # (f1 sum, -total offset, i, j, k)
    best_within: tuple | None = None  # (recall, f1 sum, -total offset, i, j, k)
    for i in range(n):
        for j in range(n):
            recall = (on_block[0][i] | on_block[1][j] | on_block[2]).mean(axis=1)
            fbr = (on_allow[0][i] | on_allow[1][j] | on_allow[2]).mean(axis=1)
            within = fbr <= config.max_false_block_rate + 1e-12
            if not within.any():
                continue
            score = f1[0][i] + f1[1][j] + f1[2]
            total = -(offsets[i] + offsets[j] + offsets)
            meets = within & (recall >= config.block_recall_target - 1e-12)
            if meets.any():
                k = max(np.flatnonzero(meets), key=lambda k: (round(score[k], 12), total[k]))
                candidate = (round(score[k], 12), total[k], i, j, k)
                best_meets = candidate if best_meets is None or candidate[:2] > best_meets[:2] else best_meets
            elif best_meets is None:
                k = max(np.flatnonzero(within), key=lambda k: (recall[k], round(score[k], 12), total[k]))
                candidate = (recall[k], round(score[k], 12), total[k], i, j, k)
                best_within = candidate if best_within is None or candidate[:3] > best_within[:3] else best_within
    chosen = best_meets[2:] if best_meets is not None else best_within[3:] if best_within is not None else (0, 0, 0)
    return {a: float(offsets[x]) for a, x in zip(BLOCK_ATTRIBUTES, chosen)}


def tune_thresholds(frame: pd.DataFrame, probs: np.ndarray, config: EvaluateConfig) -> ThresholdTuning:
    """Per-output thresholds from a validation split and its (n, 7) probabilities, by
    `THRESHOLD_RULE` (grid, targets and limits from `config`)."""
    probs = np.asarray(probs, dtype=np.float64)
    gold = gold_classes(frame)
    grid = _grid(config)
    t = np.full(len(MODEL_OUTPUTS), 0.5)
    for name in BINARY_ATTRIBUTES:
        p = probs[:, LABEL2ID[name]]
        scores = np.array([macro_f1(gold[name], (p >= g).astype(np.int64), 2) for g in grid])
        t[LABEL2ID[name]] = grid[_best(scores, np.abs(grid - 0.5))]
    p_medium = probs[:, LABEL2ID["risk_at_least_medium"]]
    p_high = probs[:, LABEL2ID["risk_high"]]
    pairs, scores = [], []
    for g_m in grid:
        medium = p_medium >= g_m
        for g_h in grid:
            pred = medium.astype(np.int64) + (medium & (p_high >= g_h)).astype(np.int64)
            pairs.append((g_m, g_h))
            scores.append(macro_f1(gold[RISK.name], pred, 3))
    pairs_arr = np.asarray(pairs)
    best = _best(np.asarray(scores), np.abs(pairs_arr - 0.5).sum(axis=1))
    t[LABEL2ID["risk_at_least_medium"]], t[LABEL2ID["risk_high"]] = pairs_arr[best]

    decisions = np.asarray(decisions_from_frame(frame))
    gold_block, gold_allow = decisions == Decision.BLOCK.value, decisions == Decision.ALLOW.value
    shift = {a: 0.0 for a in BLOCK_ATTRIBUTES}
    if config.tune_block and gold_block.any() and gold_allow.any():
        shift = block_offsets(probs, t, gold, gold_block, gold_allow, config)
    for name, offset in shift.items():
        t[LABEL2ID[name]] = np.clip(t[LABEL2ID[name]] + offset, 0.01, 0.99)
    recall, fbr = _block_rates(probs, t, gold_block, gold_allow)
    thresholds = Thresholds({name: float(round(t[i], 6)) for i, name in enumerate(MODEL_OUTPUTS)})
    return ThresholdTuning(thresholds, shift, recall, fbr)


# ---------------------------------------------------------------------------------------------
# The evaluation proper


@dataclass
class ModelScores:
    """One model's probabilities on validation and test, and its display name."""

    name: str
    validation: np.ndarray
    test: np.ndarray
    seconds: float = 0.0
    challenge: np.ndarray | None = None
    # `robustness`: the disguised variants of the robustness split and their probabilities.
    variants: list | None = None
    variant_probs: dict[str, np.ndarray] | None = None


def goals(result_models: dict, config: EvaluateConfig) -> list[dict]:
    """Each goal of the issue with its target, the value reached on test and whether it is met."""
    test = result_models[MODEL_KEY]["test"]
    rows = []
    for name in ATTRIBUTE_NAMES:
        target = config.goal_risk_macro_f1 if name == RISK.name else config.goal_binary_macro_f1
        value = test["attributes"][name]["macro_f1"]
        rows.append({"goal": f"{name} macro-F1", "target": f">= {target:.2f}", "value": value, "met": value >= target})
    rate = f"{config.max_false_block_rate:.2f}"
    curve = test["block"]["recall_at_false_block_rate"].get(rate)
    rows.append(
        {
            "goal": f"block recall at false-block rate <= {config.max_false_block_rate:.0%} (best cut on test)",
            "target": f">= {config.goal_block_recall:.2f}",
            "value": curve,
            "met": curve is not None and curve >= config.goal_block_recall,
        }
    )
    point = test["block"]["operating_point"]
    met = (
        point["recall"] is not None
        and point["false_block_rate"] is not None
        and point["recall"] >= config.goal_block_recall
        and point["false_block_rate"] <= config.max_false_block_rate
    )
    rows.append(
        {
            "goal": "block recall / false-block rate at the validation-tuned thresholds",
            "target": f">= {config.goal_block_recall:.2f} / <= {config.max_false_block_rate:.2f}",
            "value": [point["recall"], point["false_block_rate"]],
            "met": bool(met),
        }
    )
    for name in ATTRIBUTE_NAMES:
        value = test["attributes"][name]["ece"]
        rows.append(
            {"goal": f"{name} expected calibration error", "target": f"<= {config.goal_max_ece:.2f}",
             "value": value, "met": value <= config.goal_max_ece}
        )
    for name in ATTRIBUTE_NAMES:
        ours = test["attributes"][name]["macro_f1"]
        others = {k: m["test"]["attributes"][name]["macro_f1"] for k, m in result_models.items() if k != MODEL_KEY}
        if others:
            rows.append(
                {
                    "goal": f"{name}: beats every baseline (macro-F1)",
                    "target": f"> {max(others.values()):.4f}",
                    "value": ours,
                    "met": all(ours > v for v in others.values()),
                }
            )
    return rows


def _eces(frame: pd.DataFrame, probs: np.ndarray) -> dict[str, float]:
    from pipeline.model.metrics import attribute_metrics

    return {name: m["ece"] for name, m in attribute_metrics(frame, probs, Thresholds()).items()}


def calibrate_scores(
    validation: pd.DataFrame, model: ModelScores, frames: dict[str, pd.DataFrame]
) -> tuple[Calibration, ModelScores, dict]:
    """Fit the calibration on validation; the calibrated scores, and each split's
    per-attribute ECE before and after (`frames`: the splits scored, by name)."""
    calibration = fit_calibration(model.validation, targets_from_frame(validation))
    calibrated = ModelScores(
        model.name,
        calibration.apply(model.validation),
        calibration.apply(model.test),
        model.seconds,
        None if model.challenge is None else calibration.apply(model.challenge),
        model.variants,
        None if model.variant_probs is None else {k: calibration.apply(v) for k, v in model.variant_probs.items()},
    )
    report: dict = {"fitted": calibration.to_config("validation"), "ece": {}}
    for split, frame in frames.items():
        before, after = getattr(model, split), getattr(calibrated, split)
        if before is None:
            continue
        report["ece"][split] = {"before": _eces(frame, before), "after": _eces(frame, after)}
    return calibration, calibrated, report


def robustness_split(test: pd.DataFrame, challenge: pd.DataFrame | None) -> tuple[str, pd.DataFrame]:
    """The split the disguised variants are made from: the challenge split when there is one."""
    return (CHALLENGE, challenge) if challenge is not None else ("test", test)


def _robustness(model: ModelScores, thresholds: Thresholds, test: pd.DataFrame, challenge: pd.DataFrame | None) -> dict | None:
    from pipeline.model.robustness import agreement_report

    if not model.variants or model.variant_probs is None:
        return None
    split, frame = robustness_split(test, challenge)
    probs = model.challenge if split == CHALLENGE else model.test
    decided = {k: decisions_from_probabilities(p, thresholds) for k, p in model.variant_probs.items()}
    return agreement_report(
        decisions_from_probabilities(probs, thresholds), decisions_from_frame(frame), model.variants, decided, split
    )


def evaluate(
    validation: pd.DataFrame,
    test: pd.DataFrame,
    scores: dict[str, ModelScores],
    config: EvaluateConfig,
    challenge: pd.DataFrame | None = None,
) -> dict:
    """Tune every model's thresholds on validation and score validation, test and (when given)
    the challenge split with them; `scores` must hold the LM-Action model under `MODEL_KEY`.
    Returns the content of `eval.json`."""
    if MODEL_KEY not in scores:
        raise ValueError(f"scores must include {MODEL_KEY!r}")
    calibration_report = None
    if config.calibrate:
        frames = {"validation": validation, "test": test}
        if challenge is not None:
            frames[CHALLENGE] = challenge
        _, calibrated, calibration_report = calibrate_scores(validation, scores[MODEL_KEY], frames)
        scores = {**scores, MODEL_KEY: calibrated}
    models: dict[str, dict] = {}
    rates = sorted(set(FALSE_BLOCK_RATES) | {config.max_false_block_rate})
    gold_test_decisions = decisions_from_frame(test)
    for key, model in scores.items():
        tuning = tune_thresholds(validation, model.validation, config)
        models[key] = {
            "name": model.name,
            "predict_seconds": round(model.seconds, 2),
            "thresholds": dict(tuning.thresholds.values),
            "block_shift": tuning.block_shift,
            "validation": split_metrics(validation, model.validation, tuning.thresholds, rates),
            "test": split_metrics(test, model.test, tuning.thresholds, rates),
        }
        fpr, tpr = block_roc(gold_test_decisions, model.test, tuning.thresholds)
        models[key]["test"]["block"]["roc"] = {"false_block_rate": fpr, "recall": tpr}
        if challenge is not None and model.challenge is not None:
            models[key][CHALLENGE] = split_metrics(challenge, model.challenge, tuning.thresholds, rates)
    ours = scores[MODEL_KEY]
    thresholds = Thresholds(models[MODEL_KEY]["thresholds"])
    splits = {"validation": int(len(validation)), "test": int(len(test))}
    if challenge is not None:
        splits[CHALLENGE] = int(len(challenge))
    return {
        "splits": splits,
        "threshold_rule": THRESHOLD_RULE.format(**to_dict(config)),
        "config": to_dict(config),
        "models": models,
        "goals": goals(models, config),
        "calibration": calibration_report,
        "robustness": _robustness(ours, thresholds, test, challenge),
        "confident_errors": confident_errors(test, ours.test, thresholds, config.confident_errors),
    }


def _baseline(kind: str, config: EvaluateConfig, cache_dir: Path | None = None):
    from pipeline.model.baselines import EmbeddingLogReg, TfidfLogReg

    if kind == "tfidf":
        return TfidfLogReg(seed=config.seed)
    if kind == "embedding":
        return EmbeddingLogReg(config.embedding_model, seed=config.seed, batch_size=config.embedding_batch_size,
                               cache_dir=cache_dir)
    raise ValueError(f"unknown baseline {kind!r}; known: {', '.join(BASELINE_KINDS)}")


def predict_all(
    model_dir: Path, splits: dict[str, pd.DataFrame], config: EvaluateConfig, cache_dir: Path | None = None
) -> dict[str, ModelScores]:
    """Probabilities of the model (through `inference.Predictor`) and of each baseline (fitted on
    the training split) on validation and test; `cache_dir` holds the build's cached embeddings."""
    from pipeline.model.inference import Predictor, PredictorConfig

    started = time.perf_counter()
    predictor = Predictor(
        model_dir, PredictorConfig(backend=config.backend, batch_size=config.batch_size, max_length=config.max_length)
    )
    val = predictor.predict_proba(splits["validation"]["text"].tolist(), progress=True)
    test = predictor.predict_proba(splits["test"]["text"].tolist(), progress=True)
    challenge = splits.get(CHALLENGE)
    hard = None if challenge is None else predictor.predict_proba(challenge["text"].tolist(), progress=True)
    variants, variant_probs = None, None
    if config.robustness_kinds:
        from pipeline.model.robustness import attack_variants

        _, frame = robustness_split(splits["test"], challenge)
        variants = attack_variants(frame, tuple(config.robustness_kinds), config.seed)
        variant_probs = {
            v.kind: predictor.predict_proba(v.texts) if v.texts else np.zeros((0, len(MODEL_OUTPUTS))) for v in variants
        }
    out = {MODEL_KEY: ModelScores(
        "LM-Action (fine-tuned)", val, test, time.perf_counter() - started, hard, variants, variant_probs
    )}
    for kind in config.baselines:
        started = time.perf_counter()
        baseline = _baseline(kind, config, cache_dir)
        log.info("fitting baseline %s on %d rows", baseline.name, len(splits["train"]))
        baseline.fit(splits["train"]["text"].tolist(), targets_from_frame(splits["train"]))
        out[baseline.name.split(" ")[0]] = ModelScores(
            baseline.name,
            baseline.predict_proba(splits["validation"]["text"].tolist()),
            baseline.predict_proba(splits["test"]["text"].tolist()),
            time.perf_counter() - started,
            None if challenge is None else baseline.predict_proba(challenge["text"].tolist()),
        )
    return out
