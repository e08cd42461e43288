"""The dataset card: `DatasetCardData` with `dataset_info` and `configs`, and the tables of the
staged files and the data reports (splits, labels, decisions, domains, sources, agreement)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from pipeline.core.decision import DECISIONS, decisions_from_frame
from pipeline.core.schema import (
    ATTRIBUTE_NAMES,
    ATTRIBUTES,
    ATTRIBUTES_BY_NAME,
    CONTRAST_OF,
    DOMAIN,
    DOMAINS,
    ID,
    LANG,
    LANGUAGES,
    SOURCE,
    TEXT,
    group_of,
)
from pipeline.core.text_forms import goal_report
from pipeline.data.split import CLUSTER_ID
from pipeline.hub.cards.checks import TASK_TYPE, parse_card, size_category
from pipeline.hub.cards.format import Figure, policy_text, render_template, share
from pipeline.hub.cards.release import HubRepos, Release
from pipeline.report.markdown import fmt, markdown_table

DATASET_TEMPLATE = "dataset_card.md"
SEED_SOURCE = "seed"  # `source` of hand-written corpus rows (`schema.read_corpus_file`'s default)

_COLUMN_MEANINGS = {
    ID: "unique row id; translations share the part before `/` ({group}), which keeps them in one split",
    TEXT: "the command, as a user would type it to a computer-using agent",
    LANG: "language code",
    DOMAIN: "what the command is about",
    SOURCE: "`seed` for hand-written commands, else the LLM that generated the row",
    CONTRAST_OF: "id of the row this one minimally contrasts with (few words changed, labels differ); empty if none",
    CLUSTER_ID: "split group: near-duplicates (at the link threshold), translations and contrast pairs share one, and a group never straddles splits",
}


@dataclass
class DatasetFacts:
    """The staged dataset as the card describes it (read from its parquet files)."""

    files: dict[str, list[str]]  # split -> paths relative to the dataset folder
    features: Any  # datasets.Features of the files
    frames: dict[str, pd.DataFrame]  # split -> rows, class labels decoded to their names
    num_bytes: dict[str, int]  # split -> in-memory Arrow bytes
    download_size: int  # bytes of the parquet files

    @property
    def num_rows(self) -> int:
        return sum(len(f) for f in self.frames.values())

    @property
    def all_rows(self) -> pd.DataFrame:
        return pd.concat(list(self.frames.values()), ignore_index=True)


@dataclass
class DataReports:
    """The data stages' JSON reports; each is None when its stage did not run."""

    data: dict | None = None
    clean: dict | None = None
    dedup: dict | None = None
    generate: dict | None = None
    label: dict | None = None
    figures: list[Figure] = field(default_factory=list)


def schema_rows(features: Any) -> list[list[str]]:
    """(column, type, values, meaning) for every column of the dataset features."""
    rows = []
    for name, feature in features.items():
        if name in ATTRIBUTES_BY_NAME:
            attribute = ATTRIBUTES_BY_NAME[name]
            values = ", ".join(f"{i} = `{v}`" for i, v in enumerate(attribute.values))
            rows.append([f"`{name}`", "ClassLabel", values, attribute.meaning])
            continue
        kind = type(feature).__name__
        dtype = getattr(feature, "dtype", kind)
        values = ""
        if name == LANG:
            values = ", ".join(f"`{v}`" for v in LANGUAGES)
        elif name == DOMAIN:
            values = f"{len(DOMAINS)} domains (table below)"
        if kind == "ClassLabel":
            values = ", ".join(f"{i} = `{v}`" for i, v in enumerate(feature.names))
        meaning = _COLUMN_MEANINGS.get(name, "").replace("{group}", "`pipeline.core.schema.group_of`")
        rows.append([f"`{name}`", "ClassLabel" if kind == "ClassLabel" else str(dtype), values, meaning])
    return rows


def _split_names(facts: DatasetFacts) -> list[str]:
    return list(facts.frames)


