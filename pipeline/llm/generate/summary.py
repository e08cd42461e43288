"""The end-of-run report of `generate`: jobs, rows kept and rejected by reason, tokens per
provider."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from pipeline.core.config import to_dict
from pipeline.llm.balance import BalancePlan
from pipeline.llm.client import Endpoint
from pipeline.llm.generate.checks import REASONS
from pipeline.llm.generate.config import GenerateConfig
from pipeline.llm.generate.export import ExportResult
from pipeline.llm.jobs.db import JobDB
from pipeline.llm.jobs.tables import GENERATE
from pipeline.llm.runner import WorkStats

SUMMARY_NAME = "generate_summary.json"


@dataclass
class GenerateSummary:
    """The end-of-run report: jobs, rows kept and rejected by reason, tokens per provider."""

    providers: list[str]
    unavailable: list[str]
    planned_jobs: int
    planned_rows: int
    run: dict[str, int]
    jobs: dict[str, int]
    rows_accepted: int
    rows_exported: int
    rows_waiting_for_labels: int
    rejections: dict[str, int]
    tokens: dict[str, dict[str, int]]
    # Open jobs of providers this run could not use (their key or URL is not set).
    waiting_for_providers: dict[str, int]
    export_path: str | None
    config: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def summarize(
    db: JobDB,
    config: GenerateConfig,
    endpoints: Sequence[Endpoint],
    unavailable: list[str],
    plan: BalancePlan | None,
    stats: WorkStats,
    exported: ExportResult,
) -> GenerateSummary:
    """The summary of a run, with totals over the whole job database."""
    used = {e.provider.name for e in endpoints}
    return GenerateSummary(
        providers=sorted(used),
        unavailable=unavailable,
        planned_jobs=len(plan.requests) if plan else 0,
        planned_rows=plan.requested_rows if plan else 0,
        run={
            "done": stats.done,
            "failed": stats.failed,
            "retried": stats.retried,
            "lost": stats.lost,
        },
        jobs=db.job_counts(GENERATE),
        rows_accepted=len(db.accepted_rows()),
        rows_exported=exported.rows,
        rows_waiting_for_labels=exported.waiting_for_labels,
        rejections=db.rejection_counts(GENERATE),
        tokens=db.token_usage(),
        waiting_for_providers={
            name: n for name, n in db.open_jobs_per_provider(GENERATE).items() if name not in used
        },
        export_path=str(exported.path) if exported.path else None,
        config=to_dict(config),
    )


def format_summary(summary: GenerateSummary) -> str:
    lines = [
        f"providers: {', '.join(summary.providers) or '-'}",
        f"planned this run: {summary.planned_jobs} jobs, {summary.planned_rows} rows",
        "this run: " + ", ".join(f"{k} {v}" for k, v in summary.run.items()),
        "jobs: " + ", ".join(f"{k} {v}" for k, v in summary.jobs.items()),
        f"rows accepted: {summary.rows_accepted}, exported: {summary.rows_exported}"
        + (
            f", waiting for labels: {summary.rows_waiting_for_labels}"
            if summary.rows_waiting_for_labels
            else ""
        ),
    ]
    if summary.rejections:
        lines.append("rejected outputs by reason:")
        lines.extend(
            f"  {k:<16} {v:>6}  {REASONS.get(k, '')}" for k, v in summary.rejections.items()
        )
    if summary.tokens:
        lines.append("tokens per provider (all runs):")
        for name, t in summary.tokens.items():
            lines.append(
                f"  {name:<24} {t['responses']:>6} responses {t['prompt_tokens']:>10} prompt "
                f"{t['completion_tokens']:>10} completion"
            )
    for reason in summary.unavailable:
        lines.append(f"not used: {reason}")
    for name, n in summary.waiting_for_providers.items():
        lines.append(f"{n} open job(s) wait for {name}")
    if summary.export_path:
        lines.append(f"wrote {summary.export_path}")
    return "\n".join(lines)
