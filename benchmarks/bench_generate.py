"""`python -m benchmarks.bench_generate`: generation throughput against a local OpenAI-compatible server.

Measures, at each concurrency: requests per second through `pipeline.llm.client.ChatClient` alone, and
jobs per second through the whole worker (claim, prompt, call, check, store) on a job database;
then the job database's own cost per job (claim + finish with its rows) without any LLM call.
By default it starts the loopback test server (`pipeline.testing.llm_server`) with 200 ms latency.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from pipeline.cli.generate import quiet_http_logs
from pipeline.cli.options import script_main
from pipeline.core.config import REPO_ROOT, BuildLayout, stage_config
from pipeline.core.host import host_meta
from pipeline.core.io import write_json
from pipeline.core.schema import ATTRIBUTE_NAMES
from pipeline.llm.client import ChatClient, Endpoint, ProviderConfig
from pipeline.llm.generate.config import GenerateConfig
from pipeline.llm.generate.worker import run_generation
from pipeline.llm.jobs.db import JobDB
from pipeline.llm.jobs.engine import database_url
from pipeline.llm.jobs.records import GeneratedRow, ResponseRecord
from pipeline.llm.jobs.tables import GENERATE, OK
from pipeline.llm.jobs.workers import worker_id

log = logging.getLogger(__name__)

REPORT_NAME = "bench_generate.json"
LOCAL_SERVER = "pipeline.testing.llm_server"  # run with `python -m`
ALLOW_LABELS = {name: "yes" for name in ATTRIBUTE_NAMES} | {"risk": "low"}


@contextlib.contextmanager
def local_test_server(latency_ms: float) -> Iterator[str]:
    """Run the loopback test server in its own process (so it does not share our GIL); its URL."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", LOCAL_SERVER, "--latency-ms", str(latency_ms)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        if not line.startswith("serving on "):
            raise SystemExit(f"bench-generate: the test server did not start ({line.strip()!r})")
        yield line.split()[-1]
    finally:
        process.terminate()
        process.wait(timeout=10)


def _endpoint(base_url: str, model: str, concurrency: int) -> Endpoint:
    provider = ProviderConfig(
        model=model,
        requests_per_minute=0,
        concurrency=concurrency,
        max_retries=0,
        json_mode=True,
    )
    return Endpoint(provider, base_url, "bench")


def _spec(n: int) -> dict[str, Any]:
    return {"n": n, "lang": "en", "domain": "files", "labels": ALLOW_LABELS, "variant": 0}


@dataclass
class ClientResult:
    concurrency: int
    requests: int
    seconds: float
    requests_per_second: float
    latency_p50_ms: float
    latency_p95_ms: float


async def bench_client(
    base_url: str, model: str, concurrency: int, requests: int, rows: int
) -> ClientResult:
    """`requests` chat completions with `concurrency` in flight through one client."""
    from pipeline.llm.generate.prompts import generation_messages, labeling_guide

    client = ChatClient(_endpoint(base_url, model, concurrency))
    messages = generation_messages(_spec(rows), labeling_guide())
    latencies: list[float] = []
    left = [requests]

    async def sender() -> None:
        while left[0] > 0:
            left[0] -= 1
            started = time.perf_counter()
            await client.complete(messages)
            latencies.append(time.perf_counter() - started)

    await client.complete(messages)  # connection warm-up
    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    await client.aclose()
    latencies.sort()
    return ClientResult(
        concurrency,
        requests,
        seconds,
        requests / seconds,
        1000 * statistics.median(latencies),
        1000 * latencies[int(0.95 * (len(latencies) - 1))],
    )


@dataclass
class WorkerResult:
    concurrency: int
    jobs: int
    seconds: float
    jobs_per_second: float
    rows_per_second: float


def bench_worker(
    base_url: str, model: str, concurrency: int, jobs: int, rows: int, db_url: str
) -> WorkerResult:
    """`jobs` generation jobs through the full worker on a fresh job database."""
    config = GenerateConfig(poll_seconds=0.05, seed=0)
    with JobDB(db_url) as db:
        db.add(
            GENERATE, [(model, {**_spec(rows), "variant": i}) for i in range(jobs)], max_attempts=2
        )
        started = time.perf_counter()
        stats = asyncio.run(
            run_generation(
                db, [_endpoint(base_url, model, concurrency)], config, set(), show_progress=False
            )
        )
        seconds = time.perf_counter() - started
    if stats.done != jobs:
        log.warning("concurrency %d: %d of %d jobs done", concurrency, stats.done, jobs)
    return WorkerResult(
        concurrency, jobs, seconds, stats.done / seconds, stats.accepted_rows / seconds
    )


@dataclass
class DBResult:
    backend: str
    jobs: int
    rows_per_job: int
    add_ms_per_job: float
    claim_ms_per_job: float
    finish_ms_per_job: float
    total_ms_per_job: float


