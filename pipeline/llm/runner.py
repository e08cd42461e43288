"""The job runner that `generate` and `label` share: claim the open jobs of the job database per
provider (with `concurrency` slots each and a heartbeat that keeps the leases), call the LLM, and
record each call's provenance. A `JobWorker` runs one job; a stage says what to ask, how to check
the answer and what to keep.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping, Sequence

from tqdm.auto import tqdm

from pipeline.llm.batch import BATCH_PROMPT_VERSION
from pipeline.llm.client import ChatClient, Completion, Endpoint, LLMError
from pipeline.llm.jobs.db import JobDB
from pipeline.llm.jobs.records import (
    Claim,
    FinishResult,
    GeneratedRow,
    LabelAnswer,
    Rejection,
    ResponseRecord,
)
from pipeline.llm.jobs.tables import DONE, ERROR, FAILED, OK, PENDING, REJECTED, RUNNING
from pipeline.llm.jobs.workers import worker_id

log = logging.getLogger(__name__)


@dataclass
class WorkStats:
    """What one worker did in one run."""

    done: int = 0
    failed: int = 0
    retried: int = 0
    lost: int = 0
    accepted_rows: int = 0


@dataclass
class ProviderWork:
    """How a worker serves one provider: the job handler, its slots, and a stop signal."""

    handle: Callable[[Claim], Awaitable[str | None]]
    concurrency: int
    stopped: Callable[[], str | None] = lambda: None


async def _claim_or_release(
    db: JobDB, kind: str, provider: str, worker: str, lease_s: float
) -> Claim | None:
    """Claim in a thread; if cancelled meanwhile, give back what the thread claimed."""
    pending = asyncio.ensure_future(asyncio.to_thread(db.claim, kind, [provider], worker, lease_s))
    try:
        return await asyncio.shield(pending)
    except asyncio.CancelledError:
        claim = await pending
        if claim is not None:
            db.release(claim)
        raise


async def work_through(
    db: JobDB,
    kind: str,
    work: Mapping[str, ProviderWork],
    worker: str,
    lease_s: float,
    poll_s: float,
    progress: tqdm | None = None,
) -> WorkStats:
    """Claim and run jobs of `kind` for every provider in `work` until none is open.

    Each provider gets `concurrency` slots; a heartbeat keeps the leases of held jobs. On
    cancellation (Ctrl-C) held jobs are given back. Jobs held by other live workers are waited
    for, so a crashed worker's jobs are taken over once their lease runs out.
    """
    stats = WorkStats()
    held: dict[str, Claim] = {}

    async def heartbeat() -> None:
        while True:
            await asyncio.sleep(max(0.2, lease_s / 3))
            if held:
                await asyncio.to_thread(db.heartbeat, list(held.values()), lease_s)

    async def slot(provider: str, job_work: ProviderWork) -> None:
        while True:
            reason = job_work.stopped()
            if reason:
                log.warning("%s: stopped: %s", provider, reason)
                return
            claim = await _claim_or_release(db, kind, provider, worker, lease_s)
            if claim is None:
                counts = await asyncio.to_thread(db.job_counts, kind, [provider])
                if counts[PENDING] + counts[RUNNING] == 0:
                    return
                await asyncio.to_thread(db.requeue_dead_workers, kind)
                await asyncio.sleep(poll_s)
                continue
            held[claim.token] = claim
            try:
                state = await job_work.handle(claim)
            except asyncio.CancelledError:
                held.pop(claim.token, None)
                db.release(claim)
                raise
            except Exception as exc:  # a bug must not leave the job running forever
                log.exception("job %d: unexpected error", claim.job_id)
                state = await asyncio.to_thread(
                    db.fail_attempt, claim, f"{type(exc).__name__}: {exc}"
                )
            finally:
                held.pop(claim.token, None)
            if state == DONE:
                stats.done += 1
            elif state == FAILED:
                stats.failed += 1
            elif state == PENDING:
                stats.retried += 1
            else:
                stats.lost += 1
            if progress is not None and state in (DONE, FAILED):
                progress.update(1)

    await asyncio.to_thread(db.requeue_dead_workers, kind)
    beat = asyncio.create_task(heartbeat())
    try:
        await asyncio.gather(*(slot(p, w) for p, w in work.items() for _ in range(w.concurrency)))
    except asyncio.CancelledError:
        # Every slot gave its job back; a claim that landed while the cancel went round is
        # given back here, so an interrupted run leaves nothing running.
        released = db.release_worker(kind, worker)
        if released:
            log.info("%d job(s) still held at the interrupt given back", released)
        raise
    finally:
        beat.cancel()
    return stats


def response_record(
    client: ChatClient,
    version: str,
    outcome: str,
    completion: Completion | None = None,
    error: LLMError | None = None,
) -> ResponseRecord:
    """Provenance of one call: the completion's, or the provider's when the call failed."""
    provider = client.provider
    if completion is not None:
        return ResponseRecord(
            provider=provider.name,
            model=completion.model,
            endpoint=completion.endpoint,
            prompt_version=version,
            temperature=completion.temperature,
            started_at=completion.started_at,
            finished_at=completion.finished_at,
            outcome=outcome,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            retries=completion.retries,
            raw=completion.raw,
        )
    if error is None:
        raise ValueError("a response record needs a completion or an error")
    return ResponseRecord(
        provider=provider.name,
        model=provider.model,
        endpoint=client.endpoint.public_url,
        prompt_version=version,
        temperature=provider.temperature,
        started_at=error.started_at or time.time(),
        finished_at=error.finished_at or time.time(),
        outcome=ERROR,
        retries=error.retries,
        error=str(error),
        raw=error.raw,
    )


async def run_jobs(
    db: JobDB,
    kind: str,
    endpoints: Sequence[Endpoint],
    lease_s: float,
    poll_s: float,
    make_handler: Callable[[ChatClient, WorkStats], Callable[[Claim], Awaitable[str | None]]],
    worker: str | None = None,
    show_progress: bool = True,
) -> WorkStats:
    """Work through the open jobs of `kind` for `endpoints`' providers, one client each."""
    stats = WorkStats()
    names = [e.provider.name for e in endpoints]
    counts = db.job_counts(kind, names)
    clients = {e.provider.name: ChatClient(e) for e in endpoints}
    work = {
        name: ProviderWork(
            make_handler(client, stats),
            client.provider.concurrency,
            lambda client=client: client.disabled_reason,
        )
        for name, client in clients.items()
    }
    open_jobs = counts[PENDING] + counts[RUNNING]
    progress = tqdm(total=open_jobs, desc=kind, unit="job", disable=not show_progress)
    try:
        run = await work_through(
            db,
            kind,
            work,
            worker or worker_id(),
            lease_s,
            poll_s,
            progress,
        )
    finally:
        progress.close()
        for client in clients.values():
            await client.aclose()
    stats.done, stats.failed, stats.retried, stats.lost = (
        run.done,
        run.failed,
        run.retried,
        run.lost,
    )
    return stats


