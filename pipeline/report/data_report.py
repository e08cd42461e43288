"""The data report of `split`: `build/reports/data.md`, PNG plots and `data.json`.

Counts per attribute value, label combination, domain, language, length and source, per
split; rows removed by reason (clean and dedup); duplicate-cluster and split-group sizes; a 2-D
projection of the embeddings colored by each label; labeler agreement when the `label` stage
ran; and the what-if table that justifies the dedup threshold: rows removed, cross-split
near-duplicate pairs and the validation macro-F1 of `TfidfLogReg` at each threshold, with a
grouped split and (for contrast) a plain random split.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.core.config import GENERATED_DIR, BuildLayout, to_dict
from pipeline.core.decision import decisions_from_frame
from pipeline.core.io import read_stage_output, write_json
from pipeline.core.schema import ATTRIBUTES, DOMAIN, ID, LANG, MODEL_OUTPUTS, SOURCE, TEXT, targets_from_frame
from pipeline.core.text_forms import corpus_figures, goal_report
from pipeline.data.clean import label_combination, read_bundled_corpus
from pipeline.data.corpus_stats import length_bucket
from pipeline.data.dedup import EMBEDDING, LEXICAL, DedupConfig, SimilarityPairs, SpaceSet, build_spaces, merge_near_duplicates
from pipeline.data.split import CLUSTER_ID, SPLIT, SPLITS, SplitConfig, SplitResult, cross_split_pairs, split
from pipeline.model.baselines import TfidfLogReg
from pipeline.model.metrics import gold_classes, mean_macro_f1
from pipeline.report.markdown import markdown_table
from pipeline.report.plots import figure

log = logging.getLogger(__name__)

TOP_COMBINATIONS = 15


# ---------------------------------------------------------------------------------------------
# What-if: the dedup threshold


@dataclass
class WhatIfRow:
    threshold: str
    lexical_threshold: str
    rows_removed: int
    rows_left: int
    label_conflict_pairs: int
    val_macro_f1: float
    val_macro_f1_std: float
    cross_split_pairs: int
    random_val_macro_f1: float | None
    random_cross_split_pairs: int | None


def baseline_macro_f1(train: pd.DataFrame, validation: pd.DataFrame, seed: int, bootstrap: int = 200) -> tuple[float, float]:
    """Mean over attributes of the validation macro-F1 of `TfidfLogReg` (outputs at 0.5), and
    its bootstrap standard deviation over resampled validation rows (the noise of the score)."""
    model = TfidfLogReg(seed).fit(train[TEXT].tolist(), targets_from_frame(train))
    probs = model.predict_proba(validation[TEXT].tolist())
    gold = gold_classes(validation)
    thresholds = np.full(len(MODEL_OUTPUTS), 0.5)
    score = mean_macro_f1(gold, probs, thresholds)["macro_f1"]
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(bootstrap):
        pick = rng.integers(0, len(validation), len(validation))
        samples.append(mean_macro_f1({k: v[pick] for k, v in gold.items()}, probs[pick], thresholds)["macro_f1"])
    return score, float(np.std(samples)) if samples else float("nan")


def what_if_table(
    clean_frame: pd.DataFrame,
    pairs: SimilarityPairs,
    spaces: SpaceSet,
    config: SplitConfig,
    dedup_config: DedupConfig,
) -> list[WhatIfRow]:
    """Dedup `clean_frame` at each what-if threshold (and not at all), split it the same way
    and score the quick baseline. `pairs` must reach down to the link thresholds."""
    from tqdm.auto import tqdm

    settings: list[tuple[float | None, float | None]] = list(
        zip(config.what_if_thresholds, config.what_if_lexical_thresholds)
    ) + [(None, None)]
    clean_frame = clean_frame.reset_index(drop=True)
    position = pd.Series(np.arange(len(clean_frame)), index=clean_frame[ID].to_numpy())
    reference = dedup_config.thresholds()
    rows: list[WhatIfRow] = []
    for threshold, lexical in tqdm(settings, desc="what-if", leave=False):
        result = merge_near_duplicates(clean_frame, pairs, None, {EMBEDDING: threshold, LEXICAL: lexical})
        kept = position.loc[result.frame[ID]].to_numpy()
        local = pairs.within(kept)
        done = split(result.frame, local.above(config.link_thresholds()), local.above(reference), config)
        frame = done.frame
        f1, f1_std = baseline_macro_f1(frame[frame[SPLIT] == "train"], frame[frame[SPLIT] == "validation"], config.seed)
        random_f1 = random_cross = None
        if config.what_if_random_split:
            rng = np.random.default_rng(config.seed)
            random_splits = np.array(SPLITS, dtype=object)[
                np.searchsorted(np.cumsum(config.fractions)[:-1], rng.random(len(frame)), side="right")
            ]
            random_f1, _ = baseline_macro_f1(
                frame[random_splits == "train"], frame[random_splits == "validation"], config.seed, bootstrap=0
            )
            random_cross = cross_split_pairs(random_splits, local.above(reference))
        rows.append(
            WhatIfRow(
                "none" if threshold is None else f"{threshold:.2f}",
                "none" if lexical is None else f"{lexical:.2f}",
                len(result.removed),
                len(result.frame),
                len(result.conflicts),
                round(f1, 4),
                round(f1_std, 4),
                done.cross_split_pairs,
                None if random_f1 is None else round(random_f1, 4),
                random_cross,
            )
        )
        log.info("what-if %s: %d removed, val macro-F1 %.4f", rows[-1].threshold, rows[-1].rows_removed, f1)
    return rows


# ---------------------------------------------------------------------------------------------
# Counts


def counts_by_split(frame: pd.DataFrame, values: pd.Series, order: list[str] | None = None) -> pd.DataFrame:
    """A table of value counts, one column per split plus `all`."""
    table = pd.crosstab(values, frame[SPLIT]).reindex(columns=list(SPLITS), fill_value=0)
    table["all"] = table.sum(axis=1)
    if order is not None:
        table = table.reindex(order, fill_value=0)
    else:
        table = table.sort_values("all", ascending=False)
    table.index = table.index.astype(str)
    return table.astype(int)


def split_tables(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Every count table of the report, keyed by its title."""
    tables: dict[str, pd.DataFrame] = {"rows": counts_by_split(frame, pd.Series("rows", index=frame.index))}
    for attribute in ATTRIBUTES:
        tables[attribute.name] = counts_by_split(frame, frame[attribute.name], list(attribute.values))
    combos = counts_by_split(frame, label_combination(frame))
    if len(combos) > TOP_COMBINATIONS:
        rest = combos.iloc[TOP_COMBINATIONS:].sum().to_frame(f"other ({len(combos) - TOP_COMBINATIONS} combinations)").T
        combos = pd.concat([combos.iloc[:TOP_COMBINATIONS], rest])
    tables["label combination (" + "|".join(a.name for a in ATTRIBUTES) + ")"] = combos
    tables["domain"] = counts_by_split(frame, frame[DOMAIN])
    tables["language"] = counts_by_split(frame, frame[LANG])
    words = frame[TEXT].str.split().str.len()
    buckets = sorted(words.map(length_bucket).unique(), key=lambda b: int(b.lstrip(">").split("-")[0]))
    tables["length (words)"] = counts_by_split(frame, words.map(length_bucket), buckets)
    tables["source"] = counts_by_split(frame, frame[SOURCE])
    return tables


