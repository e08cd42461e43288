"""The metadata checks: what the Hub accepts in the fields it reads, and every rendered card
parsed back with `huggingface_hub`'s card classes."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

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
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}$")
_VERSION = re.compile(r"^\d+\.\d+(\.\d+)?([a-z0-9.+-]*)?$")


class CardError(ValueError):
    """A card's metadata breaks what the Hub reads; `problems` lists every one."""

    def __init__(self, where: str, problems: Sequence[str]):
        self.problems = list(problems)
        listed = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{where}: {len(self.problems)} metadata problem(s):\n{listed}")


def size_category(rows: int) -> str:
    for limit, name in SIZE_CATEGORIES:
        if rows < limit:
            return name
    return "n>1B"


def _hub_ids(values: Any, key: str) -> list[str]:
    values = [values] if isinstance(values, str) else values
    if not isinstance(values, list) or not values:
        return [f"{key}: expected a non-empty list of Hub repo ids, got {values!r}"]
    return [f"{key}: {v!r} is not a Hub repo id (namespace/name)" for v in values if not HUB_ID.match(str(v))]


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
