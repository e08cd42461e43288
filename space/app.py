"""The LM-Action Space: classify a command before a Large Action Model acts on it.

UI only. Predictions come from `pipeline.inference.Predictor`, decisions and reasons from
`pipeline.decision`, attribute names and criteria from `pipeline.schema`. The Space classifies
commands; it never executes them.

Start-up loads the model and the dataset once: from the Hub repos named by `MODEL_ID` /
`DATASET_ID` (optional `MODEL_REVISION` / `DATASET_REVISION`), else from the local folders
`build/hub/model` and `build/hub/dataset` (`LM_ACTION_MODEL_DIR` / `LM_ACTION_DATASET_DIR`).

Run: `python -m space.app --host 127.0.0.1 --port 7860` (on the Hub: `python app.py`).
"""

from __future__ import annotations

import argparse
import csv
import html
import io
import json
import logging
import os
import re
import threading
import unicodedata
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import pandas as pd
import yaml

from pipeline.config import REPO_ROOT, BuildLayout
from pipeline.decision import DECISIONS, GateResult, decisions_from_frame, gate
from pipeline.inference import Predictor, PredictorConfig
from pipeline.serve import MAX_COMMAND_CHARS, CleanCommand, clean_command
from pipeline.schema import (
    ATTRIBUTE_NAMES,
    ATTRIBUTES_BY_NAME,
    BINARY_ATTRIBUTES,
    CRITERIA,
    LANG,
    RISK,
    TEXT,
    YES,
)

if TYPE_CHECKING:
    import gradio as gr
    from fastapi import FastAPI

log = logging.getLogger("space.app")

# Limits, documented in the UI. A batch file of more rows is refused, not cut.
MAX_BATCH_ROWS = 5_000
MAX_UPLOAD_MB = 5
# Characters read from one command; the model itself reads at most `Predictor.max_length`
# tokens, so this only bounds the work spent on pasted documents.
MAX_INPUT_CHARS = MAX_COMMAND_CHARS
# Simultaneous requests per event (2 CPU cores) and requests waiting in the queue.
CONCURRENCY_LIMIT = 2
QUEUE_MAX_SIZE = 64
# Uploads and result files are deleted from Gradio's cache after this many seconds.
CACHE_MAX_AGE_S = 3600
# Rows classified between progress updates (and between which single commands can run).
BATCH_CHUNK_ROWS = 256
EXAMPLES_PER_DECISION = 2
EXAMPLE_MAX_WORDS = 25
TABLE_COLUMNS = ("decision", "text") + ATTRIBUTE_NAMES + ("uncertain",)

LAYOUT = BuildLayout(REPO_ROOT / "build")
DEFAULT_MODEL_DIR = LAYOUT.hub_model
DEFAULT_DATASET_DIR = LAYOUT.hub_dataset
DEFAULT_REPORTS_DIR = LAYOUT.reports

DECISION_TITLES = {
    "allow": "Allow",
    "confirm": "Confirm first",
    "cannot_do": "Cannot do",
    "block": "Block",
}
ATTRIBUTE_TITLES = {
    "feasible": "Feasible",
    "legal": "Legal",
    "ethical": "Ethical",
    "within_boundaries": "Within boundaries",
    "reversible": "Reversible",
    "risk": "Risk",
}
OUTPUT_TITLES = {
    **{name: ATTRIBUTE_TITLES[name].lower() for name in BINARY_ATTRIBUTES},
    "risk_at_least_medium": "risk (medium or higher)",
    "risk_high": "risk (high)",
}
EMPTY_MESSAGE = "Type a command to classify it."

LIMITATIONS = """\
- The model predicts six attributes from the text of one command. It does not see the user, their
  accounts, earlier messages or what the agent can actually reach, so the same words can deserve
  a different decision in a real context.
- It was trained on short commands (3 to 60 words) in English and Arabic: the hand-written seed
  corpus and, where the build included them, LLM-generated commands. Other languages, dialects
  and long or multi-step instructions are outside what it has seen.
- Probabilities are model scores against thresholds tuned on the validation split; results near
  a threshold are marked "uncertain: review" and should go to a person.
- It is a gate, not a guarantee: an agent should keep its own safeguards. This Space classifies
  commands; it never executes them.
"""


# ---------------------------------------------------------------------------------------------
# Where the model and the dataset come from


class SpaceLoadError(RuntimeError):
    """The model (or a required file) could not be found or loaded at start-up."""


@dataclass(frozen=True)
class SpaceConfig:
    """What the Space loads; `from_env` reads the documented environment variables."""

    model_id: str | None = None  # Hub repo id; None: the local folder
    model_revision: str | None = None
    dataset_id: str | None = None
    dataset_revision: str | None = None
    model_dir: Path = DEFAULT_MODEL_DIR  # local fallback
    dataset_dir: Path = DEFAULT_DATASET_DIR  # local fallback
    reports_dir: Path = DEFAULT_REPORTS_DIR  # data.json, eval.json and plots, when present

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "SpaceConfig":
        env = os.environ if environ is None else environ

        def value(name: str) -> str | None:
            return (env.get(name) or "").strip() or None

        return cls(
            model_id=value("MODEL_ID"),
            model_revision=value("MODEL_REVISION"),
            dataset_id=value("DATASET_ID"),
            dataset_revision=value("DATASET_REVISION"),
            model_dir=Path(value("LM_ACTION_MODEL_DIR") or DEFAULT_MODEL_DIR),
            dataset_dir=Path(value("LM_ACTION_DATASET_DIR") or DEFAULT_DATASET_DIR),
            reports_dir=Path(value("LM_ACTION_REPORTS_DIR") or DEFAULT_REPORTS_DIR),
        )


