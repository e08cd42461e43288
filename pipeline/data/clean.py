"""`clean`: normalize texts, drop unusable ones and remove exact duplicates.

Reads the seed corpus (`data/seed/*.csv`) and generated rows (`build/generated/*.csv`), writes
`build/data/clean.parquet`, `build/reports/clean.json`, `clean_removed.csv` (every dropped row
and why) and `clean_conflicts.csv` (exact duplicates whose labels differ).

Normalization: Unicode NFKC, invisible format characters removed (bidi marks, zero-width
spaces; ZWJ/ZWNJ kept), whitespace runs collapsed, list markers (`1.`, `-`, `•`) and quotes
wrapped around the whole text (that generators add) stripped. Exact duplicates share the
`duplicate_key` (case, punctuation, Arabic diacritics and tatweel ignored); among duplicates
with the same labels one row is kept (`representative_order`), the others are logged. Rows with
the same key but different labels are all kept (one per label combination) and reported:
resolving a labeling conflict is a reviewer's decision, not this stage's.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core.config import BuildLayout, bundled_corpus_files, setting, to_dict
from pipeline.core.io import (
    ID_SEPARATOR,
    LABELER_AGREED,
    MERGED_IDS,
    ORIGIN,
    write_frame,
    write_json,
)
from pipeline.core.schema import (
    ATTRIBUTE_NAMES,
    CONTRAST_OF,
    CORPUS_COLUMNS,
    ID,
    SOURCE,
    TEXT,
    corpus_files,
    load_corpus,
)

log = logging.getLogger(__name__)

CLEAN_COLUMNS: tuple[str, ...] = CORPUS_COLUMNS + (LABELER_AGREED, MERGED_IDS, ORIGIN)
LABEL_AGREEMENT_REPORT = "label_agreement.json"  # written by the `label` stage
VERDICT_COLUMN, AGREED = "verdict", "agreed"

# Drop reasons (keys of the summary and of `clean_removed.csv`).
EMPTY, TOO_SHORT, TOO_LONG, EXACT_DUPLICATE = "empty", "too_short", "too_long", "exact_duplicate"

_INVISIBLE_KEEP = {"\u200c", "\u200d"}  # ZWNJ / ZWJ change how some scripts render
_LIST_MARKER = re.compile(r"^(?:[-*+•·‣▪◦●–—]|\(?\d{1,3}[.)]|\(\d{1,3}\))\s+")
_QUOTE_PAIRS: dict[str, str] = {
    '"': '"', "'": "'", "`": "`", "\u201c": "\u201d", "\u201d": "\u201d", "\u2018": "\u2019",
    "\u00ab": "\u00bb", "\u300c": "\u300d",
}  # fmt: skip
_TATWEEL = "\u0640"


@dataclass(frozen=True)
class CleanConfig:
    """The `[clean]` table of a preset."""

    min_words: int = setting(3, "texts with fewer words (after normalization) are dropped as `too_short`")
    max_words: int = setting(80, "texts with more words are dropped as `too_long`")
    max_chars: int = setting(600, "texts with more characters are dropped as `too_long`")
    strip_list_markers: bool = setting(True, "remove the list markers generators put before commands")
    strip_quotes: bool = setting(True, "remove the quotes generators put around commands")
    include_generated: bool = setting(True, "also read `build/generated/*.csv`")
    seed_dir: str = setting("", "the seed corpus folder; empty: the bundled data/seed")


@dataclass
class CleanResult:
    """The cleaned frame, every removed row with its reason, and exact-duplicate conflicts."""

    frame: pd.DataFrame
    removed: pd.DataFrame
    conflicts: pd.DataFrame
    input_rows: int
    changes: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict:
        reasons = Counter(self.removed["reason"]) if len(self.removed) else Counter()
        return {
            "input_rows": self.input_rows,
            "output_rows": len(self.frame),
            "removed": {r: int(reasons.get(r, 0)) for r in (EMPTY, TOO_SHORT, TOO_LONG, EXACT_DUPLICATE)},
            "text_changes": self.changes,
            "exact_duplicate_conflict_groups": int(self.conflicts["key"].nunique()) if len(self.conflicts) else 0,
            "exact_duplicate_conflict_rows": len(self.conflicts),
        }


# ---------------------------------------------------------------------------------------------
# Text normalization


def strip_wrapping_quotes(text: str) -> str:
    """Remove quotes around the whole text (`"book a table"` -> `book a table`), repeatedly;
    quotes inside the text, or a pair that does not wrap it alone, stay."""
    while len(text) >= 2 and text[0] in _QUOTE_PAIRS and text[-1] == _QUOTE_PAIRS[text[0]]:
        inner = text[1:-1]
        if text[0] in inner or text[-1] in inner:
            break
        text = inner.strip()
    return text


def normalize_text(text: str, config: CleanConfig = CleanConfig()) -> str:
    """NFKC, invisible characters removed, whitespace collapsed, markers and quotes stripped."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(
        ch for ch in text if ch in _INVISIBLE_KEEP or unicodedata.category(ch) not in ("Cf", "Cc") or ch.isspace()
    )
    text = " ".join(text.split())
    for _ in range(3):
        before = text
        if config.strip_list_markers:
            text = _LIST_MARKER.sub("", text)
        if config.strip_quotes:
            text = strip_wrapping_quotes(text)
        if text == before:
            break
    return text.strip()


