import pytest

from pipeline.core.config import ConfigError, stage_config
from pipeline.model.train import TrainConfig


@pytest.mark.parametrize("text", ["{ar = 2}", '{"ar": 2}'])
def test_a_table_field_set_on_the_command_line_is_a_table(text):
    config = stage_config(TrainConfig, "train", None, [f"train.language_repeats={text}"])
    assert config.language_repeats == {"ar": 2}


def test_training_args_set_on_the_command_line_reach_the_field_as_a_table():
    config = stage_config(TrainConfig, "train", None, ["train.training_args={gradient_checkpointing = true}"])
    assert config.training_args == {"gradient_checkpointing": True}


def test_a_table_field_given_something_else_names_the_field():
    with pytest.raises(ConfigError, match="train.language_repeats: expected a table"):
        stage_config(TrainConfig, "train", None, ["train.language_repeats=ar"])
