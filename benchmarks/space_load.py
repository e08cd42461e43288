"""Load on the Space over loopback: are single commands served while batch files queue?

Starts the Space (`python -m space.app`) on the given model in a subprocess and drives it from
one asyncio process over Gradio's HTTP protocol, then writes every number to a JSON file:

1. `single_64`: 64 clients send single commands at once (`/gradio_api/call/classify`).
2. `batches_16`: 16 clients each queue a 5,000-row batch file; meanwhile 4 clients send single
   commands for `--during-s` seconds; then the batches are cancelled.
3. `flood_70`: one client sends 70 `queue/join` calls to `classify_batch` in a burst, as the
   flood in issue 15 did; meanwhile 4 clients send single commands; then it cancels the one
   admitted and checks that its place is free again.
4. `soak`: 8 single-command clients and one client uploading 1,000-row files one after the
   other for `--soak-s` seconds; the server's resident memory is sampled throughout.

Clients are told apart the way the Hub's proxy tells them apart: the Space runs with one trusted
proxy (`LM_ACTION_TRUSTED_PROXIES=1`) and each client sends its own `X-Forwarded-For`.

    python benchmarks/space_load.py --model-dir build/hub/model --dataset-dir build/hub/dataset \\
        --out results/space-load/space_load.json
    python benchmarks/space_load.py --table results/space-load/space_load.json --readme README.md

The second form rewrites the README's table between its `space_load` markers from the JSON.
`--phases single_64` (any of the four, comma-separated) runs only those, for a quicker look;
such a run writes their numbers but no goals, which need every phase.
Timings depend on the host; the benchmark asserts nothing and the tests never read it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.cli.options import show_table  # noqa: E402
from pipeline.core.config import SEED_DIR  # noqa: E402
from pipeline.core.host import host_meta  # noqa: E402
from pipeline.core.io import write_json  # noqa: E402
from pipeline.core.schema import corpus_files, load_corpus  # noqa: E402

BATCH_ROWS = 5_000
SOAK_BATCH_ROWS = 1_000
README_BLOCK = "space_load table"
PHASES = ("single_64", "batches_16", "flood_70", "soak")


# ---------------------------------------------------------------------------------------------
# The server


def shown_path(path: Path) -> str:
    """A folder as the results name it: inside the repository by its relative path, else by
    its last three parts (`build/hub/model` of another build folder)."""
    try:
        return Path(path).resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return "/".join(Path(path).resolve().parts[-3:])


def stop_server(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Send `sig` to a benchmarked server, and kill it when it has not exited 30 s later."""
    process.send_signal(sig)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()


def run_record(script: str, args: argparse.Namespace, health: dict, load_before: list[float], started: float,
               **extra) -> dict:
    """The `run` block of a benchmark's result: its command, the model it served (from the
    server's health answer), `extra` settings, the host, the load around it and the time."""
    return {
        "command": " ".join(["python", script, *sys.argv[1:]]),
        "model_dir": shown_path(args.model_dir), "model": health.get("model"), "backend": health.get("backend"),
        **extra,
        "host": host_meta(),
        "load_average_before": load_before, "load_average_after": list(os.getloadavg()),
        "total_s": round(time.perf_counter() - started, 1),
    }


def goal_lines(goals: Sequence[dict]) -> list[str]:
    """The Markdown table of a benchmark's goals: target, measured value with its unit, met."""
    lines = ["| goal | target | measured | met |", "|---|---|---|---|"]
    for g in goals:
        measured = g["measured"]
        shown = f"{measured:,}" if isinstance(measured, (int, float)) else str(measured)
        if g["unit"] and isinstance(measured, (int, float)):
            shown += f" {g['unit']}" if g["unit"] != "%" else "%"
        lines.append(f"| {g['goal']} | {g['target']} | {shown} | {'yes' if g['met'] else 'no'} |")
    return lines


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for pid {pid}")


