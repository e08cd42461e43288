"""Commands of concurrent callers scored in one model call.

An agent framework calls the gate from many workers at once, each with one command. Scored one
by one, each waits for every call before it at the single-command cost; scored together, one
call reads all of them at the batched cost (`python -m benchmarks.bench_infer`: batched
throughput is well above one over the single-command latency). `CoalescingScorer.score` queues
the caller's commands; the first caller to find no call in progress leads: it takes the queue
(up to `max_commands`, oldest first), scores it under the model lock, hands every caller its
rows, and goes on until its own rows are done, then passes the lead to the oldest caller still
waiting. A caller with `max_commands` or more commands is scored on its own.

Every caller gets the rows it asked for, in order; each command is read the same way as alone
(`Predictor.score`: in windows when long). Dynamic int8 quantizes activations per batch, so an
int8 model's probabilities can differ in the last digits with the commands scored beside it,
as they do in any batched call.
"""

from __future__ import annotations

import threading
from collections import deque
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from pipeline.model.inference import Predictor, Scores

DEFAULT_MAX_COMMANDS = 32  # commands per coalesced model call


@dataclass(eq=False)
class _Ticket:
    texts: list[str]
    ready: threading.Event = field(default_factory=threading.Event)
    scores: Scores | None = None
    error: BaseException | None = None
    lead: bool = False  # woken to lead, not with its rows

    @property
    def done(self) -> bool:
        return self.scores is not None or self.error is not None


def _rows(scores: Scores, start: int, stop: int) -> Scores:
    return Scores(scores.probs[start:stop], scores.windows[start:stop], scores.read_in_full[start:stop])


class CoalescingScorer:
    """`score(texts)` like `Predictor.score`, with the commands of callers waiting at the same
    time scored together under `lock` (the model lock other users of the predictor hold)."""

    def __init__(
        self, predictor: Predictor, lock: AbstractContextManager, max_commands: int = DEFAULT_MAX_COMMANDS
    ) -> None:
        if max_commands < 1:
            raise ValueError(f"max_commands must be at least 1, got {max_commands}")
        self.predictor = predictor
        self.lock = lock
        self.max_commands = max_commands
        self._mutex = threading.Lock()
        self._queue: deque[_Ticket] = deque()
        self._leading = False
        self.calls = 0  # model calls made (a count for tests and benchmarks)

    def score(self, texts: Sequence[str]) -> Scores:
        texts = [str(t) for t in texts]
        if len(texts) >= self.max_commands or not texts:
            with self.lock:
                self.calls += 1
                return self.predictor.score(texts)
        ticket = _Ticket(texts)
        with self._mutex:
            self._queue.append(ticket)
            lead = not self._leading
            self._leading = True
        while not lead:
            ticket.ready.wait()
            ticket.ready.clear()
            if ticket.done:
                break
            lead = ticket.lead
        if lead:
            self._lead(ticket)
        if ticket.error is not None:
            raise ticket.error
        assert ticket.scores is not None
        return ticket.scores

    def _take(self) -> list[_Ticket]:
        """The oldest queued tickets whose commands fit in one call (at least one)."""
        taken: list[_Ticket] = []
        count = 0
        with self._mutex:
            while self._queue and (not taken or count + len(self._queue[0].texts) <= self.max_commands):
                ticket = self._queue.popleft()
                taken.append(ticket)
                count += len(ticket.texts)
        return taken

    def _lead(self, own: _Ticket) -> None:
        try:
            while not own.done:
                taken = self._take()
                try:
                    with self.lock:
                        self.calls += 1
                        scores = self.predictor.score([t for ticket in taken for t in ticket.texts])
                except BaseException as exc:  # every caller of this call gets the error
                    for ticket in taken:
                        ticket.error = exc
                else:
                    bounds = np.cumsum([0] + [len(ticket.texts) for ticket in taken])
                    for ticket, start, stop in zip(taken, bounds[:-1], bounds[1:]):
                        ticket.scores = _rows(scores, int(start), int(stop))
                for ticket in taken:
                    if ticket is not own:
                        ticket.ready.set()
        finally:
            with self._mutex:
                if self._queue:
                    successor = self._queue[0]
                    successor.lead = True
                    successor.ready.set()
                else:
                    self._leading = False
