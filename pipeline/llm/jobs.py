"""The job database of `generate` and `label`: jobs, LLM responses, accepted rows, rejections
and labeler answers.

SQLite (a file under `build/`) by default, PostgreSQL when a URL is given; one SQLAlchemy Core
code path for both. Workers claim a job by taking a claim token in a short transaction
(`FOR UPDATE SKIP LOCKED` on PostgreSQL, `BEGIN IMMEDIATE` on SQLite) and finish it in one
transaction fenced by that token, so a job's results are stored exactly once even when a worker
dies, its lease runs out and another worker takes the job over.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from pipeline.core.schema import ATTRIBUTE_NAMES

log = logging.getLogger(__name__)

PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
STATES: tuple[str, ...] = (PENDING, RUNNING, DONE, FAILED)
OPEN_STATES: tuple[str, ...] = (PENDING, RUNNING)
GENERATE, LABEL = "generate", "label"
# Outcomes of one LLM call.
OK, REJECTED, ERROR = "ok", "rejected", "error"
# Row verdicts after labeling.
AGREED, DISAGREED = "agreed", "disagreed"
# Rows a sampled labeling pass left out (their generator labels stand), and disagreements that
# an adjudicator settled (the adjudicated labels are exported).
UNSAMPLED, ADJUDICATED = "unsampled", "adjudicated"
PLAN_LOCK = "plan"

T = TypeVar("T")

metadata = sa.MetaData()

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("provider", sa.String(200), nullable=False),
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, default=PENDING),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("claim_token", sa.String(32)),
    sa.Column("worker", sa.String(200)),
    sa.Column("lease_until", sa.Float),
    sa.Column("not_before", sa.Float, nullable=False, default=0.0),
    sa.Column("error", sa.Text),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Index("ix_jobs_claim", "kind", "state", "provider"),
)

responses = sa.Table(
    "responses",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id"), nullable=False, index=True),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("worker", sa.String(200), nullable=False),
    sa.Column("provider", sa.String(200), nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("endpoint", sa.String(500), nullable=False),
    sa.Column("prompt_version", sa.String(64), nullable=False),
    sa.Column("temperature", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float, nullable=False),
    sa.Column("prompt_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("completion_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("retries", sa.Integer, nullable=False, default=0),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("raw", sa.Text),
)

rows = sa.Table(
    "rows",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id"), nullable=False, index=True),
    sa.Column("response_id", sa.Integer, sa.ForeignKey("responses.id"), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("lang", sa.String(8), nullable=False),
    sa.Column("domain", sa.String(64), nullable=False),
    *(sa.Column(name, sa.String(8), nullable=False) for name in ATTRIBUTE_NAMES),
    sa.Column("source", sa.String(200), nullable=False),
    sa.Column("provider", sa.String(200), nullable=False),
    sa.Column("verdict", sa.String(16)),
    sa.Column("created_at", sa.Float, nullable=False),
)

rejections = sa.Table(
    "rejections",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id"), nullable=False, index=True),
    sa.Column("response_id", sa.Integer, sa.ForeignKey("responses.id")),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("provider", sa.String(200), nullable=False),
    sa.Column("item", sa.Integer),
    sa.Column("row_id", sa.String(40), index=True),
    sa.Column("text", sa.Text),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("detail", sa.Text),
    sa.Column("created_at", sa.Float, nullable=False),
)

labels = sa.Table(
    "labels",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("row_id", sa.String(40), sa.ForeignKey("rows.id"), nullable=False),
    sa.Column("labeler", sa.String(200), nullable=False),
    sa.Column("labeler_model", sa.String(200), nullable=False),
    sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id"), nullable=False),
    sa.Column("response_id", sa.Integer, sa.ForeignKey("responses.id"), nullable=False),
    *(sa.Column(name, sa.String(8), nullable=False) for name in ATTRIBUTE_NAMES),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.UniqueConstraint("row_id", "labeler", name="uq_labels_row_labeler"),
)

# Final labels of rows whose labelers disagreed, settled by an adjudicator who saw every vote.
adjudications = sa.Table(
    "adjudications",
    metadata,
    sa.Column("row_id", sa.String(40), sa.ForeignKey("rows.id"), primary_key=True),
    *(sa.Column(name, sa.String(8), nullable=False) for name in ATTRIBUTE_NAMES),
    sa.Column("adjudicator", sa.String(200), nullable=False),
    sa.Column("note", sa.Text),
    sa.Column("created_at", sa.Float, nullable=False),
)

locks = sa.Table("locks", metadata, sa.Column("name", sa.String(32), primary_key=True))


@dataclass(frozen=True)
class Claim:
    """A job taken by one worker; `token` fences its completion."""

    job_id: int
    kind: str
    provider: str
    spec: dict[str, Any]
    attempt: int
    max_attempts: int
    token: str
    worker: str


@dataclass(frozen=True)
class ResponseRecord:
    """Provenance of one LLM call (after the client's own retries)."""

    provider: str
    model: str
    endpoint: str
    prompt_version: str
    temperature: float
    started_at: float
    finished_at: float
    outcome: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    error: str = ""
    raw: str = ""


@dataclass(frozen=True)
class Rejection:
    """One rejected output (a whole response when `item` is None) and why."""

    reason: str
    detail: str = ""
    text: str = ""
    item: int | None = None
    row_id: str | None = None


@dataclass(frozen=True)
class GeneratedRow:
    """An accepted generated command with its labels."""

    id: str
    text: str
    lang: str
    domain: str
    labels: dict[str, str]
    source: str


@dataclass(frozen=True)
class LabelAnswer:
    """One labeler's labels for one row."""

    row_id: str
    labels: dict[str, str]


@dataclass
class FinishResult:
    """What `finish` stored: False in `finished` when the claim was lost to another worker."""

    finished: bool
    rows: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)


