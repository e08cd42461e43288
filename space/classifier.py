"""One command in, one classification out: the Space's prediction functions around one loaded
`pipeline.inference.Predictor`, and what they return."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from pipeline.decision import GateResult, gate
from pipeline.inference import Predictor
from pipeline.serve import MAX_COMMAND_CHARS, clean_command

# Characters read from one command; the model itself reads at most `Predictor.max_length`
# tokens, so this only bounds the work spent on pasted documents.
MAX_INPUT_CHARS = MAX_COMMAND_CHARS

# Rows classified between progress updates (and between which single commands can run).
BATCH_CHUNK_ROWS = 256

EMPTY_MESSAGE = "Type a command to classify it."

# ---------------------------------------------------------------------------------------------
# One command in, one classification out


@dataclass(frozen=True)
class Classification:
    """What the Space shows and the `classify` endpoint returns for one command."""

    text: str
    decision: str | None  # None when there was nothing to classify
    reasons: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    probabilities: dict[str, dict[str, float]] = field(default_factory=dict)
    uncertain_outputs: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    truncated: bool = False

    @property
    def uncertain(self) -> bool:
        return bool(self.uncertain_outputs)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: decision, reasons, labels, probabilities, uncertainty and notices."""
        return {
            "text": self.text,
            "decision": self.decision,
            "reasons": list(self.reasons),
            "labels": dict(self.labels),
            "probabilities": {k: dict(v) for k, v in self.probabilities.items()},
            "uncertain": self.uncertain,
            "uncertain_outputs": list(self.uncertain_outputs),
            "notices": list(self.notices),
            "truncated": self.truncated,
        }


def truncation_notice(max_chars: int) -> str:
    return (
        f"The command is longer than the gate accepts ({max_chars} characters): the rest was not "
        "read, so the gate asks for confirmation rather than allowing it."
    )


def windows_notice(windows: int) -> str:
    return (
        f"A long command: read whole in {windows} overlapping parts and sentence by sentence; the "
        "most cautious reading of each criterion counts."
    )


def classification_from_gate(
    result: GateResult, text: str, notices: Sequence[str] = (), truncated: bool = False
) -> Classification:
    """The Space's view of one gate result."""
    return Classification(
        text=text,
        decision=result.decision.value,
        reasons=list(result.reasons),
        labels=dict(result.labels),
        probabilities={k: dict(v) for k, v in result.probabilities.items()},
        uncertain_outputs=list(result.uncertain_outputs),
        notices=list(notices),
        truncated=truncated,
    )


def empty_classification(notices: Sequence[str] = ()) -> Classification:
    return Classification(text="", decision=None, notices=[EMPTY_MESSAGE, *notices])


class CommandClassifier:
    """The Space's prediction functions around one loaded `Predictor`.

    Model calls are serialized by `lock` (the Space's HTTP API holds the same one): the
    tokenizer is not safe to share between threads, and two CPU cores gain nothing from running
    two forward passes at once.
    """

    def __init__(self, predictor: Predictor):
        self.predictor = predictor
        self.lock = threading.Lock()

    @property
    def max_tokens(self) -> int:
        return int(self.predictor.max_length)

    def classify(self, raw: object) -> Classification:
        """Classify one command; empty input gives a message, never an error."""
        return self.classify_many([raw])[0]

    def classify_many(
        self,
        raws: Sequence[object],
        on_progress: Callable[[int, int], None] | None = None,
    ) -> list[Classification]:
        """Classify many commands, shortest first in chunks; `on_progress(done, total)`."""
        cleaned = [clean_command(raw) for raw in raws]
        todo = [i for i, c in enumerate(cleaned) if c.text]
        todo.sort(key=lambda i: len(cleaned[i].text))
        results: list[Classification | None] = [
            None if c.text else empty_classification(c.notices) for c in cleaned
        ]
        total = len(todo)
        for start in range(0, total, BATCH_CHUNK_ROWS):
            chunk = todo[start : start + BATCH_CHUNK_ROWS]
            texts = [cleaned[i].text for i in chunk]
            with self.lock:
                scores = self.predictor.score(texts)
            for i, p, windows, full in zip(chunk, scores.probs, scores.windows, scores.read_in_full):
                notices = list(cleaned[i].notices)
                cut = cleaned[i].cut or not full
                if cut:
                    notices.append(truncation_notice(MAX_INPUT_CHARS))
                elif windows > 1:
                    notices.append(windows_notice(int(windows)))
                result = gate(p, self.predictor.thresholds, windows=int(windows), read_in_full=not cut)
                results[i] = classification_from_gate(result, cleaned[i].text, notices, cut)
            if on_progress is not None:
                on_progress(min(start + len(chunk), total), total)
        return [r for r in results if r is not None]

