"""The Space's prediction function (`space.classifier`): its output and input edge cases."""

from __future__ import annotations

import pytest

from pipeline.core.decision import DECISIONS
from pipeline.core.schema import ATTRIBUTE_NAMES, ATTRIBUTES_BY_NAME
from space.classifier import EMPTY_MESSAGE, CommandClassifier, clean_command
from space.render import banner_html, label_values
from tests.space.planted import PLANTED, planted

REASONS = {
    "allow": ["feasible, lawful, within bounds, reversible and low risk: go ahead"],
    "confirm": ["irreversible and high risk: ask the user first"],
    "cannot_do": ["not something a software agent can carry out: explain and do nothing"],
    "block": ["likely illegal: refuse"],
}


@pytest.mark.parametrize("decision", DECISIONS)
def test_planted_outputs_give_decision_and_reasons(decision):
    result = planted(decision)
    assert result.decision == decision
    assert result.reasons == REASONS[decision]
    assert not result.uncertain


def test_payload_has_every_attribute_with_its_values():
    payload = planted("confirm").as_dict()
    assert set(payload) == {
        "text",
        "decision",
        "reasons",
        "labels",
        "probabilities",
        "uncertain",
        "uncertain_outputs",
        "notices",
        "truncated",
    }
    assert list(payload["labels"]) == list(ATTRIBUTE_NAMES)
    for name in ATTRIBUTE_NAMES:
        probs = payload["probabilities"][name]
        assert tuple(probs) == ATTRIBUTES_BY_NAME[name].values
        assert sum(probs.values()) == pytest.approx(1.0)
    assert payload["labels"]["risk"] == "high"
    assert payload["probabilities"]["risk"]["high"] == pytest.approx(0.92)
    assert payload["probabilities"]["risk"]["medium"] == pytest.approx(0.96 - 0.92)


@pytest.mark.parametrize("raw", ["", "   ", "\n\t  \r\n", None, "\x00\x07"])
def test_empty_input_cleans_to_nothing(raw):
    assert clean_command(raw).text == ""


def test_control_characters_are_removed_with_a_notice():
    cleaned = clean_command("delete\x00 my\x1b files\u0085")
    assert cleaned.text == "delete my files"
    # NEL (\u0085) is whitespace: it becomes a space without a notice
    assert cleaned.notices and "2 control character" in cleaned.notices[0]


def test_scripts_emoji_and_bidi_marks_are_kept():
    text = "احذف \u200fالملفات 🗑️ من سطح المكتب 👨‍👩‍👧"
    assert clean_command(text).text == text
    assert clean_command(text).notices == ()


def test_lone_surrogates_and_decomposed_text_are_made_valid():
    cleaned = clean_command("caf\u0065\u0301 \ud800 order")
    assert cleaned.text == "café \ufffd order"
    cleaned.text.encode("utf-8")


def test_very_long_input_is_cut():
    cleaned = clean_command("word " * 5000, max_chars=100)
    assert cleaned.cut and len(cleaned.text) == 100


def test_classify_empty_input_gives_a_message_not_an_error(space_resources):
    result = space_resources.classifier.classify("  \t ")
    assert result.decision is None
    assert result.notices == [EMPTY_MESSAGE]
    assert "Type a command" in banner_html(result)
    assert label_values(result) == [None] * len(ATTRIBUTE_NAMES)


def test_classify_any_unicode(space_resources):
    result = space_resources.classifier.classify("احذف كل الصور 📸\x00 \u202eplease\u202c")
    assert result.decision in DECISIONS
    assert "\x00" not in result.text
    assert any("control character" in n for n in result.notices)


def test_long_commands_are_read_in_parts_and_overlong_ones_are_never_allowed(space_resources):
    classifier = space_resources.classifier
    short = classifier.classify("book a table for two")
    long = classifier.classify("please book a table for two " * 60)
    assert not short.truncated and not short.notices
    assert not long.truncated
    assert any("overlapping parts" in n for n in long.notices)
    over = classifier.classify("please book a table for two " * 200)  # past the character limit
    assert over.truncated and over.decision != "allow"
    assert any("not read" in n for n in over.notices)


def test_classify_many_keeps_order_and_skips_empty_rows(space_resources):
    seen = []
    texts = ["open my calendar", "", "حذف الملف", "   "]
    results = space_resources.classifier.classify_many(
        texts, on_progress=lambda d, t: seen.append((d, t))
    )
    assert [r.text for r in results] == ["open my calendar", "", "حذف الملف", ""]
    assert [r.decision is None for r in results] == [False, True, False, True]
    assert seen[-1] == (2, 2)
    single = space_resources.classifier.classify("حذف الملف")
    assert results[2].probabilities["legal"]["yes"] == pytest.approx(
        single.probabilities["legal"]["yes"], abs=1e-5
    )


def test_planted_head_model_gives_its_decision_end_to_end(untrained_model_dir, tmp_path):
    """A real model whose head always outputs the planted probabilities."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from pipeline.model.inference import Predictor

    model = AutoModelForSequenceClassification.from_pretrained(untrained_model_dir)
    probs = torch.tensor(PLANTED["confirm"])
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.log(probs / (1 - probs)))
    model.save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(untrained_model_dir).save_pretrained(tmp_path)
    result = CommandClassifier(Predictor(tmp_path)).classify("wire my savings to this account")
    assert result.decision == "confirm"
    assert result.reasons == ["irreversible and high risk: ask the user first"]
    assert result.labels == {
        "feasible": "yes",
        "legal": "yes",
        "ethical": "yes",
        "within_boundaries": "yes",
        "reversible": "no",
        "risk": "high",
    }