def duplicate_key(text: str) -> str:
    """The exact-duplicate key: casefolded, punctuation and symbols as spaces, without
    combining marks (accents, Arabic diacritics), tatweel or format characters, whitespace
    collapsed."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    kept = []
    for ch in decomposed:
        category = unicodedata.category(ch)
        if category in ("Mn", "Cf") or ch == _TATWEEL:
            continue
        kept.append(" " if category[0] in "PS" else ch)
    return " ".join("".join(kept).split())


def label_combination(frame: pd.DataFrame) -> pd.Series:
    """Each row's six labels joined in schema order (`yes|yes|no|no|no|high`)."""
    first, *rest = (frame[name].astype(str) for name in ATTRIBUTE_NAMES)
    return first.str.cat(rest, sep="|")


def representative_order(frame: pd.DataFrame, extra_key: pd.Series | None = None) -> np.ndarray:
    """Row positions, best representative first: hand-written (`source == seed`), then
    labeler-agreed, then `extra_key` ascending (e.g. distance to the cluster), then the shortest
    text, then the smallest id. Used by `clean` and `dedup` alike."""
    keys = pd.DataFrame(
        {
            "not_seed": (frame[SOURCE] != "seed").to_numpy(),
            "not_agreed": ~frame[LABELER_AGREED].fillna(False).astype(bool).to_numpy(),
            "extra": extra_key.to_numpy() if extra_key is not None else np.zeros(len(frame)),
            "length": frame[TEXT].str.len().to_numpy(),
            "id": frame[ID].astype(str).to_numpy(),
        }
    )
    return keys.sort_values(["not_seed", "not_agreed", "extra", "length", "id"], kind="stable").index.to_numpy()


# ---------------------------------------------------------------------------------------------
# The stage


