"""The standard seven-output `BertForSequenceClassification` (any encoder with a
sequence-classification head) and how it is saved, so `from_pretrained` and
`transformers.pipeline("text-classification", top_k=None)` load it with no custom code."""

from __future__ import annotations

import json

from pathlib import Path

from pipeline.config import resolve_model
from pipeline.decision import CONFIG_KEY, Thresholds
from pipeline.schema import ID2LABEL, LABEL2ID


def build_classifier(backbone: str):
    """A fresh multi-label classifier with the seven LM-Action outputs on top of `backbone`.

    Weights load in float32 whatever dtype they were saved in (a half-precision copy of the
    backbone trains with fp32 master weights; mixed precision comes from the trainer)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(
        resolve_model(backbone),
        dtype=torch.float32,
        num_labels=len(ID2LABEL),
        id2label=dict(ID2LABEL),
        label2id=dict(LABEL2ID),
        problem_type="multi_label_classification",
    )


def load_tokenizer(backbone: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model(backbone), use_fast=True)


def set_thresholds(config, thresholds: Thresholds) -> None:
    """Store decision thresholds in a model config (saved to config.json)."""
    setattr(config, CONFIG_KEY, {k: round(float(v), 6) for k, v in thresholds.values.items()})


def save_classifier(model, tokenizer, out_dir: str | Path, thresholds: Thresholds | None = None) -> Path:
    """Save weights (safetensors), tokenizer and config with `decision_thresholds`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    set_thresholds(model.config, thresholds or Thresholds.from_config(model.config))
    model.save_pretrained(out, safe_serialization=True)
    # `truncation=True` cuts at `model_max_length`: never past the positions the model has.
    positions = getattr(model.config, "max_position_embeddings", None)
    if positions and (tokenizer.model_max_length or 0) > positions:
        tokenizer.model_max_length = positions
    tokenizer.save_pretrained(out)
    drop_runtime_tokenizer_keys(out / "tokenizer_config.json")
    return out


# Keys `transformers` writes from how the tokenizer was loaded here (an offline local folder, a
# call's truncation settings), not what it is: a published tokenizer must not carry them.
RUNTIME_TOKENIZER_KEYS: tuple[str, ...] = (
    "is_local", "local_files_only", "max_length", "stride", "truncation_strategy", "pad_to_multiple_of",
)


def drop_runtime_tokenizer_keys(path: Path) -> None:
    """Remove `RUNTIME_TOKENIZER_KEYS` from a saved `tokenizer_config.json`."""
    if not path.is_file():
        return
    data = json.loads(path.read_text(encoding="utf-8"))
    kept = {k: v for k, v in data.items() if k not in RUNTIME_TOKENIZER_KEYS}
    if kept != data:
        path.write_text(json.dumps(kept, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
