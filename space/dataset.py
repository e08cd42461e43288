"""The loaded dataset: its splits as frames (the Classify tab's examples come from them) and
statistics for the About tab."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pandas as pd

from pipeline.core.decision import DECISIONS, decisions_from_frame
from pipeline.core.schema import ATTRIBUTE_NAMES, ATTRIBUTES_BY_NAME, LANG, TEXT
from space.sources import LoadedFrom

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Dataset, reports and the model card for the About tab


@dataclass
class DatasetView:
    """The loaded dataset's splits as frames, or why there are none."""

    splits: dict[str, pd.DataFrame]
    source: LoadedFrom
    note: str = ""

    @property
    def example_split(self) -> str | None:
        for name in ("test", "validation", "train"):
            if name in self.splits:
                return name
        return next(iter(self.splits), None)


def load_dataset_view(source: LoadedFrom) -> DatasetView:
    """Load every split with `datasets.load_dataset`; a missing or unreadable dataset gives an
    empty view with a note (the Space still classifies)."""
    if not source.path.is_dir():
        return DatasetView(
            {}, source, f"No dataset at `{source.shown}`: examples and statistics are unavailable."
        )
    import datasets

    try:
        loaded = datasets.load_dataset(str(source.path))
    except (OSError, ValueError, datasets.exceptions.DatasetsError) as exc:
        log.warning("cannot load dataset %s: %s", source.ref, exc)
        return DatasetView(
            {}, source, f"The dataset `{source.shown}` could not be loaded ({type(exc).__name__})."
        )
    splits = {name: _frame_of(split) for name, split in loaded.items()}
    missing = sorted(
        {TEXT, *ATTRIBUTE_NAMES} - set.intersection(*(set(f.columns) for f in splits.values()))
    )
    if missing:
        return DatasetView({}, source, f"The dataset lacks the column(s) {', '.join(missing)}.")
    for split, frame in splits.items():
        for attribute in ATTRIBUTES_BY_NAME.values():
            bad = sorted(set(frame[attribute.name].astype(str)) - set(attribute.values))
            if bad:
                return DatasetView(
                    {},
                    source,
                    f"The dataset's {split} split has {attribute.name} values {bad} outside "
                    f"{list(attribute.values)}.",
                )
    return DatasetView(splits, source)


def _frame_of(split) -> pd.DataFrame:
    """A split as a frame with `ClassLabel` columns (the Hub dataset's labels) as their names."""
    import datasets

    frame = split.to_pandas()
    for name, feature in split.features.items():
        if isinstance(feature, datasets.ClassLabel):
            frame[name] = [feature.int2str(int(i)) for i in frame[name]]
    return frame


def dataset_statistics(view: DatasetView) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows per split and language, and decisions per split, computed from the loaded data."""
    size_rows, decision_rows = [], []
    for name, frame in view.splits.items():
        row: dict[str, Any] = {"split": name, "rows": len(frame)}
        if LANG in frame.columns:
            for lang, n in frame[LANG].value_counts().sort_index().items():
                row[f"lang: {lang}"] = int(n)
        size_rows.append(row)
        counts = pd.Series(decisions_from_frame(frame)).value_counts()
        decision_rows.append({"split": name, **{d: int(counts.get(d, 0)) for d in DECISIONS}})
    sizes = pd.DataFrame(size_rows).fillna(0)
    return sizes, pd.DataFrame(decision_rows)

