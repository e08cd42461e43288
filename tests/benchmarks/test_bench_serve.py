"""`benchmarks/bench_serve.py` on the untrained test model: the server is started and measured
through its HTTP API, the JSON names every phase and goal, and the table goes into a README
block. Timings are never asserted."""

from __future__ import annotations

import json

from benchmarks import bench_serve


def test_long_commands_are_within_the_api_s_limit_and_need_windows(seed_sample):
    texts = seed_sample["text"].tolist()
    longs = bench_serve.long_commands(texts, 5)
    assert len(longs) == 5
    assert all(bench_serve.LONG_CHARS[0] <= len(t) <= bench_serve.LONG_CHARS[1] for t in longs)


def test_a_short_run_writes_every_phase_and_goal(untrained_model_dir, tmp_path, capsys):
    out = tmp_path / "bench_serve.json"
    code = bench_serve.main([
        "--model-dir", str(untrained_model_dir), "--out", str(out), "--work-dir", str(tmp_path / "work"),
        "--singles", "5", "--longs", "2", "--batch", "8", "--batched-s", "0.5", "--threads", "1",
    ])
    assert code == 0
    result = json.loads(out.read_text(encoding="utf-8"))
    single, long, batched = (result["phases"][k] for k in ("single", "long", "batched"))
    assert single["requests"] == 5 and single["mean_windows"] == 1.0
    assert long["requests"] == 2 and long["mean_windows"] > 1.0
    assert batched["requests"] >= 1 and batched["commands_per_second"] > 0
    assert [g["target"] for g in result["goals"]] == ["<= 10 ms", "<= 25 ms", ">= 300 commands/s"]
    assert result["run"]["backend"].startswith("torch") and result["run"]["threads"] == 1
    assert "| one command per request: p50 | <= 10 ms |" in capsys.readouterr().out

    readme = tmp_path / "README.md"
    readme.write_text("x\n<!-- bench_serve table: start -->\nold\n<!-- bench_serve table: end -->\n")
    assert bench_serve.main(["--table", str(out), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "old" not in text and "Measured by `benchmarks/bench_serve.py`" in text
