"""Metrics of the seven-output classifier: per-attribute classification quality, calibration,
decisions and block recall, from gold labels and output probabilities. Pure numpy/sklearn.

Labels from probabilities follow `decision.labels_from_probabilities` (risk from the two ordinal
outputs); `predicted_classes` is its vectorized twin used where thousands of threshold settings
are scored.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from pipeline.core.decision import (
    DECISIONS,
    Decision,
    Thresholds,
    decisions_from_frame,
    decisions_from_probabilities,
)
from pipeline.core.schema import (
    ATTRIBUTE_NAMES,
    ATTRIBUTES_BY_NAME,
    BINARY_ATTRIBUTES,
    LABEL2ID,
    RISK,
    attribute_probabilities,
)

ECE_BINS = 10
BLOCK_ATTRIBUTES: tuple[str, ...] = ("legal", "ethical", "within_boundaries")
FALSE_BLOCK_RATES: tuple[float, ...] = (0.01, 0.02, 0.05, 0.10)


def gold_classes(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per attribute, the gold class index of every row (the position in the attribute's values)."""
    out = {}
    for name in ATTRIBUTE_NAMES:
        values = ATTRIBUTES_BY_NAME[name].values
        index = {v: i for i, v in enumerate(values)}
        out[name] = frame[name].map(index).to_numpy(dtype=np.int64)
    return out


def predicted_classes(probs: np.ndarray, thresholds: np.ndarray) -> dict[str, np.ndarray]:
    """Per attribute, the predicted class index of every row; `thresholds` is ordered like the
    model outputs. Same rule as `decision.labels_from_probabilities`, vectorized."""
    probs = np.atleast_2d(probs)
    t = np.asarray(thresholds, dtype=np.float64)
    out = {name: (probs[:, LABEL2ID[name]] >= t[LABEL2ID[name]]).astype(np.int64) for name in BINARY_ATTRIBUTES}
    medium = probs[:, LABEL2ID["risk_at_least_medium"]] >= t[LABEL2ID["risk_at_least_medium"]]
    high = medium & (probs[:, LABEL2ID["risk_high"]] >= t[LABEL2ID["risk_high"]])
    out[RISK.name] = medium.astype(np.int64) + high.astype(np.int64)
    return out


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """The (n_classes, n_classes) confusion matrix, rows gold and columns predicted."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


def _per_class(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and F1 per class from a confusion matrix (0 where undefined)."""
    tp = np.diag(cm).astype(np.float64)
    predicted, gold = cm.sum(axis=0), cm.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, gold, out=np.zeros_like(tp), where=gold > 0)
    f1 = np.divide(2 * tp, predicted + gold, out=np.zeros_like(tp), where=(predicted + gold) > 0)
    return precision, recall, f1


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, present_only: bool = False) -> float:
    """Macro-F1 over all `n_classes` (a class absent from gold and predictions scores 0), or
    over the classes present in `y_true` when `present_only`."""
    cm = confusion(y_true, y_pred, n_classes)
    f1 = _per_class(cm)[2]
    if present_only:
        f1 = f1[cm.sum(axis=1) > 0]
    return float(f1.mean()) if f1.size else 0.0


def mean_macro_f1(gold: Mapping[str, np.ndarray], probs: np.ndarray, thresholds: np.ndarray) -> dict[str, float]:
    """Per-attribute macro-F1 and their mean (`macro_f1`): the early-stopping metric."""
    pred = predicted_classes(probs, thresholds)
    scores = {
        f"macro_f1_{name}": macro_f1(gold[name], pred[name], len(ATTRIBUTES_BY_NAME[name].values))
        for name in ATTRIBUTE_NAMES
    }
    scores["macro_f1"] = float(np.mean(list(scores.values())))
    return scores


def expected_calibration_error(
    y_true: np.ndarray, probs: np.ndarray, bins: int = ECE_BINS
) -> tuple[float, list[dict]]:
    """Top-label ECE and its reliability bins (count, mean confidence, accuracy per bin)."""
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        mask = which == b
        n = int(mask.sum())
        entry = {"lower": float(edges[b]), "upper": float(edges[b + 1]), "count": n}
        if n:
            entry["confidence"] = float(confidence[mask].mean())
            entry["accuracy"] = float(correct[mask].mean())
            ece += n / len(y_true) * abs(entry["accuracy"] - entry["confidence"])
        table.append(entry)
    return float(ece), table


def _auc(kind: str, y: np.ndarray, score: np.ndarray) -> float | None:
    from sklearn.metrics import average_precision_score, roc_auc_score

    if y.min() == y.max():
        return None
    return float(roc_auc_score(y, score) if kind == "roc" else average_precision_score(y, score))


