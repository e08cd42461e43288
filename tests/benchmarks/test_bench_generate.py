"""`benchmarks.bench_generate` against the tests' loopback LLM server records where it ran: the usable cores
of its affinity mask, the CPU model and the library versions."""

from __future__ import annotations

import importlib.metadata
import json
import os

from benchmarks.bench_generate import LOCAL_SERVER, REPORT_NAME, cli
from pipeline.core.host import LIBRARIES, cpu_model
from tests.pinned import needs_affinity, one_core


@needs_affinity
def test_the_report_records_the_usable_cores_cpu_model_and_library_versions(tmp_path):
    argv = ["--build-dir", str(tmp_path), "--latency-ms", "0", "--concurrency", "1"]
    with one_core():
        assert cli([*argv, "--requests", "2", "--rows", "2", "--db-jobs", "3"]) == 0
    report = json.loads((tmp_path / "reports" / REPORT_NAME).read_text(encoding="utf-8"))
    host = report["host"]
    assert (host["usable_cores"], host["logical_cores"]) == (1, os.cpu_count())
    assert host["cpu_model"] == cpu_model()
    assert host["libraries"] == {name: importlib.metadata.version(name) for name in LIBRARIES}
    assert report["client"][0]["concurrency"] == 1
    assert report["server"] == LOCAL_SERVER
