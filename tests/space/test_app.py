"""The Space's entry (`space.app`): configuration from the environment and the command line."""

from __future__ import annotations

import argparse

from space.app import config_from_args
from space.sources import SpaceConfig


def test_config_comes_from_env_then_cli(tmp_path):
    env = {"MODEL_ID": "org/model", "MODEL_REVISION": "v1", "LM_ACTION_DATASET_DIR": str(tmp_path)}
    config = SpaceConfig.from_env(env)
    assert (config.model_id, config.model_revision, config.dataset_id) == ("org/model", "v1", None)
    assert config.dataset_dir == tmp_path
    args = argparse.Namespace(model=str(tmp_path), dataset="org/data", reports=None)
    config = config_from_args(args, env)
    assert (config.model_id, config.model_dir, config.dataset_id) == (None, tmp_path, "org/data")



def test_the_source_line_is_calm_for_a_local_build_and_short_when_a_hub_id_fails(
    space_resources, tmp_path
):
    from dataclasses import replace

    from space.app import _loaded_line
    from space.sources import resolve_source

    local = _loaded_line(space_resources)
    assert "⚠" not in local and "\n" not in local
    assert str(space_resources.model_source.path) not in local
    failed = resolve_source("org/missing-model", None, "model", space_resources.model_source.path)
    line = _loaded_line(replace(space_resources, model_source=failed))
    assert "⚠ `org/missing-model` could not be loaded from the Hub" in line
    assert line.endswith(": using the local build") and "\n" not in line
    assert str(space_resources.model_source.path) not in line


def test_queue_positions_go_out_on_a_timer_not_to_every_waiting_event_per_start(space_resources):
    from space.app import QUEUE_MAX_SIZE, QUEUE_STATUS_EVERY_S, build_app

    app = build_app(space_resources)
    queue = app._queue
    assert not queue.live_updates and queue.update_intervals == QUEUE_STATUS_EVERY_S
    assert queue.max_size == QUEUE_MAX_SIZE
