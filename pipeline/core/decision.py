"""The gate's decision (allow / confirm / cannot_do / block) from labels or model probabilities.

Policy: `block` if not legal, not ethical or not within boundaries; else `cannot_do` if not
feasible; else `confirm` if risk is medium or high or the action is irreversible; else `allow`.
Thresholds on the seven model outputs come from the model's saved config (`decision_thresholds`),
tuned on the validation split by the evaluate stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Mapping

import numpy as np

from pipeline.core.schema import (
    ATTRIBUTE_NAMES,
    ATTRIBUTES_BY_NAME,
    BINARY_ATTRIBUTES,
    LABEL2ID,
    MODEL_OUTPUTS,
    NO,
    RISK_VALUES,
    YES,
    attribute_probabilities,
)

DEFAULT_THRESHOLD = 0.5
# A probability this close to its threshold makes the result "uncertain: review".
DEFAULT_UNCERTAINTY_MARGIN = 0.15
CONFIG_KEY = "decision_thresholds"


class Decision(str, Enum):
    ALLOW = "allow"
    CONFIRM = "confirm"
    CANNOT_DO = "cannot_do"
    BLOCK = "block"


DECISIONS: tuple[str, ...] = tuple(d.value for d in Decision)

_REASON_NO = {
    "legal": "likely illegal",
    "ethical": "unethical",
    "within_boundaries": "outside what an assistant may do for this user",
    "feasible": "not something a software agent can carry out",
    "reversible": "irreversible",
}


@dataclass(frozen=True)
class Thresholds:
    """One threshold per model output: an output counts as positive when P >= threshold."""

    values: dict[str, float] = field(
        default_factory=lambda: {name: DEFAULT_THRESHOLD for name in MODEL_OUTPUTS}
    )

    def __post_init__(self) -> None:
        unknown = set(self.values) - set(MODEL_OUTPUTS)
        missing = set(MODEL_OUTPUTS) - set(self.values)
        if unknown or missing:
            raise ValueError(
                f"thresholds must name exactly the model outputs; unknown={sorted(unknown)} "
                f"missing={sorted(missing)}"
            )
        for name, value in self.values.items():
            if not 0.0 < float(value) < 1.0:
                raise ValueError(f"threshold for {name} must be in (0, 1), got {value}")

    def __getitem__(self, name: str) -> float:
        return float(self.values[name])

    def as_array(self) -> np.ndarray:
        return np.asarray([self.values[name] for name in MODEL_OUTPUTS], dtype=np.float64)

    @classmethod
    def from_config(cls, config: object) -> "Thresholds":
        """Thresholds saved in a `transformers` config (or defaults when it has none)."""
        saved = getattr(config, CONFIG_KEY, None)
        if not saved:
            return cls()
        return cls({name: float(saved[name]) for name in MODEL_OUTPUTS})


def decide(labels: Mapping[str, str]) -> Decision:
    """The decision implied by one command's six attribute values."""
    if labels["legal"] == NO or labels["ethical"] == NO or labels["within_boundaries"] == NO:
        return Decision.BLOCK
    if labels["feasible"] == NO:
        return Decision.CANNOT_DO
    if labels["risk"] in ("medium", "high") or labels["reversible"] == NO:
        return Decision.CONFIRM
    return Decision.ALLOW


def reasons(labels: Mapping[str, str]) -> list[str]:
    """Why the decision is what it is, in words, most important first."""
    decision = decide(labels)
    if decision is Decision.BLOCK:
        found = [_REASON_NO[a] for a in ("legal", "ethical", "within_boundaries") if labels[a] == NO]
        return [f"{', '.join(found)}: refuse"]
    if decision is Decision.CANNOT_DO:
        return [f"{_REASON_NO['feasible']}: explain and do nothing"]
    if decision is Decision.CONFIRM:
        parts = []
        if labels["reversible"] == NO:
            parts.append("irreversible")
        if labels["risk"] in ("medium", "high"):
            parts.append(f"{labels['risk']} risk")
        return [f"{' and '.join(parts)}: ask the user first"]
    return ["feasible, lawful, within bounds, reversible and low risk: go ahead"]