def _mean_or_none(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, probs: np.ndarray, class_names: Sequence[str]
) -> dict:
    """Precision, recall, F1 per class and macro, one-vs-rest ROC-AUC and PR-AUC, log loss,
    ECE with reliability bins and the confusion matrix (rows gold, columns predicted).

    An AUC is `None` when the class is absent from (or is all of) `y_true`.
    """
    k = len(class_names)
    cm = confusion(y_true, y_pred, k)
    precision, recall, f1 = _per_class(cm)
    support = cm.sum(axis=1)
    roc = [_auc("roc", (y_true == c).astype(int), probs[:, c]) for c in range(k)]
    pr = [_auc("pr", (y_true == c).astype(int), probs[:, c]) for c in range(k)]
    clipped = np.clip(probs, 1e-7, 1.0)
    clipped = clipped / clipped.sum(axis=1, keepdims=True)
    log_loss = float(-np.log(clipped[np.arange(len(y_true)), y_true]).mean()) if len(y_true) else 0.0
    ece, bins = expected_calibration_error(y_true, probs)
    per_class = {
        name: {
            "precision": float(precision[c]),
            "recall": float(recall[c]),
            "f1": float(f1[c]),
            "support": int(support[c]),
            "roc_auc": roc[c],
            "pr_auc": pr[c],
        }
        for c, name in enumerate(class_names)
    }
    return {
        "n": int(len(y_true)),
        "accuracy": float((y_true == y_pred).mean()) if len(y_true) else 0.0,
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "macro_f1": float(f1.mean()),
        "roc_auc": _mean_or_none(roc),
        "pr_auc": _mean_or_none(pr),
        "log_loss": log_loss,
        "ece": ece,
        "reliability": bins,
        "per_class": per_class,
        "confusion": {"labels": list(class_names), "matrix": cm.tolist()},
    }


def attribute_metrics(frame: pd.DataFrame, probs: np.ndarray, thresholds: Thresholds) -> dict[str, dict]:
    """`classification_metrics` of every attribute for a split and its (n, 7) probabilities."""
    gold = gold_classes(frame)
    pred = predicted_classes(probs, thresholds.as_array())
    per_value = attribute_probabilities(probs)
    return {
        name: classification_metrics(gold[name], pred[name], per_value[name], ATTRIBUTES_BY_NAME[name].values)
        for name in ATTRIBUTE_NAMES
    }


def breakdown(
    frame: pd.DataFrame, probs: np.ndarray, thresholds: Thresholds, column: str
) -> dict[str, dict]:
    """Per value of `column` (language, domain): rows, and per attribute the accuracy and the
    macro-F1 over the classes present in that subset's gold labels."""
    gold = gold_classes(frame)
    pred = predicted_classes(probs, thresholds.as_array())
    out: dict[str, dict] = {}
    for value in sorted(frame[column].unique()):
        mask = (frame[column] == value).to_numpy()
        entry: dict = {"n": int(mask.sum()), "attributes": {}}
        for name in ATTRIBUTE_NAMES:
            y, p = gold[name][mask], pred[name][mask]
            k = len(ATTRIBUTES_BY_NAME[name].values)
            entry["attributes"][name] = {
                "macro_f1": macro_f1(y, p, k, present_only=True),
                "accuracy": float((y == p).mean()),
            }
        entry["mean_macro_f1"] = float(np.mean([a["macro_f1"] for a in entry["attributes"].values()]))
        out[str(value)] = entry
    return out


def decision_metrics(gold: Sequence[str], predicted: Sequence[str]) -> dict:
    """Per-decision precision/recall/F1, accuracy and the 4x4 confusion matrix."""
    index = {d: i for i, d in enumerate(DECISIONS)}
    cm = confusion([index[d] for d in gold], [index[d] for d in predicted], len(DECISIONS))
    precision, recall, f1 = _per_class(cm)
    support = cm.sum(axis=1)
    return {
        "accuracy": float(np.mean(np.asarray(gold) == np.asarray(predicted))),
        "macro_f1": float(f1.mean()),
        "per_class": {
            d: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]), "support": int(support[i])}
            for i, d in enumerate(DECISIONS)
        },
        "confusion": {"labels": list(DECISIONS), "matrix": cm.tolist()},
    }


def block_scores(probs: np.ndarray, thresholds: Thresholds) -> np.ndarray:
    """How far each command is into `block`: max over legal, ethical and within_boundaries of
    (threshold - P(yes)). The decision is `block` exactly when the score is > 0; a common shift
    of the three thresholds by d moves that cut to -d."""
    probs = np.atleast_2d(probs)
    cols = [LABEL2ID[a] for a in BLOCK_ATTRIBUTES]
    return (thresholds.as_array()[cols][None, :] - probs[:, cols]).max(axis=1)