def languages_present(frame: pd.DataFrame) -> list[str]:
    """The languages of a frame's rows, in `schema.LANGUAGES` order (all of them without `lang`)."""
    present = set(frame[LANG]) if LANG in frame.columns else set(LANGUAGES)
    return [lang for lang in LANGUAGES if lang in present] + sorted(present - set(LANGUAGES))


def dataset_card_data(facts: DatasetFacts, license: str, pretty_name: str, tags: Sequence[str]):
    """`DatasetCardData` with the fields the Hub reads, `dataset_info` and `configs` written by
    `datasets`' own helpers (the format `push_to_hub` writes)."""
    from datasets import DatasetInfo, SplitDict, SplitInfo
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCardData

    rows = facts.all_rows
    sources = set(rows[SOURCE]) if SOURCE in rows.columns else {SEED_SOURCE}
    creators = (["expert-generated"] if SEED_SOURCE in sources else []) + (
        ["machine-generated"] if sources - {SEED_SOURCE} else []
    )
    languages = languages_present(rows)
    card_data = DatasetCardData(
        pretty_name=pretty_name,
        license=license,
        language=languages,
        multilinguality="multilingual" if len(languages) > 1 else "monolingual",
        annotations_creators=list(creators),
        language_creators=list(creators),
        source_datasets=["original"],
        size_categories=[size_category(facts.num_rows)],
        task_categories=[TASK_TYPE],
        task_ids=["multi-label-classification", "multi-class-classification"],
        tags=list(tags),
    )
    splits = SplitDict()
    for name in _split_names(facts):
        splits.add(SplitInfo(name=name, num_bytes=facts.num_bytes[name], num_examples=len(facts.frames[name])))
    info = DatasetInfo(
        features=facts.features,
        splits=splits,
        download_size=facts.download_size,
        dataset_size=sum(facts.num_bytes.values()),
    )
    DatasetInfosDict({"default": info}).to_dataset_card_data(card_data)
    data_files = [{"split": name, "path": paths[0] if len(paths) == 1 else paths} for name, paths in facts.files.items()]
    MetadataConfigs({"default": {"data_files": data_files}}).to_dataset_card_data(card_data)
    return card_data


def _label_distribution(facts: DatasetFacts) -> str:
    splits = _split_names(facts)
    rows = []
    total = facts.all_rows
    for attribute in ATTRIBUTES:
        for value in attribute.values:
            counts = [int((facts.frames[s][attribute.name] == value).sum()) for s in splits]
            n = int((total[attribute.name] == value).sum())
            rows.append([f"`{attribute.name}`", f"`{value}`", *counts, n, share(n, len(total))])
    return markdown_table(["attribute", "value", *splits, "all", "share"], rows)


def _decision_distribution(facts: DatasetFacts) -> str:
    splits = _split_names(facts)
    per_split = {s: pd.Series(decisions_from_frame(facts.frames[s])).value_counts() for s in splits}
    total = facts.num_rows
    rows = []
    for d in DECISIONS:
        counts = [int(per_split[s].get(d, 0)) for s in splits]
        rows.append([f"`{d}`", *counts, sum(counts), share(sum(counts), total)])
    return markdown_table(["decision", *splits, "all", "share"], rows)


def _split_table(facts: DatasetFacts) -> str:
    langs = languages_present(facts.all_rows)
    rows = []
    for name, frame in facts.frames.items():
        by_lang = frame[LANG].value_counts() if LANG in frame.columns else pd.Series(dtype=int)
        groups = frame[ID].map(group_of).nunique() if ID in frame.columns else None
        rows.append([f"`{name}`", len(frame), *[int(by_lang.get(lang, 0)) for lang in langs], groups])
    all_rows = facts.all_rows
    groups_all = all_rows[ID].map(group_of).nunique() if ID in all_rows.columns else None
    by_lang = all_rows[LANG].value_counts() if LANG in all_rows.columns else pd.Series(dtype=int)
    rows.append(["all", len(all_rows), *[int(by_lang.get(lang, 0)) for lang in langs], groups_all])
    return markdown_table(["split", "rows", *[f"`{lang}`" for lang in langs], "id groups"], rows)


