"""Hub cards: the dataset card, the model card and the Space README.

Each card is a Jinja2 template in `hub_cards/` filled from what the pipeline wrote: the staged
dataset files, `eval.json`, `train.json` and the data reports (`data.json`, `clean.json`,
`dedup.json`, the generation and labeling summaries). Attribute names, values and meanings come
from `pipeline.core.schema`, the policy text from `pipeline.core.decision`. Metadata is built with
`huggingface_hub`'s card data classes (and `datasets`' own `dataset_info` / `configs` writers);
every rendered card is parsed back with `ModelCard` / `DatasetCard` / `SpaceCard` and checked
against the fields the Hub reads (`metadata_problems`).
"""

from __future__ import annotations

import inspect
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from pipeline.core import decision
from pipeline.core.config import REPO_ROOT
from pipeline.core.decision import DECISIONS, DEFAULT_UNCERTAINTY_MARGIN, Decision, Thresholds, decisions_from_frame
from pipeline.core.schema import (
    ATTRIBUTE_NAMES,
    ATTRIBUTES,
    ATTRIBUTES_BY_NAME,
    BINARY_ATTRIBUTES,
    CONTRAST_OF,
    DOMAIN,
    DOMAINS,
    FEASIBLE,
    ID,
    LANG,
    LANGUAGES,
    MODEL_OUTPUTS,
    REVERSIBLE,
    RISK,
    RISK_OUTPUTS,
    RISK_VALUES,
    SOURCE,
    TEXT,
    group_of,
    risk_probabilities,
)
from pipeline.core.text_forms import goal_report
from pipeline.data.split import CHALLENGE, CLUSTER_ID
from pipeline.model.metrics import BLOCK_ATTRIBUTES
from pipeline.report.eval_report import MODEL_KEY
from pipeline.report.markdown import fmt, markdown_table

TEMPLATE_DIR = REPO_ROOT / "hub_cards"
DATASET_TEMPLATE = "dataset_card.md"
MODEL_TEMPLATE = "model_card.md"
SPACE_TEMPLATE = "space_readme.md"
SPACE_APP_TEMPLATE = "space_app.py.jinja"

SEED_SOURCE = "seed"  # `source` of hand-written corpus rows (`schema.read_corpus_file`'s default)
TASK_TYPE, TASK_NAME = "text-classification", "Text Classification"

# What the Hub accepts in the fields it reads (https://huggingface.co/docs/hub/spaces-config-reference,
# https://huggingface.co/docs/hub/datasets-cards, `huggingface_hub.DatasetCardData`).
SPACE_COLORS = ("red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray")
SIZE_CATEGORIES = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
)
MAX_SHORT_DESCRIPTION = 60
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}$")
_VERSION = re.compile(r"^\d+\.\d+(\.\d+)?([a-z0-9.+-]*)?$")

_COLUMN_MEANINGS = {
    ID: "unique row id; translations share the part before `/` ({group}), which keeps them in one split",
    TEXT: "the command, as a user would type it to a computer-using agent",
    LANG: "language code",
    DOMAIN: "what the command is about",
    SOURCE: "`seed` for hand-written commands, else the LLM that generated the row",
    CONTRAST_OF: "id of the row this one minimally contrasts with (few words changed, labels differ); empty if none",
    CLUSTER_ID: "split group: near-duplicates (at the link threshold), translations and contrast pairs share one, and a group never straddles splits",
}
_OUTPUT_MEANINGS = {
    RISK_OUTPUTS[0]: f"P({RISK.name} is {RISK_VALUES[1]} or {RISK_VALUES[2]})",
    RISK_OUTPUTS[1]: f"P({RISK.name} is {RISK_VALUES[2]})",
}


class CardError(ValueError):
    """A card's metadata breaks what the Hub reads; `problems` lists every one."""

    def __init__(self, where: str, problems: Sequence[str]):
        self.problems = list(problems)
        listed = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{where}: {len(self.problems)} metadata problem(s):\n{listed}")


@dataclass(frozen=True)
class HubRepos:
    """The Hub repo ids of one release."""

    dataset: str
    model: str
    space: str