@dataclass(frozen=True)
class LoadedFrom:
    """Where a model or dataset was loaded from, as the UI states it."""

    kind: str  # "hub" or "local"
    ref: str  # the Hub repo id or the local folder
    revision: str  # the Hub commit, or a note for a local folder
    path: Path
    repo_type: str  # "model" or "dataset"
    note: str = ""  # why the local folder was used although a Hub id was given

    @property
    def url(self) -> str | None:
        if self.kind != "hub":
            return None
        prefix = "datasets/" if self.repo_type == "dataset" else ""
        return f"https://huggingface.co/{prefix}{self.ref}"

    def describe(self) -> str:
        """One Markdown line: the id (linked) and revision, or the local folder."""
        if self.kind == "hub":
            return f"[`{self.ref}`]({self.url}) @ `{self.revision[:12]}`"
        return f"local folder `{self.ref}` ({self.revision})"


def _local_revision(path: Path) -> str:
    """A local folder has no Hub revision; its newest file's time tells builds apart."""
    times = [p.stat().st_mtime for p in path.rglob("*") if p.is_file()]
    if not times:
        return "empty"
    stamp = datetime.fromtimestamp(max(times), tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"built {stamp}"


def resolve_source(
    repo_id: str | None, revision: str | None, repo_type: str, local_dir: Path
) -> LoadedFrom:
    """A Hub snapshot of `repo_id` (downloaded, or cached when offline), else `local_dir`."""
    note = ""
    if repo_id:
        import httpx
        from huggingface_hub import snapshot_download

        try:
            path = Path(snapshot_download(repo_id, repo_type=repo_type, revision=revision))
            return LoadedFrom("hub", repo_id, path.name, path, repo_type)
        except (OSError, ValueError, httpx.HTTPError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            note = f"{repo_type} `{repo_id}` could not be loaded ({reason}); using `{local_dir}`"
            log.warning(note)
    local_dir = Path(local_dir)
    revision_note = _local_revision(local_dir) if local_dir.is_dir() else "missing"
    return LoadedFrom("local", str(local_dir), revision_note, local_dir, repo_type, note)


# ---------------------------------------------------------------------------------------------
# One command in, one classification out


@dataclass(frozen=True)
class Classification:
    """What the Space shows and the `classify` endpoint returns for one command."""

    text: str
    decision: str | None  # None when there was nothing to classify
    reasons: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    probabilities: dict[str, dict[str, float]] = field(default_factory=dict)
    uncertain_outputs: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    truncated: bool = False

    @property
    def uncertain(self) -> bool:
        return bool(self.uncertain_outputs)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: decision, reasons, labels, probabilities, uncertainty and notices."""
        return {
            "text": self.text,
            "decision": self.decision,
            "reasons": list(self.reasons),
            "labels": dict(self.labels),
            "probabilities": {k: dict(v) for k, v in self.probabilities.items()},
            "uncertain": self.uncertain,
            "uncertain_outputs": list(self.uncertain_outputs),
            "notices": list(self.notices),
            "truncated": self.truncated,
        }


def truncation_notice(max_chars: int) -> str:
    return (
        f"The command is longer than the gate accepts ({max_chars} characters): the rest was not "
        "read, so the gate asks for confirmation rather than allowing it."
    )


def windows_notice(windows: int) -> str:
    return (
        f"A long command: read whole in {windows} overlapping parts and sentence by sentence; the "
        "most cautious reading of each criterion counts."
    )


def classification_from_gate(
    result: GateResult, text: str, notices: Sequence[str] = (), truncated: bool = False
) -> Classification:
    """The Space's view of one gate result."""
    return Classification(
        text=text,
        decision=result.decision.value,
        reasons=list(result.reasons),
        labels=dict(result.labels),
        probabilities={k: dict(v) for k, v in result.probabilities.items()},
        uncertain_outputs=list(result.uncertain_outputs),
        notices=list(notices),
        truncated=truncated,
    )


def empty_classification(notices: Sequence[str] = ()) -> Classification:
    return Classification(text="", decision=None, notices=[EMPTY_MESSAGE, *notices])


class CommandClassifier:
    """The Space's prediction functions around one loaded `Predictor`.

    Model calls are serialized by `lock` (the Space's HTTP API holds the same one): the
    tokenizer is not safe to share between threads, and two CPU cores gain nothing from running
    two forward passes at once.
    """

    def __init__(self, predictor: Predictor):
        self.predictor = predictor
        self.lock = threading.Lock()

    @property
    def max_tokens(self) -> int:
        return int(self.predictor.max_length)

    def classify(self, raw: object) -> Classification:
        """Classify one command; empty input gives a message, never an error."""
        return self.classify_many([raw])[0]

    def classify_many(
        self,
        raws: Sequence[object],
        on_progress: Callable[[int, int], None] | None = None,
    ) -> list[Classification]:
        """Classify many commands, shortest first in chunks; `on_progress(done, total)`."""
        cleaned = [clean_command(raw) for raw in raws]
        todo = [i for i, c in enumerate(cleaned) if c.text]
        todo.sort(key=lambda i: len(cleaned[i].text))
        results: list[Classification | None] = [
            None if c.text else empty_classification(c.notices) for c in cleaned
        ]
        total = len(todo)
        for start in range(0, total, BATCH_CHUNK_ROWS):
            chunk = todo[start : start + BATCH_CHUNK_ROWS]
            texts = [cleaned[i].text for i in chunk]
            with self.lock:
                scores = self.predictor.score(texts)
            for i, p, windows, full in zip(chunk, scores.probs, scores.windows, scores.read_in_full):
                notices = list(cleaned[i].notices)
                cut = cleaned[i].cut or not full
                if cut:
                    notices.append(truncation_notice(MAX_INPUT_CHARS))
                elif windows > 1:
                    notices.append(windows_notice(int(windows)))
                result = gate(p, self.predictor.thresholds, windows=int(windows), read_in_full=not cut)
                results[i] = classification_from_gate(result, cleaned[i].text, notices, cut)
            if on_progress is not None:
                on_progress(min(start + len(chunk), total), total)
        return [r for r in results if r is not None]


# ---------------------------------------------------------------------------------------------
# Rendering a classification


def _uncertain_text(outputs: Sequence[str]) -> str:
    names = ", ".join(OUTPUT_TITLES.get(o, o) for o in outputs)
    return f"Uncertain: review. The model is close to its threshold on {names}."


def banner_html(result: Classification) -> str:
    """The decision banner: the decision, the reasons in words, uncertainty and notices."""
    esc = html.escape
    notices = "".join(f'<div class="lma-notice">{esc(n)}</div>' for n in result.notices)
    if result.decision is None:
        return f'<div class="lma-banner lma-empty" data-decision="none">{notices}</div>'
    reasons = "".join(f'<div class="lma-reason">{esc(r)}</div>' for r in result.reasons)
    uncertain = ""
    if result.uncertain:
        text = esc(_uncertain_text(result.uncertain_outputs))
        uncertain = f'<div class="lma-uncertain" data-uncertain="yes">{text}</div>'
    decision = esc(result.decision)
    return (
        f'<div class="lma-banner lma-{decision}" data-decision="{decision}">'
        f'<div class="lma-kicker">Decision</div>'
        f'<div class="lma-title">{esc(DECISION_TITLES[result.decision])}</div>'
        f"{reasons}{uncertain}{notices}</div>"
    )


ATTRIBUTE_OUTPUTS = {name: (name,) for name in BINARY_ATTRIBUTES} | {
    RISK.name: ("risk_at_least_medium", "risk_high")
}


def label_title(name: str, result: Classification) -> str:
    """A criterion label's title with the decided value, e.g. `Legal: no (uncertain)`."""
    title = ATTRIBUTE_TITLES[name]
    if result.decision is None:
        return title
    uncertain = set(ATTRIBUTE_OUTPUTS[name]) & set(result.uncertain_outputs)
    return f"{title}: {result.labels[name]}" + (" (uncertain)" if uncertain else "")


def label_values(result: Classification) -> list[dict[str, float] | None]:
    """Confidences for the six `gr.Label`s, in `ATTRIBUTE_NAMES` order (None clears one)."""
    if result.decision is None:
        return [None] * len(ATTRIBUTE_NAMES)
    return [dict(result.probabilities[name]) for name in ATTRIBUTE_NAMES]


# ---------------------------------------------------------------------------------------------
# Batch files


class BatchFileError(ValueError):
    """An uploaded batch file cannot be read; the message says what to fix."""


@dataclass(frozen=True)
class BatchInput:
    """Commands read from an uploaded file, with the file's other columns (CSV only)."""

    name: str
    texts: list[str]
    extra: pd.DataFrame


TEXT_COLUMN_NAMES = ("text", "command")


def read_batch_file(path: str | Path, max_rows: int = MAX_BATCH_ROWS) -> BatchInput:
    """Read a UTF-8 CSV (a `text` or `command` column) or TXT (one command per line)."""
    path = Path(path)
    name = path.name
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".txt"):
        raise BatchFileError(
            f"{name}: upload a .csv or .txt file (got '{suffix or 'no extension'}')."
        )
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BatchFileError(f"{name}: cannot read the file ({exc.strerror}).") from exc
    if len(raw) > MAX_UPLOAD_MB * 1024 * 1024:
        raise BatchFileError(f"{name}: the file is larger than {MAX_UPLOAD_MB} MB.")
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise BatchFileError(
            f"{name}: line {line} is not valid UTF-8; save the file as UTF-8 and upload it again."
        ) from exc
    if suffix == ".txt":
        texts = [line for line in content.splitlines() if line.strip()]
        extra = pd.DataFrame(index=range(len(texts)))
    else:
        texts, extra = _read_batch_csv(name, content)
    if not texts:
        raise BatchFileError(f"{name}: the file has no commands.")
    if len(texts) > max_rows:
        raise BatchFileError(
            f"{name}: {len(texts):,} commands; the limit is {max_rows:,} per file. Split it into "
            "smaller files."
        )
    return BatchInput(name, texts, extra.reset_index(drop=True))


def _check_field_counts(name: str, content: str) -> None:
    """Refuse a CSV row with more or fewer fields than the header, naming its line: pandas
    would silently read the extra leading fields of such a row as the index and classify
    the wrong field as the command."""
    reader = csv.reader(io.StringIO(content))
    header: tuple[int, int] | None = None  # (line, fields)
    line = 1
    for fields in reader:
        start, line = line, reader.line_num + 1
        if not fields:
            continue  # a blank line, skipped like pandas does
        if header is None:
            header = (start, len(fields))
        elif len(fields) != header[1]:
            count = f"{len(fields)} field" + ("" if len(fields) == 1 else "s")
            raise BatchFileError(
                f"{name}: line {start} has {count} but the header (line {header[0]}) "
                f"has {header[1]}. Quote every field that contains a comma (\"like, this\") so "
                "each row has one field per column."
            )


def _read_batch_csv(name: str, content: str) -> tuple[list[str], pd.DataFrame]:
    if not content.strip():
        return [], pd.DataFrame()
    try:
        _check_field_counts(name, content)
        frame = pd.read_csv(io.StringIO(content), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, csv.Error) as exc:
        raise BatchFileError(f"{name}: not a valid CSV file ({exc}).") from exc
    except pd.errors.EmptyDataError as exc:
        raise BatchFileError(f"{name}: the file has no commands.") from exc
    by_lower = {str(c).strip().lower(): c for c in frame.columns}
    column = next((by_lower[n] for n in TEXT_COLUMN_NAMES if n in by_lower), None)
    if column is None:
        found = ", ".join(str(c) for c in frame.columns)
        raise BatchFileError(
            f"{name}: no 'text' column (found: {found}). Put the commands in a column named "
            "'text', or upload a .txt file with one command per line."
        )
    return frame[column].tolist(), frame.drop(columns=[column])


def batch_frame(batch: BatchInput, results: Sequence[Classification]) -> pd.DataFrame:
    """Every output per command: the cleaned text it classified, labels, probabilities,
    decision, reasons, uncertainty, notes; the file's other columns follow (prefixed `input_`
    where a name is taken)."""
    rows = []
    for r in results:
        row: dict[str, Any] = {"text": r.text, "decision": r.decision or ""}
        for name in ATTRIBUTE_NAMES:
            row[name] = r.labels.get(name, "")
        row["uncertain"] = (YES if r.uncertain else "no") if r.decision else ""
        row["reasons"] = "; ".join(r.reasons)
        for name in ATTRIBUTE_NAMES:
            probs = r.probabilities.get(name, {})
            values = (YES,) if name in BINARY_ATTRIBUTES else ATTRIBUTES_BY_NAME[name].values
            for value in values:
                p = probs.get(value)
                row[f"p_{name}_{value}"] = round(p, 4) if p is not None else np.nan
        row["uncertain_outputs"] = "; ".join(r.uncertain_outputs)
        row["notes"] = " ".join(r.notices) if r.decision else "empty: not classified"
        rows.append(row)
    out = pd.DataFrame(rows)
    extra = batch.extra.rename(columns=lambda c: f"input_{c}" if c in out.columns else c)
    return pd.concat([out, extra.reset_index(drop=True)], axis=1)


# A cell starting with one of these runs as a formula in a spreadsheet (OWASP CSV injection);
# OWASP also lists tab and carriage return, which `csv_safe_cell` removes first with the other
# control characters. Full-width forms are treated alike, in case a spreadsheet folds them.
FORMULA_STARTS = ("=", "+", "-", "@")


def csv_safe_cell(value: object) -> object:
    """A CSV cell or header that a spreadsheet shows as text: control characters removed (line
    feeds kept) and, where it starts like a formula, a single quote in front. Numbers pass."""
    if not isinstance(value, str):
        return value
    text = "".join(ch for ch in value if ch == "\n" or unicodedata.category(ch) != "Cc")
    first = text.lstrip(" ")[:1]
    if first and unicodedata.normalize("NFKC", first) in FORMULA_STARTS:
        return "'" + text
    return text


def write_batch_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write `frame` as UTF-8 CSV (with a BOM, for Excel) in which no cell or header can run as
    a formula (`csv_safe_cell`)."""
    frame.rename(columns=csv_safe_cell).map(csv_safe_cell).to_csv(
        path, index=False, encoding="utf-8-sig"
    )


def batch_summary(name: str, frame: pd.DataFrame) -> str:
    counts = frame["decision"].value_counts()
    parts = [f"{int(counts.get(d, 0))} {d.replace('_', ' ')}" for d in DECISIONS]
    line = f"**{len(frame):,} commands** from `{name}`: " + ", ".join(parts)
    uncertain = int((frame["uncertain"] == YES).sum())
    empty = int((frame["decision"] == "").sum())
    if uncertain:
        line += f"; {uncertain} uncertain (review)"
    if empty:
        line += f"; {empty} empty row(s) not classified"
    return line + "."


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
            {}, source, f"No dataset at `{source.ref}`: examples and statistics are unavailable."
        )
    import datasets

    try:
        loaded = datasets.load_dataset(str(source.path))
    except (OSError, ValueError, datasets.exceptions.DatasetsError) as exc:
        log.warning("cannot load dataset %s: %s", source.ref, exc)
        return DatasetView(
            {}, source, f"The dataset at `{source.ref}` could not be loaded ({exc})."
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


def decision_examples(
    view: DatasetView, per_decision: int = EXAMPLES_PER_DECISION, seed: int = 0
) -> list[tuple[str, str]]:
    """(decision, command) pairs from the test split, `per_decision` of each decision,
    languages alternating where the split has several; short commands preferred."""
    split = view.example_split
    if split is None:
        return []
    frame = view.splits[split].copy()
    frame["_decision"] = decisions_from_frame(frame)
    frame["_words"] = frame[TEXT].str.split().str.len()
    frame = frame.sample(frac=1.0, random_state=seed)
    short = frame[frame["_words"] <= EXAMPLE_MAX_WORDS]
    out: list[tuple[str, str]] = []
    for decision in DECISIONS:
        rows = short[short["_decision"] == decision]
        if rows.empty:
            rows = frame[frame["_decision"] == decision]
        if LANG in rows.columns:
            # round-robin over languages so Arabic appears beside English
            rows = rows.assign(_rank=rows.groupby(LANG).cumcount()).sort_values(
                "_rank", kind="stable"
            )
        out.extend((decision, text) for text in rows[TEXT].head(per_decision))
    return out


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


_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.S)


def card_metrics(card_text: str) -> pd.DataFrame:
    """The metrics a model card declares in its `model-index` front matter."""
    match = _FRONT_MATTER.match(card_text)
    if not match:
        return pd.DataFrame()
    try:
        meta = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError:
        return pd.DataFrame()
    rows = []
    for entry in meta.get("model-index") or []:
        for result in entry.get("results") or []:
            dataset = result.get("dataset") or {}
            where = " / ".join(str(x) for x in (dataset.get("name"), dataset.get("split")) if x)
            for metric in result.get("metrics") or []:
                rows.append(
                    {
                        "dataset": where,
                        "metric": metric.get("name") or metric.get("type"),
                        "value": metric.get("value"),
                    }
                )
    return pd.DataFrame(rows)


def card_section(card_text: str, word: str) -> str | None:
    """The body of the first Markdown section whose heading contains `word`."""
    lines = card_text.splitlines()
    for i, line in enumerate(lines):
        heading = re.match(r"^(#{1,6})\s+(.*)$", line)
        if heading and word.lower() in heading.group(2).lower():
            level = len(heading.group(1))
            body = []
            for nxt in lines[i + 1 :]:
                h = re.match(r"^(#{1,6})\s", nxt)
                if h and len(h.group(1)) <= level:
                    break
                body.append(nxt)
            text = "\n".join(body).strip()
            return text or None
    return None


REPORTS = {"data": "Data report", "eval": "Evaluation report"}
_MARKDOWN_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")


@dataclass(frozen=True)
class Report:
    """One pipeline report: its Markdown (images removed; plots go to the gallery) or JSON."""

    title: str
    path: Path
    markdown: str | None = None
    data: dict | list | None = None


def read_report(path: Path, title: str) -> Report | None:
    """A report file (`.md` or `.json`); None when it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".md":
            return Report(title, path, markdown=_MARKDOWN_IMAGE.sub("", text).strip())
        return Report(title, path, data=json.loads(text))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        log.warning("cannot read report %s: %s", path, exc)
        return None


def _first_report(dirs: Sequence[Path], stem: str, title: str) -> Report | None:
    """The first readable `<stem>.md`, else `<stem>.json`, folder by folder."""
    for folder in dirs:
        for suffix in (".md", ".json"):
            path = folder / f"{stem}{suffix}"
            if path.is_file() and (report := read_report(path, title)) is not None:
                return report
    return None


@dataclass
class AboutContent:
    """What the About tab shows, read from the reports and the model card."""

    reports: list[Report]
    plots: list[tuple[str, str]]  # (path, caption)
    metrics: pd.DataFrame
    limitations: str
    notes: list[str]


def load_about(reports_dirs: Sequence[Path], model_dir: Path) -> AboutContent:
    """The data and evaluation reports (`data.md` / `eval.md`, else their `.json`) and PNG plots
    from the first folders that have them, and metrics and limitations from the model card;
    each absent piece gives a note."""
    dirs = [Path(d) for d in reports_dirs if Path(d).is_dir()]
    notes: list[str] = []
    reports: list[Report] = []
    for stem, title in REPORTS.items():
        found = _first_report(dirs, stem, title)
        if found is None:
            notes.append(f"No {title.lower()} (`{stem}.md` or `{stem}.json`) was found.")
        else:
            reports.append(found)
    plots: dict[str, tuple[str, str]] = {}
    for d in dirs:
        for png in sorted(d.glob("*.png")):
            if not png.name.startswith("screenshot"):
                plots.setdefault(png.name, (str(png), png.stem.replace("_", " ")))
    if not plots:
        notes.append("No plots were found in the reports.")
    card = model_dir / "README.md"
    card_text = card.read_text(encoding="utf-8") if card.is_file() else ""
    metrics = card_metrics(card_text)
    if not card_text:
        notes.append("The model folder has no model card (README.md).")
    elif metrics.empty:
        notes.append("The model card declares no metrics (`model-index`).")
    limitations = card_section(card_text, "limitation") or LIMITATIONS
    return AboutContent(reports, list(plots.values()), metrics, limitations, notes)


# ---------------------------------------------------------------------------------------------
# Start-up


@dataclass
class SpaceResources:
    """Everything the Space loads once at start-up."""

    classifier: CommandClassifier
    model_source: LoadedFrom
    dataset: DatasetView
    about: AboutContent
    backend: str


def load_resources(
    config: SpaceConfig, predictor_config: PredictorConfig = PredictorConfig()
) -> SpaceResources:
    """Load the model, the dataset and the About tab's content once."""
    model_source = resolve_source(config.model_id, config.model_revision, "model", config.model_dir)
    if not (model_source.path / "config.json").is_file():
        hint = f" ({model_source.note})" if model_source.note else ""
        raise SpaceLoadError(
            f"no model at {model_source.ref}{hint}: set MODEL_ID to a Hub repo, or run "
            "`make build` to stage build/hub/model"
        )
    predictor = Predictor(model_source.path, predictor_config)
    dataset_source = resolve_source(
        config.dataset_id, config.dataset_revision, "dataset", config.dataset_dir
    )
    dataset = load_dataset_view(dataset_source)
    reports = [config.reports_dir, model_source.path / "reports", dataset_source.path / "reports"]
    about = load_about(reports, model_source.path)
    log.info("model %s, dataset %s", model_source.describe(), dataset_source.describe())
    return SpaceResources(
        CommandClassifier(predictor), model_source, dataset, about, predictor.backend_detail
    )


# ---------------------------------------------------------------------------------------------
# The app

CSS = """
.lma-banner { border: 2px solid; border-radius: 12px; padding: 14px 18px; }
.lma-kicker { font-size: .8rem; text-transform: uppercase; letter-spacing: .08em; opacity: .75; }
.lma-title { font-size: 1.6rem; font-weight: 700; line-height: 1.2; margin-bottom: 4px; }
.lma-reason { font-size: 1.05rem; }
.lma-uncertain { margin-top: 8px; font-weight: 600; }
.lma-notice { margin-top: 6px; font-size: .92rem; }
.lma-allow { background: #e7f6ec; border-color: #1a7f37; color: #0b3d1c; }
.lma-confirm { background: #fff4d6; border-color: #bf8700; color: #4d3500; }
.lma-cannot_do { background: #eceff4; border-color: #57606a; color: #24292f; }
.lma-block { background: #ffebe9; border-color: #cf222e; color: #67060c; }
.lma-empty { border-style: dashed; border-color: var(--border-color-primary);
  color: var(--body-text-color-subdued); }
#command textarea { unicode-bidi: plaintext; text-align: start; font-size: 1.05rem; }
#command .submit-button { background: var(--button-primary-background-fill);
  color: var(--button-primary-text-color); border-radius: var(--button-large-radius);
  padding: 0 18px; font-weight: 600; min-height: 40px; }
#command .submit-button:hover { background: var(--button-primary-background-fill-hover); }
#decision-banner .html-container { padding: 0; }
#batch-table td { unicode-bidi: plaintext; }
.lma-criterion h4 { margin: 0 0 4px 0; }
.lma-footer { font-size: .85rem; opacity: .8; }
.lma-loaded { font-size: .85rem; }
.lma-report table { display: block; overflow-x: auto; }
.lma-report th, .lma-report td { min-width: 5em; word-break: normal; overflow-wrap: normal; }
"""


def api_snippet(space_ref: str) -> str:
    return f'''from gradio_client import Client, handle_file

client = Client("{space_ref}")

# one command: decision, reasons, labels, probabilities, uncertainty
result = client.predict("delete every file in my Downloads folder", api_name="/classify")
print(result["decision"], result["reasons"])

# a CSV (a `text` column) or TXT (one command per line), up to {MAX_BATCH_ROWS:,} rows
summary, table, csv_path = client.predict(handle_file("commands.csv"), api_name="/classify_batch")
'''


def _loaded_line(res: SpaceResources) -> str:
    line = f"**Model** {res.model_source.describe()} · **Dataset** {res.dataset.source.describe()}"
    line += f" · backend {res.backend}"
    notes = [n for n in (res.model_source.note, res.dataset.source.note) if n]
    return line + "".join(f"\n\n⚠ {n}" for n in notes)


def build_app(res: SpaceResources, space_ref: str | None = None) -> "gr.Blocks":
    """The Blocks app: Classify, Batch and About & data tabs, and the two API endpoints."""
    import gradio as gr

    classifier = res.classifier
    space_ref = space_ref or os.environ.get("SPACE_ID") or "http://127.0.0.1:7860"

    def classify(command: str) -> dict[str, Any]:
        """Classify one command: decision (allow / confirm / cannot_do / block), reasons,
        the six attribute labels and their probabilities, and whether it is uncertain."""
        return classifier.classify(command).as_dict()

    def classify_ui(command: str | None):
        result = classifier.classify(command)
        labels = [
            gr.Label(value=value, label=label_title(name, result))
            for name, value in zip(ATTRIBUTE_NAMES, label_values(result))
        ]
        return [banner_html(result), *labels]

    def classify_batch(file: str | None, progress=gr.Progress()):
        empty = pd.DataFrame(columns=list(TABLE_COLUMNS))
        if not file:
            return "Upload a .csv or .txt file.", empty, None
        try:
            batch = read_batch_file(file)
        except BatchFileError as exc:
            return f"⚠ {exc}", empty, None
        progress(0.0, desc=f"Classifying {len(batch.texts):,} commands")

        def report(done: int, total: int) -> None:
            progress(done / max(total, 1), desc=f"Classified {done:,} of {total:,}")

        results = classifier.classify_many(batch.texts, on_progress=report)
        frame = batch_frame(batch, results)
        # Beside the upload, in Gradio's cache, which `delete_cache` empties.
        out_path = Path(file).with_name(f"{Path(batch.name).stem}-classified.csv")
        write_batch_csv(frame, out_path)
        return batch_summary(batch.name, frame), frame[list(TABLE_COLUMNS)], str(out_path)

    examples = decision_examples(res.dataset)
    sizes, decisions = dataset_statistics(res.dataset)
    about = res.about

    with gr.Blocks(
        title="LM-Action: should the agent do this?",
        analytics_enabled=False,
        delete_cache=(CACHE_MAX_AGE_S, CACHE_MAX_AGE_S),
    ) as app:
        gr.Markdown(
            "# LM-Action\n"
            "Should a computer-using agent carry out a command? LM-Action predicts six attributes "
            "of the command and a decision: **allow**, **confirm** first, **cannot do** or "
            "**block**. It classifies commands; it never executes them."
        )
        gr.Markdown(_loaded_line(res), elem_id="loaded", elem_classes="lma-loaded")
        with gr.Tabs():
            with gr.Tab("Classify", id="classify"):
                command = gr.Textbox(
                    label="Command",
                    placeholder="e.g. transfer $500 from my savings to my checking account",
                    lines=1,
                    max_lines=4,
                    max_length=MAX_INPUT_CHARS,
                    autofocus=True,
                    elem_id="command",
                    submit_btn="Classify",
                    info="Press Enter to classify. English and Arabic.",
                )
                banner = gr.HTML(banner_html(empty_classification()), elem_id="decision-banner")
                labels: dict[str, gr.Label] = {}
                with gr.Row():
                    for i, criterion in enumerate(CRITERIA):
                        with gr.Column(
                            min_width=300, elem_id=f"criterion-{i}", elem_classes="lma-criterion"
                        ):
                            gr.Markdown(f"#### {criterion.name}")
                            with gr.Row():
                                for attribute in criterion.attributes:
                                    labels[attribute.name] = gr.Label(
                                        label=ATTRIBUTE_TITLES[attribute.name],
                                        num_top_classes=len(attribute.values),
                                        show_heading=False,
                                        min_width=140,
                                        elem_id=f"attr-{attribute.name}",
                                    )
                outputs = [banner, *(labels[name] for name in ATTRIBUTE_NAMES)]
                command.submit(
                    classify_ui,
                    command,
                    outputs,
                    api_visibility="private",
                    show_progress="minimal",
                    concurrency_id="classify",
                )
                if examples:
                    gr.Examples(
                        examples=[[text] for _, text in examples],
                        example_labels=[f"{DECISION_TITLES[d]} · {text}" for d, text in examples],
                        inputs=command,
                        outputs=outputs,
                        fn=classify_ui,
                        run_on_click=True,
                        cache_examples=False,
                        examples_per_page=len(examples),
                        label=f"Examples from the {res.dataset.example_split} split, "
                        "by expected decision",
                        api_visibility="private",
                    )
                else:
                    gr.Markdown(f"_No examples: {res.dataset.note}_")

            with gr.Tab("Batch", id="batch"):
                gr.Markdown(
                    f"Upload a **CSV** with a `text` column (other columns are kept) or a **TXT** "
                    f"file with one command per line, UTF-8, up to **{MAX_BATCH_ROWS:,} commands** "
                    f"and {MAX_UPLOAD_MB} MB. The download has every output: the six labels, their "
                    "probabilities, the decision, the reasons and uncertainty."
                )
                upload = gr.File(
                    label="Commands (.csv or .txt)",
                    file_types=[".csv", ".txt"],
                    elem_id="batch-file",
                )
                status = gr.Markdown(elem_id="batch-status")
                download = gr.File(
                    label="Results (CSV download)", interactive=False, elem_id="batch-download"
                )
                table = gr.Dataframe(
                    headers=list(TABLE_COLUMNS),
                    label="Results",
                    interactive=False,
                    wrap=True,
                    max_height=520,
                    column_widths=[100, 340, 90, 80, 90, 160, 110, 80, 110],
                    elem_id="batch-table",
                )
                upload.upload(
                    classify_batch,
                    upload,
                    [status, table, download],
                    api_name="classify_batch",
                    concurrency_limit=1,
                    concurrency_id="batch",
                )
                upload.clear(
                    lambda: ("", pd.DataFrame(columns=list(TABLE_COLUMNS)), None),
                    None,
                    [status, table, download],
                    api_visibility="private",
                    queue=False,
                )

            with gr.Tab("About & data", id="about"):
                gr.Markdown("## Model and data")
                links = [
                    f"- Model: {res.model_source.describe()}",
                    f"- Dataset: {res.dataset.source.describe()}",
                ]
                gr.Markdown("\n".join(links))
                if not about.metrics.empty:
                    gr.Markdown("### Metrics from the model card")
                    gr.Dataframe(about.metrics, interactive=False, wrap=True)
                gr.Markdown("### Dataset statistics")
                if res.dataset.splits:
                    gr.Dataframe(sizes, label="Rows per split and language", interactive=False)
                    gr.Dataframe(decisions, label="Expected decisions per split", interactive=False)
                else:
                    gr.Markdown(f"_{res.dataset.note}_")
                if about.plots:
                    gr.Gallery(
                        about.plots,
                        label="Plots from the reports",
                        columns=3,
                        height="auto",
                        object_fit="contain",
                        preview=False,
                        elem_id="report-plots",
                    )
                for report in about.reports:
                    with gr.Accordion(f"{report.title} ({report.path.name})", open=False):
                        if report.markdown is not None:
                            gr.Markdown(report.markdown, elem_classes="lma-report")
                        else:
                            gr.JSON(report.data)
                if about.notes:
                    gr.Markdown("\n".join(f"- _{n}_" for n in about.notes))
                gr.Markdown("## Limitations\n" + about.limitations)
                gr.Markdown(
                    "## API\nTwo named endpoints, `classify` and `classify_batch`, usable from "
                    "[`gradio_client`](https://www.gradio.app/guides/getting-started-with-the-python-client):"
                )
                gr.Markdown(f"```python\n{api_snippet(space_ref)}```", elem_id="api-snippet")
        gr.Markdown(
            f"<div class='lma-footer'>LM-Action classifies commands and never executes them. "
            f"Up to {CONCURRENCY_LIMIT} requests run at once; others wait in the queue.</div>"
        )
        gr.api(classify, api_name="classify", concurrency_id="classify")
    app.queue(default_concurrency_limit=CONCURRENCY_LIMIT, max_size=QUEUE_MAX_SIZE)
    return app


def space_api(res: SpaceResources) -> "FastAPI":
    """The gate's HTTP API (`pipeline.serve`) on the Space's model, sharing its lock; responses
    name the Hub model id (a local model by its folder's name, not its path); the schema is at
    /v1/openapi.json, since Gradio serves /openapi.json itself."""
    from pipeline.serve import create_api

    classifier = res.classifier
    return create_api(
        classifier.predictor,
        model_name=res.model_source.ref if res.model_source.kind == "hub" else None,
        lock=classifier.lock,
        openapi_url="/v1/openapi.json",
    )


def launch(
    app, host: str = "127.0.0.1", port: int | None = None, api: "FastAPI | None" = None, **kwargs
):
    """Launch with the Space's theme, CSS and upload limit; returns `launch`'s result. `api` (a
    FastAPI app, `space_api`) answers on the same port every path the Space does not serve."""
    import gradio as gr

    block = not kwargs.pop("prevent_thread_lock", False)
    result = app.launch(
        server_name=host,
        server_port=port,
        css=CSS,
        theme=gr.themes.Soft(),
        max_file_size=f"{MAX_UPLOAD_MB}mb",
        show_error=True,
        prevent_thread_lock=True,
        **kwargs,
    )
    if api is not None:
        # Mounted after Gradio's own routes, so it answers only the paths they leave: /v1/...,
        # /healthz and /docs.
        app.server_app.mount("/", api)
    if block:
        app.block_thread()
    return result


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m space.app", description="Serve the LM-Action Space."
    )
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860"))
    )
    parser.add_argument(
        "--model", help="Hub model id or local folder (default: MODEL_ID, else build/hub/model)"
    )
    parser.add_argument(
        "--dataset",
        help="Hub dataset id or local folder (default: DATASET_ID, else build/hub/dataset)",
    )
    parser.add_argument("--reports", type=Path, help="reports folder (default: build/reports)")
    return parser.parse_args(argv)


def config_from_args(
    args: argparse.Namespace, environ: dict[str, str] | None = None
) -> SpaceConfig:
    """Environment first, then the CLI: a folder argument is local, anything else a Hub id."""
    config = SpaceConfig.from_env(environ)
    changes: dict[str, Any] = {}
    if args.model:
        local = Path(args.model).is_dir()
        changes["model_id"] = None if local else args.model
        if local:
            changes["model_dir"] = Path(args.model)
    if args.dataset:
        local = Path(args.dataset).is_dir()
        changes["dataset_id"] = None if local else args.dataset
        if local:
            changes["dataset_dir"] = Path(args.dataset)
    if args.reports:
        changes["reports_dir"] = args.reports
    return replace(config, **changes)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = parse_args(argv)
    try:
        resources = load_resources(config_from_args(args))
    except SpaceLoadError as exc:
        log.error("%s", exc)
        return 2
    app = build_app(resources)
    launch(app, host=args.host, port=args.port, api=space_api(resources))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
