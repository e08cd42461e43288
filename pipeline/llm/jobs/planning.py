"""Planning: adding jobs under the plan lock, so that two planners never overlap, and what the
planners read of the jobs already planned."""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Mapping, Sequence, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pipeline.llm.jobs.engine import Transactions
from pipeline.llm.jobs.tables import LABEL, OPEN_STATES, PENDING, PLAN_LOCK, jobs, locks

T = TypeVar("T")


class JobPlanning(Transactions):
    """Adding jobs and reading the specs of the jobs planned."""

    def planning(self, plan: Callable[[Connection], T]) -> T:
        """Run `plan(conn)` in a transaction holding the plan lock: planners never overlap."""
        with self._begin() as conn:
            conn.execute(sa.select(locks.c.name).where(locks.c.name == PLAN_LOCK).with_for_update())
            return plan(conn)

    @staticmethod
    def open_specs(conn: Connection, kind: str) -> list[tuple[str, dict[str, Any]]]:
        """(provider, spec) of the pending and running jobs of `kind`."""
        result = conn.execute(
            sa.select(jobs.c.provider, jobs.c.spec)
            .where(jobs.c.kind == kind, jobs.c.state.in_(OPEN_STATES))
            .order_by(jobs.c.id)
        )
        return [(provider, json.loads(spec)) for provider, spec in result]

    @staticmethod
    def add_jobs(
        conn: Connection,
        kind: str,
        specs: Sequence[tuple[str, Mapping[str, Any]]],
        max_attempts: int,
    ) -> int:
        """Insert pending jobs `(provider, spec)`; the number added."""
        if not specs:
            return 0
        now = time.time()
        conn.execute(
            jobs.insert(),
            [
                {
                    "kind": kind,
                    "provider": provider,
                    "spec": json.dumps(spec, ensure_ascii=False, sort_keys=True),
                    "state": PENDING,
                    "attempts": 0,
                    "max_attempts": max_attempts,
                    "not_before": 0.0,
                    "created_at": now,
                    "updated_at": now,
                }
                for provider, spec in specs
            ],
        )
        return len(specs)

    def add(
        self, kind: str, specs: Sequence[tuple[str, Mapping[str, Any]]], max_attempts: int
    ) -> int:
        """Insert pending jobs outside a plan (benchmarks, tests)."""
        with self._begin() as conn:
            return self.add_jobs(conn, kind, specs, max_attempts)

    def update_specs(self, specs: Mapping[int, Mapping[str, Any]]) -> None:
        """Replace the spec of jobs by id (keys the planner does not read, such as provenance)."""
        if not specs:
            return
        with self._begin() as conn:
            for job_id, spec in specs.items():
                conn.execute(
                    jobs.update()
                    .where(jobs.c.id == job_id)
                    .values(spec=json.dumps(spec, ensure_ascii=False, sort_keys=True))
                )

    @staticmethod
    def label_job_rows_conn(conn: Connection) -> set[str]:
        """Ids of every row any label job (open, done or failed) asked about."""
        specs = conn.execute(sa.select(jobs.c.spec).where(jobs.c.kind == LABEL))
        return {rid for (spec,) in specs for rid in json.loads(spec).get("row_ids", [])}

    def last_planned(self, kind: str) -> float | None:
        """When the newest job of `kind` was planned (None: never)."""
        with self._begin() as conn:
            return conn.execute(sa.select(sa.func.max(jobs.c.created_at)).where(jobs.c.kind == kind)).scalar()

    def label_job_rows(self) -> set[str]:
        with self._begin() as conn:
            return self.label_job_rows_conn(conn)
