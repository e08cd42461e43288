"""The model card: `ModelCardData` with `model-index` from `eval.json`, the outputs and their
thresholds, the evaluation tables, the training and ONNX rows and the usage snippet."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from pipeline.core.decision import DECISIONS, DEFAULT_UNCERTAINTY_MARGIN, Decision, Thresholds
from pipeline.core.schema import (
    ATTRIBUTE_NAMES,
    ATTRIBUTES_BY_NAME,
    BINARY_ATTRIBUTES,
    FEASIBLE,
    MODEL_OUTPUTS,
    REVERSIBLE,
    RISK,
    RISK_OUTPUTS,
    RISK_VALUES,
    risk_probabilities,
)
from pipeline.hub.cards.checks import HUB_ID, TASK_NAME, TASK_TYPE, parse_card
from pipeline.hub.cards.format import Figure, docstring_paragraph, policy_text, render_template
from pipeline.hub.cards.release import HubRepos, Release
from pipeline.model.metrics import BLOCK_ATTRIBUTES
from pipeline.report.eval_report import MODEL_KEY, block_offsets_text
from pipeline.report.markdown import fmt, markdown_table

MODEL_TEMPLATE = "model_card.md"

_OUTPUT_MEANINGS = {
    RISK_OUTPUTS[0]: f"P({RISK.name} is {RISK_VALUES[1]} or {RISK_VALUES[2]})",
    RISK_OUTPUTS[1]: f"P({RISK.name} is {RISK_VALUES[2]})",
}


@dataclass
class ModelReports:
    """The model's reports: `eval.json` (required), `train.json` and the ONNX export numbers."""

    eval: dict
    train: dict | None = None
    onnx: dict | None = None  # {"files": {name: MB}, "max_abs_diff": {name: float}}
    figures: list[Figure] = field(default_factory=list)


def _risk_reading() -> str:
    return docstring_paragraph(risk_probabilities, "P(low)")


def _eval_results(eval_report: dict, repos: HubRepos, dataset_name: str) -> list:
    """`EvalResult`s of the test split: every attribute's macro-F1 and accuracy, the decision's
    accuracy and macro-F1, and block recall / false-block rate at the tuned thresholds. Values
    are taken from `eval.json` unchanged."""
    from huggingface_hub import EvalResult

    test = eval_report["models"][MODEL_KEY]["test"]

    def result(metric_type: str, name: str, value: Any, args: dict | None = None) -> EvalResult | None:
        if value is None:
            return None
        return EvalResult(
            task_type=TASK_TYPE,
            task_name=TASK_NAME,
            dataset_type=repos.dataset,
            dataset_name=dataset_name,
            dataset_split="test",
            metric_type=metric_type,
            metric_name=name,
            metric_value=value,
            metric_args=args,
        )

    results = []
    for name in ATTRIBUTE_NAMES:
        m = test["attributes"][name]
        results.append(result("f1", f"{name} macro-F1", m["macro_f1"], {"average": "macro"}))
        results.append(result("accuracy", f"{name} accuracy", m["accuracy"]))
    results.append(result("accuracy", "decision accuracy", test["decision"]["accuracy"]))
    results.append(result("f1", "decision macro-F1", test["decision"]["macro_f1"], {"average": "macro"}))
    point = test["block"]["operating_point"]
    results.append(result("recall", "block recall", point["recall"]))
    results.append(result("false_block_rate", "false-block rate", point["false_block_rate"]))
    return [r for r in results if r is not None]


def model_card_data(
    eval_report: dict,
    repos: HubRepos,
    license: str,
    languages: Sequence[str],
    base_model: str | None,
    dataset_name: str,
    tags: Sequence[str],
):
    """`ModelCardData` with `model-index` holding the test metrics of `eval.json`."""
    from huggingface_hub import ModelCardData

    return ModelCardData(
        base_model=base_model or None,
        datasets=[repos.dataset],
        language=list(languages),
        license=license,
        library_name="transformers",
        pipeline_tag=TASK_TYPE,
        tags=list(tags),
        metrics=["f1", "accuracy", "recall"],
        model_name=repos.model.split("/")[-1],
        eval_results=_eval_results(eval_report, repos, dataset_name),
    )


def base_model_id(train: dict | None) -> str | None:
    """The Hub id of the fine-tuned backbone, from `train.json` (None for a local folder)."""
    backbone = ((train or {}).get("config") or {}).get("backbone")
    if backbone and HUB_ID.match(str(backbone)) and not Path(str(backbone)).exists():
        return str(backbone)
    return None


def _threshold_rule(rule: str | None) -> tuple[str, str] | None:
    """`evaluate`'s threshold rule as (its opening line, the numbered steps)."""
    if not rule:
        return None
    head, _, steps = rule.partition("\n")
    return head.strip(), steps.strip()


