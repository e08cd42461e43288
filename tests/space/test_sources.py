"""Where the model and the dataset come from (`space.sources`)."""

from __future__ import annotations

from space.sources import resolve_source


def test_hub_id_unavailable_offline_falls_back_to_the_local_folder(tmp_path):
    source = resolve_source("lm-action/does-not-exist", None, "model", tmp_path)
    assert source.kind == "local" and source.path == tmp_path
    assert source.note == (
        "`lm-action/does-not-exist` could not be loaded from the Hub (offline, and not in the "
        "local cache)"
    )
    assert str(tmp_path) not in source.describe() and str(tmp_path) not in source.note


def test_a_local_build_is_named_without_server_paths(tmp_path):
    from pipeline.core.config import REPO_ROOT

    inside = resolve_source(None, None, "model", REPO_ROOT / "build" / "hub" / "model")
    assert inside.shown == "build/hub/model" and inside.note == ""
    assert inside.describe().startswith("local `build/hub/model` (")
    outside = resolve_source(None, None, "model", tmp_path / "my-model")
    assert outside.shown == "my-model" and str(tmp_path) not in outside.describe()

