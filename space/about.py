"""The About & data tab: the model card's metrics and limitations, the pipeline's reports and
plots, dataset statistics and how to call the API."""

from __future__ import annotations

import html
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import pandas as pd
import yaml

from space.batch import MAX_BATCH_ROWS
from space.dataset import dataset_statistics

if TYPE_CHECKING:
    from space.resources import SpaceResources

log = logging.getLogger(__name__)

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

def api_snippet(space_ref: str) -> str:
    return f'''from gradio_client import Client, handle_file

client = Client("{space_ref}")

# one command: decision, reasons, labels, probabilities, uncertainty
result = client.predict("delete every file in my Downloads folder", api_name="/classify")
print(result["decision"], result["reasons"])

# a CSV (a `text` column) or TXT (one command per line), up to {MAX_BATCH_ROWS:,} rows: counts per
# decision, one classification per row (in file order) and a CSV with every output
summary, rows, csv_path = client.predict(handle_file("commands.csv"), api_name="/classify_batch")
print(summary["counts"], rows[0]["decision"])
'''



PLOT_MIN_WIDTH = 320


def table_html(frame: pd.DataFrame) -> str:
    """A frame as a table that fits a phone's width: text wraps, numbers stay whole and line up
    at the end of their cells."""
    esc = html.escape
    numeric = {c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])}

    def cell(tag: str, column: str, text: str) -> str:
        attrs = ' class="lma-num"' if column in numeric else ""
        return f"<{tag}{attrs}>{text}</{tag}>"

    head = "".join(cell("th", c, esc(str(c))) for c in frame.columns)
    rows = []
    for record in frame.to_dict("records"):
        cells = []
        for column, value in record.items():
            if isinstance(value, float):
                shown = f"{value:.4f}" if not float(value).is_integer() else f"{int(value):,}"
            elif isinstance(value, int):
                shown = f"{value:,}"
            else:
                shown = esc(str(value))
            cells.append(cell("td", column, shown))
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def about_tab(res: SpaceResources, space_ref: str) -> None:
    """The tab's components, inside the caller's `gr.Tab`."""
    import gradio as gr

    about = res.about
    sizes, decisions = dataset_statistics(res.dataset)
    gr.Markdown("## Model and data")
    links = [
        f"- Model: {res.model_source.describe()}",
        f"- Dataset: {res.dataset.source.describe()}",
    ]
    gr.Markdown("\n".join(links))
    if not about.metrics.empty:
        gr.Markdown("### Metrics from the model card")
        gr.HTML(table_html(about.metrics), elem_id="metrics", elem_classes="lma-table")
    gr.Markdown("### Dataset statistics")
    if res.dataset.splits:
        gr.Markdown("Rows per split and language")
        gr.HTML(table_html(sizes), elem_id="split-sizes", elem_classes="lma-table")
        gr.Markdown("Expected decisions per split (the dataset's labels)")
        gr.HTML(table_html(decisions), elem_id="split-decisions", elem_classes="lma-table")
    else:
        gr.Markdown(f"_{res.dataset.note}_")
    if about.plots:
        gr.Markdown("### Plots from the reports")
        # A row wraps its images below their minimum width: one per line on a phone, several
        # side by side on a laptop, each at a readable size.
        with gr.Row(elem_id="report-plots"):
            for path, caption in about.plots:
                gr.Image(path, label=caption, interactive=False, min_width=PLOT_MIN_WIDTH)
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
        "[`gradio_client`](https://www.gradio.app/guides/getting-started-with-the-python-client), "
        "and an HTTP API on the same port: `POST /v1/classify`, the OpenAI-compatible "
        "`POST /v1/moderations` (schema at `/v1/openapi.json`)."
    )
    gr.Markdown(f"```python\n{api_snippet(space_ref)}```", elem_id="api-snippet")