def frame_table(table: pd.DataFrame, index_name: str = "") -> str:
    """A count table (index and columns) as Markdown, the counts aligned right."""
    rows = [[i, *row] for i, row in zip(table.index, table.to_numpy().tolist())]
    header = [index_name, *(str(c) for c in table.columns)]
    return markdown_table(header, rows, right_aligned=range(1, len(header)))


# ---------------------------------------------------------------------------------------------
# Plots


def plot_histogram(sizes: dict[str, int], title: str, path: Path) -> Path:
    keys = sorted(sizes, key=int)
    with figure(path, figsize=(6, 3.5)) as (fig, ax):
        ax.bar([str(k) for k in keys], [sizes[k] for k in keys], color="#4477aa")
        ax.set_yscale("log")
        ax.set_xlabel("size (rows)")
        ax.set_ylabel("count (log)")
        ax.set_title(title)
    return path


def plot_split_counts(tables: dict[str, pd.DataFrame], path: Path) -> Path:
    names = [a.name for a in ATTRIBUTES]
    with figure(path, 1, len(names), figsize=(3 * len(names), 3.2)) as (fig, axes):
        for ax, name in zip(axes, names):
            table = tables[name][list(SPLITS)]
            share = table / table.sum(axis=0).replace(0, 1)
            bottom = np.zeros(len(SPLITS))
            for value, row in share.iterrows():
                ax.bar(list(SPLITS), row.to_numpy(), bottom=bottom, label=value)
                bottom += row.to_numpy()
            ax.set_title(name, fontsize=9)
            ax.tick_params(axis="x", labelsize=7)
            ax.legend(fontsize=6, loc="lower right")
        fig.suptitle("label shares per split")
    return path


