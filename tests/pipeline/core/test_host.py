"""What a run knows about its host: the cores its affinity mask allows (not the machine's count),
the CPU model and the library versions."""

from __future__ import annotations

import importlib.metadata
import os
import platform

import pytest

from pipeline.core.host import LIBRARIES, cpu_model, host_meta, library_versions, usable_cores
from tests.hub_build import staged_build  # noqa: F401 (fixture)
from tests.pinned import needs_affinity, one_core


def test_usable_cores_are_the_affinity_mask():
    assert usable_cores() == len(os.sched_getaffinity(0))


@needs_affinity
def test_a_process_pinned_to_one_core_has_one_usable_core():
    with one_core():
        assert usable_cores() == 1
        assert host_meta()["usable_cores"] == 1 and host_meta()["logical_cores"] == os.cpu_count()


@needs_affinity
@pytest.mark.slow
def test_onnx_streams_default_to_the_usable_cores(staged_build):
    from pipeline.model.inference import Predictor, PredictorConfig

    with one_core():
        pinned = Predictor(staged_build.layout.hub_model, PredictorConfig(backend="onnx"))
    assert pinned._streams == 1
    assert Predictor(staged_build.layout.hub_model, PredictorConfig(backend="onnx"))._streams == usable_cores()


def test_cpu_model_comes_from_proc_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13 64-Core Processor\n\n"
        "processor\t: 1\nmodel name\t: AMD EPYC 7B13 64-Core Processor\n",
        encoding="utf-8",
    )
    assert cpu_model(cpuinfo) == "AMD EPYC 7B13 64-Core Processor"
    assert cpu_model(tmp_path / "absent") == (platform.processor() or platform.machine() or "unknown")


def test_library_versions_are_the_installed_ones():
    assert library_versions() == {name: importlib.metadata.version(name) for name in LIBRARIES}
    assert library_versions(["no-such-library-lm-action"]) == {"no-such-library-lm-action": None}
