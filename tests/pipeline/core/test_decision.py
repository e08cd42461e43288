"""The decision policy table and decisions from probabilities with saved thresholds."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pipeline.core.decision import Decision, Thresholds, decide, gate, labels_from_probabilities, reasons
from pipeline.core.schema import MODEL_OUTPUTS


def labels(feasible="yes", legal="yes", ethical="yes", within_boundaries="yes", reversible="yes", risk="low"):
    return dict(
        feasible=feasible,
        legal=legal,
        ethical=ethical,
        within_boundaries=within_boundaries,
        reversible=reversible,
        risk=risk,
    )


@pytest.mark.parametrize(
    "row, expected",
    [
        (labels(), Decision.ALLOW),
        (labels(risk="medium"), Decision.CONFIRM),
        (labels(risk="high"), Decision.CONFIRM),
        (labels(reversible="no"), Decision.CONFIRM),
        (labels(feasible="no"), Decision.CANNOT_DO),
        (labels(feasible="no", risk="high", reversible="no"), Decision.CANNOT_DO),
        (labels(legal="no"), Decision.BLOCK),
        (labels(ethical="no"), Decision.BLOCK),
        (labels(within_boundaries="no"), Decision.BLOCK),
        (labels(feasible="no", legal="no"), Decision.BLOCK),
    ],
)
def test_policy_table(row, expected):
    assert decide(row) is expected


def test_policy_over_every_label_combination():
    for values in itertools.product(("yes", "no"), ("yes", "no"), ("yes", "no"), ("yes", "no"), ("yes", "no"), ("low", "medium", "high")):
        row = labels(*values)
        if "no" in (row["legal"], row["ethical"], row["within_boundaries"]):
            expected = Decision.BLOCK
        elif row["feasible"] == "no":
            expected = Decision.CANNOT_DO
        elif row["risk"] != "low" or row["reversible"] == "no":
            expected = Decision.CONFIRM
        else:
            expected = Decision.ALLOW
        assert decide(row) is expected


def test_reasons_name_the_failing_attributes():
    assert reasons(labels(reversible="no", risk="high")) == ["irreversible and high risk: ask the user first"]
    assert reasons(labels(legal="no", within_boundaries="no"))[0].startswith("likely illegal, outside what")


def test_thresholds_come_from_the_config_and_change_the_decision():
    probs = np.array([0.9, 0.6, 0.9, 0.9, 0.9, 0.2, 0.1])
    assert gate(probs, Thresholds()).decision is Decision.ALLOW

    class Config:
        decision_thresholds = {**{name: 0.5 for name in MODEL_OUTPUTS}, "legal": 0.7}

    strict = Thresholds.from_config(Config())
    result = gate(probs, strict)
    assert result.decision is Decision.BLOCK
    assert result.labels["legal"] == "no"


def test_risk_labels_from_ordinal_outputs():
    t = Thresholds()
    base = [0.9] * 5
    assert labels_from_probabilities(np.array(base + [0.2, 0.1]), t)["risk"] == "low"
    assert labels_from_probabilities(np.array(base + [0.7, 0.2]), t)["risk"] == "medium"
    assert labels_from_probabilities(np.array(base + [0.7, 0.8]), t)["risk"] == "high"
    # P(high) above its threshold cannot make risk high while P(>=medium) says low.
    assert labels_from_probabilities(np.array(base + [0.3, 0.8]), t)["risk"] == "low"


def test_probabilities_near_a_threshold_are_uncertain():
    result = gate(np.array([0.9, 0.55, 0.9, 0.9, 0.9, 0.1, 0.05]), Thresholds())
    assert result.uncertain_outputs == ["legal"]
    assert abs(sum(result.probabilities["risk"].values()) - 1.0) < 1e-9


def test_invalid_thresholds_are_rejected():
    with pytest.raises(ValueError, match="missing"):
        Thresholds({"feasible": 0.5})
    with pytest.raises(ValueError, match=r"in \(0, 1\)"):
        Thresholds({**{name: 0.5 for name in MODEL_OUTPUTS}, "risk_high": 1.5})