def _output_rows(thresholds: Thresholds) -> list[list[Any]]:
    rows = []
    for i, name in enumerate(MODEL_OUTPUTS):
        meaning = (
            f"P(`{name}` is `yes`): {ATTRIBUTES_BY_NAME[name].meaning}" if name in BINARY_ATTRIBUTES else _OUTPUT_MEANINGS[name]
        )
        rows.append([i, f"`{name}`", meaning, thresholds[name]])
    return rows


def _attribute_table(eval_report: dict) -> str:
    models = eval_report["models"]
    ours = models[MODEL_KEY]["test"]["attributes"]
    baselines = [k for k in models if k != MODEL_KEY]
    rows = []
    for name in ATTRIBUTE_NAMES:
        m = ours[name]
        rows.append(
            [f"`{name}`", m["macro_f1"], m["accuracy"], m.get("roc_auc"), m.get("pr_auc"), m.get("ece")]
            + [models[k]["test"]["attributes"][name]["macro_f1"] for k in baselines]
        )
    header = ["attribute", "macro-F1", "accuracy", "ROC-AUC", "PR-AUC", "ECE"] + [f"{k} macro-F1" for k in baselines]
    return markdown_table(header, rows)


def _per_class_tables(eval_report: dict) -> list[tuple[str, str]]:
    ours = eval_report["models"][MODEL_KEY]["test"]["attributes"]
    out = []
    for name in ATTRIBUTE_NAMES:
        per_class = ours[name]["per_class"]
        rows = [[f"`{v}`", c["precision"], c["recall"], c["f1"], c["support"]] for v, c in per_class.items()]
        out.append((name, markdown_table(["value", "precision", "recall", "F1", "support"], rows)))
    return out


def _decision_table(eval_report: dict) -> str:
    rows = []
    for key, model in eval_report["models"].items():
        d = model["test"]["decision"]
        point = model["test"]["block"]["operating_point"]
        rows.append(
            [key, d["accuracy"], d["macro_f1"]]
            + [d["per_class"][name]["recall"] for name in DECISIONS]
            + [point["recall"], point["false_block_rate"]]
        )
    header = ["model", "accuracy", "macro-F1"] + [f"recall `{d}`" for d in DECISIONS] + ["block recall", "false-block rate"]
    return markdown_table(header, rows)


def _block_curve_table(eval_report: dict) -> str:
    models = eval_report["models"]
    rates = list(models[MODEL_KEY]["test"]["block"]["recall_at_false_block_rate"])
    rows = [[key] + [m["test"]["block"]["recall_at_false_block_rate"].get(r) for r in rates] for key, m in models.items()]
    return markdown_table(["model"] + [f"recall at false-block rate <= {r}" for r in rates], rows)


def _language_table(eval_report: dict) -> str:
    groups = eval_report["models"][MODEL_KEY]["test"].get("by_language") or {}
    rows = [
        [f"`{lang}`", g["n"], g["mean_macro_f1"]] + [g["attributes"][a]["macro_f1"] for a in ATTRIBUTE_NAMES]
        for lang, g in groups.items()
    ]
    return markdown_table(["language", "rows", "mean macro-F1"] + [f"`{a}`" for a in ATTRIBUTE_NAMES], rows)


def _goal_table(eval_report: dict) -> str:
    return markdown_table(
        ["goal", "target", "reached", "met"],
        [[g["goal"], g["target"], g["value"], g["met"]] for g in eval_report.get("goals") or []],
    )


def fine_tuned_weights(config: dict) -> str:
    """Which weights a training config changed, for the card (`train.TrainConfig` fields)."""
    if config.get("lora"):
        modules = ", ".join(config.get("lora_target_modules") or [])
        return f"LoRA adapters (rank {config.get('lora_r')}) on {modules}, merged, and the classifier head"
    if config.get("freeze_layers"):
        return f"all but the embeddings and the bottom {config['freeze_layers']} encoder layers"
    if config.get("freeze_embeddings"):
        return "all but the word embeddings (kept as in the backbone)"
    return "all weights"


