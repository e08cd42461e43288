"""The tables of the job database, and the values of their state, kind, outcome and verdict
columns."""

from __future__ import annotations

import sqlalchemy as sa

from pipeline.core.schema import ATTRIBUTE_NAMES

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