def labels_from_probabilities(probs: np.ndarray, thresholds: Thresholds) -> dict[str, str]:
    """Attribute values for one command's seven output probabilities."""
    probs = np.asarray(probs, dtype=np.float64).reshape(-1)
    labels = {
        name: YES if probs[LABEL2ID[name]] >= thresholds[name] else NO for name in BINARY_ATTRIBUTES
    }
    at_least_medium = probs[LABEL2ID["risk_at_least_medium"]] >= thresholds["risk_at_least_medium"]
    high = at_least_medium and probs[LABEL2ID["risk_high"]] >= thresholds["risk_high"]
    labels["risk"] = RISK_VALUES[2] if high else RISK_VALUES[1] if at_least_medium else RISK_VALUES[0]
    return {name: labels[name] for name in ATTRIBUTE_NAMES}


# Outputs whose high probability is the permissive side (yes = feasible, legal, ...); for the
# two risk outputs a high probability is the restrictive side.
PERMISSIVE_HIGH: tuple[str, ...] = BINARY_ATTRIBUTES
NOT_READ_IN_FULL = "longer than the gate reads in full: ask the user first"


def most_restrictive(window_probs: np.ndarray) -> np.ndarray:
    """One command's seven probabilities from the (k, 7) probabilities of its k windows: per
    output the most restrictive window (the lowest P(yes), the highest P(risk)), so a harmful
    part anywhere in a long command counts as if it were the whole command."""
    window_probs = np.atleast_2d(np.asarray(window_probs, dtype=np.float64))
    permissive = np.asarray([name in PERMISSIVE_HIGH for name in MODEL_OUTPUTS])
    return np.where(permissive, window_probs.min(axis=0), window_probs.max(axis=0))


@dataclass(frozen=True)
class GateResult:
    """A classified command: per-attribute probabilities, labels, the decision and why.

    `windows` is how many overlapping windows the model read; `read_in_full` is False when
    part of the command was not read (it is then never `allow`)."""

    probabilities: dict[str, dict[str, float]]
    labels: dict[str, str]
    decision: Decision
    reasons: list[str]
    uncertain_outputs: list[str]
    windows: int = 1
    read_in_full: bool = True

    @property
    def uncertain(self) -> bool:
        return bool(self.uncertain_outputs)


def gate(
    probs: np.ndarray,
    thresholds: Thresholds,
    margin: float = DEFAULT_UNCERTAINTY_MARGIN,
    windows: int = 1,
    read_in_full: bool = True,
) -> GateResult:
    """The full result for one command's seven output probabilities; a command not read in
    full is asked about (`confirm`) where its labels alone would allow it."""
    probs = np.asarray(probs, dtype=np.float64).reshape(-1)
    if probs.shape != (len(MODEL_OUTPUTS),):
        raise ValueError(f"expected {len(MODEL_OUTPUTS)} probabilities, got shape {probs.shape}")
    labels = labels_from_probabilities(probs, thresholds)
    per_attribute = attribute_probabilities(probs[None, :])
    probabilities = {
        name: dict(zip(ATTRIBUTES_BY_NAME[name].values, map(float, per_attribute[name][0])))
        for name in ATTRIBUTE_NAMES
    }
    uncertain = [
        name
        for name, p, t in zip(MODEL_OUTPUTS, probs, thresholds.as_array())
        if abs(p - t) < margin
    ]
    decision, why = decide(labels), reasons(labels)
    if not read_in_full and decision is Decision.ALLOW:
        decision, why = Decision.CONFIRM, [NOT_READ_IN_FULL]
    return GateResult(probabilities, labels, decision, why, uncertain, windows, read_in_full)


def decisions_from_probabilities(probs: np.ndarray, thresholds: Thresholds) -> list[str]:
    """Decisions for an (n, 7) probability matrix."""
    return [decide(labels_from_probabilities(row, thresholds)).value for row in np.atleast_2d(probs)]


def decisions_from_frame(frame) -> list[str]:
    """Gold decisions of a corpus frame (one per row)."""
    return [decide(row).value for row in frame[list(ATTRIBUTE_NAMES)].to_dict("records")]


__all__ = [
    "CONFIG_KEY",
    "DECISIONS",
    "Decision",
    "GateResult",
    "Thresholds",
    "decide",
    "decisions_from_frame",
    "decisions_from_probabilities",
    "gate",
    "labels_from_probabilities",
    "most_restrictive",
    "reasons",
    "YES",
]
