"""The standard seven-output `BertForSequenceClassification` (any encoder with a
sequence-classification head) and how it is saved, so `from_pretrained` and
`transformers.pipeline("text-classification", top_k=None)` load it with no custom code."""

from __future__ import annotations

import json

from pathlib import Path

from pipeline.core.config import resolve_model
from pipeline.core.decision import CONFIG_KEY, Thresholds
from pipeline.core.schema import ID2LABEL, LABEL2ID


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


# Characters that change how a command looks to a tokenizer but not what it says: zero-width
# spaces and joiners, bidirectional controls, word joiners, the byte-order mark, soft hyphens.
INVISIBLE_CHARACTERS = "[\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"


def load_tokenizer(backbone: str):
    """The backbone's fast tokenizer, reading every command through `add_input_normalization`."""
    from transformers import AutoTokenizer

    return add_input_normalization(AutoTokenizer.from_pretrained(resolve_model(backbone), use_fast=True))


def has_input_normalization(tokenizer) -> bool:
    normalizer = json.loads(tokenizer.backend_tokenizer.to_str()).get("normalizer")
    return INVISIBLE_CHARACTERS in json.dumps(normalizer, ensure_ascii=False)


def add_input_normalization(tokenizer):
    """Put Unicode NFKC (full-width and mathematical letters, ligatures and Arabic presentation
    forms to their plain letters) and the removal of `INVISIBLE_CHARACTERS` in front of the
    tokenizer's own normalizer. It lives in tokenizer.json, so every loader of the saved model
    (`from_pretrained`, `pipeline()`, ONNX runtimes with the tokenizer) reads commands the same
    way; a tokenizer that has it already is returned unchanged."""
    from tokenizers import Regex, normalizers

    backend = tokenizer.backend_tokenizer
    current = backend.normalizer
    if has_input_normalization(tokenizer):
        return tokenizer
    steps = [normalizers.NFKC(), normalizers.Replace(Regex(INVISIBLE_CHARACTERS), "")]
    backend.normalizer = normalizers.Sequence(steps + ([current] if current is not None else []))
    return tokenizer


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
    drop_runtime_tokenizer_keys(
        out / "tokenizer_config.json",
        keep_pipeline=has_input_normalization(tokenizer),
        model_input_names=list(tokenizer.model_input_names),
    )
    return out


# Keys `transformers` writes from how the tokenizer was loaded here (an offline local folder, a
# call's truncation settings), not what it is: a published tokenizer must not carry them.
RUNTIME_TOKENIZER_KEYS: tuple[str, ...] = (
    "is_local", "local_files_only", "max_length", "stride", "truncation_strategy", "pad_to_multiple_of",
)


def drop_runtime_tokenizer_keys(
    path: Path, keep_pipeline: bool = False, model_input_names: list[str] | None = None
) -> None:
    """Remove `RUNTIME_TOKENIZER_KEYS` from a saved `tokenizer_config.json`. With `keep_pipeline`
    the tokenizer class becomes `TokenizersBackend`, which runs tokenizer.json exactly as saved
    (a model-specific class such as `BertTokenizer` rebuilds its normalizer from its settings
    and would drop the input normalization), keeping the inputs the model takes
    (`model_input_names`, e.g. BERT's token types)."""
    if not path.is_file():
        return
    data = json.loads(path.read_text(encoding="utf-8"))
    kept = {k: v for k, v in data.items() if k not in RUNTIME_TOKENIZER_KEYS}
    if keep_pipeline:
        kept["tokenizer_class"] = "TokenizersBackend"
        if model_input_names:
            kept["model_input_names"] = model_input_names
    if kept != data:
        path.write_text(json.dumps(kept, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
