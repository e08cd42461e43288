"""Claiming: a worker takes a job with a claim token and a lease, keeps it with heartbeats, and
gives it back when interrupted; the jobs of dead workers go back to the queue."""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Iterable

import sqlalchemy as sa

from pipeline.llm.jobs.engine import Transactions
from pipeline.llm.jobs.records import Claim
from pipeline.llm.jobs.tables import FAILED, PENDING, RUNNING, jobs
from pipeline.llm.jobs.workers import is_dead_local_worker

log = logging.getLogger(__name__)


class JobClaims(Transactions):
    """Taking, holding and giving back jobs."""

    def claim(
        self,
        kind: str,
        providers: Iterable[str],
        worker: str,
        lease_s: float,
        now: float | None = None,
    ) -> Claim | None:
        """Take the oldest claimable job of `kind` for one of `providers`, or None.

        Claimable: pending and past its retry delay, or running with an expired lease (its
        worker died). A job whose attempts are used up by dead workers is marked failed.
        """
        providers = list(providers)
        if not providers:
            return None
        while True:
            now = time.time() if now is None else now
            with self._begin() as conn:
                row = conn.execute(
                    sa.select(jobs)
                    .where(
                        jobs.c.kind == kind,
                        jobs.c.provider.in_(providers),
                        sa.or_(
                            sa.and_(jobs.c.state == PENDING, jobs.c.not_before <= now),
                            sa.and_(jobs.c.state == RUNNING, jobs.c.lease_until < now),
                        ),
                    )
                    .order_by(jobs.c.id)
                    .limit(1)
                    .with_for_update(skip_locked=True)
                ).first()
                if row is None:
                    return None
                if row.state == RUNNING and row.attempts >= row.max_attempts:
                    conn.execute(
                        jobs.update()
                        .where(jobs.c.id == row.id, jobs.c.claim_token == row.claim_token)
                        .values(
                            state=FAILED,
                            claim_token=None,
                            lease_until=None,
                            error=f"worker {row.worker} lost the job (lease expired) "
                            f"after {row.attempts} attempt(s)",
                            updated_at=now,
                        )
                    )
                    continue
                token = uuid.uuid4().hex
                taken = conn.execute(
                    jobs.update()
                    .where(
                        jobs.c.id == row.id,
                        jobs.c.state == row.state,
                        _token_is(row.claim_token),
                    )
                    .values(
                        state=RUNNING,
                        claim_token=token,
                        worker=worker,
                        lease_until=now + lease_s,
                        attempts=jobs.c.attempts + 1,
                        updated_at=now,
                    )
                ).rowcount
                if taken != 1:
                    continue
                if row.state == RUNNING:
                    log.info("job %d: taken over from %s (lease expired)", row.id, row.worker)
                return Claim(
                    job_id=row.id,
                    kind=row.kind,
                    provider=row.provider,
                    spec=json.loads(row.spec),
                    attempt=row.attempts + 1,
                    max_attempts=row.max_attempts,
                    token=token,
                    worker=worker,
                )

    def held_claim(self, job_id: int) -> Claim | None:
        """The claim of a running job (held by a batch file, say), or None when it is not running."""
        with self._begin() as conn:
            row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).first()
        if row is None or row.state != RUNNING or not row.claim_token:
            return None
        return Claim(
            job_id=row.id,
            kind=row.kind,
            provider=row.provider,
            spec=json.loads(row.spec),
            attempt=row.attempts,
            max_attempts=row.max_attempts,
            token=row.claim_token,
            worker=row.worker or "",
        )

    def heartbeat(self, claims: Iterable[Claim], lease_s: float) -> int:
        """Extend the leases of `claims`; the number still held."""
        tokens = [c.token for c in claims]
        if not tokens:
            return 0
        now = time.time()
        with self._begin() as conn:
            return conn.execute(
                jobs.update()
                .where(jobs.c.claim_token.in_(tokens), jobs.c.state == RUNNING)
                .values(lease_until=now + lease_s, updated_at=now)
            ).rowcount

    def _give_back(self, *where: sa.ColumnElement[bool]) -> int:
        """Put the jobs matching `where` back (pending, the attempt not counted); how many."""
        with self._begin() as conn:
            return conn.execute(
                jobs.update()
                .where(*where)
                .values(
                    state=PENDING,
                    claim_token=None,
                    lease_until=None,
                    attempts=jobs.c.attempts - 1,
                    updated_at=time.time(),
                )
            ).rowcount

    def release(self, claim: Claim) -> bool:
        """Give an interrupted job back (pending, the attempt not counted)."""
        return self._give_back(jobs.c.id == claim.job_id, jobs.c.claim_token == claim.token) == 1

    def release_worker(self, kind: str, worker: str) -> int:
        """Give back every job of `kind` that `worker` still holds (pending, the attempt not
        counted): an interrupted worker's last word, for a claim no task was left to release."""
        return self._give_back(jobs.c.kind == kind, jobs.c.state == RUNNING, jobs.c.worker == worker)

    def requeue_dead_workers(self, kind: str) -> int:
        """Put back the running jobs of workers on this host whose process is gone."""
        with self._begin() as conn:
            workers = [
                w
                for (w,) in conn.execute(
                    sa.select(jobs.c.worker)
                    .where(jobs.c.kind == kind, jobs.c.state == RUNNING)
                    .distinct()
                )
                if w and is_dead_local_worker(w)
            ]
            if not workers:
                return 0
            count = conn.execute(
                jobs.update()
                .where(jobs.c.kind == kind, jobs.c.state == RUNNING, jobs.c.worker.in_(workers))
                .values(state=PENDING, claim_token=None, lease_until=None, updated_at=time.time())
            ).rowcount
        log.info("%d job(s) of stopped worker(s) %s put back", count, ", ".join(workers))
        return count


def _token_is(token: str | None) -> sa.ColumnElement[bool]:
    return jobs.c.claim_token.is_(None) if token is None else jobs.c.claim_token == token
