"""`python -m pipeline label`: re-label generated commands with other LLMs and keep agreements.
Parses the arguments, reads the files, calls `pipeline.llm.label` and writes what it returns."""

from __future__ import annotations

import argparse
import asyncio
import csv
import logging
from pathlib import Path

from pipeline.cli.generate import (
    add_batch_arguments,
    add_job_arguments,
    batch_provider,
    nothing_configured,
    quiet_http_logs,
)
from pipeline.core.config import BuildLayout, ConfigError, stage_config, to_dict
from pipeline.core.io import write_json
from pipeline.core.schema import ATTRIBUTES_BY_NAME, ATTRIBUTE_NAMES
from pipeline.llm.batch import export_batch, import_batch
from pipeline.llm.client import available_endpoints
from pipeline.llm.generate.config import GenerateConfig
from pipeline.llm.generate.export import export_generated
from pipeline.llm.generate.inputs import job_db_url, models_path, read_models
from pipeline.llm.generate.prompts import labeling_guide, prompt_version
from pipeline.llm.jobs.db import JobDB
from pipeline.llm.jobs.tables import LABEL, PENDING, RUNNING
from pipeline.llm.label import (
    AGREEMENT_REPORT,
    DISAGREEMENTS_CSV,
    LABEL_PROMPT_VERSION,
    LabelWorker,
    agreement_report,
    claim_commands,
    format_report,
    label_messages,
    plan_labeling,
    run_labeling,
    verdicts,
    write_disagreements,
)
from pipeline.llm.runner import WorkStats

log = logging.getLogger(__name__)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_job_arguments(parser)
    parser.add_argument(
        "--retry-failed", action="store_true", help="give failed label jobs new attempts"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--export-dir",
        type=Path,
        help="folder of the exported generated.csv (default: <build-dir>/generated)",
    )
    parser.add_argument(
        "--adjudications",
        type=Path,
        metavar="CSV",
        help="settle disagreements: a CSV with id, the six attributes and an optional note "
        "(the final labels of each row)",
    )
    parser.add_argument("--adjudicator", default="adjudicator", help="who settled the --adjudications")
    add_batch_arguments(parser, "labeler")


