"""`label`: labeler LLMs (other models than the generator) re-label every generated command.

Every answer is stored. A row is kept when at least `label_quorum` of its eligible labelers (those
whose model differs from the row's generator) give the generator's labels on every attribute in
`label_attributes`; only kept rows are exported. The report gives agreement per attribute
(observed agreement, Cohen's kappa of each labeler against the generator, Fleiss' kappa over all
raters) and lists every disagreement for review.
"""

from __future__ import annotations

import asyncio
import csv
import json
import logging
import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, Mapping, Sequence

import numpy as np
from sklearn.metrics import cohen_kappa_score

from pipeline.core.decision import Decision, decide
from pipeline.core.schema import ATTRIBUTE_NAMES, ATTRIBUTES_BY_NAME
from pipeline.llm.client import ChatClient, Endpoint, ProviderConfig
from pipeline.llm.generate.checks import parse_json_object
from pipeline.llm.generate.config import GenerateConfig
from pipeline.llm.generate.prompts import labeling_guide, prompt_version
from pipeline.llm.jobs.db import JobDB
from pipeline.llm.jobs.records import Claim, FinishResult, LabelAnswer, Rejection
from pipeline.llm.jobs.tables import ADJUDICATED, AGREED, DISAGREED, LABEL, UNSAMPLED
from pipeline.llm.runner import Checked, JobWorker, WorkStats, run_jobs

log = logging.getLogger(__name__)

LABEL_PROMPT_VERSION = "label-v1"
AGREEMENT_REPORT = "label_agreement.json"
DISAGREEMENTS_CSV = "label_disagreements.csv"
GENERATOR = "generator"


# ---------------------------------------------------------------------------------------------
# Prompt and answers