@dataclass(frozen=True)
class Release:
    """What identifies a release: the pipeline version and the hash of the dataset files."""

    version: str
    data_hash: str

    @property
    def short_hash(self) -> str:
        return self.data_hash[:12]


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
class Figure:
    """A plot shown in a card: its caption and its path inside the repo."""

    caption: str
    path: str


@dataclass
class DataReports:
    """The data stages' JSON reports; each is None when its stage did not run."""

    data: dict | None = None
    clean: dict | None = None
    dedup: dict | None = None
    generate: dict | None = None
    label: dict | None = None
    figures: list[Figure] = field(default_factory=list)


@dataclass
class ModelReports:
    """The model's reports: `eval.json` (required), `train.json` and the ONNX export numbers."""

    eval: dict
    train: dict | None = None
    onnx: dict | None = None  # {"files": {name: MB}, "max_abs_diff": {name: float}}
    figures: list[Figure] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Formatting


def share(part: int, total: int) -> str:
    return f"{part / total:.1%}" if total else "n/a"


def docstring_paragraph(obj: Any, starts_with: str) -> str:
    """The paragraph of `obj`'s docstring that starts with `starts_with`, on one line."""
    doc = inspect.getdoc(obj) or ""
    for paragraph in doc.split("\n\n"):
        if paragraph.strip().startswith(starts_with):
            return " ".join(paragraph.split())
    raise ValueError(f"no paragraph starting with {starts_with!r} in the docstring of {obj!r}")


def size_category(rows: int) -> str:
    for limit, name in SIZE_CATEGORIES:
        if rows < limit:
            return name
    return "n>1B"


# ---------------------------------------------------------------------------------------------
# Metadata checks (the fields the Hub reads)


def _hub_ids(values: Any, key: str) -> list[str]:
    values = [values] if isinstance(values, str) else values
    if not isinstance(values, list) or not values:
        return [f"{key}: expected a non-empty list of Hub repo ids, got {values!r}"]
    return [f"{key}: {v!r} is not a Hub repo id (namespace/name)" for v in values if not _HUB_ID.match(str(v))]


def _languages(values: Any) -> list[str]:
    values = [values] if isinstance(values, str) else values
    if not isinstance(values, list) or not values:
        return [f"language: expected a list of ISO 639 codes, got {values!r}"]
    return [f"language: {v!r} is not an ISO 639-1/639-3 code" for v in values if not _LANGUAGE_CODE.match(str(v))]


def _model_problems(meta: Mapping[str, Any]) -> list[str]:
    from huggingface_hub.repocard_data import model_index_to_eval_results

    problems = _languages(meta.get("language")) + _hub_ids(meta.get("datasets"), "datasets")
    if "base_model" in meta:
        problems += _hub_ids(meta["base_model"], "base_model")
    if meta.get("pipeline_tag") != TASK_TYPE:
        problems.append(f"pipeline_tag: expected {TASK_TYPE!r}, got {meta.get('pipeline_tag')!r}")
    if meta.get("library_name") != "transformers":
        problems.append(f"library_name: expected 'transformers', got {meta.get('library_name')!r}")
    index = meta.get("model-index")
    if not index:
        problems.append("model-index: missing (the Hub shows evaluation results from it)")
        return problems
    try:
        _, results = model_index_to_eval_results(index)
    except (KeyError, TypeError, ValueError) as exc:
        return problems + [f"model-index: cannot be parsed: {exc!r}"]
    for r in results:
        if not isinstance(r.metric_value, (int, float)) or not math.isfinite(r.metric_value):
            problems.append(f"model-index: metric {r.metric_name!r} has value {r.metric_value!r}")
        if r.task_type != TASK_TYPE:
            problems.append(f"model-index: metric {r.metric_name!r} has task type {r.task_type!r}")
    return problems


