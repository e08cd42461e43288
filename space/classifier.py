"""One command in, one classification out: the Space's prediction functions around one loaded
`pipeline.model.inference.Predictor`, and what they return."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence, TypedDict

from pipeline.core.decision import GateResult
from pipeline.model.batcher import CoalescingScorer
from pipeline.model.inference import Predictor
from pipeline.serve import MAX_COMMAND_CHARS, GatedCommand, clean_command, gate_commands
from space.fairness import ModelLock

# Characters read from one command; the model itself reads at most `Predictor.max_length`
# tokens, so this only bounds the work spent on pasted documents.
MAX_INPUT_CHARS = MAX_COMMAND_CHARS

# Rows of a batch per model call: between two chunks single commands run and a cancelled batch
# stops. Small enough that a chunk takes a fraction of the single-command latency goal.
BATCH_CHUNK_ROWS = 32

EMPTY_MESSAGE = "Type a command to classify it."

# ---------------------------------------------------------------------------------------------
# One command in, one classification out


class ClassificationPayload(TypedDict):
    """One classification as the `classify` and `classify_batch` endpoints return it."""

    text: str
    decision: str | None  # allow, confirm, cannot_do or block; None when there was no command
    reasons: list[str]
    labels: dict[str, str]
    probabilities: dict[str, dict[str, float]]
    uncertain: bool
    uncertain_outputs: list[str]
    notices: list[str]
    truncated: bool


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

    def as_dict(self) -> ClassificationPayload:
        """JSON-ready: decision, reasons, labels, probabilities, uncertainty and notices."""
        return ClassificationPayload(
            text=self.text,
            decision=self.decision,
            reasons=list(self.reasons),
            labels=dict(self.labels),
            probabilities={k: dict(v) for k, v in self.probabilities.items()},
            uncertain=self.uncertain,
            uncertain_outputs=list(self.uncertain_outputs),
            notices=list(self.notices),
            truncated=self.truncated,
        )


def classification_from_gated(gated: GatedCommand) -> Classification:
    """The Space's view of one command read by the gate."""
    return classification_from_gate(
        gated.result, gated.text, gated.notices, truncated=not gated.result.read_in_full
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

    Commands go through the same gate as the HTTP API (`pipeline.serve.gate_commands`): cleaned,
    read in full in windows, and never allowed when they hold no command or were not read in
    full. Model calls take turns on `lock` (the HTTP API holds the same one), single commands
    before batch chunks; a batch is classified in chunks of `chunk_rows`, so a single command
    waits at most for one chunk.
    """

    def __init__(self, predictor: Predictor, chunk_rows: int = BATCH_CHUNK_ROWS):
        self.predictor = predictor
        self.lock = ModelLock()
        # Single commands (the Space's and the HTTP API's) waiting at the same time are scored
        # in one model call, at single-command priority.
        self.singles = CoalescingScorer(predictor, self.lock.single)
        self.chunk_rows = chunk_rows

    @property
    def max_tokens(self) -> int:
        return int(self.predictor.max_length)

    def classify(self, raw: object) -> Classification:
        """Classify one command; empty input gives a message, never an error."""
        cleaned = clean_command(raw)
        if not cleaned.text:
            return empty_classification(cleaned.notices)
        (gated,) = gate_commands(self.predictor, [raw], self.singles)
        return classification_from_gated(gated)

    def _plan(self, raws: Sequence[object]) -> tuple[list[Classification | None], list[list[int]]]:
        """Empty rows answered at once; the others' indices, shortest first, in chunks."""
        cleaned = [clean_command(raw) for raw in raws]
        results: list[Classification | None] = [
            None if c.text else empty_classification(c.notices) for c in cleaned
        ]
        todo = sorted((i for i, c in enumerate(cleaned) if c.text), key=lambda i: len(cleaned[i].text))
        return results, [todo[s : s + self.chunk_rows] for s in range(0, len(todo), self.chunk_rows)]

    def _classify_chunk(
        self, raws: Sequence[object], chunk: Sequence[int], results: list[Classification | None]
    ) -> None:
        gated = gate_commands(self.predictor, [raws[i] for i in chunk], self.lock.batch)
        for i, g in zip(chunk, gated):
            results[i] = classification_from_gated(g)

    def classify_many(
        self,
        raws: Sequence[object],
        on_progress: Callable[[int, int], None] | None = None,
    ) -> list[Classification]:
        """Classify many commands, shortest first in chunks; `on_progress(done, total)`."""
        results, chunks = self._plan(raws)
        total, done = sum(map(len, chunks)), 0
        for chunk in chunks:
            self._classify_chunk(raws, chunk, results)
            done += len(chunk)
            if on_progress is not None:
                on_progress(done, total)
        return [r for r in results if r is not None]

    async def classify_many_async(
        self,
        raws: Sequence[object],
        on_progress: Callable[[int, int], None] | None = None,
    ) -> list[Classification]:
        """`classify_many` for the server's event loop: each chunk runs in a worker thread and
        the loop is free between chunks, so cancelling the task stops the work after the chunk
        in progress."""
        import anyio

        results, chunks = await anyio.to_thread.run_sync(self._plan, raws)
        total, done = sum(map(len, chunks)), 0
        for chunk in chunks:
            await anyio.to_thread.run_sync(self._classify_chunk, raws, chunk, results)
            done += len(chunk)
            if on_progress is not None:
                on_progress(done, total)
        return [r for r in results if r is not None]
