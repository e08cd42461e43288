"""The Space's prediction function, input handling, batch files and About content."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.decision import DECISIONS, Thresholds, gate
from pipeline.evaluate import MODEL_KEY
from pipeline.schema import ATTRIBUTE_NAMES, ATTRIBUTES_BY_NAME, MODEL_OUTPUTS
from space.app import (
    EMPTY_MESSAGE,
    MAX_BATCH_ROWS,
    BatchFileError,
    CommandClassifier,
    SpaceConfig,
    SpaceLoadError,
    banner_html,
    batch_frame,
    batch_summary,
    card_metrics,
    card_section,
    classification_from_gate,
    clean_command,
    config_from_args,
    dataset_statistics,
    decision_examples,
    label_title,
    label_values,
    load_about,
    load_dataset_view,
    load_resources,
    read_batch_file,
    resolve_source,
)

# Output order: feasible, legal, ethical, within_boundaries, reversible, risk>=medium, risk=high.
PLANTED = {
    "allow": [0.97, 0.96, 0.98, 0.95, 0.93, 0.04, 0.02],
    "confirm": [0.97, 0.96, 0.98, 0.95, 0.03, 0.96, 0.92],
    "cannot_do": [0.03, 0.96, 0.98, 0.95, 0.93, 0.04, 0.02],
    "block": [0.97, 0.02, 0.98, 0.95, 0.93, 0.04, 0.02],
}
REASONS = {
    "allow": ["feasible, lawful, within bounds, reversible and low risk: go ahead"],
    "confirm": ["irreversible and high risk: ask the user first"],
    "cannot_do": ["not something a software agent can carry out: explain and do nothing"],
    "block": ["likely illegal: refuse"],
}


def planted(decision: str, text: str = "a command"):
    result = gate(np.asarray(PLANTED[decision]), Thresholds())
    return classification_from_gate(result, text)


# --- the prediction function's output ---------------------------------------------------------


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


def test_banner_shows_decision_and_reasons_in_words():
    html = banner_html(planted("confirm"))
    assert 'data-decision="confirm"' in html
    assert "Confirm first" in html
    assert "irreversible and high risk: ask the user first" in html
    assert "Uncertain" not in html


def test_label_values_follow_attribute_order_and_titles_state_the_label():
    result = planted("block")
    values = label_values(result)
    assert values[ATTRIBUTE_NAMES.index("legal")] == pytest.approx({"no": 0.98, "yes": 0.02})
    assert set(values[ATTRIBUTE_NAMES.index("risk")]) == {"low", "medium", "high"}
    assert label_title("legal", result) == "Legal: no"
    assert label_title("risk", result) == "Risk: low"


def test_probabilities_near_a_threshold_are_uncertain():
    probs = np.asarray(PLANTED["allow"])
    probs[MODEL_OUTPUTS.index("legal")] = 0.58
    result = classification_from_gate(gate(probs, Thresholds()), "x")
    assert result.decision == "allow"
    assert result.uncertain_outputs == ["legal"]
    assert "Uncertain: review" in banner_html(result)
    assert label_title("legal", result) == "Legal: yes (uncertain)"
    assert label_title("ethical", result) == "Ethical: yes"


# --- input edge cases ------------------------------------------------------------------------


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

    from pipeline.inference import Predictor

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


# --- batch files -----------------------------------------------------------------------------


def test_csv_batch_reads_the_text_column_and_keeps_the_others(tmp_path):
    path = tmp_path / "cmds.csv"
    path.write_text(
        'id,Text,note\n1,open my mail,a\n2,"delete it, now",b\n3,,c\n', encoding="utf-8"
    )
    batch = read_batch_file(path)
    assert batch.texts == ["open my mail", "delete it, now", ""]
    assert list(batch.extra.columns) == ["id", "note"]


def test_txt_batch_has_one_command_per_line(tmp_path):
    path = tmp_path / "cmds.txt"
    path.write_text("\ufeffopen my mail\n\n  \nاحذف الملف\r\n", encoding="utf-8")
    assert read_batch_file(path).texts == ["open my mail", "احذف الملف"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("cmds.xlsx", b"PK", "upload a .csv or .txt"),
        ("cmds.csv", b"text\nok\n\xff\xfe bad\n", "line 3 is not valid UTF-8"),
        ("cmds.csv", b"id,command_text\n1,open\n", "no 'text' column (found: id, command_text)"),
        ("cmds.csv", b"", "no commands"),
        ("cmds.txt", b"\n\n", "no commands"),
        ("cmds.csv", b'text\n"open my mail\n', "not a valid CSV"),
    ],
)
def test_bad_batch_files_get_a_clear_message(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(BatchFileError, match=re.escape(message)) as info:
        read_batch_file(path)
    assert name in str(info.value)


def test_batch_over_the_row_limit_is_refused(tmp_path):
    path = tmp_path / "big.txt"
    path.write_text("open my mail\n" * (MAX_BATCH_ROWS + 1), encoding="utf-8")
    with pytest.raises(BatchFileError, match="5,001 commands; the limit is 5,000"):
        read_batch_file(path)


def test_batch_frame_has_every_output_and_renames_clashing_columns(tmp_path):
    path = tmp_path / "cmds.csv"
    path.write_text("text,decision,id\nx,allow,1\ny,block,2\n", encoding="utf-8")
    batch = read_batch_file(path)
    frame = batch_frame(batch, [planted("confirm"), planted("block")])
    assert frame["decision"].tolist() == ["confirm", "block"]
    assert frame["input_decision"].tolist() == ["allow", "block"]
    assert frame["id"].tolist() == ["1", "2"]
    for column in [
        *ATTRIBUTE_NAMES,
        "reasons",
        "uncertain",
        "p_legal_yes",
        "p_risk_low",
        "p_risk_medium",
        "p_risk_high",
    ]:
        assert column in frame.columns
    assert frame.loc[0, "reasons"] == "irreversible and high risk: ask the user first"
    assert frame.loc[0, "p_risk_high"] == pytest.approx(0.92)
    assert "1 confirm" in batch_summary("cmds.csv", frame) and "1 block" in batch_summary(
        "cmds.csv", frame
    )


# --- dataset, examples and About content -----------------------------------------------------


def test_examples_cover_every_decision_in_both_languages(space_resources):
    examples = decision_examples(space_resources.dataset)
    assert {d for d, _ in examples} == set(DECISIONS)
    assert len(examples) == 2 * len(DECISIONS)
    assert any("\u0600" <= text[0] <= "\u06ff" for _, text in examples)
    assert examples == decision_examples(space_resources.dataset)


def test_dataset_statistics_count_splits_languages_and_decisions(space_resources):
    sizes, decisions = dataset_statistics(space_resources.dataset)
    test = sizes.set_index("split").loc["test"]
    assert (test["rows"], test["lang: en"], test["lang: ar"]) == (14, 10, 4)
    assert decisions.set_index("split").loc["test"].to_dict() == {
        "allow": 4,
        "confirm": 4,
        "cannot_do": 3,
        "block": 3,
    }


def test_dataset_with_string_labels_loads_like_class_labels(
    tmp_path, dataset_writer, space_commands
):
    root = dataset_writer(tmp_path / "d", {"test": space_commands}, class_labels=False)
    view = load_dataset_view(resolve_source(None, None, "dataset", root))
    assert view.note == ""
    assert view.splits["test"]["risk"].tolist() == space_commands["risk"].tolist()
    assert {d for d, _ in decision_examples(view)} == set(DECISIONS)


def test_missing_or_incomplete_dataset_gives_a_note(tmp_path, dataset_writer, space_commands):
    import datasets

    missing = load_dataset_view(resolve_source(None, None, "dataset", tmp_path / "nope"))
    assert missing.splits == {} and "No dataset" in missing.note
    (tmp_path / "d").mkdir()
    datasets.Dataset.from_dict({"text": ["a"]}).to_parquet(str(tmp_path / "d" / "test.parquet"))
    incomplete = load_dataset_view(resolve_source(None, None, "dataset", tmp_path / "d"))
    assert incomplete.splits == {} and "lacks the column(s)" in incomplete.note
    assert decision_examples(incomplete) == []
    odd = space_commands.assign(risk="severe")
    root = dataset_writer(tmp_path / "odd", {"test": odd}, class_labels=False)
    view = load_dataset_view(resolve_source(None, None, "dataset", root))
    assert view.splits == {} and "risk values ['severe'] outside" in view.note


CARD = """---
license: apache-2.0
model-index:
- name: lm-action
  results:
  - task: {type: text-classification}
    dataset: {name: lm-action-commands, type: x, split: test}
    metrics:
    - {type: f1, name: decision macro F1, value: 0.812}
    - {type: accuracy, value: 0.9}
