"""`benchmarks.bench_infer` on a small real sample: every backend measured, the ratios anchored on torch
fp32, fp32 ONNX agreeing with it exactly, and the report written as JSON, Markdown and a plot."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shutil

import numpy as np
import pytest

from benchmarks import bench_infer
from pipeline.core.host import LIBRARIES, cpu_model
from pipeline.model.onnx_export import export_onnx
from tests.hub_build import staged_build  # noqa: F401 (fixture)
from tests.pinned import needs_affinity, one_core


@pytest.fixture(scope="module")
def model_dir(untrained_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_model") / "model"
    shutil.copytree(untrained_model_dir, out)
    export_onnx(out)
    return out


@pytest.fixture(scope="module")
def test_frame(seed_sample):
    return seed_sample.head(40).reset_index(drop=True)


def test_every_backend_is_measured_against_torch_fp32(model_dir, test_frame):
    results = bench_infer.run_benchmark(
        model_dir, test_frame, threads=2, batch_size=8, latency_n=5, repeats=1, isolate=False
    )
    names = [r.name for r in results]
    assert names == ["torch-fp32", "transformers-loop", "torch-int8", "onnx-fp32", "onnx-int8", "onnx-int8-verify"]
    by_name = {r.name: r for r in results}
    assert by_name["torch-fp32"].throughput_ratio == 1.0 and by_name["torch-fp32"].p50_speedup == 1.0
    for r in results:
        assert r.p50_ms > 0 and r.p95_ms >= r.p50_ms and r.throughput_per_s > 0
        assert set(r.macro_f1) == {"feasible", "legal", "ethical", "within_boundaries", "reversible", "risk"}
        assert np.isclose(r.throughput_vs_plain * by_name["transformers-loop"].throughput_per_s, r.throughput_per_s)
    # Same weights, same math: the plain loop and fp32 ONNX make the same calls as torch fp32.
    for name in ("transformers-loop", "onnx-fp32"):
        assert by_name[name].label_flips == 0 and by_name[name].decision_agreement == 1.0
        assert by_name[name].max_abs_diff < 1e-4 and by_name[name].flip_margin < 1e-4
        assert bench_infer.largest_f1_loss(results, name) == pytest.approx(0.0, abs=1e-9)
    int8 = by_name["onnx-int8"]
    assert int8.max_abs_diff >= int8.p99_abs_diff and int8.flip_margin <= int8.max_abs_diff
    assert by_name["onnx-int8-verify"].label_flips <= int8.label_flips


def test_a_backend_can_be_measured_in_a_fresh_process(model_dir, test_frame):
    backend = next(b for b in bench_infer.backends(model_dir, 1, 8) if b.name == "onnx-int8")
    texts = test_frame["text"].tolist()
    m = bench_infer._measure_isolated(model_dir, backend, 1, texts, texts[:3], 1)
    assert "model_quantized.onnx" in m.detail
    assert m.probs.shape == (len(texts), 7) and len(m.latencies_ms) == 3


def test_cli_writes_json_markdown_and_plot(model_dir, test_frame, tmp_path):
    test_path = tmp_path / "test.parquet"
    test_frame.to_parquet(test_path)
    out = tmp_path / "reports" / "bench.json"
    args = argparse.Namespace(
        build_dir=tmp_path / "build",
        model=model_dir,
        test=test_path,
        threads=1,
        batch_size=16,
        latency_n=3,
        no_plain=True,
        same_process=True,
        out=out,
        variants=False,
        table=None,
        readme=None,
    )
    assert bench_infer.main(args) == 0
    report = json.loads(out.read_text())
    assert [r["name"] for r in report["results"]] == [
        "torch-fp32", "torch-int8", "onnx-fp32", "onnx-int8", "onnx-int8-verify"
    ]
    markdown = out.with_suffix(".md").read_text()
    assert "| onnx-int8 |" in markdown and "![latency and throughput](bench.png)" in markdown
    assert out.with_suffix(".png").stat().st_size > 1000

    # The README's table is generated from that JSON, between its markers.
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- bench_infer table: start -->\nold\n<!-- bench_infer table: end -->\nrest\n")
    assert bench_infer.main(argparse.Namespace(table=out, readme=readme)) == 0
    text = readme.read_text()
    int8 = next(r for r in report["results"] if r["name"] == "onnx-int8")
    assert f"| `onnx-int8` | {int8['p50_ms']:.2f} | {int8['p95_ms']:.2f} | {round(int8['throughput_per_s'])} |" in text
    assert "old" not in text and text.startswith("intro\n") and text.endswith("rest\n")
    assert f"From [`{out.as_posix()}`]" in text


def cli_args(tmp_path, model_dir, test_path, **changes) -> argparse.Namespace:
    values = dict(
        build_dir=tmp_path / "build", model=model_dir, test=test_path, threads=1, batch_size=16, latency_n=3,
        no_plain=True, same_process=True, out=tmp_path / "reports" / "bench.json", variants=False,
        table=None, readme=None,
    )
    return argparse.Namespace(**(values | changes))


@needs_affinity
def test_the_report_records_the_usable_cores_cpu_model_and_library_versions(model_dir, test_frame, tmp_path):
    test_path = tmp_path / "test.parquet"
    test_frame.to_parquet(test_path)
    args = cli_args(tmp_path, model_dir, test_path)
    with one_core():  # as `taskset -c 0 python -m benchmarks.bench_infer`
        assert bench_infer.main(args) == 0
    meta = json.loads(args.out.read_text())["meta"]
    assert (meta["usable_cores"], meta["logical_cores"]) == (1, os.cpu_count())
    assert meta["cpu_model"] == cpu_model() and meta["cpu_model"]
    assert meta["libraries"] == {name: importlib.metadata.version(name) for name in LIBRARIES}
    assert meta["model_data_hash"] is None  # a model folder that was never staged has no card
    markdown = args.out.with_suffix(".md").read_text()
    assert f"CPU: 1 of {os.cpu_count()} logical cores usable, {meta['cpu_model']}." in markdown
    assert f"onnxruntime {meta['libraries']['onnxruntime']}" in markdown
    assert "model data hash: none in the model folder." in markdown


@pytest.mark.slow
def test_the_report_records_the_data_hash_of_a_staged_model(staged_build, tmp_path):
    manifest = json.loads((staged_build.layout.reports / "stage.json").read_text(encoding="utf-8"))
    args = cli_args(tmp_path, staged_build.layout.hub_model, staged_build.layout.splits / "test.parquet")
    assert bench_infer.main(args) == 0
    assert json.loads(args.out.read_text())["meta"]["model_data_hash"] == manifest["data_hash"]
    assert f"model data hash: `{manifest['data_hash']}`." in args.out.with_suffix(".md").read_text()


def test_missing_test_split_is_named(tmp_path, model_dir):
    args = cli_args(tmp_path, model_dir, tmp_path / "nope.parquet", build_dir=tmp_path, batch_size=8, out=None)
    with pytest.raises(SystemExit, match="nope.parquet not found"):
        bench_infer.main(args)


def test_variants_are_exported_calibrated_and_timed(model_dir, test_frame, tmp_path, monkeypatch):
    import onnx

    cwd = tmp_path / "cwd"  # onnxruntime's shape inference writes scratch files where it runs
    cwd.mkdir()
    monkeypatch.chdir(cwd)

    splits = tmp_path / "splits"
    splits.mkdir()
    test_frame.to_parquet(splits / "test.parquet")
    test_frame.iloc[::-1].to_parquet(splits / "validation.parquet")
    out = tmp_path / "bench.json"
    args = cli_args(tmp_path, model_dir, splits / "test.parquet", out=out, variants=True)
    assert bench_infer.main(args) == 0
    report = json.loads(out.read_text())
    names = [r["name"] for r in report["results"]]
    assert names[-3:] == ["onnx-int8-dense", "onnx-int8-static", "onnx-int8-weight-only"]
    folder = tmp_path / "build" / "cache" / "onnx-variants"
    ops = {
        name: {n.op_type for n in onnx.load(str(folder / f"{name}.onnx"), load_external_data=False).graph.node}
        for name in ("int8-dense", "int8-static", "int8-weight-only")
    }
    assert "Attention" in ops["int8-dense"] and "MatMulInteger" in ops["int8-dense"]
    assert "QuantizeLinear" in ops["int8-static"]  # activation ranges fixed from calibration
    assert "MatMulNBits" in ops["int8-weight-only"]
    weight_only = next(r for r in report["results"] if r["name"] == "onnx-int8-weight-only")
    assert weight_only["max_abs_diff"] < 0.05
    assert "`onnx-int8-static`: static int8" in out.with_suffix(".md").read_text()
    assert list(cwd.iterdir()) == []
