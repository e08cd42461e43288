"""`benchmarks.bench_dedup` records where it ran: the usable cores of its affinity mask, the CPU model and the
library versions."""

from __future__ import annotations

import importlib.metadata
import os

from benchmarks import bench_dedup
from pipeline.core.config import DEFAULT_BACKBONE
from pipeline.core.host import LIBRARIES, cpu_model
from tests.pinned import needs_affinity, one_core


@needs_affinity
def test_the_environment_records_the_usable_cores_cpu_model_and_library_versions():
    with one_core():
        env = bench_dedup.environment("cpu", DEFAULT_BACKBONE)
    assert (env["usable_cores"], env["logical_cores"]) == (1, os.cpu_count())
    assert env["cpu_model"] == cpu_model()
    assert env["libraries"] == {name: importlib.metadata.version(name) for name in LIBRARIES}
    assert env["model_data_hash"] is None  # a Hub id, not a staged LM-Action folder
    assert env["device"] == "cpu"
