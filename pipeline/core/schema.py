"""The data contract: labels, criteria, model outputs and row validation.

Every stage, the model config, the Hub cards and the Space read the label schema from here.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

YES, NO = "yes", "no"
BINARY_VALUES: tuple[str, ...] = (NO, YES)
RISK_VALUES: tuple[str, ...] = ("low", "medium", "high")


@dataclass(frozen=True)
class Attribute:
    """One labeled attribute of a command."""

    name: str
    values: tuple[str, ...]
    meaning: str

    @property
    def is_binary(self) -> bool:
        return self.values == BINARY_VALUES


@dataclass(frozen=True)
class Criterion:
    """A group of attributes shown together (in the Space, the cards and the reports)."""

    name: str
    attributes: tuple[Attribute, ...]


FEASIBLE = Attribute(
    "feasible",
    BINARY_VALUES,
    "a software agent acting on the user's own computer and accounts could carry it out",
)
LEGAL = Attribute("legal", BINARY_VALUES, "carrying it out is lawful in most jurisdictions")
ETHICAL = Attribute("ethical", BINARY_VALUES, "carrying it out is ethical")
WITHIN_BOUNDARIES = Attribute(
    "within_boundaries",
    BINARY_VALUES,
    "stays within what an assistant acting for this user may do (the user's own data and "
    "accounts; no impersonation, no bypassing consent or security)",
)
REVERSIBLE = Attribute("reversible", BINARY_VALUES, "the effects can be undone")
RISK = Attribute("risk", RISK_VALUES, "the harm if it goes wrong")

CRITERIA: tuple[Criterion, ...] = (
    Criterion("Feasibility & Legality", (FEASIBLE, LEGAL)),
    Criterion("Ethicality & Boundaries", (ETHICAL, WITHIN_BOUNDARIES)),
    Criterion("Reversibility & Risk", (REVERSIBLE, RISK)),
)
ATTRIBUTES: tuple[Attribute, ...] = tuple(a for c in CRITERIA for a in c.attributes)
ATTRIBUTE_NAMES: tuple[str, ...] = tuple(a.name for a in ATTRIBUTES)
BINARY_ATTRIBUTES: tuple[str, ...] = tuple(a.name for a in ATTRIBUTES if a.is_binary)
ATTRIBUTES_BY_NAME: dict[str, Attribute] = {a.name: a for a in ATTRIBUTES}

# The model has one sigmoid output per binary attribute and two ordinal outputs for risk.
RISK_OUTPUTS: tuple[str, ...] = ("risk_at_least_medium", "risk_high")
MODEL_OUTPUTS: tuple[str, ...] = BINARY_ATTRIBUTES + RISK_OUTPUTS
ID2LABEL: dict[int, str] = dict(enumerate(MODEL_OUTPUTS))
LABEL2ID: dict[str, int] = {name: i for i, name in ID2LABEL.items()}

LANGUAGES: tuple[str, ...] = ("en", "ar")
DOMAINS: tuple[str, ...] = (
    "files",
    "email_messaging",
    "calendar_tasks",
    "finance_payments",
    "shopping",
    "social_media",
    "browser_accounts",
    "system_shell",
    "dev_cloud",
    "smart_home",
    "documents_office",
    "photos_media",
    "health_personal",
    "work_hr",
    "security_tools",
    "travel",
    "education",
    "entertainment_games",
    "daily_life",
)

# Columns of a corpus file. `id`, `source` and `contrast_of` are optional in input files.
TEXT, ID, LANG, DOMAIN, SOURCE, CONTRAST_OF = "text", "id", "lang", "domain", "source", "contrast_of"
REQUIRED_COLUMNS: tuple[str, ...] = (TEXT, LANG, DOMAIN) + ATTRIBUTE_NAMES
OPTIONAL_COLUMNS: tuple[str, ...] = (ID, SOURCE, CONTRAST_OF)
CORPUS_COLUMNS: tuple[str, ...] = (ID, TEXT, LANG, DOMAIN) + ATTRIBUTE_NAMES + (SOURCE, CONTRAST_OF)
MIN_WORDS, MAX_WORDS = 1, 200
GROUP_SEPARATOR = "/"


def group_of(row_id: str) -> str:
    """The split group of a row id: translations `en-p-0042/ar` share the group `en-p-0042`."""
    return row_id.split(GROUP_SEPARATOR, 1)[0]


# ---------------------------------------------------------------------------------------------
# Labels <-> model targets and probabilities


def targets_from_labels(labels: Mapping[str, str]) -> np.ndarray:
    """The seven 0/1 model targets of one row's labels."""
    out = [1.0 if labels[name] == YES else 0.0 for name in BINARY_ATTRIBUTES]
    risk = labels[RISK.name]
    out.append(1.0 if risk in ("medium", "high") else 0.0)
    out.append(1.0 if risk == "high" else 0.0)
    return np.asarray(out, dtype=np.float32)


