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