def projection_2d(vectors: np.ndarray, method: str, seed: int) -> np.ndarray:
    """2-D coordinates of `vectors` by PCA or (PCA-50 then) t-SNE."""
    from sklearn.decomposition import PCA

    if method == "tsne" and len(vectors) > 5:
        from sklearn.manifold import TSNE

        reduced = PCA(n_components=min(50, vectors.shape[1], len(vectors)), random_state=seed).fit_transform(vectors)
        return TSNE(n_components=2, random_state=seed, init="pca", perplexity=min(30, len(vectors) - 1)).fit_transform(reduced)
    return PCA(n_components=2, random_state=seed).fit_transform(vectors)


def plot_projection(frame: pd.DataFrame, coords: np.ndarray, method: str, path: Path) -> Path:
    with figure(path, 2, 3, figsize=(13, 8)) as (fig, axes):
        for ax, attribute in zip(axes.ravel(), ATTRIBUTES):
            for value in attribute.values:
                mask = (frame[attribute.name] == value).to_numpy()
                ax.scatter(coords[mask, 0], coords[mask, 1], s=3, alpha=0.5, label=f"{value} ({mask.sum()})")
            ax.set_title(attribute.name)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.legend(markerscale=4, fontsize=7)
        fig.suptitle(f"{method.upper()} projection of the sentence embeddings, colored by label")
    return path


# ---------------------------------------------------------------------------------------------
# The report


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def removed_by_reason(clean_summary: dict | None, dedup_summary: dict | None) -> dict[str, int]:
    out: dict[str, int] = {}
    if clean_summary:
        out.update({f"clean: {k}": int(v) for k, v in clean_summary.get("removed", {}).items()})
    if dedup_summary:
        out["dedup: near_duplicate"] = int(dedup_summary.get("removed_near_duplicates", 0))
    return out


def agreement_stats(label_report: dict | None) -> dict[str, Any] | None:
    """Per-attribute agreement from the `label` stage's report, when it ran."""
    if not label_report or "agreement" not in label_report:
        return None
    return label_report["agreement"]


