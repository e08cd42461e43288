"""`JobDB`: the job database, one class over its parts."""

from __future__ import annotations

import threading
import time
from typing import Any

import sqlalchemy as sa

from pipeline.llm.jobs.claims import JobClaims
from pipeline.llm.jobs.engine import JobDBError, insert_ignore, open_engine
from pipeline.llm.jobs.planning import JobPlanning
from pipeline.llm.jobs.queries import JobQueries
from pipeline.llm.jobs.results import JobResults
from pipeline.llm.jobs.tables import PLAN_LOCK, locks, metadata
from pipeline.llm.jobs.verdicts import LabelVerdicts


class JobDB(JobPlanning, JobClaims, JobResults, JobQueries, LabelVerdicts):
    """Jobs, responses, rows, rejections and labels in one SQLite or PostgreSQL database."""

    def __init__(self, url: str):
        self.url = url
        self.engine = open_engine(url)
        # SQLite has one writer at a time: threads of one process queue here instead of
        # sleeping in SQLite's busy handler. PostgreSQL needs no such lock.
        self._lock: Any = threading.RLock() if self.engine.dialect.name == "sqlite" else None
        self.display_url = self.engine.url.render_as_string(hide_password=True)
        self._create_schema()

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "JobDB":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _create_schema(self) -> None:
        # Two workers starting at once may both try to create the tables: the loser retries.
        for attempt in range(3):
            try:
                metadata.create_all(self.engine)
                with self._begin() as conn:
                    insert_ignore(conn, locks, [{"name": PLAN_LOCK}])
                return
            except sa.exc.DBAPIError as exc:
                if attempt == 2:
                    raise JobDBError(f"cannot open job database {self.display_url}: {exc}") from exc
                time.sleep(0.2 * (attempt + 1))
