"""The evaluation report: `eval.json` as computed, `eval.md` for people, and its figures
(reliability, attribute and decision confusion matrices, block recall curve)."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.core.decision import DECISIONS
from pipeline.core.schema import ATTRIBUTE_NAMES, ATTRIBUTES_BY_NAME
from pipeline.report.markdown import fmt, table_lines
from pipeline.report.plots import pyplot

# The key of the fine-tuned model among the models of eval.json (the baselines have their own).
MODEL_KEY = "lm-action"

FIGURES = {
    "reliability": "eval_reliability.png",
    "confusion_attributes": "eval_confusion_attributes.png",
    "confusion_decision": "eval_confusion_decision.png",
    "block_curve": "eval_block_curve.png",
}


def block_offsets_text(shift: dict[str, float] | float) -> str:
    """`legal +0.00, ethical +0.47, ...`: how far each block threshold was raised (one number in
    reports written before the offsets were per attribute)."""
    if not isinstance(shift, dict):
        return f"{float(shift):+.2f} each"
    return ", ".join(f"{name} {value:+.2f}" for name, value in shift.items())


def _heatmap(ax, matrix, labels: list[str], title: str) -> None:
    import numpy as np

    m = np.asarray(matrix)
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set(xlabel="predicted", ylabel="gold", title=title)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, str(m[i, j]), ha="center", va="center", color="white" if m[i, j] > m.max() / 2 else "black", fontsize=8)


def plot_figures(result: dict, out_dir: Path) -> dict[str, Path]:
    """Write the report's PNG figures; returns their paths by name."""
    plt = pyplot()
    models = result["models"]
    paths = {name: out_dir / file for name, file in FIGURES.items()}

    fig, axes = plt.subplots(2, 3, figsize=(13, 8))
    for ax, name in zip(axes.flat, ATTRIBUTE_NAMES):
        ax.plot([0, 1], [0, 1], "k:", linewidth=1)
        for key, model in models.items():
            bins = [b for b in model["test"]["attributes"][name]["reliability"] if b["count"]]
            ece = model["test"]["attributes"][name]["ece"]
            ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o-", label=f"{key} (ECE {ece:.3f})")
        ax.set(title=name, xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1.02))
        ax.legend(fontsize=7)
    fig.suptitle("Reliability on the test split")
    fig.tight_layout()
    fig.savefig(paths["reliability"], dpi=100)
    plt.close(fig)

    fig, axes = plt.subplots(2, 3, figsize=(13, 8))
    for ax, name in zip(axes.flat, ATTRIBUTE_NAMES):
        confusion = models[MODEL_KEY]["test"]["attributes"][name]["confusion"]
        _heatmap(ax, confusion["matrix"], confusion["labels"], name)
    fig.suptitle("LM-Action confusion matrices on the test split")
    fig.tight_layout()
    fig.savefig(paths["confusion_attributes"], dpi=100)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(models), figsize=(4.5 * len(models), 4.2), squeeze=False)
    for ax, (key, model) in zip(axes[0], models.items()):
        confusion = model["test"]["decision"]["confusion"]
        _heatmap(ax, confusion["matrix"], confusion["labels"], key)
    fig.suptitle("Decision confusion on the test split")
    fig.tight_layout()
    fig.savefig(paths["confusion_decision"], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for key, model in models.items():
        roc = model["test"]["block"]["roc"]
        ax.plot(roc["false_block_rate"], roc["recall"], label=key)
        point = model["test"]["block"]["operating_point"]
        if point["recall"] is not None and point["false_block_rate"] is not None:
            ax.plot([point["false_block_rate"]], [point["recall"]], "o", color=ax.lines[-1].get_color())
    limit = result["config"]["max_false_block_rate"]
    ax.axvline(limit, color="grey", linestyle=":", label=f"false-block rate {limit:.0%}")
    goal = result["config"].get("goal_block_recall", result["config"]["block_recall_target"])
    ax.axhline(goal, color="grey", linestyle="--", label="recall goal")
    ax.set(xlabel="false-block rate on allow commands", ylabel="block recall", xlim=(0, 0.3), ylim=(0, 1.01))
    ax.set_title("Block recall vs false blocks (test; dots: tuned thresholds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(paths["block_curve"], dpi=100)
    plt.close(fig)
    return paths


def _training_section(train: dict | None) -> list[str]:
    if not train:
        return ["No `train.json` was found next to this report.", ""]
    curve = train["curves"]["validation"]
    lines = [
        f"- command: `{train['command']}`",
        f"- device: {train['device']} (world size {train['world_size']}, mixed precision {train['mixed_precision']})",
        f"- wall time: {train['wall_time_s']:.0f} s (CPU time {train.get('cpu_time_s', 0):.0f} s); "
        f"{train['global_step']} optimizer steps, "
        f"{train['epochs_completed']:.2f} epochs{' (stopped early)' if train['stopped_early'] else ''}",
        f"- rows: {train['rows']['train']} training (augmented: {train['rows']['augmented'] or 'none'}), "
        f"{train['rows']['validation']} validation",
        f"- best validation macro-F1 at thresholds 0.5: {fmt(train['best_validation_macro_f1'])} (step {train['best_step']})",
        "",
        "![training curve](train_curve.png)",
        "",
    ]
    if curve:
        lines += table_lines(
            ["step", "epoch", "validation loss", "validation macro-F1"],
            [[p["step"], p["epoch"], p["loss"], p["macro_f1"]] for p in curve],
        )
    return lines


def _challenge_section(result: dict) -> list[str]:
    """Test and challenge side by side, per model: the decision, block recall and false blocks,
    and macro-F1 per attribute."""
    models = result["models"]
    lines = [
        "## Test and challenge side by side",
        "",
        f"The challenge split ({result['splits'].get('challenge', 0)} rows) was written by a writer who "
        "wrote no training rows, to trip keyword models in both directions; it is never trained or "
        "tuned on and is scored with the thresholds tuned on validation.",
        "",
    ]
    header = ["model", "split", "decision accuracy", "block recall", "false-block rate", "mean macro-F1"] + list(ATTRIBUTE_NAMES)
    rows = []
    for key, model in models.items():
        for split in ("test", "challenge"):
            if split not in model:
                continue
            m = model[split]
            point = m["block"]["operating_point"]
            rows.append(
                [key, split, m["decision"]["accuracy"], point["recall"], point["false_block_rate"], m["mean_macro_f1"]]
                + [m["attributes"][name]["macro_f1"] for name in ATTRIBUTE_NAMES]
            )
    return lines + table_lines(header, rows)


def render_markdown(result: dict) -> str:
    """`eval.md` from the evaluation result."""
    models = result["models"]
    ours = models[MODEL_KEY]
    lines = [
        "# LM-Action evaluation",
        "",
        f"Splits: {result['splits'].get('train', 'n/a')} train, {result['splits']['validation']} validation, "
        f"{result['splits']['test']} test rows. Thresholds are tuned on validation only; the test "
        "split is scored once with them. Baselines are fitted on the training split and tuned by "
        "the same rule.",
        "",
        "## Goals (test split)",
        "",
    ]
    lines += table_lines(["goal", "target", "reached", "met"], [[g["goal"], g["target"], g["value"], g["met"]] for g in result["goals"]])

    if any("challenge" in m for m in models.values()):
        lines += _challenge_section(result)

    lines += ["## Training", ""] + _training_section(result.get("train"))

    lines += ["## Attributes (test split)", ""]
    for name in ATTRIBUTE_NAMES:
        values = ATTRIBUTES_BY_NAME[name].values
        header = ["model", "macro-F1"] + [f"F1 {v}" for v in values] + [
            "macro P", "macro R", "ROC-AUC", "PR-AUC", "log loss", "ECE"
        ]
        rows = []
        for key, model in models.items():
            m = model["test"]["attributes"][name]
            rows.append(
                [key, m["macro_f1"]]
                + [m["per_class"][v]["f1"] for v in values]
                + [m["macro_precision"], m["macro_recall"], m["roc_auc"], m["pr_auc"], m["log_loss"], m["ece"]]
            )
        lines += [f"### {name}", ""] + table_lines(header, rows)
        per_class = ours["test"]["attributes"][name]["per_class"]
        lines += table_lines(
            ["LM-Action class", "precision", "recall", "F1", "support", "ROC-AUC (1-vs-rest)", "PR-AUC"],
            [[v, c["precision"], c["recall"], c["f1"], c["support"], c["roc_auc"], c["pr_auc"]] for v, c in per_class.items()],
        )
        confusion = ours["test"]["attributes"][name]["confusion"]
        lines += ["LM-Action confusion (rows gold, columns predicted):", ""]
        lines += table_lines(["gold \\ predicted"] + confusion["labels"], [[lab] + row for lab, row in zip(confusion["labels"], confusion["matrix"])])

    lines += ["## Decisions (test split)", ""]
    lines += table_lines(
        ["model", "accuracy", "macro-F1"] + [f"recall {d}" for d in DECISIONS],
        [
            [key, m["test"]["decision"]["accuracy"], m["test"]["decision"]["macro_f1"]]
            + [m["test"]["decision"]["per_class"][d]["recall"] for d in DECISIONS]
            for key, m in models.items()
        ],
    )
    confusion = ours["test"]["decision"]["confusion"]
    lines += ["LM-Action decision confusion (rows gold, columns predicted):", ""]
    lines += table_lines(["gold \\ predicted"] + confusion["labels"], [[lab] + row for lab, row in zip(confusion["labels"], confusion["matrix"])])
    rates = list(ours["test"]["block"]["recall_at_false_block_rate"])
    lines += [
        "Block recall (gold `block`) at fixed false-block rates (gold `allow` commands blocked), "
        "reading the curve of a common shift of the three block thresholds on test; and at the "
        "validation-tuned thresholds:",
        "",
    ]
    lines += table_lines(
        ["model"] + [f"recall @ FBR <= {r}" for r in rates] + ["tuned: recall", "tuned: FBR"],
        [
            [key]
            + [m["test"]["block"]["recall_at_false_block_rate"][r] for r in rates]
            + [m["test"]["block"]["operating_point"]["recall"], m["test"]["block"]["operating_point"]["false_block_rate"]]
            for key, m in models.items()
        ],
    )

    for column, title in (("by_language", "language"), ("by_domain", "domain")):
        lines += [f"## By {title} (test split; macro-F1 over the classes present in each group)", ""]
        groups = ours["test"][column]
        header = [title, "n"] + list(ATTRIBUTE_NAMES) + ["mean"] + [f"{k} mean" for k in models if k != MODEL_KEY]
        rows = []
        for value, entry in groups.items():
            rows.append(
                [value, entry["n"]]
                + [entry["attributes"][a]["macro_f1"] for a in ATTRIBUTE_NAMES]
                + [entry["mean_macro_f1"]]
                + [m["test"][column][value]["mean_macro_f1"] for k, m in models.items() if k != MODEL_KEY]
            )
        lines += table_lines(header, rows)

    lines += ["## Thresholds (tuned on validation)", "", result["threshold_rule"], ""]
    outputs = list(ours["thresholds"])
    lines += table_lines(
        ["model"] + outputs + ["block offsets"],
        [[key] + [m["thresholds"][o] for o in outputs] + [block_offsets_text(m["block_shift"])] for key, m in models.items()],
    )
    lines += ["Validation at the tuned thresholds (in-sample for the thresholds):", ""]
    lines += table_lines(
        ["model", "mean macro-F1", "block recall", "false-block rate"],
        [
            [key, m["validation"]["mean_macro_f1"], m["validation"]["block"]["operating_point"]["recall"],
             m["validation"]["block"]["operating_point"]["false_block_rate"]]
            for key, m in models.items()
        ],
    )

    calibration = result.get("calibration")
    if calibration:
        lines += [
            "## Calibration (fitted on validation, folded into the head)",
            "",
            "Per-output Platt scaling of the logit (`scale * logit + bias`), fitted on validation; "
            "the expected calibration error of each attribute before and after:",
            "",
        ]
        splits = list(calibration["ece"])
        lines += table_lines(
            ["attribute"] + [f"{split} ECE {when}" for split in splits for when in ("before", "after")],
            [
                [name] + [calibration["ece"][split][when][name] for split in splits for when in ("before", "after")]
                for name in calibration["ece"][splits[0]]["before"]
            ],
        )
        fitted = calibration["fitted"]["outputs"]
        lines += table_lines(["output", "scale", "bias"], [[k, v["scale"], v["bias"]] for k, v in fitted.items()])

    robustness = result.get("robustness")
    if robustness:
        lines += [
            f"## Disguised commands ({robustness['split']} split)",
            "",
            "Each row rewritten once by each attack form (seeded by its id); the share of rows whose "
            "disguised variant gets the original's decision, and the gold block rows the model "
            "blocked that the disguise let through:",
            "",
        ]
        decisions = list(DECISIONS)
        lines += table_lines(
            ["form", "rows", "same decision"] + [f"same ({d})" for d in decisions] + ["block escaped"],
            [
                [kind, f["rows"], f["agreement"]]
                + [f["agreement_by_gold_decision"].get(d) for d in decisions]
                + [f["blocked_then_not_blocked"]]
                for kind, f in robustness["forms"].items()
            ]
            + [["all forms", sum(f["rows"] for f in robustness["forms"].values()), robustness["agreement"]]
               + [None] * len(decisions) + [sum(f["blocked_then_not_blocked"] for f in robustness["forms"].values())]],
        )

    lines += [f"## The {len(result['confident_errors'])} most confident errors (LM-Action, test split)", ""]
    lines += table_lines(
        ["id", "lang", "attribute", "gold", "predicted", "confidence", "text"],
        [[e["id"], e["lang"], e["attribute"], e["gold"], e["predicted"], e["confidence"], e["text"]] for e in result["confident_errors"]],
    )
    lines += ["## Figures", ""]
    lines += [f"![{name}]({file})" for name, file in FIGURES.items()]
    return "\n".join(lines) + "\n"


def write_report(result: dict, out_dir: Path) -> dict[str, Path]:
    """Write eval.json, eval.md and the figures into `out_dir`; returns the paths by name."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = plot_figures(result, out_dir)
    result["figures"] = {name: path.name for name, path in paths.items()}
    paths["json"] = out_dir / "eval.json"
    paths["json"].write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    paths["markdown"] = out_dir / "eval.md"
    paths["markdown"].write_text(render_markdown(result), encoding="utf-8")
    return paths