def straddling(facts: DatasetFacts, key) -> int:
    """How many groups (`key` maps a frame to one group label per row) appear in more than one
    split, counted from the files."""
    seen: dict[Any, set[str]] = {}
    for name, frame in facts.frames.items():
        for g in pd.unique(key(frame)):
            seen.setdefault(g, set()).add(name)
    return sum(1 for s in seen.values() if len(s) > 1)


def leakage_checks(facts: DatasetFacts) -> list[str]:
    """Sentences on groups shared by splits, computed from the staged files."""
    columns = set.intersection(*(set(f.columns) for f in facts.frames.values()))
    out = []
    if CLUSTER_ID in columns:
        n = straddling(facts, lambda f: f[CLUSTER_ID])
        out.append(f"split groups (`{CLUSTER_ID}`) found in more than one split: {n}")
    if ID in columns:
        n = straddling(facts, lambda f: f[ID].map(group_of))
        out.append(f"commands whose translations sit in another split (`{ID}` groups): {n}")
    return out


def what_if_table(data: dict | None) -> str:
    """The split stage's table of dedup thresholds (rows removed, leakage, baseline macro-F1 with
    its bootstrap standard deviation where the report has it)."""
    rows = (data or {}).get("what_if") or []
    if not rows:
        return ""

    def score(row: dict) -> str:
        f1, std = row.get("val_macro_f1"), row.get("val_macro_f1_std")
        return fmt(f1) if std is None or f1 is None else f"{f1:.4f} ± {std:.4f}"

    header = [
        "embedding threshold",
        "TF-IDF threshold",
        "rows removed",
        "rows left",
        "label-conflict pairs",
        "val macro-F1 (grouped split)",
        "cross-split pairs",
        "val macro-F1 (random split)",
        "cross-split pairs (random split)",
    ]
    table = [
        [
            r.get("threshold"),
            r.get("lexical_threshold"),
            r.get("rows_removed"),
            r.get("rows_left"),
            r.get("label_conflict_pairs"),
            score(r),
            r.get("cross_split_pairs"),
            r.get("random_val_macro_f1"),
            r.get("random_cross_split_pairs"),
        ]
        for r in rows
    ]
    return markdown_table(header, table)


def _domain_table(facts: DatasetFacts) -> str:
    rows_all = facts.all_rows
    if DOMAIN not in rows_all.columns:
        return ""
    langs = languages_present(rows_all)
    rows = []
    for domain in DOMAINS:
        part = rows_all[rows_all[DOMAIN] == domain]
        if len(part):
            by_lang = part[LANG].value_counts() if LANG in part.columns else pd.Series(dtype=int)
            rows.append([f"`{domain}`", len(part), *[int(by_lang.get(lang, 0)) for lang in langs]])
    return markdown_table(["domain", "rows", *[f"`{lang}`" for lang in langs]], rows)


def _source_table(facts: DatasetFacts) -> tuple[str, list[str]]:
    rows_all = facts.all_rows
    if SOURCE not in rows_all.columns:
        return "", []
    counts = rows_all[SOURCE].value_counts()
    rows = [[f"`{name}`", int(n), share(int(n), len(rows_all))] for name, n in counts.items()]
    models = sorted(str(s) for s in counts.index if s != SEED_SOURCE)
    return markdown_table(["source", "rows", "share"], rows), models