def targets_from_frame(frame: pd.DataFrame) -> np.ndarray:
    """The (n, 7) target matrix of a corpus frame."""
    cols = [(frame[name] == YES).to_numpy() for name in BINARY_ATTRIBUTES]
    risk = frame[RISK.name]
    cols.append(risk.isin(["medium", "high"]).to_numpy())
    cols.append((risk == "high").to_numpy())
    return np.stack(cols, axis=1).astype(np.float32)


def risk_probabilities(p_at_least_medium: np.ndarray, p_high: np.ndarray) -> np.ndarray:
    """(low, medium, high) probabilities from the two ordinal outputs, shape (..., 3).

    P(low)=1-P(>=medium), P(medium)=P(>=medium)-P(high), P(high)=P(high); P(high) is clipped to
    P(>=medium) so no probability is negative and each row sums to one.
    """
    p_m = np.clip(np.asarray(p_at_least_medium, dtype=np.float64), 0.0, 1.0)
    p_h = np.minimum(np.clip(np.asarray(p_high, dtype=np.float64), 0.0, 1.0), p_m)
    return np.stack([1.0 - p_m, p_m - p_h, p_h], axis=-1)


def attribute_probabilities(output_probs: np.ndarray) -> dict[str, np.ndarray]:
    """Per-attribute value probabilities from the (n, 7) sigmoid outputs.

    Binary attributes map to shape (n, 2) as (P(no), P(yes)); risk to (n, 3) as (low, medium,
    high), ordered like each attribute's `values`.
    """
    probs = np.atleast_2d(np.asarray(output_probs, dtype=np.float64))
    out: dict[str, np.ndarray] = {}
    for name in BINARY_ATTRIBUTES:
        p_yes = probs[:, LABEL2ID[name]]
        out[name] = np.stack([1.0 - p_yes, p_yes], axis=1)
    out[RISK.name] = risk_probabilities(
        probs[:, LABEL2ID["risk_at_least_medium"]], probs[:, LABEL2ID["risk_high"]]
    )
    return out


def label_index(attribute: str, value: str) -> int:
    """The class index of `value` in `attribute`'s values."""
    return ATTRIBUTES_BY_NAME[attribute].values.index(value)


# ---------------------------------------------------------------------------------------------
# Validation


@dataclass(frozen=True)
class RowProblem:
    """One bad cell (or row) in an input file."""

    file: str
    line: int
    column: str
    value: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: column '{self.column}' = {self.value!r}: {self.message}"


class CorpusError(ValueError):
    """An input corpus file breaks the schema; `problems` lists every bad cell."""

    def __init__(self, problems: Sequence[RowProblem], limit: int = 50):
        self.problems = list(problems)
        shown = "\n".join(f"  {p}" for p in self.problems[:limit])
        more = len(self.problems) - limit
        tail = f"\n  ... and {more} more" if more > 0 else ""
        super().__init__(f"{len(self.problems)} schema problem(s):\n{shown}{tail}")


def validate_row(row: Mapping[str, str], file: str, line: int) -> list[RowProblem]:
    """Every problem of one corpus row; an empty list when the row is valid."""
    problems: list[RowProblem] = []

    def bad(column: str, message: str) -> None:
        problems.append(RowProblem(file, line, column, str(row.get(column, "")), message))

    text = row.get(TEXT) or ""
    if not text.strip():
        bad(TEXT, "empty text")
    elif not MIN_WORDS <= len(text.split()) <= MAX_WORDS:
        bad(TEXT, f"text must have {MIN_WORDS} to {MAX_WORDS} words")
    if row.get(LANG) not in LANGUAGES:
        bad(LANG, f"must be one of {', '.join(LANGUAGES)}")
    if row.get(DOMAIN) not in DOMAINS:
        bad(DOMAIN, "unknown domain (see pipeline.core.schema.DOMAINS)")
    for attribute in ATTRIBUTES:
        if row.get(attribute.name) not in attribute.values:
            bad(attribute.name, f"must be one of {', '.join(attribute.values)}")
    return problems


