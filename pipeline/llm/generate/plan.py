"""Planning a generation run: jobs for the cells short of the target, each given to a generator
whose slice holds its cell."""

from __future__ import annotations

from typing import Any, Sequence

import pandas as pd

from pipeline.llm.balance import BalancePlan, cell_counts, plan_requests, requested_cells
from pipeline.llm.client import ProviderConfig
from pipeline.llm.generate.config import GenerateConfig
from pipeline.llm.generate.inputs import corpus_with_db_rows
from pipeline.llm.jobs.db import JobDB
from pipeline.llm.jobs.tables import GENERATE


def plan_generation(
    db: JobDB,
    config: GenerateConfig,
    providers: Sequence[ProviderConfig],
    corpus: pd.DataFrame,
    only_slices: bool = False,
) -> BalancePlan:
    """Add jobs for the cells short of the target; open jobs count as already requested.

    Runs under the plan lock, so two workers starting together plan once. Each job goes to one
    of the generators whose slice (domains, languages) holds its cell, by weight (smooth
    weighted round robin, in name order); a cell in no slice goes to any generator, unless
    `only_slices` (a batch for one generator) plans only the cells its slice holds.
    """
    weighted = sorted((p for p in providers if p.weight > 0), key=lambda p: p.name)
    target = config.target()

    def plan(conn: Any) -> BalancePlan:
        counts = cell_counts(corpus_with_db_rows(corpus, db.accepted_rows_conn(conn)))
        open_specs = [spec for _, spec in db.open_specs(conn, GENERATE)]
        result = plan_requests(
            target,
            counts,
            requested_cells(open_specs),
            max_rows=config.max_rows_per_run if weighted else 0,
            batch_size=config.batch_size,
            seed=config.seed,
            cells=(lambda c: any(p.writes(c.domain, c.lang) for p in weighted)) if only_slices else None,
        )
        start = db.count_jobs_conn(conn, GENERATE)
        specs = []
        credit = {p.name: 0.0 for p in weighted}
        for i, request in enumerate(result.requests):
            cell = request.cell
            eligible = [p for p in weighted if p.writes(cell.domain, cell.lang)] or weighted
            for p in eligible:
                credit[p.name] += p.weight
            chosen = max(eligible, key=lambda p: credit[p.name])
            credit[chosen.name] -= sum(p.weight for p in eligible)
            specs.append(
                (
                    chosen.name,
                    {
                        "n": request.n,
                        "lang": cell.lang,
                        "domain": cell.domain,
                        "labels": cell.labels_dict(),
                        "variant": start + i,
                    },
                )
            )
        db.add_jobs(conn, GENERATE, specs, config.max_attempts)
        return result

    return db.planning(plan)
