"""Queries: jobs per state and provider, the accepted rows with their provenance, rejections,
responses and tokens, for the stages and their reports."""

from __future__ import annotations

import json
from typing import Any, Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pipeline.llm.jobs.engine import Transactions
from pipeline.llm.jobs.tables import OPEN_STATES, STATES, jobs, rejections, responses, rows


class JobQueries(Transactions):
    """What the stages and their reports read."""

    def job_counts(self, kind: str, providers: Iterable[str] | None = None) -> dict[str, int]:
        """Jobs of `kind` per state (every state present, zero when none)."""
        query = sa.select(jobs.c.state, sa.func.count()).where(jobs.c.kind == kind)
        if providers is not None:
            query = query.where(jobs.c.provider.in_(list(providers)))
        with self._begin() as conn:
            found = dict(conn.execute(query.group_by(jobs.c.state)).all())
        return {state: int(found.get(state, 0)) for state in STATES}

    def open_jobs_per_provider(self, kind: str) -> dict[str, int]:
        """Pending and running jobs of `kind` per provider."""
        with self._begin() as conn:
            result = conn.execute(
                sa.select(jobs.c.provider, sa.func.count())
                .where(jobs.c.kind == kind, jobs.c.state.in_(OPEN_STATES))
                .group_by(jobs.c.provider)
                .order_by(jobs.c.provider)
            )
            return {provider: int(n) for provider, n in result}

    def jobs_frame_rows(self, kind: str) -> list[dict[str, Any]]:
        """Every job of `kind` as a dict (for reports and tests)."""
        with self._begin() as conn:
            result = conn.execute(sa.select(jobs).where(jobs.c.kind == kind).order_by(jobs.c.id))
            return [dict(r._mapping) for r in result]

    def accepted_rows(self) -> list[dict[str, Any]]:
        """Every accepted generated row, ordered by id."""
        with self._begin() as conn:
            return self.accepted_rows_conn(conn)

    @staticmethod
    def accepted_rows_conn(conn: Connection) -> list[dict[str, Any]]:
        return [dict(r._mapping) for r in conn.execute(sa.select(rows).order_by(rows.c.id))]

    def row_provenance(self) -> list[dict[str, Any]]:
        """Per accepted row: who wrote it (provider, model), the job and prompt cell it answered,
        where the answer came from (endpoint or batch file) and the prompt version."""
        query = (
            sa.select(
                rows.c.id,
                rows.c.provider,
                responses.c.model,
                rows.c.job_id,
                jobs.c.spec,
                responses.c.endpoint,
                responses.c.prompt_version,
                rows.c.verdict,
            )
            .join(jobs, jobs.c.id == rows.c.job_id)
            .join(responses, responses.c.id == rows.c.response_id)
            .order_by(rows.c.id)
        )
        with self._begin() as conn:
            out = []
            for r in conn.execute(query):
                spec = json.loads(r.spec)
                cell = {k: spec[k] for k in ("lang", "domain", "labels") if k in spec}
                out.append(
                    {
                        "id": r.id,
                        "generator": r.provider,
                        "model": r.model,
                        "job_id": r.job_id,
                        "cell": cell,
                        "style_variant": spec.get("variant"),
                        "endpoint": r.endpoint,
                        "prompt_version": r.prompt_version,
                        "verdict": r.verdict,
                    }
                )
            return out

    @staticmethod
    def count_jobs_conn(conn: Connection, kind: str) -> int:
        return int(conn.execute(sa.select(sa.func.count()).where(jobs.c.kind == kind)).scalar_one())

    def rejection_counts(self, kind: str) -> dict[str, int]:
        """Rejected outputs of `kind` per reason."""
        with self._begin() as conn:
            result = conn.execute(
                sa.select(rejections.c.reason, sa.func.count())
                .where(rejections.c.kind == kind)
                .group_by(rejections.c.reason)
                .order_by(rejections.c.reason)
            )
            return {reason: int(n) for reason, n in result}

    def rejection_rows(self, kind: str) -> list[dict[str, Any]]:
        with self._begin() as conn:
            result = conn.execute(
                sa.select(rejections).where(rejections.c.kind == kind).order_by(rejections.c.id)
            )
            return [dict(r._mapping) for r in result]

    def response_rows(self, job_id: int | None = None) -> list[dict[str, Any]]:
        query = sa.select(responses).order_by(responses.c.id)
        if job_id is not None:
            query = query.where(responses.c.job_id == job_id)
        with self._begin() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def token_usage(self) -> dict[str, dict[str, int]]:
        """Requests and tokens per provider over every recorded response."""
        with self._begin() as conn:
            result = conn.execute(
                sa.select(
                    responses.c.provider,
                    sa.func.count(),
                    sa.func.coalesce(sa.func.sum(responses.c.prompt_tokens), 0),
                    sa.func.coalesce(sa.func.sum(responses.c.completion_tokens), 0),
                )
                .group_by(responses.c.provider)
                .order_by(responses.c.provider)
            )
            return {
                provider: {
                    "responses": int(n),
                    "prompt_tokens": int(p),
                    "completion_tokens": int(c),
                    "total_tokens": int(p) + int(c),
                }
                for provider, n, p, c in result
            }

    def row_texts(self, ids: Sequence[str]) -> dict[str, str]:
        """The text of each accepted row among `ids`."""
        with self._begin() as conn:
            result = conn.execute(sa.select(rows.c.id, rows.c.text).where(rows.c.id.in_(list(ids))))
            return {row_id: text for row_id, text in result}
