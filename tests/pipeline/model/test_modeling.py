import json

import pytest

from pipeline.core.config import DEFAULT_BACKBONE
from pipeline.model.modeling import add_input_normalization, load_tokenizer

DISGUISED = {
    "ｄｅｌｅｔｅ ｍｙ ｆｉｌｅｓ": "delete my files",  # full-width letters
    "𝐝𝐞𝐥𝐞𝐭𝐞 my files": "delete my files",  # mathematical bold
    "del\u200bete my fi\u00adles": "delete my files",  # zero-width space, soft hyphen
    "delete\u202e my files": "delete my files",  # a bidirectional override
    "ﻻ تحذف ملفاتي": "لا تحذف ملفاتي",  # an Arabic presentation-form ligature
}


def test_the_tokenizer_reads_disguised_letters_as_plain_ones():
    tokenizer = load_tokenizer(DEFAULT_BACKBONE)
    for disguised, plain in DISGUISED.items():
        assert tokenizer.tokenize(disguised) == tokenizer.tokenize(plain), disguised
    # case, accents and real words are left to the backbone's own normalizer
    assert tokenizer.tokenize("Café") == load_tokenizer(DEFAULT_BACKBONE).tokenize("café")


def test_normalization_is_added_once():
    tokenizer = add_input_normalization(load_tokenizer(DEFAULT_BACKBONE))
    steps = json.loads(tokenizer.backend_tokenizer.to_str())["normalizer"]["normalizers"]
    assert [step["type"] for step in steps] == ["NFKC", "Replace", "BertNormalizer"]


def test_a_saved_model_keeps_the_normalization_for_standard_loaders(untrained_model_dir):
    from transformers import AutoTokenizer, pipeline

    saved = json.loads((untrained_model_dir / "tokenizer_config.json").read_text())
    assert saved["tokenizer_class"] == "TokenizersBackend"
    tokenizer = AutoTokenizer.from_pretrained(untrained_model_dir)
    for disguised, plain in DISGUISED.items():
        assert tokenizer(disguised)["input_ids"] == tokenizer(plain)["input_ids"], disguised
    classify = pipeline("text-classification", model=str(untrained_model_dir), top_k=None)
    disguised, plain = classify(["ｄｅｌｅｔｅ ｍｙ ｆｉｌｅｓ", "delete my files"])
    assert {d["label"]: d["score"] for d in disguised} == pytest.approx({p["label"]: p["score"] for p in plain}, abs=1e-6)
