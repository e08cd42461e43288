"""The HTTP API alone over loopback: how long one command takes, and how many commands batched
requests classify per second.

Starts `python -m pipeline serve` on the given model in a subprocess and drives it from one
keep-alive client, one request at a time, then writes every number to a JSON file:

1. `single`: `--singles` requests of one command each (`POST /v1/classify`, 3 to 40 words).
2. `long`: `--longs` requests of one command of 2,000 to 4,000 characters, read in windows.
3. `batched`: requests of `--batch` commands each, one after another for `--batched-s` seconds.

    python benchmarks/bench_serve.py --model-dir build/hub/model --out results/serve/bench_serve.json
    python benchmarks/bench_serve.py --table results/serve/bench_serve.json --readme README.md

The second form rewrites the README's table between its `bench_serve` markers from the JSON.
Timings depend on the host; the benchmark asserts nothing and the tests never read it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.space_load import free_port, goal_lines, run_record, stop_server  # noqa: E402
from pipeline.cli.options import show_table  # noqa: E402
from pipeline.core.config import SEED_DIR  # noqa: E402
from pipeline.core.io import write_json  # noqa: E402
from pipeline.core.schema import corpus_files, load_corpus  # noqa: E402

README_BLOCK = "bench_serve table"
WARM_UP = 30
LONG_CHARS = (2_000, 4_000)


def start_server(args: argparse.Namespace, port: int, log_path: Path) -> subprocess.Popen:
    """`python -m pipeline serve` on `args.model_dir`, logging to `log_path`."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "pipeline", "serve", "--model-dir", str(args.model_dir),
               "--host", "127.0.0.1", "--port", str(port)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    log = log_path.open("w")
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_until_up(client: httpx.Client, process: subprocess.Popen, timeout: float = 300.0) -> dict:
    """The server's `/healthz` once it answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            response = client.get("/healthz", timeout=5)
            if response.status_code == 200:
                return response.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError("the server did not answer /healthz in time")


def classify(client: httpx.Client, payload: str | list[str]) -> list[dict]:
    """The results of one `POST /v1/classify`; raises on anything but HTTP 200."""
    response = client.post("/v1/classify", json={"input": payload})
    response.raise_for_status()
    return response.json()["results"]


def timed_singles(client: httpx.Client, texts: Sequence[str], n: int) -> dict:
    """`n` one-command requests one after another: p50, p95 and max in ms, and the windows
    read per command."""
    ms, windows = [], []
    for i in range(n):
        started = time.perf_counter()
        (result,) = classify(client, texts[(i * 7919) % len(texts)])
        ms.append((time.perf_counter() - started) * 1000.0)
        windows.append(result["windows"])
    values = np.asarray(ms)
    return {"requests": n, "p50_ms": round(float(np.percentile(values, 50)), 2),
            "p95_ms": round(float(np.percentile(values, 95)), 2),
            "max_ms": round(float(values.max()), 2), "mean_windows": round(float(np.mean(windows)), 1)}


def timed_batches(client: httpx.Client, texts: Sequence[str], size: int, seconds: float) -> dict:
    """Requests of `size` commands one after another for `seconds`: commands per second."""
    requests, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        batch = [texts[(requests * size + j) % len(texts)] for j in range(size)]
        classify(client, batch)
        requests += 1
    elapsed = time.perf_counter() - started
    return {"commands_per_request": size, "requests": requests, "seconds": round(elapsed, 1),
            "commands_per_second": round(requests * size / elapsed, 1)}


def long_commands(texts: Sequence[str], n: int) -> list[str]:
    """`n` commands of 2,000 to 4,000 characters, each made of corpus commands one after
    another, so the model reads each in many windows."""
    out, i = [], 0
    for k in range(n):
        target = LONG_CHARS[0] + (k * 997) % (LONG_CHARS[1] - LONG_CHARS[0])
        parts: list[str] = []
        while sum(len(p) + 1 for p in parts) < target:
            parts.append(texts[i % len(texts)])
            i += 1
        out.append(" ".join(parts)[: LONG_CHARS[1]])
    return out


def goals(phases: dict) -> list[dict]:
    """The HTTP API's goals (issue 15), each with what was measured."""
    single, batched = phases["single"], phases["batched"]
    rows = [
        ("one command per request: p50", "<= 10 ms", single["p50_ms"], single["p50_ms"] <= 10.0, "ms"),
        ("one command per request: p95", "<= 25 ms", single["p95_ms"], single["p95_ms"] <= 25.0, "ms"),
        (f"{batched['commands_per_request']} commands per request: throughput", ">= 300 commands/s",
         batched["commands_per_second"], batched["commands_per_second"] >= 300.0, "commands/s"),
    ]
    return [{"goal": g, "target": t, "measured": m, "unit": u, "met": bool(ok)} for g, t, m, ok, u in rows]


