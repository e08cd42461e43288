"""The balancing planner asks for the cells that are short of the target, and only those."""

from __future__ import annotations

from collections import Counter

import pandas as pd
import pytest

from pipeline.core.config import ConfigError
from pipeline.core.schema import ATTRIBUTES
from pipeline.llm.balance import (
    DEFAULT_PROFILES,
    BalanceTarget,
    Cell,
    Profile,
    cell_counts,
    plan_requests,
    requested_cells,
)

ALLOW = Profile("yes", "yes", "yes", "yes", "yes", "low", weight=3)
BLOCK = Profile("yes", "no", "no", "no", "no", "high", weight=1)
# 2 profiles x 2 domains x 2 languages; 80 rows: allow cells 15 each, block cells 5 each.
TARGET = BalanceTarget(
    total_rows=80,
    profiles=(ALLOW, BLOCK),
    domain_shares={"files": 1, "shopping": 1},
    language_shares={"en": 1, "ar": 1},
)


def cell(profile: Profile, domain: str, lang: str) -> Cell:
    return Cell(profile.key, domain, lang)


def frame_of(counts: dict[Cell, int]) -> pd.DataFrame:
    records = []
    for c, n in counts.items():
        records += [
            {**c.labels_dict(), "domain": c.domain, "lang": c.lang, "text": f"t{i}"}
            for i in range(n)
        ]
    return pd.DataFrame(records)


def per_cell(plan) -> Counter:
    out: Counter = Counter()
    for r in plan.requests:
        out[r.cell] += r.n
    return out


def test_plan_asks_exactly_for_the_missing_rows_of_each_cell():
    current = cell_counts(
        frame_of({cell(ALLOW, "files", "en"): 15, cell(ALLOW, "shopping", "en"): 10})
    )
    plan = plan_requests(TARGET, current, {}, max_rows=100, batch_size=5)
    assert per_cell(plan) == {
        cell(ALLOW, "shopping", "en"): 5,
        cell(ALLOW, "files", "ar"): 15,
        cell(ALLOW, "shopping", "ar"): 15,
        cell(BLOCK, "files", "en"): 5,
        cell(BLOCK, "shopping", "en"): 5,
        cell(BLOCK, "files", "ar"): 5,
        cell(BLOCK, "shopping", "ar"): 5,
    }
    assert all(1 <= r.n <= 5 for r in plan.requests)
    assert plan.requested_rows == 80 - 25


def test_a_capped_run_shares_its_rows_in_proportion_to_the_deficits():
    # Deficits: three allow cells of 15, four block cells of 5 (65 rows); the run gets 40%.
    current = cell_counts(frame_of({cell(ALLOW, "files", "en"): 15}))
    plan = plan_requests(TARGET, current, {}, max_rows=26, batch_size=2)
    allow = {cell(ALLOW, d, lang): 6 for d, lang in (("files", "ar"), ("shopping", "en"), ("shopping", "ar"))}
    block = {cell(BLOCK, d, lang): 2 for d in ("files", "shopping") for lang in ("en", "ar")}
    assert per_cell(plan) == {**allow, **block}


def test_a_cell_filter_limits_the_plan_to_a_slice():
    plan = plan_requests(TARGET, Counter(), {}, max_rows=100, batch_size=5, cells=lambda c: c.lang == "ar")
    assert {c.lang for c in per_cell(plan)} == {"ar"}
    assert plan.requested_rows == 40


def test_rows_requested_by_open_jobs_are_not_asked_again():
    requested = requested_cells(
        [{"labels": ALLOW.labels, "domain": "files", "lang": "ar", "n": 15}]
    )
    plan = plan_requests(TARGET, Counter(), requested, max_rows=100, batch_size=5)
    assert cell(ALLOW, "files", "ar") not in per_cell(plan)
    assert plan.open_rows == 15
    assert plan.requested_rows == 80 - 15


def test_nothing_is_planned_once_the_target_size_is_reached():
    full = {
        cell(p, d, lang): 15 if p is ALLOW else 5
        for p in (ALLOW, BLOCK)
        for d in ("files", "shopping")
        for lang in ("en", "ar")
    }
    plan = plan_requests(TARGET, cell_counts(frame_of(full)), {}, max_rows=100, batch_size=5)
    assert plan.requests == []


def test_rows_outside_the_target_cells_do_not_fill_them():
    other = Cell(("no",) * 5 + ("medium",), "travel", "en")
    current = cell_counts(frame_of({other: 10}))
    plan = plan_requests(TARGET, current, {}, max_rows=100, batch_size=5)
    assert other not in per_cell(plan)
    # The corpus size counts them, so the run asks only for what is missing of the total.
    assert plan.requested_rows == 70


def test_thin_deficits_are_asked_in_half_batches_at_least():
    # 285 cells share 200 rows: every deficit is below one row.
    target = BalanceTarget(total_rows=200, language_shares={"en": 1})
    plan = plan_requests(target, Counter(), {}, max_rows=40, batch_size=10)
    assert [r.n for r in plan.requests] == [5] * 8
    assert len({r.cell for r in plan.requests}) == 8


def test_same_inputs_give_the_same_plan_and_seeds_break_ties():
    a = plan_requests(TARGET, Counter(), {}, max_rows=20, batch_size=5, seed=1)
    b = plan_requests(TARGET, Counter(), {}, max_rows=20, batch_size=5, seed=1)
    assert a.requests == b.requests
    orders = {
        tuple(r.cell for r in plan_requests(TARGET, Counter(), {}, 20, 5, seed=s).requests)
        for s in range(6)
    }
    assert len(orders) > 1


def test_default_profiles_cover_every_attribute_value():
    for attribute in ATTRIBUTES:
        assert {getattr(p, attribute.name) for p in DEFAULT_PROFILES} == set(attribute.values)


def test_invalid_targets_are_config_errors():
    with pytest.raises(ConfigError, match="risk='extreme'"):
        Profile("yes", "yes", "yes", "yes", "yes", "extreme")
    with pytest.raises(ConfigError, match="unknown domain"):
        BalanceTarget(total_rows=10, domain_shares={"cooking": 1.0})
    with pytest.raises(ConfigError, match="distinct"):
        BalanceTarget(total_rows=10, profiles=(ALLOW, ALLOW))
