"""The Batch tab: commands from an uploaded CSV or TXT file, classified together, shown in a
table and written to a CSV download that no spreadsheet runs as formulas."""

from __future__ import annotations

import csv
import io
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence, TypedDict

import gradio as gr
import numpy as np
import pandas as pd

from pipeline.core.decision import DECISIONS
from pipeline.core.schema import ATTRIBUTE_NAMES, ATTRIBUTES_BY_NAME, BINARY_ATTRIBUTES, YES
from space.classifier import Classification, ClassificationPayload, CommandClassifier
from space.fairness import BATCH_GROUP, BatchQueue, BatchRefused, client_key

# Limits, documented in the UI. A batch file of more rows is refused, not cut.
MAX_BATCH_ROWS = 5_000
MAX_UPLOAD_MB = 5

TABLE_COLUMNS = ("decision", "text") + ATTRIBUTE_NAMES + ("uncertain",)

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


class DecisionCounts(TypedDict):
    allow: int
    confirm: int
    cannot_do: int
    block: int


class BatchSummary(TypedDict):
    """What the `classify_batch` endpoint says about a file beside its rows."""

    file: str
    commands: int
    counts: DecisionCounts
    uncertain: int
    empty: int


def batch_summary(name: str, results: Sequence[Classification]) -> BatchSummary:
    """Counts per decision, uncertain and empty rows."""
    decided = [r.decision for r in results]
    counts = {d: decided.count(d) for d in DECISIONS}
    return BatchSummary(
        file=name,
        commands=len(results),
        counts=DecisionCounts(**counts),
        uncertain=sum(1 for r in results if r.decision and r.uncertain),
        empty=decided.count(None),
    )


def summary_markdown(summary: BatchSummary) -> str:
    """The Batch tab's status line."""
    parts = [f"{summary['counts'][d]} {d.replace('_', ' ')}" for d in DECISIONS]
    line = f"**{summary['commands']:,} commands** from `{summary['file']}`: " + ", ".join(parts)
    if summary["uncertain"]:
        line += f"; {summary['uncertain']} uncertain (review)"
    if summary["empty"]:
        line += f"; {summary['empty']} empty row(s) not classified"
    return line + "."


@dataclass(frozen=True)
class BatchOutcome:
    summary: BatchSummary
    results: list[Classification]
    frame: pd.DataFrame  # every output per row, as in the CSV
    csv_path: str


async def run_batch(
    file: str | None,
    classifier: CommandClassifier,
    queue: BatchQueue,
    client: str,
    on_progress: Callable[[float, str], None],
) -> BatchOutcome:
    """Read `file`, wait for this client's turn in `queue`, classify it chunk by chunk and write
    the CSV beside the upload (in Gradio's cache, which `delete_cache` empties). Raises
    `BatchFileError` for a file that cannot be read and `BatchRefused` when the queue does not
    take it; cancelling the task stops the work after the chunk in progress."""
    import anyio

    if not file:
        raise BatchFileError("Upload a .csv or .txt file.")
    queue.admit(client)  # refuse before reading the file: a flood costs no parsing
    # Reading, tabulating and writing run in worker threads: the event loop that serves single
    # commands never waits for a 5,000-row file.
    batch = await anyio.to_thread.run_sync(read_batch_file, file)
    async with queue.turn(client) as ahead:
        if ahead:
            on_progress(0.0, f"Waiting for {ahead} batch file(s) ahead of this one")
        on_progress(0.0, f"Classifying {len(batch.texts):,} commands")

        def report(done: int, total: int) -> None:
            on_progress(done / max(total, 1), f"Classified {done:,} of {total:,}")

        results = await classifier.classify_many_async(batch.texts, on_progress=report)
    out_path = Path(file).with_name(f"{Path(batch.name).stem}-classified.csv")

    def tabulate() -> pd.DataFrame:
        frame = batch_frame(batch, results)
        write_batch_csv(frame, out_path)
        return frame

    frame = await anyio.to_thread.run_sync(tabulate)
    return BatchOutcome(batch_summary(batch.name, results), results, frame, str(out_path))