def read_adjudications(path: Path, known: set[str]) -> list[dict[str, str]]:
    """Rows of an adjudication CSV, checked; `ConfigError` naming every bad line."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such adjudication file")
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in ("id", *ATTRIBUTE_NAMES) if c not in (reader.fieldnames or [])]
        if missing:
            raise ConfigError(f"{path}: the header lacks {', '.join(missing)}")
        records, problems = [], []
        for record in reader:
            line = reader.line_num
            if record["id"] not in known:
                problems.append(f"{path}:{line}: id {record['id']!r} is not a row of the job database")
                continue
            bad = [n for n in ATTRIBUTE_NAMES if record[n] not in ATTRIBUTES_BY_NAME[n].values]
            if bad:
                problems.append(f"{path}:{line}: " + ", ".join(f"{n}={record[n]!r}" for n in bad))
                continue
            records.append({"row_id": record["id"], **{n: record[n] for n in ATTRIBUTE_NAMES}, "note": record.get("note", "")})
    if problems:
        raise ConfigError(f"{len(problems)} bad line(s); nothing was stored:\n  " + "\n  ".join(problems[:20]))
    return records


def main(args: argparse.Namespace) -> int:
    quiet_http_logs()
    config = stage_config(GenerateConfig, "generate", args.preset, args.overrides)
    layout = BuildLayout(args.build_dir)
    path = models_path(config, args.models)
    models = read_models(path)
    batch = bool(args.export_batch or args.import_batch)
    if batch:
        if models is None:
            raise ConfigError(f"no models file at {path}: the batch's labeler must be listed there")
        endpoints, missing = [], []
    else:
        endpoints, missing = available_endpoints(models.labelers if models else [])
        if not endpoints and not args.adjudications:
            return nothing_configured("label", path, models, "labelers", missing)
    for reason in missing:
        log.warning("not used: %s", reason)
    url = job_db_url(config, layout, args.db)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        print(f"label: no job database at {url.removeprefix('sqlite:///')}: run `generate` first")
        return 0
    stats = WorkStats()
    guide = labeling_guide()
    with JobDB(url) as db:
        if args.retry_failed:
            log.info("%d failed label job(s) get new attempts", db.retry_failed(LABEL))
        if args.adjudications:
            known = {r["id"] for r in db.accepted_rows()}
            stored = db.set_adjudications(read_adjudications(args.adjudications, known), args.adjudicator)
            print(f"stored {stored} adjudication(s) from {args.adjudications}")
        if args.export_batch:
            provider = batch_provider(args, models.labelers, "labeler")
            added = plan_labeling(db, config, [provider])
            out = export_batch(
                db,
                LABEL,
                provider,
                lambda claim: label_messages(claim_commands(db, claim), guide),
                args.export_batch,
                config.batch_lease_hours * 3600,
                args.batch_jobs,
                prompt_version(guide, LABEL_PROMPT_VERSION),
            )
            print(f"label: planned {added} new job(s); wrote {out.jobs} request(s) for {provider.name} to {out.path}")
            return 0
        if args.import_batch:
            provider = batch_provider(args, models.labelers, "labeler")
            result = import_batch(
                db,
                LABEL,
                provider,
                args.import_batch,
                lambda client: LabelWorker(db, client, config, guide, stats).handle,
                not args.no_progress,
            )
            stats.done, stats.failed = result.done, result.failed
            print(f"imported {result.done} of {result.lines} answer(s) from {args.import_batch}; {stats.accepted_rows} label(s) stored")
            if result.stale:
                print(f"{len(result.stale)} line(s) skipped: their jobs are no longer held by a batch")
        for round_ in range(0 if batch else config.label_rounds):
            added = plan_labeling(db, config, [e.provider for e in endpoints])
            counts = db.job_counts(LABEL, [e.provider.name for e in endpoints])
            if counts[PENDING] + counts[RUNNING] == 0:
                break
            log.info(
                "label round %d: %d new job(s), %d open",
                round_ + 1,
                added,
                counts[PENDING] + counts[RUNNING],
            )
            run = asyncio.run(
                run_labeling(db, endpoints, config, show_progress=not args.no_progress)
            )
            stats.done += run.done
            stats.failed += run.failed
            stats.accepted_rows += run.accepted_rows
        labelers = models.labelers if models else []
        rows = db.accepted_rows()
        answers = db.label_answers()
        # Sampled passes: a row that existed when the last pass was planned and that no label job
        # asked about was left out of the samples; a newer row waits for the next pass.
        sample = None
        if config.label_sample_rows:
            planned_at = db.last_planned(LABEL)
            newer = {r["id"] for r in rows if planned_at is None or r["created_at"] > planned_at}
            sample = db.label_job_rows() | {a["row_id"] for a in answers} | newer
        row_verdicts = verdicts(
            rows, answers, labelers, config.label_attributes, config.label_quorum, sample, db.adjudications()
        )
        db.set_verdicts(row_verdicts)
        rows = db.accepted_rows()
        report = agreement_report(rows, answers, labelers, row_verdicts)
        exported = export_generated(db, args.export_dir or layout.generated, require_agreement=True)
        summary = {
            "run": {
                "jobs_done": stats.done,
                "jobs_failed": stats.failed,
                "answers": stats.accepted_rows,
            },
            "jobs": db.job_counts(LABEL),
            "rejections": db.rejection_counts(LABEL),
            "tokens": db.token_usage(),
            "exported_rows": exported.rows,
            "export_path": str(exported.path) if exported.path else None,
            "agreement": report.to_dict(),
            "config": to_dict(config),
        }
    write_json(layout.reports / AGREEMENT_REPORT, summary)
    write_disagreements(layout.reports / DISAGREEMENTS_CSV, report)
    if args.export_dir:
        # The agreement travels with the rows it measured (the dataset card reads it there).
        write_json(args.export_dir / AGREEMENT_REPORT, {k: v for k, v in summary.items() if k != "tokens"})
    print(format_report(report))
    print("label jobs: " + ", ".join(f"{k} {v}" for k, v in summary["jobs"].items()))
    if summary["rejections"]:
        print(
            "rejected answers: " + ", ".join(f"{k} {v}" for k, v in summary["rejections"].items())
        )
    for name, t in summary["tokens"].items():
        print(f"tokens {name}: {t['prompt_tokens']} prompt, {t['completion_tokens']} completion")
    print(
        f"exported {exported.rows} agreed row(s)"
        + (f" to {exported.path}" if exported.path else "")
    )
    print(f"wrote {layout.reports / AGREEMENT_REPORT} and {layout.reports / DISAGREEMENTS_CSV}")
    return 0
