"""Start-up loading (`space.resources`)."""

from __future__ import annotations

import pandas as pd
import pytest

from space.resources import load_resources
from space.sources import SpaceConfig, SpaceLoadError


def test_missing_model_is_a_clear_start_up_error(tmp_path):
    with pytest.raises(SpaceLoadError, match="no model at"):
        load_resources(SpaceConfig(model_dir=tmp_path / "none", dataset_dir=tmp_path))


def test_loaded_sources_are_named(space_resources, untrained_model_dir):
    assert space_resources.model_source.kind == "local"
    assert space_resources.model_source.path == untrained_model_dir
    assert space_resources.backend.startswith("torch")
    assert isinstance(space_resources.dataset.splits["test"], pd.DataFrame)



def test_the_space_runs_onnx_on_one_thread_per_call_and_batches_on_every_core(tmp_path):
    from pipeline.core.host import usable_cores
    from pipeline.model.inference import PredictorConfig
    from space.resources import space_predictor_config

    assert space_predictor_config(tmp_path) == PredictorConfig()  # torch: its own threads
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "model_quantized.onnx").write_bytes(b"")
    config = space_predictor_config(tmp_path)
    assert (config.num_threads, config.streams) == (1, usable_cores())
