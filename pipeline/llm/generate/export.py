"""The export: accepted rows written to `generated.csv` in the corpus format, with each row's
provenance beside it."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.io import write_jsonl
from pipeline.core.schema import ATTRIBUTE_NAMES, CONTRAST_OF, CORPUS_COLUMNS
from pipeline.llm.jobs.db import JobDB
from pipeline.llm.jobs.tables import ADJUDICATED, AGREED, DISAGREED, UNSAMPLED

EXPORT_NAME = "generated.csv"
# Beside the export: per row, its generator, job, prompt cell, batch file and prompt version.
PROVENANCE_NAME = "generated.provenance.jsonl"


@dataclass
class ExportResult:
    path: Path | None
    rows: int
    waiting_for_labels: int
    left_out: int


def export_generated(db: JobDB, out_dir: Path, require_agreement: bool) -> ExportResult:
    """Write the accepted rows to `out_dir/generated.csv` in the corpus format, by id.

    With labelers configured only rows they agreed on are written (and rows a sampled labeling
    pass left out, and disagreements with the adjudicated labels); rows the labelers rejected
    are never written. The file is replaced atomically and removed when no row qualifies.
    """
    rows = db.accepted_rows()
    if require_agreement:
        keep = [r for r in rows if r["verdict"] in (AGREED, UNSAMPLED, ADJUDICATED)]
        waiting = sum(1 for r in rows if r["verdict"] is None)
        settled = db.adjudications()
        keep = [
            {**r, **{name: settled[r["id"]][name] for name in ATTRIBUTE_NAMES}}
            if r["verdict"] == ADJUDICATED and r["id"] in settled
            else r
            for r in keep
        ]
    else:
        keep = [r for r in rows if r["verdict"] != DISAGREED]
        waiting = 0
    path = out_dir / EXPORT_NAME
    left_out = len(rows) - len(keep) - waiting
    if not keep:
        for stale in (path, out_dir / PROVENANCE_NAME):
            stale.unlink(missing_ok=True)
        return ExportResult(None, 0, waiting, left_out)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(CORPUS_COLUMNS), extrasaction="ignore")
        writer.writeheader()
        for r in keep:
            writer.writerow({**{c: r.get(c, "") for c in CORPUS_COLUMNS}, CONTRAST_OF: ""})
    os.replace(tmp, path)
    kept = {r["id"] for r in keep}
    provenance = [p for p in db.row_provenance() if p["id"] in kept]
    write_jsonl(out_dir / PROVENANCE_NAME, provenance, sort_keys=True)
    return ExportResult(path, len(keep), waiting, left_out)