@dataclass
class Checked:
    """An answer as a stage checked it: the rows or label answers to keep, the rejected parts, and
    `error` when nothing in it can be kept (the attempt fails and the job is asked again)."""

    rejections: Sequence[Rejection] = ()
    rows: Sequence[GeneratedRow] = ()
    answers: Sequence[LabelAnswer] = ()
    error: str | None = None


class JobWorker:
    """Runs the jobs of one provider: prompt, call, check, record. A stage's worker says what to
    ask (`messages`), how to read the answer (`check`) and what to count once it is stored
    (`accepted`); a failed call or an answer with nothing to keep is a failed attempt, retried
    after `retry_delay_s` until the job's attempts are used up."""

    lost = "its result was not stored"  # the warning when another worker took the job over
    labeler_model = ""  # stored with label answers

    def __init__(self, db: JobDB, client: ChatClient, retry_delay_s: float, version: str, stats: WorkStats):
        self.db = db
        self.client = client
        self.retry_delay_s = retry_delay_s
        self.version = version
        self.stats = stats

    async def messages(self, claim: Claim) -> tuple[list[dict[str, str]], Any]:
        """The chat messages of `claim`'s request and what `check` needs to know of what was asked."""
        raise NotImplementedError

    def check(self, claim: Claim, text: str, asked: Any) -> Checked:
        raise NotImplementedError

    def accepted(self, checked: Checked, result: FinishResult) -> None:
        raise NotImplementedError

    def record(self, claim: Claim, outcome: str, completion: Completion | None = None, error: LLMError | None = None) -> ResponseRecord:
        """The provenance of this call, under the prompt version a batch file recorded, if any."""
        return response_record(self.client, claim.spec.get(BATCH_PROMPT_VERSION, self.version), outcome, completion, error)

    async def handle(self, claim: Claim) -> str | None:
        """Run one job; its new state, or None when another worker took it over."""
        messages, asked = await self.messages(claim)
        try:
            completion = await self.client.complete(messages, extra_headers={"X-LM-Action-Job": str(claim.job_id)})
        except LLMError as exc:
            record = self.record(claim, ERROR, error=exc)
            return await asyncio.to_thread(self.db.fail_attempt, claim, str(exc), record, (), self.retry_delay_s)
        checked = self.check(claim, completion.text, asked)
        if checked.error is not None:
            record = self.record(claim, REJECTED, completion)
            return await asyncio.to_thread(
                self.db.fail_attempt, claim, checked.error, record, checked.rejections, self.retry_delay_s
            )
        result = await asyncio.to_thread(
            self.db.finish,
            claim,
            self.record(claim, OK, completion),
            checked.rows,
            checked.answers,
            checked.rejections,
            self.labeler_model,
        )
        if not result.finished:
            log.warning("job %d: lost to another worker; %s", claim.job_id, self.lost)
            return None
        self.accepted(checked, result)
        return DONE
