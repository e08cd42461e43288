"""Packing a classifier without its fixed word embeddings and unpacking it against the backbone:
the same predictions, bounded shards, and a refusal when the backbone's matrix differs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from pipeline.model.modeling import load_tokenizer
from pipeline.model.transport import MANIFEST_FILE, TransportError, pack_model, unpack_model


def _logits(model_dir, texts):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    encoded = load_tokenizer(str(model_dir))(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**encoded).logits.numpy()


def test_pack_then_unpack_gives_the_same_classifier(gate_head_model_dir, backbone_dir, tmp_path):
    pack = pack_model(gate_head_model_dir, tmp_path / "pack", max_shard_bytes=4 << 20)
    weights = (gate_head_model_dir / "model.safetensors").stat().st_size
    assert len(pack.shards) > 1
    shard_sizes = [(tmp_path / "pack" / name).stat().st_size for name in pack.shards]
    assert max(shard_sizes) < (4 << 20) + (1 << 20)  # one tensor may top a shard up
    assert sum(shard_sizes) < weights / 2  # fp16 and no embedding matrix
    for name in pack.shards:
        assert all(a.dtype == np.float16 for a in load_file(str(tmp_path / "pack" / name)).values())
    assert (tmp_path / "pack" / "config.json").is_file() and (tmp_path / "pack" / "tokenizer.json").is_file()

    out = unpack_model(tmp_path / "pack", backbone_dir, tmp_path / "model")
    original, restored = load_file(str(gate_head_model_dir / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert set(original) == set(restored)
    assert all(restored[k].dtype == original[k].dtype for k in original)
    key = "bert.embeddings.word_embeddings.weight"
    assert np.array_equal(restored[key], original[key])
    texts = ["book a table for two at eight", "wire all my savings to account 99-1234", "احذف كل الملفات"]
    before, after = _logits(gate_head_model_dir, texts), _logits(out, texts)
    assert np.abs(before - after).max() < 2e-2
    assert (np.sign(before) == np.sign(after)).all()


def test_unpack_refuses_another_embedding_matrix(gate_head_model_dir, backbone_dir, tmp_path):
    pack_model(gate_head_model_dir, tmp_path / "pack")
    other = tmp_path / "other"
    shutil.copytree(backbone_dir, other, ignore=shutil.ignore_patterns("*.bin", "*.onnx", "onnx", "openvino"))
    tensors = load_file(str(other / "model.safetensors"))
    name = next(k for k in tensors if k.endswith("word_embeddings.weight"))
    tensors[name] = tensors[name].copy()
    tensors[name][5, 0] += 1.0
    save_file(tensors, str(other / "model.safetensors"))
    with pytest.raises(TransportError, match="not the matrix the model was trained with"):
        unpack_model(tmp_path / "pack", other, tmp_path / "model")
    assert not (tmp_path / "model" / "model.safetensors").exists()


def test_unpack_names_a_missing_tensor(gate_head_model_dir, backbone_dir, tmp_path):
    pack_model(gate_head_model_dir, tmp_path / "pack", max_shard_bytes=4 << 20)
    manifest = json.loads((tmp_path / "pack" / MANIFEST_FILE).read_text())
    manifest["shards"] = manifest["shards"][:-1]
    (tmp_path / "pack" / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(TransportError, match="missing"):
        unpack_model(tmp_path / "pack", backbone_dir, tmp_path / "model")


def test_pack_refuses_a_model_without_the_fixed_tensor(gate_head_model_dir, tmp_path):
    with pytest.raises(TransportError, match="no tensor"):
        pack_model(gate_head_model_dir, tmp_path / "pack", fixed_key="bert.nothing.weight")