---
# LM-Action
## Limitations
Only English and Arabic.

## Citation
none
"""


def test_model_card_metrics_and_limitations_are_read():
    metrics = card_metrics(CARD)
    assert metrics.to_dict("records") == [
        {"dataset": "lm-action-commands / test", "metric": "decision macro F1", "value": 0.812},
        {"dataset": "lm-action-commands / test", "metric": "accuracy", "value": 0.9},
    ]
    assert card_section(CARD, "limitation") == "Only English and Arabic."
    assert card_metrics("# no front matter").empty


def test_metrics_of_a_card_written_by_huggingface_hub():
    from huggingface_hub import EvalResult, ModelCardData

    result = EvalResult(
        task_type="text-classification",
        dataset_type="org/lm-action-commands",
        dataset_name="LM-Action commands",
        dataset_split="test",
        metric_type="f1",
        metric_name="legal macro-F1",
        metric_value=0.91,
    )
    data = ModelCardData(model_name="lm-action", eval_results=[result])
    card = f"---\n{data.to_yaml()}\n---\n# LM-Action\n"
    assert card_metrics(card).to_dict("records") == [
        {"dataset": "LM-Action commands / test", "metric": "legal macro-F1", "value": 0.91}
    ]


def test_about_reads_reports_and_card_and_notes_what_is_missing(tmp_path, space_reports_dir):
    model = tmp_path / "model"
    model.mkdir()
    (model / "README.md").write_text(CARD, encoding="utf-8")
    about = load_about([tmp_path / "absent", space_reports_dir], model)
    data, evaluation = about.reports
    assert (data.title, data.path) == ("Data report", space_reports_dir / "data.md")
    assert (evaluation.title, evaluation.path) == ("Evaluation report", space_reports_dir / "eval.md")
    gallery = [Path(p).name for p, _ in about.plots]
    assert gallery == sorted(p.name for p in space_reports_dir.glob("*.png"))
    for report in (data, evaluation):
        written = report.path.read_text(encoding="utf-8")
        figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", written)
        assert figures and set(figures) <= set(gallery)  # plots go to the gallery
        assert "![" not in report.markdown
        assert report.markdown == re.sub(r"!\[[^\]]*\]\([^)]*\)", "", written).strip()
    evaluated = json.loads((space_reports_dir / "eval.json").read_text(encoding="utf-8"))
    scores = evaluated["models"][MODEL_KEY]["test"]["attributes"]
    assert all(f"| {scores[name]['macro_f1']:.4f} |" in evaluation.markdown for name in ATTRIBUTE_NAMES)
    assert about.limitations == "Only English and Arabic."
    assert about.notes == []


def test_about_without_reports_or_card_says_so(tmp_path):
    (tmp_path / "screenshot-space-laptop-classify.png").write_bytes(b"png")
    bare = load_about([tmp_path], tmp_path / "model")
    assert bare.reports == [] and bare.plots == []
    assert len(bare.notes) == 4 and any("evaluation report" in n for n in bare.notes)
    assert "never executes" in bare.limitations


# --- loading ---------------------------------------------------------------------------------


def test_hub_id_unavailable_offline_falls_back_to_the_local_folder(tmp_path):
    source = resolve_source("lm-action/does-not-exist", None, "model", tmp_path)
    assert source.kind == "local" and source.path == tmp_path
    assert "lm-action/does-not-exist" in source.note
    assert "local folder" in source.describe()


def test_missing_model_is_a_clear_start_up_error(tmp_path):
    with pytest.raises(SpaceLoadError, match="no model at"):
        load_resources(SpaceConfig(model_dir=tmp_path / "none", dataset_dir=tmp_path))


def test_config_comes_from_env_then_cli(tmp_path):
    env = {"MODEL_ID": "org/model", "MODEL_REVISION": "v1", "LM_ACTION_DATASET_DIR": str(tmp_path)}
    config = SpaceConfig.from_env(env)
    assert (config.model_id, config.model_revision, config.dataset_id) == ("org/model", "v1", None)
    assert config.dataset_dir == tmp_path
    args = argparse.Namespace(model=str(tmp_path), dataset="org/data", reports=None)
    config = config_from_args(args, env)
    assert (config.model_id, config.model_dir, config.dataset_id) == (None, tmp_path, "org/data")


def test_loaded_sources_are_named(space_resources, untrained_model_dir):
    assert space_resources.model_source.kind == "local"
    assert space_resources.model_source.path == untrained_model_dir
    assert space_resources.backend.startswith("torch")
    assert isinstance(space_resources.dataset.splits["test"], pd.DataFrame)