def read_corpus_file(path: str | Path) -> pd.DataFrame:
    """Read and validate one corpus CSV; raise `CorpusError` listing every bad row.

    Values are taken exactly as written: nothing is dropped, trimmed or coerced. A missing `id`
    column gets ids `<file stem>-<line>`, a missing `source` gets `seed`.
    """
    path = Path(path)
    name = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CorpusError([RowProblem(name, 0, "-", "", f"cannot read file: {exc.strerror}")]) from exc
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise CorpusError(
            [RowProblem(name, line, "-", repr(raw[exc.start : exc.end]), "not valid UTF-8")]
        ) from exc
    if not content.strip():
        raise CorpusError([RowProblem(name, 1, "-", "", "file is empty (no header)")])
    reader = csv.DictReader(io.StringIO(content, newline=""))
    header = reader.fieldnames or []
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise CorpusError(
            [RowProblem(name, 1, c, "", "required column missing from header") for c in missing]
        )
    problems: list[RowProblem] = []
    records: list[dict[str, str]] = []
    for record in reader:
        line = reader.line_num
        if None in record:
            problems.append(RowProblem(name, line, "-", str(record[None]), "more fields than header"))
        if any(v is None for k, v in record.items() if k is not None):
            problems.append(RowProblem(name, line, "-", "", "fewer fields than header"))
            continue
        problems.extend(validate_row(record, name, line))
        record = {k: v for k, v in record.items() if k is not None}
        record.setdefault(ID, f"{path.stem}-{line}")
        if not record[ID]:
            problems.append(RowProblem(name, line, ID, "", "empty id"))
        record.setdefault(SOURCE, "seed")
        record.setdefault(CONTRAST_OF, "")
        record["_file"], record["_line"] = name, str(line)
        records.append(record)
    if not records and not problems:
        problems.append(RowProblem(name, 2, "-", "", "file has a header but no rows"))
    if problems:
        raise CorpusError(problems)
    frame = pd.DataFrame.from_records(records)
    return frame[list(CORPUS_COLUMNS) + ["_file", "_line"]]


def load_corpus(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Read, validate and concatenate corpus files; ids must be unique across them.

    Raises `CorpusError` with the problems of every file, not only the first bad one.
    """
    frames: list[pd.DataFrame] = []
    problems: list[RowProblem] = []
    files = sorted(Path(p) for p in paths)
    if not files:
        raise CorpusError([RowProblem("-", 0, "-", "", "no corpus files given")])
    for path in files:
        try:
            frames.append(read_corpus_file(path))
        except CorpusError as exc:
            problems.extend(exc.problems)
    if frames:
        frame = pd.concat(frames, ignore_index=True)
        dup = frame[frame.duplicated(ID, keep="first")]
        for _, r in dup.iterrows():
            problems.append(RowProblem(r["_file"], int(r["_line"]), ID, r[ID], "duplicate id"))
        ids = set(frame[ID])
        for _, r in frame[frame[CONTRAST_OF] != ""].iterrows():
            if r[CONTRAST_OF] not in ids:
                problems.append(
                    RowProblem(r["_file"], int(r["_line"]), CONTRAST_OF, r[CONTRAST_OF], "unknown id")
                )
    if problems:
        raise CorpusError(problems)
    return frame.reset_index(drop=True)


def corpus_files(directory: str | Path) -> list[Path]:
    """The corpus CSV files of a directory, sorted."""
    return sorted(Path(directory).glob("*.csv"))


@dataclass
class LabelCounts:
    """Value counts of every attribute, for reports and balancing."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    @classmethod
    def of(cls, frame: pd.DataFrame) -> "LabelCounts":
        return cls(
            {
                a.name: {v: int((frame[a.name] == v).sum()) for v in a.values}
                for a in ATTRIBUTES
            }
        )