def label_messages(commands: Sequence[Mapping[str, str]], guide: str) -> list[dict[str, str]]:
    """Chat messages asking for the six labels of each `{"id", "text"}` command."""
    shape = {
        "labels": [
            {"id": "<id>", **{a: "|".join(ATTRIBUTES_BY_NAME[a].values) for a in ATTRIBUTE_NAMES}}
        ]
    }
    system = (
        "You label commands that people give to a software agent acting on their computer and "
        f"online accounts, following this guide:\n\n{guide}\n\n"
        "Judge each attribute on its own. Reply with one JSON object and nothing else."
    )
    user = (
        "Label every command below; answer once per id.\n\n"
        f"Commands: {json.dumps(list(commands), ensure_ascii=False)}\n\n"
        f"Answer with JSON of this shape:\n{json.dumps(shape)}"
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


@dataclass
class ParsedAnswers:
    answers: list[LabelAnswer] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


def parse_label_answers(content: str, row_ids: Sequence[str]) -> ParsedAnswers:
    """Check a labeler reply: one valid answer per asked id; everything else is a rejection."""
    out = ParsedAnswers()
    try:
        data = parse_json_object(content)
    except ValueError as exc:
        out.rejections.append(Rejection("bad_json", str(exc), content[:2000]))
        return out
    items = data.get("labels") if isinstance(data, dict) else data
    if not isinstance(items, list):
        out.rejections.append(
            Rejection("bad_json", "expected an object with a `labels` list", content[:2000])
        )
        return out
    asked = set(row_ids)
    answered: set[str] = set()
    for index, item in enumerate(items):
        rid = item.get("id") if isinstance(item, dict) else None
        shown = json.dumps(item, ensure_ascii=False)[:500]

        def reject(reason: str, detail: str, row: str | None = None) -> None:
            out.rejections.append(Rejection(reason, detail, shown, item=index, row_id=row))

        if not isinstance(item, dict) or not isinstance(rid, str):
            reject("missing_field", "answer without an `id`")
            continue
        if rid not in asked:
            reject("unknown_id", f"{rid!r} was not asked for")
            continue
        if rid in answered:
            reject("duplicate", "second answer for this id", rid)
            continue
        missing = [a for a in ATTRIBUTE_NAMES if a not in item]
        if missing:
            reject("missing_field", f"lacks {', '.join(missing)}", rid)
            continue
        values = {a: str(item[a]).strip().lower() for a in ATTRIBUTE_NAMES}
        bad = [a for a in ATTRIBUTE_NAMES if values[a] not in ATTRIBUTES_BY_NAME[a].values]
        if bad:
            reject("bad_value", ", ".join(f"{a}={item[a]!r}" for a in bad), rid)
            continue
        answered.add(rid)
        out.answers.append(LabelAnswer(rid, values))
    for rid in row_ids:
        if rid not in answered and not any(r.row_id == rid for r in out.rejections):
            out.rejections.append(
                Rejection("missing_answer", "no answer for this id", "", row_id=rid)
            )
    return out


# ---------------------------------------------------------------------------------------------
# Planning and working


def labeling_sample(rows: Sequence[Mapping[str, Any]], n: int, seed: int) -> set[str]:
    """Ids of `n` rows stratified by decision and language: equal shares per stratum, what a
    small stratum cannot fill going to the others; all rows when `n` is 0 or covers them.

    The choice depends only on the rows' ids, labels and `seed`, so it is stable across runs."""
    if n <= 0 or n >= len(rows):
        return {r["id"] for r in rows}
    strata: dict[tuple[str, str], list[str]] = {}
    for r in sorted(rows, key=lambda r: r["id"]):
        strata.setdefault((decide(r).value, r["lang"]), []).append(r["id"])
    rng = random.Random(seed)
    for ids in strata.values():
        rng.shuffle(ids)
    chosen: set[str] = set()
    left = n
    open_strata = sorted(strata, key=lambda k: len(strata[k]))
    while left > 0 and open_strata:
        share = max(1, left // len(open_strata))
        key = open_strata.pop(0)
        take = strata[key][:share]
        chosen.update(take)
        left -= len(take)
    return chosen


def new_sample(rows: Sequence[Mapping[str, Any]], asked: set[str], config: GenerateConfig) -> list[str]:
    """The rows a new labeling pass asks about: with `label_sample_rows`, a stratified sample
    among the rows no pass has asked about or settled yet (so each new batch of rows gets a
    sample of its own and earlier left-out rows stay out); else every row not asked yet."""
    fresh = [r for r in rows if r.get("verdict") is None and r["id"] not in asked]
    if not config.label_sample_rows:
        return [r["id"] for r in fresh]
    chosen = labeling_sample(fresh, config.label_sample_rows, config.seed)
    return [r["id"] for r in fresh if r["id"] in chosen]


def plan_labeling(
    db: JobDB,
    config: GenerateConfig,
    providers: Sequence[ProviderConfig],
) -> int:
    """Add label jobs for rows a labeler has not answered yet; the number of jobs added.

    A labeler never labels rows its own model generated; rows already in an open job of that
    labeler, or whose answers from it were rejected `max_attempts` times, are not asked again.
    With `label_sample_rows`, only the stratified sample is labeled.
    """

    def plan(conn: Any) -> int:
        rows = db.accepted_rows_conn(conn)
        answered = db.answered_conn(conn)
        asked = db.label_job_rows_conn(conn)
        sample = asked | set(new_sample(rows, asked, config))
        rejected = db.label_rejections_conn(conn)
        in_jobs = {(rid, p) for p, spec in db.open_specs(conn, LABEL) for rid in spec["row_ids"]}
        specs = []
        for provider in sorted(providers, key=lambda p: p.name):
            name, model = provider.name, provider.model
            todo = [
                r["id"]
                for r in rows
                if r["id"] in sample
                and r["source"] != model
                and (r["id"], name) not in answered
                and (r["id"], name) not in in_jobs
                and rejected.get((r["id"], name), 0) < config.max_attempts
            ]
            for start in range(0, len(todo), config.label_batch_size):
                specs.append((name, {"row_ids": todo[start : start + config.label_batch_size]}))
        return db.add_jobs(conn, LABEL, specs, config.max_attempts)

    return db.planning(plan)


def claim_commands(db: JobDB, claim: Claim) -> list[dict[str, str]]:
    """The `{"id", "text"}` commands a label job asks about."""
    ids = list(claim.spec["row_ids"])
    texts = db.row_texts(ids)
    return [{"id": rid, "text": texts[rid]} for rid in ids if rid in texts]


class LabelWorker(JobWorker):
    """Runs label jobs of one labeler: prompt, call, check the answers, store them."""

    lost = "its answers were not stored"

    def __init__(self, db: JobDB, client: ChatClient, config: GenerateConfig, guide: str, stats: WorkStats):
        super().__init__(db, client, config.retry_delay_s, prompt_version(guide, LABEL_PROMPT_VERSION), stats)
        self.config = config
        self.guide = guide
        self.labeler_model = client.provider.model

    async def messages(self, claim: Claim) -> tuple[list[dict[str, str]], list[str]]:
        commands = await asyncio.to_thread(claim_commands, self.db, claim)
        return label_messages(commands, self.guide), [c["id"] for c in commands]

    def check(self, claim: Claim, text: str, asked: list[str]) -> Checked:
        parsed = parse_label_answers(text, asked)
        if not parsed.answers:
            return Checked(parsed.rejections, error="no valid answer")
        return Checked(parsed.rejections, answers=parsed.answers)

    def accepted(self, checked: Checked, result: FinishResult) -> None:
        self.stats.accepted_rows += len(checked.answers)


async def run_labeling(
    db: JobDB,
    endpoints: Sequence[Endpoint],
    config: GenerateConfig,
    worker: str | None = None,
    show_progress: bool = True,
) -> WorkStats:
    """Work through the open label jobs of `endpoints`' labelers."""
    guide = labeling_guide()

    def handler(client: ChatClient, stats: WorkStats) -> Callable[[Claim], Awaitable[str | None]]:
        return LabelWorker(db, client, config, guide, stats).handle

    return await run_jobs(db, LABEL, endpoints, config.lease_seconds, config.poll_seconds, handler, worker, show_progress)


# ---------------------------------------------------------------------------------------------
# Agreement


def verdicts(
    rows: Sequence[Mapping[str, Any]],
    answers: Sequence[Mapping[str, Any]],
    labelers: Sequence[ProviderConfig],
    attributes: Sequence[str],
    quorum: float,
    sample: set[str] | None = None,
    adjudicated: Iterable[str] = (),
) -> dict[str, str | None]:
    """`agreed`/`disagreed` per row once every eligible labeler answered, else None; rows outside
    `sample` are `unsampled`, and disagreements settled by an adjudicator `adjudicated`."""
    by_row: dict[str, dict[str, Mapping[str, Any]]] = {}
    for a in answers:
        by_row.setdefault(a["row_id"], {})[a["labeler"]] = a
    settled = set(adjudicated)
    out: dict[str, str | None] = {}
    for row in rows:
        eligible = [p.name for p in labelers if p.model != row["source"]]
        got = by_row.get(row["id"], {})
        if sample is not None and row["id"] not in sample and not got:
            out[row["id"]] = UNSAMPLED
            continue
        if not eligible or any(name not in got for name in eligible):
            out[row["id"]] = None
            continue
        agreeing = sum(all(got[name][a] == row[a] for a in attributes) for name in eligible)
        verdict = AGREED if agreeing >= math.ceil(quorum * len(eligible) - 1e-9) else DISAGREED
        out[row["id"]] = ADJUDICATED if verdict == DISAGREED and row["id"] in settled else verdict
    return out


def fleiss_kappa(counts: np.ndarray) -> float | None:
    """Fleiss' kappa of an (items, categories) matrix of rater counts (same raters per item)."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] == 0:
        return None
    raters = counts.sum(axis=1)
    if not np.all(raters == raters[0]) or raters[0] < 2:
        raise ValueError("every item needs the same number (>= 2) of ratings")
    n = raters[0]
    p_item = ((counts**2).sum(axis=1) - n) / (n * (n - 1))
    p_bar = p_item.mean()
    p_cat = counts.sum(axis=0) / counts.sum()
    p_e = float((p_cat**2).sum())
    if math.isclose(p_e, 1.0):
        return None
    return float((p_bar - p_e) / (1 - p_e))


def weighted_kappa(a: Sequence[str], b: Sequence[str], values: Sequence[str]) -> float | None:
    """Linear-weighted Cohen's kappa of an ordinal attribute (risk); None when undefined."""
    if len(a) < 2:
        return None
    value = cohen_kappa_score(list(a), list(b), labels=list(values), weights="linear")
    return None if math.isnan(value) else float(value)


def cohen_kappa(a: Sequence[str], b: Sequence[str], values: Sequence[str]) -> float | None:
    """Cohen's kappa, or None when it is undefined (no items, or chance agreement is 1)."""
    if not a:
        return None
    if len(set(a) | set(b)) == 1:
        return None
    value = cohen_kappa_score(list(a), list(b), labels=list(values))
    return None if math.isnan(value) else float(value)


@dataclass
class AgreementReport:
    """Per-attribute agreement of labelers with the generator, and the rows they disagree on."""

    labelers: list[str]
    rows: int
    verdicts: dict[str, int]
    attributes: dict[str, dict[str, Any]]
    disagreements: list[dict[str, str]]

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["disagreements"] = len(self.disagreements)
        return data


def agreement_report(
    rows: Sequence[Mapping[str, Any]],
    answers: Sequence[Mapping[str, Any]],
    labelers: Sequence[ProviderConfig],
    row_verdicts: Mapping[str, str | None],
) -> AgreementReport:
    """Observed agreement, Cohen's kappa (each labeler vs the generator) and Fleiss' kappa (the
    generator and its eligible labelers, on rows all of them rated) per attribute."""
    names = [p.name for p in labelers]
    by_row: dict[str, dict[str, Mapping[str, Any]]] = {}
    for a in answers:
        by_row.setdefault(a["row_id"], {})[a["labeler"]] = a
    # Fleiss' kappa needs the same raters per row: the generator and every eligible labeler,
    # on the rows where the most raters answered.
    complete = []
    for row in rows:
        eligible = [p.name for p in labelers if p.model != row["source"]]
        if eligible and all(n in by_row.get(row["id"], {}) for n in eligible):
            complete.append((row, eligible))
    most = max((len(e) for _, e in complete), default=0)
    full = [(row, e) for row, e in complete if len(e) == most]
    attributes: dict[str, dict[str, Any]] = {}
    weighted: dict[str, dict[str, float | None]] = {}
    for attribute in ATTRIBUTE_NAMES:
        values = ATTRIBUTES_BY_NAME[attribute].values
        pairs_agree = pairs = 0
        per_labeler: dict[str, Any] = {}
        for name in names:
            gen, lab = [], []
            for row in rows:
                answer = by_row.get(row["id"], {}).get(name)
                if answer is not None:
                    gen.append(row[attribute])
                    lab.append(answer[attribute])
            pairs += len(gen)
            pairs_agree += sum(g == l for g, l in zip(gen, lab))
            per_labeler[name] = cohen_kappa(gen, lab, values)
            if not ATTRIBUTES_BY_NAME[attribute].is_binary:
                weighted.setdefault(attribute, {})[name] = weighted_kappa(gen, lab, values)
        matrix = np.zeros((len(full), len(values)))
        for i, (row, raters) in enumerate(full):
            matrix[i, values.index(row[attribute])] += 1
            for name in raters:
                matrix[i, values.index(by_row[row["id"]][name][attribute])] += 1
        attributes[attribute] = {
            "observed_agreement": pairs_agree / pairs if pairs else None,
            "pairs": pairs,
            "cohen_kappa": per_labeler,
            "fleiss_kappa": fleiss_kappa(matrix) if full else None,
            "fleiss_rows": len(full),
        }
        if attribute in weighted:
            attributes[attribute]["linear_weighted_kappa"] = weighted[attribute]
    # The decision the labels imply (pipeline.core.decision), generator against each labeler.
    decision_values = [d.value for d in Decision]
    per_labeler_decision: dict[str, Any] = {}
    agree = total = 0
    for name in names:
        gen, lab = [], []
        for row in rows:
            answer = by_row.get(row["id"], {}).get(name)
            if answer is not None:
                gen.append(decide(row).value)
                lab.append(decide(answer).value)
        total += len(gen)
        agree += sum(g == l for g, l in zip(gen, lab))
        per_labeler_decision[name] = cohen_kappa(gen, lab, decision_values)
    attributes["decision"] = {
        "observed_agreement": agree / total if total else None,
        "pairs": total,
        "cohen_kappa": per_labeler_decision,
    }
    disagreements = []
    for row in rows:
        got = by_row.get(row["id"], {})
        for attribute in ATTRIBUTE_NAMES:
            if any(a[attribute] != row[attribute] for a in got.values()):
                disagreements.append(
                    {
                        "id": row["id"],
                        "text": row["text"],
                        "lang": row["lang"],
                        "domain": row["domain"],
                        "source": row["source"],
                        "attribute": attribute,
                        GENERATOR: row[attribute],
                        **{name: got[name][attribute] if name in got else "" for name in names},
                        "verdict": row_verdicts.get(row["id"]) or "",
                    }
                )
    counts = {AGREED: 0, DISAGREED: 0, ADJUDICATED: 0, UNSAMPLED: 0, "waiting": 0}
    for v in row_verdicts.values():
        counts[v or "waiting"] += 1
    return AgreementReport(names, len(rows), counts, attributes, disagreements)


def write_disagreements(path: Path, report: AgreementReport) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = [
        "id",
        "text",
        "lang",
        "domain",
        "source",
        "verdict",
        "attribute",
        GENERATOR,
    ] + report.labelers
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(report.disagreements)
    os.replace(tmp, path)


def format_report(report: AgreementReport) -> str:
    lines = [
        f"labelers: {', '.join(report.labelers)}",
        f"rows: {report.rows} (agreed {report.verdicts[AGREED]}, disagreed "
        f"{report.verdicts[DISAGREED]}, adjudicated {report.verdicts[ADJUDICATED]}, not sampled "
        f"{report.verdicts[UNSAMPLED]}, waiting for answers {report.verdicts['waiting']})",
        f"{'attribute':<20} {'agree':>6} {'fleiss':>7}  cohen per labeler",
    ]

    def fmt(x: float | None) -> str:
        return "   -" if x is None else f"{x:.3f}"

    for name, a in report.attributes.items():
        cohen = ", ".join(f"{k} {fmt(v)}" for k, v in a["cohen_kappa"].items())
        agree = "-" if a["observed_agreement"] is None else f"{a['observed_agreement']:.1%}"
        lines.append(f"{name:<20} {agree:>6} {fmt(a.get('fleiss_kappa')):>7}  {cohen}")
        if "linear_weighted_kappa" in a:
            linear = ", ".join(f"{k} {fmt(v)}" for k, v in a["linear_weighted_kappa"].items())
            lines.append(f"{'':<20} {'':>6} {'':>7}  linear-weighted: {linear}")
    lines.append(f"disagreements to review: {len(report.disagreements)}")
    return "\n".join(lines)