def _dataset_problems(meta: Mapping[str, Any], folder: Path | None) -> list[str]:
    import datasets
    from datasets.utils.metadata import known_task_ids

    problems = _languages(meta.get("language"))
    for task in meta.get("task_categories") or [None]:
        if task not in known_task_ids:
            problems.append(f"task_categories: {task!r} is not a Hub task")
    sizes = {name for _, name in SIZE_CATEGORIES} | {"n>1B", "other"}
    for size in meta.get("size_categories") or [None]:
        if size not in sizes:
            problems.append(f"size_categories: {size!r} is not one of {sorted(sizes)}")
    configs = meta.get("configs") or []
    if not configs:
        problems.append("configs: missing (load_dataset and the viewer read the data files from it)")
    info = meta.get("dataset_info") or {}
    declared = [s.get("name") for s in info.get("splits") or []]
    try:
        datasets.Features._from_yaml_list(info.get("features") or [])
    except (KeyError, TypeError, ValueError) as exc:
        problems.append(f"dataset_info.features: cannot be parsed: {exc!r}")
    for config in configs:
        name = config.get("config_name")
        entries = config.get("data_files") or []
        splits = [e.get("split") for e in entries if isinstance(e, dict)]
        if len(splits) != len(entries) or not splits:
            problems.append(f"configs[{name}].data_files: expected a list of {{split, path}}")
        if declared and sorted(splits) != sorted(declared):
            problems.append(f"configs[{name}]: splits {splits} differ from dataset_info splits {declared}")
        for entry in entries:
            paths = entry.get("path") if isinstance(entry, dict) else None
            for path in [paths] if isinstance(paths, str) else paths or []:
                if folder is not None and not any(folder.glob(path)):
                    problems.append(f"configs[{name}].data_files: no file matches {path!r}")
    return problems


def _space_problems(meta: Mapping[str, Any], folder: Path | None) -> list[str]:
    from huggingface_hub.constants import SPACES_SDK_TYPES

    problems = []
    if not str(meta.get("title") or "").strip():
        problems.append("title: missing")
    emoji = str(meta.get("emoji") or "")
    if not emoji or any(ch.isascii() for ch in emoji):
        problems.append(f"emoji: expected emoji characters only, got {emoji!r}")
    for key in ("colorFrom", "colorTo"):
        if meta.get(key) not in SPACE_COLORS:
            problems.append(f"{key}: {meta.get(key)!r} is not one of {', '.join(SPACE_COLORS)}")
    if meta.get("sdk") not in SPACES_SDK_TYPES:
        problems.append(f"sdk: {meta.get('sdk')!r} is not one of {', '.join(SPACES_SDK_TYPES)}")
    if meta.get("sdk") in ("gradio", "streamlit") and not _VERSION.match(str(meta.get("sdk_version") or "")):
        problems.append(f"sdk_version: {meta.get('sdk_version')!r} is not a version number")
    if not re.match(r"^3\.\d+(\.\d+)?$", str(meta.get("python_version") or "")):
        problems.append(f"python_version: {meta.get('python_version')!r} is not a Python 3.x version")
    app_file = meta.get("app_file")
    if not app_file:
        problems.append("app_file: missing")
    elif folder is not None and not (folder / str(app_file)).is_file():
        problems.append(f"app_file: {app_file!r} is not in the Space folder")
    if len(str(meta.get("short_description") or "")) > MAX_SHORT_DESCRIPTION:
        problems.append(f"short_description: longer than {MAX_SHORT_DESCRIPTION} characters")
    for key in ("models", "datasets"):
        if key in meta:
            problems += _hub_ids(meta[key], key)
    return problems


def metadata_problems(repo_type: str, meta: Mapping[str, Any] | None, folder: Path | None = None) -> list[str]:
    """What is wrong with a card's YAML metadata for the Hub (empty when nothing is).

    `repo_type` is "model", "dataset" or "space"; with `folder`, paths the metadata names
    (data files, the app file) must exist in it.
    """
    if not meta:
        return ["no YAML metadata block"]
    problems = [] if meta.get("license") else ["license: missing"]
    if repo_type == "model":
        problems += _model_problems(meta)
    elif repo_type == "dataset":
        problems += _dataset_problems(meta, folder)
    elif repo_type == "space":
        problems += _space_problems(meta, folder)
    else:
        raise ValueError(f"unknown repo type {repo_type!r}")
    return problems


