"""How a classification looks (`space.render`): the banner and the criterion cards."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.core.decision import Thresholds, gate
from pipeline.core.schema import ATTRIBUTE_NAMES, MODEL_OUTPUTS
from space.classifier import classification_from_gate, empty_classification
from space.render import (
    attribute_outcome,
    banner_html,
    card_classes,
    label_title,
    label_values,
)
from tests.space.planted import PLANTED, planted


def test_banner_shows_decision_and_reasons_in_words():
    html = banner_html(planted("confirm"))
    assert 'data-decision="confirm"' in html
    assert "Confirm first" in html
    assert "irreversible and high risk: ask the user first" in html
    assert "Uncertain" not in html


def test_label_values_follow_attribute_order_and_titles_state_the_label():
    result = planted("block")
    values = label_values(result)
    assert values[ATTRIBUTE_NAMES.index("legal")] == pytest.approx({"no": 0.98, "yes": 0.02})
    assert set(values[ATTRIBUTE_NAMES.index("risk")]) == {"low", "medium", "high"}
    assert label_title("legal", result) == "Legal: no"
    assert label_title("risk", result) == "Risk: low"


def test_probabilities_near_a_threshold_are_uncertain():
    probs = np.asarray(PLANTED["allow"])
    probs[MODEL_OUTPUTS.index("legal")] = 0.58
    result = classification_from_gate(gate(probs, Thresholds()), "x")
    assert result.decision == "allow"
    assert result.uncertain_outputs == ["legal"]
    assert "Uncertain: review" in banner_html(result)
    assert label_title("legal", result) == "Legal: yes (uncertain)"
    assert label_title("ethical", result) == "Ethical: yes"



def test_each_card_is_coloured_by_the_decision_its_value_leads_to():
    blocked = planted("block")  # legal: no
    assert card_classes("legal", blocked) == ["lma-card", "lma-card-block"]
    assert card_classes("ethical", blocked) == ["lma-card", "lma-card-allow"]
    confirm = planted("confirm")  # reversible: no, risk: high
    assert card_classes("reversible", confirm)[-1] == "lma-card-confirm"
    assert card_classes("risk", confirm)[-1] == "lma-card-confirm"
    assert card_classes("feasible", planted("cannot_do"))[-1] == "lma-card-cannot_do"
    assert attribute_outcome("within_boundaries", "no") == "block"
    assert attribute_outcome("risk", "low") == "allow"
    assert card_classes("legal", empty_classification()) == ["lma-card"]
