"""Fair sharing of one model between single commands and batch files.

- `ModelLock`: one model call at a time (the tokenizer is not thread-safe and two CPU cores gain
  nothing from two forward passes at once), single commands first: a batch chunk waits while
  any single command is waiting, so a single command waits at most for the chunk in progress,
  except that after `BATCH_TURN_EVERY` single-command calls in a row one waiting chunk goes next,
  so steady single-command traffic cannot starve batch files.
- `BatchQueue`: at most `running` batches classify at once and at most `waiting` wait for their
  turn, in order; a client has at most one batch in the queue or running. A batch over these
  limits is refused at once with `BatchRefused` (its message says why and what to do), so a
  flood of uploads never takes the places single commands need. Cancelling a waiting or
  running batch (its task is cancelled) frees its place at once.
- `client_key`: who sent a request, behind the number of proxies the deployment trusts.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import deque
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import AsyncIterator, Callable, Mapping

# Proxies in front of the Space that append the client's address to X-Forwarded-For. On the
# Hugging Face Hub (SPACE_ID is set) one proxy does; locally none, and the header is ignored.
TRUSTED_PROXIES_ENV = "LM_ACTION_TRUSTED_PROXIES"

# Gradio concurrency groups: single commands (the UI's and the `classify` endpoint) and batch
# files each have their own queue and limit, so neither waits in the other's line. Singles run
# a few at a time (the model lock orders their model calls; the rest of a request overlaps);
# batches are admitted by `BatchQueue`, whose limits keep them well below Gradio's worker count.
SINGLE_GROUP = "classify"
SINGLE_CONCURRENCY = 4
BATCH_GROUP = "batch"
# Single-command model calls in a row after which a waiting batch chunk gets the next turn: a
# single command then waits at most for one chunk, and a batch file keeps moving.
BATCH_TURN_EVERY = 8


class _Priority:
    """One side of a `ModelLock`, usable as `with lock.single:` / `with lock.batch:`."""

    def __init__(self, acquire: Callable[[], None], release: Callable[[], None]):
        self._acquire, self._release = acquire, release

    def __enter__(self) -> None:
        self._acquire()

    def __exit__(self, *exc: object) -> None:
        self._release()


class ModelLock:
    """A lock on the model with two priorities: `single` (a command someone waits for) goes
    before `batch` (a chunk of a batch file), but after `batch_turn_every` single calls in a row
    a waiting chunk goes next. A release wakes one waiter, so many waiting requests do not all
    wake for each model call."""

    def __init__(self, batch_turn_every: int = BATCH_TURN_EVERY) -> None:
        if batch_turn_every < 1:
            raise ValueError(f"batch_turn_every must be at least 1, got {batch_turn_every}")
        lock = threading.Lock()
        self._singles = threading.Condition(lock)
        self._batches = threading.Condition(lock)
        self._busy = False
        self._singles_waiting = 0
        self._batches_waiting = 0
        self._singles_in_a_row = 0
        self._batch_turn_every = batch_turn_every
        self.single = _Priority(self._acquire_single, self._release)
        self.batch = _Priority(self._acquire_batch, self._release)

    def _batch_due(self) -> bool:
        return self._batches_waiting > 0 and self._singles_in_a_row >= self._batch_turn_every

    def _acquire_single(self) -> None:
        with self._singles:
            self._singles_waiting += 1
            try:
                self._singles.wait_for(lambda: not self._busy and not self._batch_due())
            finally:
                self._singles_waiting -= 1
            self._busy = True
            self._singles_in_a_row += 1

    def _acquire_batch(self) -> None:
        with self._batches:
            self._batches_waiting += 1
            try:
                self._batches.wait_for(
                    lambda: not self._busy and (self._singles_waiting == 0 or self._batch_due())
                )
            except BaseException:
                self._batches_waiting -= 1
                self._singles.notify()  # singles held back for this chunk go on
                raise
            self._batches_waiting -= 1
            self._busy = True
            self._singles_in_a_row = 0

    def _release(self) -> None:
        with self._singles:
            self._busy = False
            if self._batch_due() or not self._singles_waiting:
                self._batches.notify()
            else:
                self._singles.notify()

    # `with lock:` is the single-command side, so code written for a plain lock (the HTTP API)
    # gets the priority of a command someone waits for.
    def __enter__(self) -> None:
        self._acquire_single()

    def __exit__(self, *exc: object) -> None:
        self._release()


class BatchRefused(Exception):
    """A batch was not admitted; the message is for the user."""


@dataclass(frozen=True)
class BatchLimits:
    running: int = 1  # batches classifying at once
    waiting: int = 16  # batches waiting for their turn


class BatchQueue:
    """Admission and order of batch work; all methods run on the server's event loop."""

    def __init__(self, limits: BatchLimits = BatchLimits()):
        self.limits = limits
        self._clients: set[str] = set()
        self._waiting: deque[object] = deque()
        self._running = 0
        self._changed: asyncio.Condition | None = None

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:  # created on the loop that serves the Space
            self._changed = asyncio.Condition()
        return self._changed

    def admit(self, client: str) -> None:
        """Raise `BatchRefused` when `client` may not queue another batch now."""
        if client in self._clients:
            raise BatchRefused(
                "You already have a batch file in progress. Wait for it to finish, or cancel "
                "it, before uploading another."
            )
        if len(self._waiting) >= self.limits.waiting:
            raise BatchRefused(
                f"The batch queue is full ({len(self._waiting)} files waiting). Single commands "
                "are still served; please upload the file again in a few minutes."
            )

    @asynccontextmanager
    async def turn(self, client: str) -> AsyncIterator[int]:
        """Wait for this batch's turn (yields how many were ahead when it joined); raises
        `BatchRefused` at once when it is not admitted. Leaving the block, by finishing, an
        error or cancellation, frees the place."""
        self.admit(client)
        ticket = object()
        self._clients.add(client)
        self._waiting.append(ticket)
        ahead = len(self._waiting) - 1 + self._running
        changed = self._condition()
        started = False
        try:
            async with changed:
                await changed.wait_for(
                    lambda: self._waiting[0] is ticket and self._running < self.limits.running
                )
                self._waiting.popleft()
                self._running += 1
                started = True
                changed.notify_all()
            yield ahead
        finally:
            if not started and ticket in self._waiting:
                self._waiting.remove(ticket)
            if started:
                self._running -= 1
            self._clients.discard(client)
            async with changed:
                changed.notify_all()


def trusted_proxies(environ: Mapping[str, str] | None = None) -> int:
    """How many proxies append to X-Forwarded-For in front of the Space."""
    env = os.environ if environ is None else environ
    value = (env.get(TRUSTED_PROXIES_ENV) or "").strip()
    if value:
        if not value.isdigit():
            raise ValueError(f"{TRUSTED_PROXIES_ENV} must be a whole number, got {value!r}")
        return int(value)
    return 1 if env.get("SPACE_ID") else 0


def client_key(host: str | None, forwarded_for: str | None, proxies: int) -> str:
    """The client's address: the one the outermost trusted proxy saw (entries a client writes
    into X-Forwarded-For itself come before it and are ignored), else the connecting host."""
    if proxies > 0 and forwarded_for:
        hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
        if len(hops) >= proxies:
            return hops[-proxies]
    return host or "unknown"
