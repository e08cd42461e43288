"""Where the model and the dataset come from (`space.sources`)."""

from __future__ import annotations

from space.sources import resolve_source


def test_hub_id_unavailable_offline_falls_back_to_the_local_folder(tmp_path):
    source = resolve_source("lm-action/does-not-exist", None, "model", tmp_path)
    assert source.kind == "local" and source.path == tmp_path
    assert "lm-action/does-not-exist" in source.note
    assert "local folder" in source.describe()