def parse_card(text: str, repo_type: str, folder: Path | None = None):
    """Parse card text with `huggingface_hub`'s card class for `repo_type` and check its
    metadata; raises `CardError` listing every problem."""
    from huggingface_hub import DatasetCard, ModelCard, SpaceCard

    card_class = {"model": ModelCard, "dataset": DatasetCard, "space": SpaceCard}[repo_type]
    where = f"{repo_type} card" + (f" in {folder}" if folder else "")
    try:
        card = card_class(text)
    except ValueError as exc:
        raise CardError(where, [str(exc)]) from exc
    problems = metadata_problems(repo_type, card.data.to_dict(), folder)
    if problems:
        raise CardError(where, problems)
    return card


# ---------------------------------------------------------------------------------------------
# Rendering


def _environment():
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def render_template(name: str, **context: Any) -> str:
    """Render one template of `hub_cards/` (unknown variables are errors, not blanks)."""
    return _environment().get_template(name).render(**context)


def _policy_text() -> str:
    """The decision policy, as `pipeline.core.decision` states it (its first sentence)."""
    paragraph = docstring_paragraph(decision, "Policy:").removeprefix("Policy:").strip()
    return paragraph.split(". ", 1)[0].rstrip(".") + "."


def _risk_reading() -> str:
    return docstring_paragraph(risk_probabilities, "P(low)")


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
        policy=_policy_text(),
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


# ---------------------------------------------------------------------------------------------
# Model card


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
    if backbone and _HUB_ID.match(str(backbone)) and not Path(str(backbone)).exists():
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
    return [
        [f"`onnx/{name}`", f"{size:.1f}", f"{diffs[name]:.1e}" if diffs.get(name) is not None else None]
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
        policy=_policy_text(),
        decisions=DECISIONS,
        margin=DEFAULT_UNCERTAINTY_MARGIN,
        threshold_rule=_threshold_rule(eval_report.get("threshold_rule")),
        languages=list(languages),
        block_shift=ours.get("block_shift"),
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
        onnx_table=markdown_table(["file", "size (MB)", "max abs. probability difference vs torch"], _onnx_rows(reports.onnx))
        if reports.onnx
        else "",
        figures=reports.figures,
        fmt=fmt,
    )
    return parse_card(text, "model", folder)


# ---------------------------------------------------------------------------------------------
# Space


def space_card_data(
    repos: HubRepos,
    license: str,
    title: str,
    emoji: str,
    color_from: str,
    color_to: str,
    short_description: str,
    sdk_version: str,
    python_version: str,
    tags: Sequence[str],
):
    """`SpaceCardData` for a Gradio Space running `app.py` with the model and the dataset."""
    from huggingface_hub import SpaceCardData

    return SpaceCardData(
        title=title,
        emoji=emoji,
        colorFrom=color_from,
        colorTo=color_to,
        sdk="gradio",
        sdk_version=sdk_version,
        python_version=python_version,
        app_file="app.py",
        pinned=False,
        license=license,
        short_description=short_description,
        models=[repos.model],
        datasets=[repos.dataset],
        tags=list(tags),
    )


def render_space_readme(card_data, repos: HubRepos, release: Release, api_snippet: str, folder: Path | None = None):
    """The Space README (`huggingface_hub.SpaceCard`), checked."""
    text = render_template(
        SPACE_TEMPLATE,
        card_data=card_data.to_yaml(),
        attribute_names=ATTRIBUTE_NAMES,
        title=card_data.title,
        repos=repos,
        release=release,
        policy=_policy_text(),
        api_snippet=api_snippet.strip(),
    )
    return parse_card(text, "space", folder)


def render_space_app(repos: HubRepos) -> str:
    """The Space's `app.py`: defaults `MODEL_ID` / `DATASET_ID` to this release's repos and runs
    `space.app`."""
    return render_template(SPACE_APP_TEMPLATE, repos=repos)