class JobDBError(RuntimeError):
    """The job database cannot be opened or used."""


def database_url(url: str | None, default_path: Path) -> str:
    """A SQLAlchemy URL: `url` (a PostgreSQL or SQLite URL, or a file path) or the default file."""
    if not url:
        return f"sqlite:///{Path(default_path).resolve()}"
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if "://" in url:
        return url
    return f"sqlite:///{Path(url).resolve()}"


def worker_id() -> str:
    """`host:pid:random`: unique per process; host and pid let a restart find dead workers."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def is_dead_local_worker(worker: str) -> bool:
    """True when `worker` ran on this host in a process that no longer exists."""
    host, _, rest = worker.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


class JobDB:
    """Jobs, responses, rows, rejections and labels in one SQLite or PostgreSQL database."""

    def __init__(self, url: str):
        self.url = url
        self.engine = _create_engine(url)
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

    @contextlib.contextmanager
    def _begin(self) -> Iterator[Connection]:
        """A connection in a transaction, committed on success."""
        with self._lock or contextlib.nullcontext(), self.engine.begin() as conn:
            yield conn

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def _create_schema(self) -> None:
        # Two workers starting at once may both try to create the tables: the loser retries.
        for attempt in range(3):
            try:
                metadata.create_all(self.engine)
                with self._begin() as conn:
                    _insert_ignore(conn, locks, [{"name": PLAN_LOCK}])
                return
            except sa.exc.DBAPIError as exc:
                if attempt == 2:
                    raise JobDBError(f"cannot open job database {self.display_url}: {exc}") from exc
                time.sleep(0.2 * (attempt + 1))

    # -----------------------------------------------------------------------------------------
    # Planning

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

    # -----------------------------------------------------------------------------------------
    # Claiming

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

    def release(self, claim: Claim) -> bool:
        """Give an interrupted job back (pending, the attempt not counted)."""
        with self._begin() as conn:
            return (
                conn.execute(
                    jobs.update()
                    .where(jobs.c.id == claim.job_id, jobs.c.claim_token == claim.token)
                    .values(
                        state=PENDING,
                        claim_token=None,
                        lease_until=None,
                        attempts=jobs.c.attempts - 1,
                        updated_at=time.time(),
                    )
                ).rowcount
                == 1
            )

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

    # -----------------------------------------------------------------------------------------
    # Finishing

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
                _insert_ignore(
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
        _insert_ignore(
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

    # -----------------------------------------------------------------------------------------
    # Queries

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

    def label_answers(self) -> list[dict[str, Any]]:
        """Every stored labeler answer, ordered by row and labeler."""
        with self._begin() as conn:
            result = conn.execute(sa.select(labels).order_by(labels.c.row_id, labels.c.labeler))
            return [dict(r._mapping) for r in result]

    def set_adjudications(self, records: Sequence[Mapping[str, Any]], adjudicator: str) -> int:
        """Store (or replace) adjudicated labels: `row_id`, the six attributes, optional `note`."""
        if not records:
            return 0
        now = time.time()
        with self._begin() as conn:
            ids = [r["row_id"] for r in records]
            conn.execute(adjudications.delete().where(adjudications.c.row_id.in_(ids)))
            conn.execute(
                adjudications.insert(),
                [
                    {
                        "row_id": r["row_id"],
                        **{name: r[name] for name in ATTRIBUTE_NAMES},
                        "adjudicator": adjudicator,
                        "note": r.get("note", ""),
                        "created_at": now,
                    }
                    for r in records
                ],
            )
        return len(records)

    def adjudications(self) -> dict[str, dict[str, Any]]:
        """Adjudicated labels by row id."""
        with self._begin() as conn:
            return {r.row_id: dict(r._mapping) for r in conn.execute(sa.select(adjudications))}

    @staticmethod
    def answered_conn(conn: Connection) -> set[tuple[str, str]]:
        """(row id, labeler) of every stored labeler answer."""
        return {(r, l) for r, l in conn.execute(sa.select(labels.c.row_id, labels.c.labeler))}

    @staticmethod
    def label_rejections_conn(conn: Connection) -> dict[tuple[str, str], int]:
        """How often each labeler's answer for each row was rejected."""
        result = conn.execute(
            sa.select(rejections.c.row_id, rejections.c.provider, sa.func.count())
            .where(rejections.c.kind == LABEL, rejections.c.row_id.is_not(None))
            .group_by(rejections.c.row_id, rejections.c.provider)
        )
        return {(row_id, provider): int(n) for row_id, provider, n in result}

    def set_verdicts(self, verdicts: Mapping[str, str | None]) -> None:
        """Store the labeling verdict of rows (`agreed`, `disagreed` or None for undecided)."""
        if not verdicts:
            return
        with self._begin() as conn:
            conn.execute(
                rows.update()
                .where(rows.c.id == sa.bindparam("row_id"))
                .values(verdict=sa.bindparam("new_verdict")),
                [{"row_id": k, "new_verdict": v} for k, v in verdicts.items()],
            )


def _token_is(token: str | None) -> sa.ColumnElement[bool]:
    return jobs.c.claim_token.is_(None) if token is None else jobs.c.claim_token == token


def _insert_ignore(conn: Connection, table: sa.Table, values: list[dict[str, Any]]) -> None:
    """INSERT ... ON CONFLICT DO NOTHING on either dialect."""
    if not values:
        return
    dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    conn.execute(dialect_insert(table).on_conflict_do_nothing(), values)


def _create_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = sa.engine.make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _connect(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy emit BEGIN: IMMEDIATE takes the write lock at once, so a claim's
            # read and update are one atomic step across processes.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if url.startswith("postgresql"):
        return sa.create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=8)
    raise JobDBError(f"unsupported job database URL {url!r}: use sqlite:/// or postgresql://")
