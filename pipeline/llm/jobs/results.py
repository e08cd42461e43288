"""Finishing: a claimed job's response, rows, answers and rejections stored in one transaction
fenced by its claim token, or the attempt recorded as failed."""

from __future__ import annotations

import time
from typing import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pipeline.core.schema import ATTRIBUTE_NAMES
from pipeline.llm.jobs.engine import Transactions, insert_ignore
from pipeline.llm.jobs.records import Claim, FinishResult, GeneratedRow, LabelAnswer, Rejection, ResponseRecord
from pipeline.llm.jobs.tables import DONE, FAILED, PENDING, RUNNING, jobs, labels, rejections, responses, rows


class JobResults(Transactions):
    """Storing what an attempt brought, once."""

    def finish(
        self,
        claim: Claim,
        response: ResponseRecord,
        new_rows: Sequence[GeneratedRow] = (),
        answers: Sequence[LabelAnswer] = (),
        rejected: Sequence[Rejection] = (),
        labeler_model: str = "",
    ) -> FinishResult:
        """Mark the job done and store its response, rows, answers and rejections atomically.

        Rows whose id already exists (same text generated elsewhere) are stored as `duplicate`
        rejections. Nothing is stored when the claim was lost.
        """
        now = time.time()
        with self._begin() as conn:
            if not self._take_done(conn, claim, now):
                return FinishResult(False)
            response_id = self._insert_response(conn, claim, response)
            kept, duplicates = self._insert_rows(conn, claim, response_id, new_rows, now)
            extra = [
                Rejection("duplicate", "same text as an accepted row", r.text, row_id=r.id)
                for r in new_rows
                if r.id in duplicates
            ]
            self._insert_rejections(conn, claim, response_id, list(rejected) + extra, now)
            if answers:
                insert_ignore(
                    conn,
                    labels,
                    [
                        {
                            "row_id": a.row_id,
                            "labeler": claim.provider,
                            "labeler_model": labeler_model or response.model,
                            "job_id": claim.job_id,
                            "response_id": response_id,
                            **{name: a.labels[name] for name in ATTRIBUTE_NAMES},
                            "created_at": now,
                        }
                        for a in answers
                    ],
                )
        return FinishResult(True, kept, duplicates)

    def fail_attempt(
        self,
        claim: Claim,
        error: str,
        response: ResponseRecord | None = None,
        rejected: Sequence[Rejection] = (),
        retry_delay_s: float = 0.0,
    ) -> str | None:
        """Record a failed attempt: back to pending after `retry_delay_s`, or failed when the
        attempts are used up. The new state, or None when the claim was lost."""
        now = time.time()
        state = FAILED if claim.attempt >= claim.max_attempts else PENDING
        with self._begin() as conn:
            changed = conn.execute(
                jobs.update()
                .where(
                    jobs.c.id == claim.job_id,
                    jobs.c.claim_token == claim.token,
                    jobs.c.state == RUNNING,
                )
                .values(
                    state=state,
                    claim_token=None,
                    lease_until=None,
                    not_before=now + retry_delay_s if state == PENDING else 0.0,
                    error=error,
                    updated_at=now,
                )
            ).rowcount
            if changed != 1:
                return None
            response_id = self._insert_response(conn, claim, response) if response else None
            self._insert_rejections(conn, claim, response_id, rejected, now)
        return state

    @staticmethod
    def _take_done(conn: Connection, claim: Claim, now: float) -> bool:
        return (
            conn.execute(
                jobs.update()
                .where(
                    jobs.c.id == claim.job_id,
                    jobs.c.claim_token == claim.token,
                    jobs.c.state == RUNNING,
                )
                .values(state=DONE, claim_token=None, lease_until=None, error=None, updated_at=now)
            ).rowcount
            == 1
        )

    @staticmethod
    def _insert_response(conn: Connection, claim: Claim, response: ResponseRecord) -> int:
        result = conn.execute(
            responses.insert(),
            {
                "job_id": claim.job_id,
                "attempt": claim.attempt,
                "worker": claim.worker,
                "provider": response.provider,
                "model": response.model,
                "endpoint": response.endpoint,
                "prompt_version": response.prompt_version,
                "temperature": response.temperature,
                "started_at": response.started_at,
                "finished_at": response.finished_at,
                "prompt_tokens": response.prompt_tokens,
                "completion_tokens": response.completion_tokens,
                "retries": response.retries,
                "outcome": response.outcome,
                "error": response.error or None,
                "raw": response.raw,
            },
        )
        return int(result.inserted_primary_key[0])

    @staticmethod
    def _insert_rows(
        conn: Connection,
        claim: Claim,
        response_id: int,
        new_rows: Sequence[GeneratedRow],
        now: float,
    ) -> tuple[list[str], list[str]]:
        if not new_rows:
            return [], []
        ids = [r.id for r in new_rows]
        insert_ignore(
            conn,
            rows,
            [
                {
                    "id": r.id,
                    "job_id": claim.job_id,
                    "response_id": response_id,
                    "text": r.text,
                    "lang": r.lang,
                    "domain": r.domain,
                    **{name: r.labels[name] for name in ATTRIBUTE_NAMES},
                    "source": r.source,
                    "provider": claim.provider,
                    "verdict": None,
                    "created_at": now,
                }
                for r in new_rows
            ],
        )
        mine = set(
            conn.execute(
                sa.select(rows.c.id).where(rows.c.id.in_(ids), rows.c.response_id == response_id)
            ).scalars()
        )
        return [i for i in ids if i in mine], [i for i in ids if i not in mine]

    @staticmethod
    def _insert_rejections(
        conn: Connection,
        claim: Claim,
        response_id: int | None,
        rejected: Sequence[Rejection],
        now: float,
    ) -> None:
        if not rejected:
            return
        conn.execute(
            rejections.insert(),
            [
                {
                    "job_id": claim.job_id,
                    "response_id": response_id,
                    "kind": claim.kind,
                    "provider": claim.provider,
                    "item": r.item,
                    "row_id": r.row_id,
                    "text": r.text,
                    "reason": r.reason,
                    "detail": r.detail,
                    "created_at": now,
                }
                for r in rejected
            ],
        )

    def retry_failed(self, kind: str) -> int:
        """Give failed jobs of `kind` a fresh set of attempts."""
        with self._begin() as conn:
            return conn.execute(
                jobs.update()
                .where(jobs.c.kind == kind, jobs.c.state == FAILED)
                .values(state=PENDING, attempts=0, not_before=0.0, updated_at=time.time())
            ).rowcount
