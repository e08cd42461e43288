"""Example commands for the Classify tab, labelled with what the loaded model decides.

At start-up the model classifies candidates from the dataset's example split (short commands,
an equal number per expected decision, languages alternating), one at a time as a click would,
and the examples are the ones it decides each way: so clicking an example gives the decision on
its chip, and the chips show every decision the model makes. A decision the model gives to none
of the candidates is named in a note rather than faked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from pipeline.core.decision import DECISIONS, decisions_from_frame
from pipeline.core.schema import LANG, TEXT
from space.classifier import CommandClassifier
from space.dataset import DatasetView

EXAMPLES_PER_DECISION = 2
EXAMPLE_MAX_WORDS = 25
# Candidates per expected decision that the model classifies at start-up (~4 ms each on CPU).
CANDIDATES_PER_DECISION = 40


@dataclass(frozen=True)
class Example:
    decision: str  # what the loaded model decides
    text: str
    expected: str  # the dataset's decision for it


@dataclass(frozen=True)
class ModelExamples:
    examples: list[Example]
    split: str | None
    missing: list[str] = field(default_factory=list)  # decisions the model gave no candidate
    candidates: int = 0

    @property
    def note(self) -> str:
        if not self.missing:
            return ""
        names = ", ".join(f"`{d}`" for d in self.missing)
        return (
            f"The model decides none of the {self.candidates} commands tried from the "
            f"{self.split} split as {names}."
        )


def _candidates(frame: pd.DataFrame, per_decision: int, seed: int) -> pd.DataFrame:
    """Short commands, `per_decision` per expected decision, languages alternating."""
    frame = frame.assign(
        _expected=decisions_from_frame(frame), _words=frame[TEXT].str.split().str.len()
    ).sample(frac=1.0, random_state=seed)
    short = frame[frame["_words"] <= EXAMPLE_MAX_WORDS]
    parts = []
    for decision in DECISIONS:
        rows = short[short["_expected"] == decision]
        if rows.empty:
            rows = frame[frame["_expected"] == decision]
        if LANG in rows.columns:
            rows = rows.assign(_rank=rows.groupby(LANG).cumcount()).sort_values(
                "_rank", kind="stable"
            )
        parts.append(rows.head(per_decision))
    return pd.concat(parts) if parts else frame.head(0)


def model_examples(
    view: DatasetView,
    classifier: CommandClassifier,
    per_decision: int = EXAMPLES_PER_DECISION,
    candidates_per_decision: int = CANDIDATES_PER_DECISION,
    seed: int = 0,
) -> ModelExamples:
    """`per_decision` examples of each decision the model makes on the candidates: first those
    where it agrees with the dataset and is not uncertain, then the others; languages keep
    alternating."""
    split = view.example_split
    if split is None:
        return ModelExamples([], None, list(DECISIONS))
    candidates = _candidates(view.splits[split], candidates_per_decision, seed)
    decided = []
    for text, expected in zip(candidates[TEXT], candidates["_expected"]):
        result = classifier.classify(text)
        if result.decision is None:
            continue
        rank = (result.decision != expected) + 2 * result.uncertain
        decided.append((rank, Example(result.decision, text, expected)))
    decided.sort(key=lambda pair: pair[0])  # stable: the language order stays within a rank
    chosen: list[Example] = []
    for decision in DECISIONS:
        chosen += [e for _, e in decided if e.decision == decision][:per_decision]
    missing = [d for d in DECISIONS if not any(e.decision == d for e in chosen)]
    return ModelExamples(chosen, split, missing, len(decided))