def start_space(args: argparse.Namespace, port: int, log_path: Path) -> subprocess.Popen:
    env = {**os.environ, "LM_ACTION_TRUSTED_PROXIES": "1", "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT)}
    env.pop("SPACE_ID", None)
    command = [sys.executable, "-m", "space.app", "--host", "127.0.0.1", "--port", str(port),
               "--model", str(args.model_dir)]
    if args.dataset_dir:
        command += ["--dataset", str(args.dataset_dir)]
    if args.reports_dir:
        command += ["--reports", str(args.reports_dir)]
    log = log_path.open("w")
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


async def wait_until_up(url: str, process: subprocess.Popen, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the Space exited with {process.returncode}")
            try:
                if (await client.get(f"{url}/healthz", timeout=5)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(1.0)
    raise RuntimeError("the Space did not answer /healthz in time")


# ---------------------------------------------------------------------------------------------
# Gradio's HTTP protocol


@dataclass
class Latencies:
    ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def summary(self, seconds: float | None = None) -> dict:
        out: dict = {"requests": len(self.ms) + len(self.errors), "ok": len(self.ms),
                     "errors": len(self.errors), "error_examples": sorted(set(self.errors))[:5]}
        if self.ms:
            ms = np.asarray(self.ms)
            out.update(p50_ms=round(float(np.percentile(ms, 50)), 1),
                       p95_ms=round(float(np.percentile(ms, 95)), 1),
                       max_ms=round(float(ms.max()), 1))
        if seconds:
            out["per_second"] = round(len(self.ms) / seconds, 1)
        return out


async def sse_events(response: httpx.Response):
    """(event, data) pairs of a server-sent event stream."""
    event, data = None, []
    async for line in response.aiter_lines():
        if not line:
            if event or data:
                yield event, "\n".join(data)
            event, data = None, []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


async def call_classify(client: httpx.AsyncClient, url: str, text: str, record: Latencies) -> None:
    """One single command through `/gradio_api/call/classify`, timed from the POST to the
    result."""
    started = time.perf_counter()
    try:
        posted = await client.post(f"{url}/gradio_api/call/classify", json={"data": [text]})
        if posted.status_code != 200:
            record.errors.append(f"HTTP {posted.status_code}: {posted.text[:120]}")
            return
        event_id = posted.json()["event_id"]
        async with client.stream("GET", f"{url}/gradio_api/call/classify/{event_id}") as stream:
            async for event, data in sse_events(stream):
                if event == "complete":
                    if json.loads(data)[0].get("decision") is None:
                        record.errors.append("no decision")
                    else:
                        record.ms.append((time.perf_counter() - started) * 1000.0)
                    return
                if event == "error":
                    record.errors.append(f"error: {data[:120]}")
                    return
        record.errors.append("stream ended without a result")
    except httpx.HTTPError as exc:
        record.errors.append(type(exc).__name__)


async def call_rest(client: httpx.AsyncClient, url: str, text: str, record: Latencies) -> None:
    """One single command through the HTTP API on the Space's port, `POST /v1/classify`."""
    started = time.perf_counter()
    try:
        response = await client.post(f"{url}/v1/classify", json={"input": text})
        if response.status_code != 200:
            record.errors.append(f"HTTP {response.status_code}: {response.text[:120]}")
        elif response.json()["results"][0]["decision"] is None:
            record.errors.append("no decision")
        else:
            record.ms.append((time.perf_counter() - started) * 1000.0)
    except httpx.HTTPError as exc:
        record.errors.append(type(exc).__name__)


ROUTES = {"gradio": call_classify, "rest": call_rest}


async def single_clients(url: str, n: int, texts: Sequence[str], stop: asyncio.Event | None,
                         per_client: int | None, record: Latencies, offset: int = 0,
                         route: str = "gradio") -> None:
    """`n` clients, each sending one command after another until `stop` (or `per_client`),
    through `route`: Gradio's `classify` endpoint or the HTTP API."""
    call = ROUTES[route]

    async def one(i: int) -> None:
        headers = {"X-Forwarded-For": f"10.1.{(offset + i) // 250}.{(offset + i) % 250 + 1}"}
        async with httpx.AsyncClient(headers=headers, timeout=120) as client:
            k = 0
            while (stop is None or not stop.is_set()) and (per_client is None or k < per_client):
                await call(client, url, texts[(i * 7919 + k) % len(texts)], record)
                k += 1

    await asyncio.gather(*(one(i) for i in range(n)))


async def both_routes(url: str, n: int, texts: Sequence[str], stop: asyncio.Event,
                      offset: int) -> dict[str, Latencies]:
    """`n` clients on each route until `stop`; their latencies by route."""
    records = {route: Latencies() for route in ROUTES}
    await asyncio.gather(*(
        single_clients(url, n, texts, stop, None, records[route], offset + 50 * k, route)
        for k, route in enumerate(ROUTES)))
    return records


@dataclass
class BatchJob:
    client: httpx.AsyncClient
    session_hash: str
    event_id: str | None = None
    outcome: str = "pending"  # refused, completed, error, cancelled, join_refused
    message: str = ""
    seconds: float = 0.0


class BatchCaller:
    """Batch files through `queue/join`, as the browser sends them, with their cancel."""

    def __init__(self, url: str, fn_index: int):
        self.url, self.fn_index = url, fn_index

    async def upload(self, client: httpx.AsyncClient, path: Path) -> dict:
        with path.open("rb") as handle:
            response = await client.post(f"{self.url}/gradio_api/upload",
                                         files={"files": (path.name, handle, "text/csv")})
        response.raise_for_status()
        server_path = response.json()[0]
        return {"path": server_path, "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}

    async def run(self, job: BatchJob, file: dict, admitted: asyncio.Event | None = None) -> None:
        started = time.perf_counter()
        body = {"data": [file], "fn_index": self.fn_index, "session_hash": job.session_hash,
                "event_data": None, "trigger_id": None}
        try:
            joined = await job.client.post(f"{self.url}/gradio_api/queue/join", json=body)
            if joined.status_code != 200:
                job.outcome, job.message = "join_refused", f"HTTP {joined.status_code}"
                return
            job.event_id = joined.json()["event_id"]
            params = {"session_hash": job.session_hash}
            async with job.client.stream("GET", f"{self.url}/gradio_api/queue/data",
                                         params=params) as stream:
                async for _, data in sse_events(stream):
                    message = json.loads(data) if data else {}
                    kind = message.get("msg")
                    if kind == "progress" and admitted is not None:
                        admitted.set()
                    if kind == "process_completed":
                        output = message.get("output") or {}
                        if message.get("success") and output.get("data"):
                            job.outcome = "completed"
                        elif message.get("success"):  # a cancelled event completes empty
                            job.outcome = "cancelled"
                        else:
                            job.message = str(output.get("error") or "")
                            refused = re.search(r"already have a batch|queue is full", job.message)
                            job.outcome = "refused" if refused else "error"
                        return
                    if kind == "close_stream":
                        break
            if job.outcome == "pending":
                job.outcome = "cancelled"
        except (httpx.HTTPError, asyncio.CancelledError) as exc:
            job.outcome = "cancelled" if isinstance(exc, asyncio.CancelledError) else "error"
            job.message = job.message or f"{type(exc).__name__}: {exc}"[:200]
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            job.seconds = time.perf_counter() - started

    async def cancel(self, job: BatchJob) -> int:
        if job.event_id is None:
            return 0
        response = await job.client.post(f"{self.url}/gradio_api/cancel", json={
            "event_id": job.event_id, "session_hash": job.session_hash, "fn_index": self.fn_index})
        return response.status_code


def batch_errors(jobs: Sequence[BatchJob]) -> list[str]:
    """Up to three distinct messages of the batches that ended in an error."""
    return sorted({job.message or "(no message)" for job in jobs if job.outcome == "error"})[:3]


def batch_fn_index(config: dict) -> int:
    for dependency in config["dependencies"]:
        if dependency.get("api_name") == "classify_batch":
            return int(dependency["id"])
    raise RuntimeError("the Space has no classify_batch endpoint")


def write_batch_file(path: Path, texts: Sequence[str], rows: int) -> Path:
    import csv

    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text"])
        for i in range(rows):
            writer.writerow([texts[i % len(texts)]])
    return path


# ---------------------------------------------------------------------------------------------
# The phases


async def phase_single_64(url: str, texts: Sequence[str], per_client: int) -> dict:
    out: dict = {"clients": 64, "per_client": per_client}
    for route in ROUTES:
        record = Latencies()
        started = time.perf_counter()
        await single_clients(url, 64, texts, None, per_client, record, route=route)
        out[route] = record.summary(time.perf_counter() - started)
    return out


async def phase_batches_16(url: str, caller: BatchCaller, file_path: Path, texts: Sequence[str],
                           during_s: float) -> dict:
    jobs, clients = [], []
    for i in range(16):
        client = httpx.AsyncClient(headers={"X-Forwarded-For": f"10.2.0.{i + 1}"}, timeout=600)
        clients.append(client)
        jobs.append(BatchJob(client, uuid.uuid4().hex[:11]))
    files = [await caller.upload(job.client, file_path) for job in jobs]
    admitted = asyncio.Event()
    runs = [asyncio.create_task(caller.run(job, f, admitted)) for job, f in zip(jobs, files)]
    await asyncio.wait_for(admitted.wait(), 120)  # the first batch is classifying
    stop = asyncio.Event()
    singles = asyncio.create_task(both_routes(url, 2, texts, stop, offset=100))
    started = time.perf_counter()
    await asyncio.sleep(during_s)
    stop.set()
    records = await singles
    elapsed = time.perf_counter() - started
    completed = sum(job.outcome == "completed" for job in jobs)
    cancels = [await caller.cancel(job) for job in jobs if job.outcome == "pending"]
    await asyncio.wait(runs, timeout=60)
    for client in clients:
        await client.aclose()
    return {"batches": 16, "rows_per_batch": BATCH_ROWS, "single_clients_per_route": 2,
            "measured_s": round(elapsed, 1), "batches_completed_while_measured": completed,
            "batches_cancelled_after": len(cancels),
            "batch_outcomes": {o: sum(j.outcome == o for j in jobs)
                               for o in sorted({j.outcome for j in jobs})},
            "batch_error_examples": batch_errors(jobs),
            **{route: r.summary(elapsed) for route, r in records.items()}}


async def phase_flood_70(url: str, caller: BatchCaller, file_path: Path, texts: Sequence[str],
                         during_s: float) -> dict:
    client = httpx.AsyncClient(headers={"X-Forwarded-For": "10.3.0.1"}, timeout=600)
    file = await caller.upload(client, file_path)
    jobs = [BatchJob(client, uuid.uuid4().hex[:11]) for _ in range(70)]
    stop = asyncio.Event()
    singles = asyncio.create_task(both_routes(url, 2, texts, stop, offset=200))
    burst_started = time.perf_counter()
    runs = [asyncio.create_task(caller.run(job, file)) for job in jobs]
    # The refusals come back at once; the one batch admitted is cancelled while it classifies,
    # and the place counts as free when the same client is admitted again.
    deadline = time.perf_counter() + 30
    while sum(job.outcome == "refused" for job in jobs) < 69 and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    refusals_after_s = round(time.perf_counter() - burst_started, 2)
    running = [job for job in jobs if job.outcome == "pending"]
    refused = [job for job in jobs if job.outcome == "refused"]
    cancel_started = time.perf_counter()
    cancel_status = [await caller.cancel(job) for job in running]
    await asyncio.wait(runs, timeout=60)
    again = BatchJob(client, uuid.uuid4().hex[:11])
    admitted = asyncio.Event()
    retry = asyncio.create_task(caller.run(again, file, admitted))
    try:
        await asyncio.wait_for(admitted.wait(), 60)
        freed_after_s = round(time.perf_counter() - cancel_started, 2)
    except asyncio.TimeoutError:
        freed_after_s = None
    await caller.cancel(again)
    await asyncio.wait([retry], timeout=60)
    await asyncio.sleep(max(0.0, during_s - (time.perf_counter() - burst_started)))
    stop.set()
    records = await singles
    elapsed = time.perf_counter() - burst_started
    await client.aclose()
    return {"joins": 70, "single_clients_per_route": 2, "measured_s": round(elapsed, 1),
            "join_http_ok": sum(job.event_id is not None for job in jobs),
            "refused_with_message": len(refused),
            "refusal_message": refused[0].message if refused else None,
            "refusals_done_after_s": refusals_after_s,
            "cancelled_while_running": len(running), "cancel_http_status": cancel_status,
            "cancelled_outcomes": [job.outcome for job in running],
            "place_free_again_after_cancel_s": freed_after_s,
            "retry_outcome": again.outcome,
            **{route: r.summary(elapsed) for route, r in records.items()}}


async def phase_soak(url: str, caller: BatchCaller, pid: int, small_file: Path,
                     texts: Sequence[str], soak_s: float, sample_every_s: float = 5.0) -> dict:
    stop = asyncio.Event()
    batches = {"completed": 0, "other": 0}
    others: list[BatchJob] = []

    async def batch_loop() -> None:
        async with httpx.AsyncClient(headers={"X-Forwarded-For": "10.4.0.1"}, timeout=600) as c:
            while not stop.is_set():
                job = BatchJob(c, uuid.uuid4().hex[:11])
                await caller.run(job, await caller.upload(c, small_file))
                batches["completed" if job.outcome == "completed" else "other"] += 1
                if job.outcome == "error" and len(others) < 100:
                    others.append(job)

    samples: list[tuple[float, float]] = []
    started = time.perf_counter()
    singles = asyncio.create_task(both_routes(url, 4, texts, stop, offset=300))
    loop = asyncio.create_task(batch_loop())
    while time.perf_counter() - started < soak_s:
        samples.append((round(time.perf_counter() - started, 1), round(rss_mb(pid), 1)))
        await asyncio.sleep(sample_every_s)
    stop.set()
    records = await singles
    await asyncio.wait([loop], timeout=120)
    samples.append((round(time.perf_counter() - started, 1), round(rss_mb(pid), 1)))
    # The first minute fills caches and the allocator's pools; growth counts from there.
    warm = [rss for t, rss in samples if t >= min(60.0, soak_s / 5)]
    baseline, final = warm[0], samples[-1][1]
    return {"duration_s": round(soak_s, 1), "single_clients_per_route": 4,
            "batch_rows": SOAK_BATCH_ROWS,
            "batches": batches, "batch_error_examples": batch_errors(others), "rss_baseline_mb": baseline, "rss_final_mb": final,
            "rss_max_mb": max(r for _, r in samples),
            "rss_growth_pct": round(100.0 * (final - baseline) / baseline, 2),
            "baseline_at_s": min(60.0, soak_s / 5), "rss_samples": samples,
            **{route: r.summary(soak_s) for route, r in records.items()}}


# ---------------------------------------------------------------------------------------------
# Goals, the JSON and the README table


def goals(phases: dict) -> list[dict]:
    """Issue 15's goals, each with what was measured; single-command goals once per route."""
    b16, s64, flood, soak = (phases[k] for k in ("batches_16", "single_64", "flood_70", "soak"))
    rows = []
    for route, name in (("gradio", "Gradio `classify`"), ("rest", "`POST /v1/classify`")):
        p95 = b16[route].get("p95_ms")
        rows += [
            (f"16 batch files of 5,000 rows queued: single-command p95, {name}", "<= 300 ms",
             p95, p95 is not None and p95 <= 300.0, "ms"),
            (f"16 batch files queued: single-command errors, {name}", "0",
             b16[route]["errors"], b16[route]["errors"] == 0, ""),
            (f"flood of 70 batch joins: single commands served, {name}", "served, 0 errors",
             f"{flood[route]['ok']} served, {flood[route]['errors']} errors",
             flood[route]["ok"] > 0 and flood[route]["errors"] == 0, ""),
        ]
    rows += [
        ("flood: joins beyond the client's one batch refused with a message", "69",
         flood["refused_with_message"], flood["refused_with_message"] == 69, ""),
        ("flood: cancelling the running batch stops it and frees its place", "yes",
         flood["place_free_again_after_cancel_s"],
         flood["cancelled_while_running"] == 1
         and flood["cancelled_outcomes"] == ["cancelled"]
         and flood["place_free_again_after_cancel_s"] is not None, "s"),
    ]
    for route, name in (("gradio", "Gradio `classify`"), ("rest", "`POST /v1/classify`")):
        p95 = s64[route].get("p95_ms")
        rows += [
            (f"64 concurrent single-command clients: errors, {name}", "0",
             s64[route]["errors"], s64[route]["errors"] == 0, ""),
            (f"64 concurrent single-command clients: p95, {name}", "<= 1,000 ms", p95,
             p95 is not None and p95 <= 1000.0, "ms"),
        ]
    rows.append((f"soak of {soak['duration_s']:.0f} s: server RSS growth", "<= 5%",
                 soak["rss_growth_pct"], soak["rss_growth_pct"] <= 5.0, "%"))
    return [{"goal": g, "target": t, "measured": m, "unit": u, "met": bool(ok)}
            for g, t, m, ok, u in rows]


def markdown_table(result: dict) -> str:
    lines = goal_lines(result["goals"])
    run = result["run"]
    lines.append("")
    lines.append(f"Measured by `benchmarks/space_load.py` on {run['host']['usable_cores']} cores "
                 f"({run['host']['cpu_model']}), backend {run['backend']}, "
                 f"load average {run['load_average_before'][0]:.1f} before and "
                 f"{run['load_average_after'][0]:.1f} after, {run['total_s']:.0f} s in all. "
                 "Single-command times run from the request to the result, through Gradio's "
                 "`classify` endpoint (`/gradio_api/call/classify`) or the HTTP API on the same "
                 "port; the load generator shares the two cores with the Space.")
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> dict:
    texts = [t for t in load_corpus(corpus_files(SEED_DIR))["text"].tolist() if 3 <= len(t.split()) <= 40]
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    big = write_batch_file(work / "batch-5000.csv", texts, BATCH_ROWS)
    small = write_batch_file(work / "batch-1000.csv", texts, SOAK_BATCH_ROWS)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    load_before = list(os.getloadavg())  # other work on a shared host shows here
    process = start_space(args, port, work / "space.log")
    total_started = time.perf_counter()
    try:
        await wait_until_up(url, process)
        async with httpx.AsyncClient(timeout=60) as client:
            health = (await client.get(f"{url}/healthz")).json()
            config = (await client.get(f"{url}/config")).json()
        caller = BatchCaller(url, batch_fn_index(config))
        for route in ROUTES:  # warm-up, not reported
            await single_clients(url, 2, texts, None, 10, Latencies(), route=route)
        runs = {
            "single_64": lambda: phase_single_64(url, texts, args.per_client),
            "batches_16": lambda: phase_batches_16(url, caller, big, texts, args.during_s),
            "flood_70": lambda: phase_flood_70(url, caller, big, texts, args.during_s),
            "soak": lambda: phase_soak(url, caller, process.pid, small, texts, args.soak_s),
        }
        phases: dict = {}
        for name in args.phases:
            print(f"{name} ...", flush=True)
            phases[name] = await runs[name]()
    finally:
        stop_server(process, signal.SIGINT)
    result = {
        "run": run_record(
            "benchmarks/space_load.py", args, health, load_before, total_started,
            clients_told_apart_by="X-Forwarded-For behind one trusted proxy (LM_ACTION_TRUSTED_PROXIES=1), as on the Hub",
            during_s=args.during_s, soak_s=args.soak_s,
        ),
        "phases": phases,
    }
    # The goals need every phase; a run of some phases (while iterating) reports only them.
    result["goals"] = goals(phases) if set(PHASES) <= set(phases) else []
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=ROOT / "build" / "hub" / "model")
    parser.add_argument("--dataset-dir", type=Path, default=None)
    parser.add_argument("--reports-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "space-load" / "space_load.json")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp") / f"space-load-{os.getpid()}")
    parser.add_argument("--per-client", type=int, default=20, help="requests per client in single_64")
    parser.add_argument("--during-s", type=float, default=60.0, help="seconds of single commands beside batches")
    parser.add_argument("--soak-s", type=float, default=600.0, help="seconds of the memory soak")
    parser.add_argument("--phases", type=lambda v: [p for p in v.split(",") if p],
                        default=list(PHASES),
                        help=f"comma-separated phases to run, in order (default: all, {','.join(PHASES)}); "
                             "the goals and the table need all of them")
    parser.add_argument("--table", type=Path, help="print (or with --readme, rewrite) the table of this JSON")
    parser.add_argument("--readme", type=Path, help="with --table: the README whose table block to rewrite")
    args = parser.parse_args(argv)
    if args.table:
        table = markdown_table(json.loads(args.table.read_text(encoding="utf-8")))
        return show_table(table, README_BLOCK, args.readme)
    if not (args.model_dir / "config.json").is_file():
        parser.error(f"{args.model_dir}: no model (config.json); run `make build` or pass --model-dir")
    unknown = sorted(set(args.phases) - set(PHASES))
    if unknown or not args.phases:
        parser.error(f"--phases: unknown {unknown or 'none given'}; choose from {', '.join(PHASES)}")
    result = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, result)
    print(markdown_table(result) if result["goals"] else json.dumps(result["phases"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