def block_recall_at_false_block_rates(
    gold_decisions: Sequence[str],
    scores: np.ndarray,
    rates: Sequence[float] = FALSE_BLOCK_RATES,
) -> dict[str, float | None]:
    """Recall of gold-`block` commands at the best cut of `scores` whose false-block rate on
    gold-`allow` commands is at most each rate (the ROC curve read at those rates)."""
    from sklearn.metrics import roc_curve

    gold = np.asarray(gold_decisions)
    mask = np.isin(gold, [Decision.BLOCK.value, Decision.ALLOW.value])
    y = (gold[mask] == Decision.BLOCK.value).astype(int)
    if y.min(initial=1) == y.max(initial=0) or len(y) == 0:
        return {f"{r:.2f}": None for r in rates}
    fpr, tpr, _ = roc_curve(y, np.asarray(scores)[mask], drop_intermediate=False)
    return {f"{r:.2f}": float(tpr[fpr <= r + 1e-12].max()) for r in rates}


def block_roc(
    gold_decisions: Sequence[str], probs: np.ndarray, thresholds: Thresholds, max_points: int = 200
) -> tuple[list[float], list[float]]:
    """False-block rate (on gold `allow`) and block recall (on gold `block`) as the three block
    thresholds shift together; at most `max_points` points, for plotting."""
    from sklearn.metrics import roc_curve

    gold = np.asarray(gold_decisions)
    mask = np.isin(gold, [Decision.BLOCK.value, Decision.ALLOW.value])
    y = (gold[mask] == Decision.BLOCK.value).astype(int)
    if len(y) == 0 or y.min() == y.max():
        return [], []
    fpr, tpr, _ = roc_curve(y, block_scores(probs, thresholds)[mask])
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(max_points, len(fpr))).round().astype(int))
    return [round(float(v), 4) for v in fpr[keep]], [round(float(v), 4) for v in tpr[keep]]


def block_operating_point(gold_decisions: Sequence[str], predicted: Sequence[str]) -> dict[str, float | None]:
    """Block recall on gold-`block` commands and false-block rate on gold-`allow` commands at
    the decisions actually made."""
    gold = np.asarray(gold_decisions)
    pred = np.asarray(predicted)
    is_block, is_allow = gold == Decision.BLOCK.value, gold == Decision.ALLOW.value
    blocked = pred == Decision.BLOCK.value
    return {
        "recall": float(blocked[is_block].mean()) if is_block.any() else None,
        "false_block_rate": float(blocked[is_allow].mean()) if is_allow.any() else None,
        "n_block": int(is_block.sum()),
        "n_allow": int(is_allow.sum()),
    }


def split_metrics(
    frame: pd.DataFrame,
    probs: np.ndarray,
    thresholds: Thresholds,
    false_block_rates: Sequence[float] = FALSE_BLOCK_RATES,
) -> dict:
    """Everything the report shows for one model on one split."""
    gold_decisions = decisions_from_frame(frame)
    predicted = decisions_from_probabilities(probs, thresholds)
    attributes = attribute_metrics(frame, probs, thresholds)
    return {
        "n": int(len(frame)),
        "attributes": attributes,
        "mean_macro_f1": float(np.mean([m["macro_f1"] for m in attributes.values()])),
        "by_language": breakdown(frame, probs, thresholds, "lang"),
        "by_domain": breakdown(frame, probs, thresholds, "domain"),
        "decision": decision_metrics(gold_decisions, predicted),
        "block": {
            "operating_point": block_operating_point(gold_decisions, predicted),
            "recall_at_false_block_rate": block_recall_at_false_block_rates(
                gold_decisions, block_scores(probs, thresholds), false_block_rates
            ),
        },
    }


def confident_errors(
    frame: pd.DataFrame, probs: np.ndarray, thresholds: Thresholds, limit: int = 20
) -> list[dict]:
    """The `limit` wrong attribute predictions made with the highest probability for the
    predicted value, most confident first."""
    gold = gold_classes(frame)
    pred = predicted_classes(probs, thresholds.as_array())
    per_value = attribute_probabilities(probs)
    rows = []
    for name in ATTRIBUTE_NAMES:
        values = ATTRIBUTES_BY_NAME[name].values
        wrong = np.flatnonzero(gold[name] != pred[name])
        for i in wrong:
            rows.append(
                {
                    "id": str(frame["id"].iloc[i]),
                    "text": str(frame["text"].iloc[i]),
                    "lang": str(frame["lang"].iloc[i]),
                    "domain": str(frame["domain"].iloc[i]),
                    "attribute": name,
                    "gold": values[gold[name][i]],
                    "predicted": values[pred[name][i]],
                    "confidence": float(per_value[name][i, pred[name][i]]),
                }
            )
    rows.sort(key=lambda r: (-r["confidence"], r["id"], r["attribute"]))
    return rows[:limit]