def bench_job_db(db_url: str, jobs: int, rows_per_job: int) -> DBResult:
    """The database's own cost per job: add, claim and finish with rows, no LLM call."""
    raw = json.dumps({"commands": [{"text": "x" * 80, "labels": ALLOW_LABELS}] * rows_per_job})
    worker = worker_id()
    with JobDB(db_url) as db:
        started = time.perf_counter()
        db.add(GENERATE, [("bench", _spec(rows_per_job)) for _ in range(jobs)], max_attempts=2)
        add_s = time.perf_counter() - started
        claim_s = finish_s = 0.0
        for j in range(jobs):
            t0 = time.perf_counter()
            claim = db.claim(GENERATE, ["bench"], worker, 60.0)
            t1 = time.perf_counter()
            assert claim is not None
            now = time.time()
            record = ResponseRecord(
                "bench", "bench", "http://127.0.0.1/v1", "bench", 0.0, now, now, OK, raw=raw
            )
            new_rows = [
                GeneratedRow(
                    f"gen-bench-{j}-{i}",
                    f"bench command {j} {i}",
                    "en",
                    "files",
                    ALLOW_LABELS,
                    "bench",
                )
                for i in range(rows_per_job)
            ]
            db.finish(claim, record, new_rows)
            claim_s += t1 - t0
            finish_s += time.perf_counter() - t1
        backend = db.dialect
    return DBResult(
        backend,
        jobs,
        rows_per_job,
        1000 * add_s / jobs,
        1000 * claim_s / jobs,
        1000 * finish_s / jobs,
        1000 * (add_s + claim_s + finish_s) / jobs,
    )


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base-url", help="bench a running OpenAI-compatible server instead")
    parser.add_argument("--model", default="bench-model", help="model name sent to the server")
    parser.add_argument(
        "--latency-ms", type=float, default=200.0, help="simulated latency of the test server"
    )
    parser.add_argument(
        "--concurrency", default="1,8,32", help="comma-separated concurrency levels"
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=0,
        help="requests per level (default: max(20, 8 x concurrency))",
    )
    parser.add_argument("--rows", type=int, default=10, help="commands asked for per request")
    parser.add_argument(
        "--db", help="job database URL for the DB benchmark (default: a temporary SQLite file)"
    )
    parser.add_argument(
        "--db-jobs", type=int, default=300, help="jobs for the DB overhead benchmark"
    )


def main(args: argparse.Namespace) -> int:
    quiet_http_logs()
    stage_config(GenerateConfig, "generate", args.preset, args.overrides)
    levels = [int(x) for x in args.concurrency.split(",") if x]
    layout = BuildLayout(args.build_dir)
    local = not args.base_url
    clients: list[ClientResult] = []
    workers: list[WorkerResult] = []
    with contextlib.ExitStack() as stack:
        base_url = (
            stack.enter_context(local_test_server(args.latency_ms)) if local else args.base_url
        )
        with tempfile.TemporaryDirectory(prefix="bench-generate-") as tmp:
            for c in levels:
                n = args.requests or max(20, 8 * c)
                clients.append(asyncio.run(bench_client(base_url, args.model, c, n, args.rows)))
                log.info("client c=%d: %.1f req/s", c, clients[-1].requests_per_second)
                url = database_url(None, Path(tmp) / f"worker-{c}.sqlite")
                workers.append(bench_worker(base_url, args.model, c, n, args.rows, url))
                log.info("worker c=%d: %.1f jobs/s", c, workers[-1].jobs_per_second)
            db_url = args.db or database_url(None, Path(tmp) / "db.sqlite")
            db_result = bench_job_db(db_url, args.db_jobs, args.rows)
    report = {
        "host": host_meta(),
        "server": LOCAL_SERVER if local else base_url,
        "latency_ms": args.latency_ms if local else None,
        "rows_per_request": args.rows,
        "client": [c.__dict__ for c in clients],
        "worker": [w.__dict__ for w in workers],
        "job_db": db_result.__dict__,
    }
    write_json(layout.reports / REPORT_NAME, report)
    print(f"server: {report['server']}" + (f", {args.latency_ms:g} ms latency" if local else ""))
    print(
        f"{'concurrency':>11} {'client req/s':>13} {'p50 ms':>8} {'p95 ms':>8} {'worker jobs/s':>14} {'rows/s':>8}"
    )
    for c, w in zip(clients, workers):
        print(
            f"{c.concurrency:>11} {c.requests_per_second:>13.1f} {c.latency_p50_ms:>8.0f} "
            f"{c.latency_p95_ms:>8.0f} {w.jobs_per_second:>14.1f} {w.rows_per_second:>8.0f}"
        )
    d = db_result
    print(
        f"job DB ({d.backend}, {d.jobs} jobs x {d.rows_per_job} rows): {d.total_ms_per_job:.2f} ms/job "
        f"(add {d.add_ms_per_job:.2f}, claim {d.claim_ms_per_job:.2f}, finish {d.finish_ms_per_job:.2f})"
    )
    print(f"wrote {layout.reports / REPORT_NAME}")
    return 0


def cli(argv: list[str] | None = None) -> int:
    """`python -m benchmarks.bench_generate [options]`: the options of `configure_parser` and the
    stages' `--preset`, `--set`, `--build-dir`, `-v`."""
    prog, description = "python -m benchmarks.bench_generate", __doc__.splitlines()[0]
    return script_main(prog, description, configure_parser, main, sections=("generate",), argv=argv)


if __name__ == "__main__":
    sys.exit(cli())
