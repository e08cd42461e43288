"""Classifications from planted model outputs, one per decision, for tests that need a known
result without a model."""

from __future__ import annotations

import numpy as np

from pipeline.core.decision import Thresholds, gate
from space.classifier import Classification, classification_from_gate

# Output order: feasible, legal, ethical, within_boundaries, reversible, risk>=medium, risk=high.
PLANTED = {
    "allow": [0.97, 0.96, 0.98, 0.95, 0.93, 0.04, 0.02],
    "confirm": [0.97, 0.96, 0.98, 0.95, 0.03, 0.96, 0.92],
    "cannot_do": [0.03, 0.96, 0.98, 0.95, 0.93, 0.04, 0.02],
    "block": [0.97, 0.02, 0.98, 0.95, 0.93, 0.04, 0.02],
}


def planted(decision: str, text: str = "a command") -> Classification:
    result = gate(np.asarray(PLANTED[decision]), Thresholds())
    return classification_from_gate(result, text)
