"""`python -m pipeline generate`: generate labeled commands with LLMs (balanced, resumable).
Parses the arguments, reads the files, calls `pipeline.llm.generate` and writes what it returns."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path
from typing import Iterable, Sequence

from pipeline.core.config import BuildLayout, ConfigError, stage_config
from pipeline.core.io import write_json
from pipeline.core.schema import TEXT
from pipeline.llm.batch import export_batch, import_batch
from pipeline.llm.client import ModelsFile, ProviderConfig, available_endpoints
from pipeline.llm.generate.checks import normalize_text
from pipeline.llm.generate.config import GenerateConfig
from pipeline.llm.generate.export import export_generated
from pipeline.llm.generate.inputs import job_db_url, load_current_corpus, models_path, read_models
from pipeline.llm.generate.plan import plan_generation
from pipeline.llm.generate.prompts import generation_messages, labeling_guide, prompt_version
from pipeline.llm.generate.summary import SUMMARY_NAME, format_summary, summarize
from pipeline.llm.generate.worker import GenerationWorker, run_generation
from pipeline.llm.jobs.db import JobDB
from pipeline.llm.jobs.tables import GENERATE
from pipeline.llm.runner import WorkStats

log = logging.getLogger(__name__)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_job_arguments(parser)
    parser.add_argument("--no-plan", action="store_true", help="only work on jobs already planned")
    parser.add_argument("--plan-only", action="store_true", help="plan jobs and stop")
    parser.add_argument("--retry-failed", action="store_true", help="give failed jobs new attempts")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_batch_arguments(parser, "generator")
    parser.add_argument(
        "--export-dir",
        type=Path,
        help="folder of the exported generated.csv (default: <build-dir>/generated; "
        "data/generated keeps the rows with the project)",
    )


def add_job_arguments(parser: argparse.ArgumentParser) -> None:
    """`--models` and `--db` (generate and label)."""
    parser.add_argument("--models", type=Path, help="models file (default: generate.models_file)")
    parser.add_argument(
        "--db",
        help="job database URL or SQLite path (default: $LM_ACTION_JOBS_DB or build/jobs.sqlite)",
    )


def add_batch_arguments(parser: argparse.ArgumentParser, role: str) -> None:
    """`--export-batch`, `--import-batch`, `--{role}` and `--batch-jobs` (generate and label)."""
    group = parser.add_argument_group("OpenAI Batch API files")
    group.add_argument(
        "--export-batch",
        type=Path,
        metavar="FILE",
        help=f"plan, then write the open jobs of --{role} as Batch API request lines (JSONL) instead of calling it",
    )
    group.add_argument(
        "--import-batch",
        type=Path,
        metavar="FILE",
        help=f"read Batch API output lines for --{role} and check and store them like live answers",
    )
    group.add_argument(f"--{role}", dest="batch_provider", metavar="NAME", help=f"the {role} of the batch file (its `name`)")
    group.add_argument("--batch-jobs", type=int, metavar="N", help="at most N jobs in the exported file")


def batch_provider(args: argparse.Namespace, providers: Sequence[ProviderConfig], role: str) -> ProviderConfig:
    """The provider named by `--{role}`; `ConfigError` when it is missing or unknown."""
    if not args.batch_provider:
        raise ConfigError(f"--export-batch and --import-batch need --{role} NAME")
    by_name = {p.name: p for p in providers}
    if args.batch_provider not in by_name:
        known = ", ".join(sorted(by_name)) or "none"
        raise ConfigError(f"--{role} {args.batch_provider!r} is not in the models file (known: {known})")
    return by_name[args.batch_provider]


def quiet_http_logs() -> None:
    """Request lines of the HTTP client at INFO would drown the progress bar."""
    for name in ("httpx", "httpx2", "openai"):
        logging.getLogger(name).setLevel(logging.WARNING)


def nothing_configured(
    stage: str, path: Path, models: ModelsFile | None, role: str, missing: Iterable[str]
) -> int:
    if models is None:
        print(
            f"{stage}: nothing configured: no models file at {path} "
            "(copy configs/generators.example.toml there, or pass --models); nothing was done"
        )
    else:
        reasons = list(missing)
        detail = "; ".join(reasons) if reasons else f"the file lists no {role}"
        print(
            f"{stage}: nothing configured: no usable {role} in {path} ({detail}); nothing was done"
        )
    return 0


def main(args: argparse.Namespace) -> int:
    quiet_http_logs()
    config = stage_config(GenerateConfig, "generate", args.preset, args.overrides)
    layout = BuildLayout(args.build_dir)
    path = models_path(config, args.models)
    models = read_models(path)
    if args.export_batch or args.import_batch:
        if models is None:
            raise ConfigError(f"no models file at {path}: the batch's generator must be listed there")
        return batch_main(args, config, layout, models, batch_provider(args, models.generators, "generator"))
    endpoints, missing = available_endpoints(models.generators if models else [])
    if not endpoints:
        return nothing_configured("generate", path, models, "generators", missing)
    for reason in missing:
        log.warning("not used: %s", reason)
    corpus = load_current_corpus(config, layout)
    db = JobDB(job_db_url(config, layout, args.db))
    log.info("job database: %s", db.display_url)
    with db:
        if args.retry_failed:
            log.info("%d failed job(s) get new attempts", db.retry_failed(GENERATE))
        plan = None
        if not args.no_plan:
            plan = plan_generation(db, config, [e.provider for e in endpoints], corpus)
            log.info(
                "plan: corpus %d rows (+%d requested by open jobs), target %d: %d new job(s), %d rows",
                plan.current_rows,
                plan.open_rows,
                plan.target_rows,
                len(plan.requests),
                plan.requested_rows,
            )
            for what in ("lang", "domain", "labels"):
                log.debug("planned rows per %s: %s", what, plan.rows_per(what))
        stats = WorkStats()
        require_agreement = bool(models and models.labelers)
        try:
            if not args.plan_only:
                known = {normalize_text(t) for t in corpus[TEXT]} if len(corpus) else set()
                stats = asyncio.run(
                    run_generation(db, endpoints, config, known, show_progress=not args.no_progress)
                )
        finally:
            # Also on Ctrl-C: what finished is exported (and kept in the database anyway).
            exported = export_generated(db, args.export_dir or layout.generated, require_agreement)
        summary = summarize(db, config, endpoints, missing, plan, stats, exported)
    write_json(layout.reports / SUMMARY_NAME, summary.to_dict())
    print(format_summary(summary))
    return 1 if stats.failed and not stats.done else 0


def batch_main(
    args: argparse.Namespace,
    config: GenerateConfig,
    layout: BuildLayout,
    models: ModelsFile,
    provider: ProviderConfig,
) -> int:
    """`--export-batch`: plan for `provider` and write its open jobs as request lines.
    `--import-batch`: pass each output line through the generation worker, then export."""
    corpus = load_current_corpus(config, layout)
    guide = labeling_guide()
    version = prompt_version(guide)
    db = JobDB(job_db_url(config, layout, args.db))
    with db:
        if args.export_batch:
            if args.retry_failed:
                log.info("%d failed job(s) get new attempts", db.retry_failed(GENERATE))
            plan = None if args.no_plan else plan_generation(db, config, [provider], corpus, only_slices=True)
            out = export_batch(
                db,
                GENERATE,
                provider,
                lambda claim: generation_messages(claim.spec, guide, provider.brief),
                args.export_batch,
                config.batch_lease_hours * 3600,
                args.batch_jobs,
                version,
            )
            planned = f"{len(plan.requests)} new job(s), {plan.requested_rows} rows; " if plan else ""
            print(f"generate: planned {planned}wrote {out.jobs} request(s) for {provider.name} to {out.path} ({version})")
            return 0
        known = {normalize_text(t) for t in corpus[TEXT]} if len(corpus) else set()
        known.update(normalize_text(r["text"]) for r in db.accepted_rows())
        stats = WorkStats()
        result = import_batch(
            db,
            GENERATE,
            provider,
            args.import_batch,
            lambda client: GenerationWorker(db, client, config, guide, known, stats).handle,
            not args.no_progress,
        )
        require_agreement = bool(models.labelers)
        exported = export_generated(db, args.export_dir or layout.generated, require_agreement)
        summary = summarize(db, config, [], [], None, stats, exported)
        summary.run = {"lines": result.lines, "done": result.done, "retry": result.retry, "failed": result.failed, "stale": len(result.stale)}
    write_json(layout.reports / SUMMARY_NAME, summary.to_dict())
    print(format_summary(summary))
    for what, ids in (("no longer held by a batch (imported before, or taken over)", result.stale), (f"belong to another generator than {provider.name}", result.other_provider)):
        if ids:
            print(f"{len(ids)} line(s) skipped: their jobs {what}: {', '.join(map(str, ids[:20]))}")
    print(f"imported {result.done} of {result.lines} answer(s) from {args.import_batch}; {stats.accepted_rows} row(s) accepted")
    return 0 if result.done or not result.lines else 1