def source_table(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows per source (`seed` or the generator), with their languages and decisions."""
    decisions = pd.Series(decisions_from_frame(frame), index=frame.index)
    out = []
    for source, part in frame.groupby(SOURCE, sort=True):
        out.append(
            {
                "source": str(source),
                "rows": int(len(part)),
                "languages": {str(k): int(v) for k, v in part[LANG].value_counts().items()},
                "decisions": {str(k): int(v) for k, v in decisions[part.index].value_counts().items()},
            }
        )
    return sorted(out, key=lambda r: -r["rows"])


def write_data_report(
    layout: BuildLayout,
    result: SplitResult,
    spaces: SpaceSet,
    config: SplitConfig,
    dedup_config: DedupConfig,
    embedder,
) -> list[Path]:
    """Write data.md, data.json and the PNGs under `layout.reports`; returns the paths."""
    reports = layout.reports
    reports.mkdir(parents=True, exist_ok=True)
    frame = result.frame
    clean_summary = _read_json(reports / "clean.json")
    dedup_summary = _read_json(reports / "dedup.json")
    # The agreement of this build's `label` run, else the one shipped with the bundled rows.
    label_report = _read_json(reports / "label_agreement.json") or (
        _read_json(GENERATED_DIR / "label_agreement.json") if read_bundled_corpus(layout) else None
    )

    what_if: list[WhatIfRow] = []
    if layout.cleaned.is_file():
        clean_frame = read_stage_output(layout.cleaned, "clean")
        clean_spaces = build_spaces(clean_frame, dedup_config, embedder)
        loosest = {
            EMBEDDING: min([config.link_threshold, dedup_config.threshold, *config.what_if_thresholds]),
            LEXICAL: min([config.lexical_link_threshold, dedup_config.lexical_threshold, *config.what_if_lexical_thresholds]),
        }
        clean_pairs = clean_spaces.search(loosest, dedup_config, embedder.device)
        what_if = what_if_table(clean_frame, clean_pairs, clean_spaces, config, dedup_config)

    tables = split_tables(frame)
    paths = [plot_split_counts(tables, reports / "data_label_shares.png")]
    if dedup_summary and dedup_summary.get("cluster_size_histogram"):
        paths.append(plot_histogram(dedup_summary["cluster_size_histogram"], "near-duplicate cluster sizes (dedup)", reports / "data_dup_clusters.png"))
    group_hist = {str(k): v for k, v in result.group_sizes.items()}
    paths.append(plot_histogram(group_hist, "split group sizes", reports / "data_split_groups.png"))

    projected = ""
    embedded = [(lang, positions, vectors) for lang, (kind, positions, vectors) in spaces.languages.items() if kind == EMBEDDING]
    if embedded:
        positions = np.concatenate([p for _, p, _ in embedded])
        vectors = np.concatenate([v for _, _, v in embedded])
        coords = projection_2d(vectors, config.projection, config.seed)
        paths.append(plot_projection(frame.iloc[positions].reset_index(drop=True), coords, config.projection, reports / "data_projection.png"))
        projected = ", ".join(lang for lang, _, _ in embedded)

    removed = removed_by_reason(clean_summary, dedup_summary)
    agreement = agreement_stats(label_report)
    data = {
        "rows": {s: int((frame[SPLIT] == s).sum()) for s in SPLITS},
        "rows_total": len(frame),
        "groups": int(frame[CLUSTER_ID].nunique()),
        "largest_group": int(max(result.group_sizes)),
        "group_size_histogram": {str(k): v for k, v in result.group_sizes.items()},
        "cross_split_pairs_above_dedup_threshold": result.cross_split_pairs,
        "groups_straddling_splits": result.straddling_groups,
        "removed_by_reason": removed,
        "clean": clean_summary,
        "dedup": dedup_summary,
        "what_if": [r.__dict__ for r in what_if],
        "counts": {title: {str(i): {str(c): int(v) for c, v in row.items()} for i, row in t.iterrows()} for title, t in tables.items()},
        "label_agreement": agreement,
        "forms": corpus_figures(frame),
        "sources": source_table(frame),
        "projection": {"method": config.projection, "languages": projected},
        "config": {"split": to_dict(config), "dedup": to_dict(dedup_config)},
    }
    write_json(reports / "data.json", data)
    md = reports / "data.md"
    md.write_text(render_markdown(data, tables, what_if, dedup_config, [p.name for p in paths]), encoding="utf-8")
    return [md, reports / "data.json", *paths]


def render_markdown(
    data: dict, tables: dict[str, pd.DataFrame], what_if: list[WhatIfRow], dedup_config: DedupConfig, images: list[str]
) -> str:
    rows = data["rows"]
    lines = [
        "# LM-Action data report",
        "",
        f"{data['rows_total']} rows: " + ", ".join(f"{k} {v}" for k, v in rows.items())
        + f". {data['groups']} split groups (largest {data['largest_group']} rows).",
        "",
        f"Cross-split pairs above the dedup threshold ({dedup_config.threshold:.2f} embedding, "
        f"{dedup_config.lexical_threshold:.2f} TF-IDF): **{data['cross_split_pairs_above_dedup_threshold']}**; "
        f"groups straddling splits: **{data['groups_straddling_splits']}**.",
        "",
        "## Rows removed",
        "",
        "| reason | rows |",
        "|---|---:|",
        *[f"| {k} | {v} |" for k, v in data["removed_by_reason"].items()],
    ]
    dedup_summary = data.get("dedup") or {}
    if dedup_summary:
        lines += [
            "",
            f"Near-duplicate pairs with different labels kept for review: {dedup_summary.get('label_conflict_pairs', 0)} "
            f"({dedup_summary.get('label_conflict_contrast_pairs', 0)} are intended contrast pairs); "
            "see `dedup_conflicts.csv`. Every removed row and the row it duplicates: `dedup_removed.csv`.",
        ]
    if what_if:
        lines += [
            "",
            "## Dedup threshold: what-if",
            "",
            "Each row dedups the cleaned corpus at the threshold (embedding cosine; TF-IDF cosine for "
            "languages outside the embedding model), splits it as this stage does and trains "
            "`TfidfLogReg` on train; `val macro-F1` is the mean over attributes of the validation "
            "macro-F1 (± its bootstrap standard deviation over validation rows: smaller differences "
            "are noise). `cross-split` counts pairs above the chosen threshold that cross splits. The "
            "random-split columns use a plain random 80/10/10 split of the same rows: the score a "
            "leaky split would report.",
            "",
            "| threshold | TF-IDF threshold | rows removed | rows left | label-conflict pairs | val macro-F1 | cross-split | random split val macro-F1 | random split cross-split |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in what_if:
            rf1 = "-" if r.random_val_macro_f1 is None else f"{r.random_val_macro_f1:.4f}"
            rcs = "-" if r.random_cross_split_pairs is None else str(r.random_cross_split_pairs)
            lines.append(
                f"| {r.threshold} | {r.lexical_threshold} | {r.rows_removed} | {r.rows_left} | {r.label_conflict_pairs} | "
                f"{r.val_macro_f1:.4f} ± {r.val_macro_f1_std:.4f} | {r.cross_split_pairs} | {rf1} | {rcs} |"
            )
        lines += ["", f"Chosen: {dedup_config.threshold:.2f} (embedding) / {dedup_config.lexical_threshold:.2f} (TF-IDF)."]
    lines += ["", "## Counts per split"]
    for title, table in tables.items():
        lines += ["", f"### {title}", "", frame_table(table)]
    lines += ["", "## Sources", "", "| source | rows | languages | decisions |", "|---|---:|---|---|"]
    for s in data.get("sources") or []:
        langs = ", ".join(f"{k} {v}" for k, v in s["languages"].items())
        decs = ", ".join(f"{k} {v}" for k, v in s["decisions"].items())
        lines.append(f"| `{s['source']}` | {s['rows']} | {langs} | {decs} |")
    forms = data.get("forms")
    if forms:
        lines += ["", "## Forms and corpus goals", "", "| corpus goal | measured | goal | met |", "|---|---:|---:|---|"]
        for goal, value, met in goal_report(forms):
            lines.append(f"| {goal.meaning} | {goal.show(value)} | {goal.bounds()} | {'yes' if met else 'no'} |")
    agreement = data.get("label_agreement")
    lines += ["", "## Labeler agreement", ""]
    if agreement:
        lines.append("```json")
        lines.append(json.dumps(agreement, indent=2, ensure_ascii=False)[:6000])
        lines.append("```")
    else:
        lines.append("The `label` stage has not run (no `label_agreement.json`): every row is hand-labeled seed data or unreviewed.")
    lines += ["", "## Plots", ""]
    lines += [f"![{name}]({name})" for name in images]
    if data["projection"]["languages"]:
        lines += ["", f"The projection shows the rows embedded by the model ({data['projection']['languages']})."]
    return "\n".join(lines) + "\n"
