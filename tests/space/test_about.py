"""The About tab's content (`space.about`): model card metrics and limitations, reports and
plots, and notes for what is missing."""

from __future__ import annotations

import json
import re
from pathlib import Path

from pipeline.core.schema import ATTRIBUTE_NAMES
from pipeline.report.eval_report import MODEL_KEY
from space.about import card_metrics, card_section, load_about


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