def batch_tab(classifier: CommandClassifier, queue: BatchQueue, proxies: int) -> None:
    """The tab's components and events, inside the caller's `gr.Tab`: the upload shows a table
    and a download; `classify_batch` (an API-only event on hidden components) returns the
    summary, one classification per row and the CSV."""
    from space.render import typed_json

    def client_of(request: gr.Request) -> str:
        return client_key(
            request.client.host if request.client else None,
            request.headers.get("x-forwarded-for"),
            proxies,
        )

    async def outcome(file: str | None, request: gr.Request, progress: gr.Progress) -> BatchOutcome:
        try:
            return await run_batch(
                file, classifier, queue, client_of(request), lambda f, d: progress(f, desc=d)
            )
        except (BatchFileError, BatchRefused) as exc:
            raise gr.Error(str(exc), duration=None) from exc

    async def classify_batch_ui(file: str | None, request: gr.Request, progress=gr.Progress()):
        done = await outcome(file, request, progress)
        return summary_markdown(done.summary), done.frame[list(TABLE_COLUMNS)], done.csv_path

    async def classify_batch(
        file: str | None, request: gr.Request, progress=gr.Progress()
    ) -> tuple[BatchSummary, list[ClassificationPayload], str]:
        """Classify a CSV (a `text` column) or TXT file (one command per line): the counts per
        decision, one classification per row in file order, and the CSV with every output."""
        done = await outcome(file, request, progress)
        return done.summary, [r.as_dict() for r in done.results], done.csv_path

    gr.Markdown(
        f"Upload a **CSV** with a `text` column (other columns are kept) or a **TXT** "
        f"file with one command per line, UTF-8, up to **{MAX_BATCH_ROWS:,} commands** "
        f"and {MAX_UPLOAD_MB} MB. The download has every output: the six labels, their "
        "probabilities, the decision, the reasons and uncertainty. One file per person at a "
        "time; single commands are served first."
    )
    upload = gr.File(
        label="Commands (.csv or .txt)",
        file_types=[".csv", ".txt"],
        elem_id="batch-file",
    )
    status = gr.Markdown(elem_id="batch-status")
    stop = gr.Button("Stop", variant="stop", size="sm", elem_id="batch-stop")
    download = gr.File(label="Results (CSV download)", interactive=False, elem_id="batch-download")
    table = gr.Dataframe(
        headers=list(TABLE_COLUMNS),
        label="Results",
        interactive=False,
        wrap=True,
        max_height=520,
        column_widths=[100, 340, 90, 80, 90, 160, 110, 80, 110],
        elem_id="batch-table",
    )
    running = upload.upload(
        classify_batch_ui,
        upload,
        [status, table, download],
        api_visibility="private",
        concurrency_id=BATCH_GROUP,
        concurrency_limit=None,  # admission and order are `queue`'s
    )
    stop.click(
        lambda: "Stopped.", None, status, cancels=[running], queue=False, api_visibility="private"
    )
    upload.clear(
        lambda: ("", pd.DataFrame(columns=list(TABLE_COLUMNS)), None),
        None,
        [status, table, download],
        api_visibility="private",
        queue=False,
    )
    with gr.Group(visible=False):
        api_file = gr.File(label="file", file_types=[".csv", ".txt"])
        api_summary = typed_json(BatchSummary, label="summary")
        api_rows = typed_json(list[ClassificationPayload], label="rows")
        api_csv = gr.File(label="results_csv")
        api_trigger = gr.Button()
    api_trigger.click(
        classify_batch,
        api_file,
        [api_summary, api_rows, api_csv],
        api_name="classify_batch",
        concurrency_id=BATCH_GROUP,
        concurrency_limit=None,
    )