def _training_rows(train: dict | None) -> list[list[Any]]:
    if not train:
        return []
    config = train.get("config") or {}
    rows_info = train.get("rows") or {}
    augmented = rows_info.get("augmented") or {}
    augmentation = ", ".join(f"{k} {v}" for k, v in augmented.items()) if augmented else "none"
    loss = "focal BCE (gamma {})".format(config.get("focal_gamma")) if config.get("focal_loss") else "BCE"
    if config.get("class_weighting"):
        loss += f", positive-class weights (power {config.get('class_weight_power')})"
    versions = train.get("versions") or {}
    rows = [
        ["backbone", f"`{config.get('backbone')}`"],
        ["weights fine-tuned", fine_tuned_weights(config)],
        ["loss", loss],
        ["max length (tokens)", config.get("max_length")],
        ["batch size x accumulation", f"{config.get('batch_size')} x {config.get('gradient_accumulation_steps')}"],
        ["learning rate / schedule / warmup", f"{config.get('learning_rate')} / {config.get('lr_scheduler')} / {config.get('warmup_ratio')}"],
        ["pooler and head learning rate", config.get("head_learning_rate")],
        ["epochs completed / optimizer steps", f"{fmt(train.get('epochs_completed'), 2)} / {train.get('global_step')}"],
        ["stopped early", fmt(bool(train.get("stopped_early")))],
        ["best validation macro-F1 (thresholds 0.5)", f"{fmt(train.get('best_validation_macro_f1'))} (step {train.get('best_step')})"],
        ["training rows (validation rows)", f"{rows_info.get('train')} ({rows_info.get('validation')})"],
        ["augmented training rows", augmentation],
        ["device / world size / precision", f"{train.get('device')} / {train.get('world_size')} / {train.get('mixed_precision')}"],
        ["wall time", f"{fmt(train.get('wall_time_s'), 0)} s"],
        ["seed", config.get("seed")],
        ["command", f"`{train.get('command')}`" if train.get("command") else None],
        ["versions", ", ".join(f"{k} {v}" for k, v in versions.items()) or None],
    ]
    return [r for r in rows if r[1] is not None]


def _onnx_rows(onnx: dict | None) -> list[list[Any]]:
    if not onnx:
        return []
    diffs = onnx.get("max_abs_diff") or {}
    losses = onnx.get("macro_f1_loss") or {}

    def loss(name: str) -> str:
        entry = losses.get(name)
        if not entry or entry.get("loss") is None:
            return "n/a"
        return f"{100 * entry['loss']:.2f} ({entry['attribute']})"

    return [
        [f"`onnx/{name}`", f"{size:.1f}", f"{diffs[name]:.1e}" if diffs.get(name) is not None else None, loss(name)]
        for name, size in (onnx.get("files") or {}).items()
    ]


def usage_snippet(model_id: str) -> str:
    """Python that classifies a command with `transformers.pipeline` and applies the gate's
    policy with the model's own thresholds (names from `pipeline.core.schema`)."""
    return render_template(
        "usage.py.jinja",
        model_id=model_id,
        block_attributes=BLOCK_ATTRIBUTES,
        feasible=FEASIBLE.name,
        reversible=REVERSIBLE.name,
        risk_at_least_medium=RISK_OUTPUTS[0],
        decision={d.name.lower(): d.value for d in Decision},
    ).strip()


def render_model_card(
    reports: ModelReports,
    thresholds: Thresholds,
    repos: HubRepos,
    release: Release,
    license: str,
    languages: Sequence[str],
    pretty_name: str,
    dataset_name: str,
    tags: Sequence[str],
    folder: Path | None = None,
):
    """The model card (`huggingface_hub.ModelCard`), checked."""
    eval_report = reports.eval
    base_model = base_model_id(reports.train)
    card_data = model_card_data(eval_report, repos, license, languages, base_model, dataset_name, tags)
    ours = eval_report["models"][MODEL_KEY]
    text = render_template(
        MODEL_TEMPLATE,
        card_data=card_data.to_yaml(),
        pretty_name=pretty_name,
        repos=repos,
        release=release,
        base_model=base_model,
        attribute_names=ATTRIBUTE_NAMES,
        outputs=MODEL_OUTPUTS,
        outputs_table=markdown_table(["index", "output (`id2label`)", "meaning", "threshold"], _output_rows(thresholds)),
        risk_reading=_risk_reading(),
        risk_outputs=RISK_OUTPUTS,
        policy=policy_text(),
        decisions=DECISIONS,
        margin=DEFAULT_UNCERTAINTY_MARGIN,
        threshold_rule=_threshold_rule(eval_report.get("threshold_rule")),
        languages=list(languages),
        block_shift=None if ours.get("block_shift") is None else block_offsets_text(ours["block_shift"]),
        usage=usage_snippet(repos.model),
        splits=eval_report.get("splits") or {},
        goal_table=_goal_table(eval_report),
        attribute_table=_attribute_table(eval_report),
        per_class_tables=_per_class_tables(eval_report),
        decision_table=_decision_table(eval_report),
        block_curve_table=_block_curve_table(eval_report),
        language_table=_language_table(eval_report),
        mean_macro_f1=ours["test"]["mean_macro_f1"],
        baselines=[m["name"] if m["name"] == k else f"{m['name']} (`{k}`)" for k, m in eval_report["models"].items() if k != MODEL_KEY],
        training_table=markdown_table(["setting", "value"], _training_rows(reports.train)) if reports.train else "",
        onnx_table=markdown_table(
            ["file", "size (MB)", "max abs. probability difference vs torch", "largest macro-F1 loss on validation (points)"],
            _onnx_rows(reports.onnx),
        )
        if reports.onnx
        else "",
        fp32_nodes=", ".join(f"`{p}`" for p in (reports.onnx or {}).get("fp32_nodes") or []),
        figures=reports.figures,
        fmt=fmt,
    )
    return parse_card(text, "model", folder)