def _agreement(label: dict | None) -> dict | None:
    """Labeling agreement rows from the `label` stage's summary, or None when it did not run."""
    if not label or not label.get("agreement"):
        return None
    agreement = label["agreement"]
    rows = []
    for name in (*ATTRIBUTE_NAMES, "decision"):
        a = (agreement.get("attributes") or {}).get(name)
        if a is None:
            continue
        cohen = ", ".join(f"{k} {fmt(v, 3)}" for k, v in (a.get("cohen_kappa") or {}).items())
        weighted = ", ".join(f"{k} {fmt(v, 3)}" for k, v in (a.get("linear_weighted_kappa") or {}).items())
        rows.append([f"`{name}`", a.get("pairs"), a.get("observed_agreement"), cohen or "n/a", weighted or "-"])
    return {
        "labelers": agreement.get("labelers") or [],
        "rows": agreement.get("rows"),
        "verdicts": agreement.get("verdicts") or {},
        "disagreements": agreement.get("disagreements"),
        "table": markdown_table(
            ["attribute", "rows compared", "observed agreement", "Cohen's kappa per labeler", "linear-weighted kappa"], rows
        ),
    }


def forms_table(data: dict | None) -> str:
    """The corpus goals (pipeline.core.text_forms) measured on the published rows, from `data.json`."""
    forms = (data or {}).get("forms")
    if not forms:
        return ""
    rows = []
    for goal, value, met in goal_report(forms):
        rows.append([goal.meaning, goal.show(value), goal.bounds(), "yes" if met else "no"])
    return markdown_table(["corpus figure", "measured", "goal", "met"], rows)


def _imbalance_notes(facts: DatasetFacts) -> list[str]:
    rows = facts.all_rows
    notes = []
    if LANG in rows.columns:
        counts = rows[LANG].value_counts()
        notes.append(
            "Language shares: "
            + ", ".join(f"`{lang}` {share(int(n), len(rows))}" for lang, n in counts.items())
            + " of the rows; scores on the smaller language rest on fewer examples."
        )
    rare = []
    for attribute in ATTRIBUTES:
        counts = rows[attribute.name].value_counts()
        value = min(attribute.values, key=lambda v: int(counts.get(v, 0)))
        rare.append(f"`{attribute.name}={value}` {share(int(counts.get(value, 0)), len(rows))}")
    notes.append("The rarest value of each attribute: " + ", ".join(rare) + ".")
    return notes


def render_dataset_card(
    facts: DatasetFacts,
    reports: DataReports,
    repos: HubRepos,
    release: Release,
    license: str,
    pretty_name: str,
    tags: Sequence[str],
    folder: Path | None = None,
):
    """The dataset card (`huggingface_hub.DatasetCard`), checked; `folder` is the staged dataset
    folder its data file paths are checked against."""
    card_data = dataset_card_data(facts, license, pretty_name, tags)
    source_table, generators = _source_table(facts)
    data = reports.data or {}
    dedup = reports.dedup or data.get("dedup")
    clean = reports.clean or data.get("clean")
    label = reports.label or ({"agreement": data["label_agreement"]} if data.get("label_agreement") else None)
    text = render_template(
        DATASET_TEMPLATE,
        card_data=card_data.to_yaml(),
        pretty_name=pretty_name,
        repos=repos,
        release=release,
        num_rows=facts.num_rows,
        languages=languages_present(facts.all_rows),
        splits=_split_names(facts),
        split_table=_split_table(facts),
        leakage_checks=leakage_checks(facts),
        what_if_table=what_if_table(reports.data),
        split_settings=((reports.data or {}).get("config") or {}).get("split") or {},
        schema_table=markdown_table(["column", "type", "values", "meaning"], schema_rows(facts.features)),
        policy=policy_text(),
        decisions=DECISIONS,
        label_table=_label_distribution(facts),
        decision_table=_decision_distribution(facts),
        domain_table=_domain_table(facts),
        source_table=source_table,
        generators=generators,
        generate=reports.generate,
        agreement=_agreement(label),
        forms_table=forms_table(reports.data),
        clean=clean,
        dedup=dedup,
        dedup_config=(dedup or {}).get("config") or {},
        data=reports.data,
        figures=reports.figures,
        imbalance_notes=_imbalance_notes(facts),
        attribute_names=ATTRIBUTE_NAMES,
        fmt=fmt,
    )
    return parse_card(text, "dataset", folder)