def markdown_table(result: dict) -> str:
    lines = goal_lines(result["goals"])
    run, long = result["run"], result["phases"]["long"]
    lines.append("")
    lines.append(
        f"Measured by `benchmarks/bench_serve.py` on {run['host']['usable_cores']} cores "
        f"({run['host']['cpu_model']}), backend {run['backend']}, "
        f"{'runtime default' if not run['threads'] else run['threads']} intra-op threads, "
        f"load average {run['load_average_before'][0]:.1f} before and "
        f"{run['load_average_after'][0]:.1f} after: one keep-alive client over loopback, one "
        f"request at a time, timed from the request to the parsed response; "
        f"{result['phases']['single']['requests']} requests of one command of 3 to 40 words. "
        f"A command of 2,000 to 4,000 characters (read in {long['mean_windows']:g} windows on "
        f"average) took p50 {long['p50_ms']:,} ms, p95 {long['p95_ms']:,} ms.")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict:
    texts = [t for t in load_corpus(corpus_files(SEED_DIR))["text"].tolist() if 3 <= len(t.split()) <= 40]
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    load_before = list(os.getloadavg())
    process = start_server(args, port, work / "serve.log")
    started = time.perf_counter()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            health = wait_until_up(client, process)
            for text in texts[:WARM_UP]:  # warm-up, not reported
                classify(client, text)
            phases = {
                "single": timed_singles(client, texts, args.singles),
                "long": timed_singles(client, long_commands(texts, args.longs), args.longs),
                "batched": timed_batches(client, texts, args.batch, args.batched_s),
            }
    finally:
        stop_server(process)
    result = {
        "run": run_record("benchmarks/bench_serve.py", args, health, load_before, started, threads=args.threads),
        "phases": phases,
    }
    result["goals"] = goals(phases)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=ROOT / "build" / "hub" / "model")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "serve" / "bench_serve.json")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp") / f"bench-serve-{os.getpid()}")
    parser.add_argument("--threads", type=int, default=None, help="the server's intra-op threads (default: its own)")
    parser.add_argument("--singles", type=int, default=500, help="one-command requests")
    parser.add_argument("--longs", type=int, default=50, help="requests of one long command")
    parser.add_argument("--batch", type=int, default=256, help="commands per batched request")
    parser.add_argument("--batched-s", type=float, default=20.0, help="seconds of batched requests")
    parser.add_argument("--table", type=Path, help="print (or with --readme, rewrite) the table of this JSON")
    parser.add_argument("--readme", type=Path, help="with --table: the README whose table block to rewrite")
    args = parser.parse_args(argv)
    if args.table:
        table = markdown_table(json.loads(args.table.read_text(encoding="utf-8")))
        return show_table(table, README_BLOCK, args.readme)
    if not (args.model_dir / "config.json").is_file():
        parser.error(f"{args.model_dir}: no model (config.json); run `make build` or pass --model-dir")
    result = run(args)
    write_json(args.out, result)
    print(markdown_table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