def clean(frame: pd.DataFrame, config: CleanConfig = CleanConfig()) -> CleanResult:
    """Normalize and filter a validated corpus frame (`schema.load_corpus` columns, optionally
    `labeler_agreed` and `origin`) and remove exact duplicates; see the module docstring."""
    frame = frame.reset_index(drop=True).copy()
    if LABELER_AGREED not in frame:
        frame[LABELER_AGREED] = False
    if ORIGIN not in frame:
        frame[ORIGIN] = [f"row {i}" for i in range(len(frame))]
    if MERGED_IDS not in frame:
        frame[MERGED_IDS] = ""
    original = frame[TEXT].astype(str)
    nfkc = original.map(lambda t: unicodedata.normalize("NFKC", t))
    frame[TEXT] = original.map(lambda t: normalize_text(t, config))
    changes = {
        "unicode_nfkc": int((nfkc != original).sum()),
        "normalized_total": int((frame[TEXT] != original).sum()),
        "list_markers": int(original.map(lambda t: bool(_LIST_MARKER.match(" ".join(t.split())))).sum()),
        "wrapping_quotes": int(
            original.map(lambda t: (s := " ".join(t.split())) != strip_wrapping_quotes(s)).sum()
        ),
    }

    words = frame[TEXT].str.split().str.len().fillna(0).astype(int)
    reason = pd.Series("", index=frame.index)
    reason[(words < config.min_words)] = TOO_SHORT
    reason[(words > config.max_words) | (frame[TEXT].str.len() > config.max_chars)] = TOO_LONG
    reason[frame[TEXT] == ""] = EMPTY
    dropped = frame[reason != ""].assign(reason=reason[reason != ""], duplicate_of="")
    kept = frame[reason == ""].copy()

    kept["key"] = kept[TEXT].map(duplicate_key)
    kept["labels"] = label_combination(kept)
    removed_dups: list[dict] = []
    conflict_rows: list[pd.DataFrame] = []
    drop_index: list[int] = []
    for key, group in kept[kept.duplicated("key", keep=False)].groupby("key", sort=True):
        if group["labels"].nunique() > 1:
            conflict_rows.append(group)
        for _, same in group.groupby("labels", sort=True):
            if len(same) < 2:
                continue
            order = representative_order(same.reset_index(drop=True))
            rep = same.iloc[order[0]]
            others = same.iloc[order[1:]]
            kept.loc[rep.name, MERGED_IDS] = ID_SEPARATOR.join(
                [i for i in [rep[MERGED_IDS]] if i] + others[ID].tolist()
                + [m for v in others[MERGED_IDS] for m in str(v).split(ID_SEPARATOR) if m]
            )
            drop_index.extend(others.index.tolist())
            for _, row in others.iterrows():
                removed_dups.append({**row.to_dict(), "reason": EXACT_DUPLICATE, "duplicate_of": rep[ID]})
    replaced = {r[ID]: r["duplicate_of"] for r in removed_dups}
    kept = kept.drop(index=drop_index)
    if replaced:
        kept[CONTRAST_OF] = kept[CONTRAST_OF].map(lambda c: replaced.get(c, c))
        # A contrast pair whose two rows became one text keeps no self-reference.
        kept.loc[kept[CONTRAST_OF] == kept[ID], CONTRAST_OF] = ""
    dropped_ids = set(dropped[ID])
    kept.loc[kept[CONTRAST_OF].isin(dropped_ids), CONTRAST_OF] = ""

    removed_columns = [ID, "reason", "duplicate_of", TEXT, "lang", SOURCE, ORIGIN]
    removed = pd.concat(
        [dropped[removed_columns], pd.DataFrame(removed_dups, columns=list(kept.columns) + ["reason", "duplicate_of"])[removed_columns]],
        ignore_index=True,
    )
    conflicts = (
        pd.concat(conflict_rows)[["key", ID, TEXT, "labels", SOURCE, ORIGIN]].reset_index(drop=True)
        if conflict_rows
        else pd.DataFrame(columns=["key", ID, TEXT, "labels", SOURCE, ORIGIN])
    )
    out = kept[list(CLEAN_COLUMNS)].reset_index(drop=True)
    out[LABELER_AGREED] = out[LABELER_AGREED].astype(bool)
    if len(conflicts):
        log.warning("%d exact-duplicate group(s) have conflicting labels; kept for review", conflicts["key"].nunique())
    return CleanResult(out, removed.reset_index(drop=True), conflicts, input_rows=len(frame), changes=changes)


def read_bundled_corpus(layout: BuildLayout, config: CleanConfig = CleanConfig()) -> bool:
    """Whether this build cleaned the bundled corpus (no `seed_dir` of its own): what the clean
    stage's report records, else what `config` says. Files that go with the bundled corpus (the
    challenge split, its labeling agreement) belong only to such a build."""
    report = layout.reports / "clean.json"
    if report.is_file():
        return not (json.loads(report.read_text(encoding="utf-8")).get("config") or {}).get("seed_dir")
    return not config.seed_dir


def read_inputs(config: CleanConfig, layout: BuildLayout) -> pd.DataFrame:
    """The seed corpus plus generated files, validated, with `origin` and `labeler_agreed`.

    A generated row counts as labeler-agreed when its file has a `verdict` column saying
    `agreed`, or when the `label` stage's report exists (it exports only agreed rows).
    """
    files = bundled_corpus_files(config.seed_dir)
    generated = corpus_files(layout.generated) if config.include_generated else []
    frame = load_corpus(files + generated)
    frame[ORIGIN] = frame["_file"] + ":" + frame["_line"].astype(str)
    labeled = (layout.reports / LABEL_AGREEMENT_REPORT).is_file()
    agreed = pd.Series(False, index=frame.index)
    for path in generated:
        in_file = frame["_file"] == str(path)
        header = pd.read_csv(path, nrows=0, encoding="utf-8-sig").columns
        if VERDICT_COLUMN in header:
            verdicts = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")[VERDICT_COLUMN]
            agreed[in_file] = (verdicts.str.strip().str.lower() == AGREED).to_numpy()
        elif labeled:
            agreed[in_file] = True
    frame[LABELER_AGREED] = agreed
    frame[MERGED_IDS] = ""
    log.info("read %d row(s) from %d seed and %d generated file(s)", len(frame), len(files), len(generated))
    return frame.drop(columns=["_file", "_line"])


def write_outputs(result: CleanResult, layout: BuildLayout, config: CleanConfig) -> dict:
    write_frame(layout.cleaned, result.frame)
    write_frame(layout.reports / "clean_removed.csv", result.removed)
    write_frame(layout.reports / "clean_conflicts.csv", result.conflicts)
    summary = {**result.summary(), "config": to_dict(config)}
    write_json(layout.reports / "clean.json", summary)
    return summary
