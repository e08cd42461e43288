"""Tiny train/validation/test splits from the bundled corpus sample, and a tiny preset, for the
train and evaluate tests."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

TINY_TRAIN = {
    "max_length": 32,
    "batch_size": 8,
    "eval_batch_size": 32,
    "epochs": 1.0,
    "learning_rate": 5e-4,
    "logging_steps": 1,
    "augment_copies": 1,
    "augment_fraction": 0.5,
    "early_stopping": False,
    "freeze_layers": 0,  # the tiny backbone has two layers; presets may freeze more
}


def tiny_splits(sample: pd.DataFrame, sizes: tuple[int, int, int] = (64, 32, 32)) -> dict[str, pd.DataFrame]:
    """Disjoint train/validation/test frames cut from the head of `sample`."""
    frame = sample.drop(columns=["_file", "_line", "contrast_of"], errors="ignore").reset_index(drop=True)
    a, b, c = sizes
    return {
        "train": frame.iloc[:a].reset_index(drop=True),
        "validation": frame.iloc[a : a + b].reset_index(drop=True),
        "test": frame.iloc[a + b : a + b + c].reset_index(drop=True),
    }


def write_splits(splits: dict[str, pd.DataFrame], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, frame in splits.items():
        frame.to_parquet(directory / f"{name}.parquet", index=False)
    return directory


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def write_preset(path: Path, tables: dict[str, dict]) -> Path:
    """A preset TOML file with the given stage tables."""
    lines = []
    for section, values in tables.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in values.items()]
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def tiny_bert_config(vocab_size: int, **extra):
    """The tests' smallest BERT: two layers, hidden size 32; `extra` adds config fields."""
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        **extra,
    )


def make_tiny_backbone(directory: Path, tokenizer_source: Path) -> Path:
    """A randomly initialized two-layer BERT (hidden size 32) with the bundled tokenizer: the
    training mechanics run on it in milliseconds per step."""
    from transformers import AutoTokenizer, BertModel, set_seed

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    set_seed(0)
    config = tiny_bert_config(tokenizer.vocab_size, max_position_embeddings=64)
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
