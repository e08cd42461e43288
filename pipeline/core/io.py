"""Files and small structures shared by the data stages (clean, dedup, split): atomic writes,
reading a previous stage's output or a JSON report with a clear error, and connected components."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

# Columns the data stages add to the corpus columns.
ORIGIN = "origin"  # "<file>:<line>" of the row in its input CSV
LABELER_AGREED = "labeler_agreed"  # labelers agreed with the generator's labels
MERGED_IDS = "merged_ids"  # ";"-joined ids of rows removed as duplicates of this one
ID_SEPARATOR = ";"


class StageInputError(FileNotFoundError):
    """A stage's input (the previous stage's output) is missing or unreadable."""


def read_json(path: Path, required_by: str | None = None) -> dict | None:
    """A JSON report, or None when absent and optional; a clear error when required or broken."""
    if not path.is_file():
        if required_by:
            raise StageInputError(f"{path} not found: run `python -m pipeline {required_by}` first")
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StageInputError(f"{path}: cannot read JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise StageInputError(f"{path}: expected a JSON object")
    return data


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (a temporary file renamed over `path`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_jsonl(path: Path, records: Iterable[Mapping[str, Any]], sort_keys: bool = False) -> None:
    """Write one JSON object per line atomically (a temporary file renamed over `path`); on an
    error nothing is left at `path` that was not there before."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False, sort_keys=sort_keys) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_frame(path: Path, frame: pd.DataFrame) -> None:
    """Write a frame atomically as Parquet (`.parquet`) or UTF-8 CSV (anything else)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if path.suffix == ".parquet":
        frame.to_parquet(tmp, index=False)
    else:
        frame.to_csv(tmp, index=False, encoding="utf-8")
    os.replace(tmp, path)


def read_stage_output(path: Path, produced_by: str) -> pd.DataFrame:
    """Read a Parquet file written by an earlier stage, or say which stage to run first."""
    if not path.is_file():
        raise StageInputError(f"{path} not found: run `python -m pipeline {produced_by}` first")
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise StageInputError(f"{path}: cannot read ({exc}); run `{produced_by}` again") from exc


def split_ids(value: str) -> list[str]:
    return [v for v in str(value).split(ID_SEPARATOR) if v]


def components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Connected components of the graph on 0..n-1 with edges (a[k], b[k]) (the union-find of
    all pairs), numbered 0, 1, ... in order of each component's smallest member."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse]
