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

