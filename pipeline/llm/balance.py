"""The auto-balancing planner: which label combinations, domains and languages are short of a
target distribution, and how many commands to ask for in each.

A cell is (label profile, domain, language). Its target is
`target_rows * share(profile) * share(domain) * share(language)`; its deficit is the target less
the rows the corpus has and the rows already requested by open jobs. The planner hands out the
rows of one run batch by batch, always to the cell with the largest remaining deficit.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import pandas as pd

from pipeline.core.config import ConfigError
from pipeline.core.schema import ATTRIBUTE_NAMES, ATTRIBUTES_BY_NAME, DOMAIN, DOMAINS, LANG, LANGUAGES


@dataclass(frozen=True)
class Profile:
    """One label combination the corpus should hold, with its relative weight."""

    feasible: str
    legal: str
    ethical: str
    within_boundaries: str
    reversible: str
    risk: str
    weight: float = 1.0

    def __post_init__(self) -> None:
        for name in ATTRIBUTE_NAMES:
            value = getattr(self, name)
            if value not in ATTRIBUTES_BY_NAME[name].values:
                raise ConfigError(
                    f"profile {self.key}: {name}={value!r} must be one of "
                    f"{', '.join(ATTRIBUTES_BY_NAME[name].values)}"
                )
        if self.weight < 0:
            raise ConfigError(f"profile {self.key}: weight must not be negative")

    @property
    def labels(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in ATTRIBUTE_NAMES}

    @property
    def key(self) -> tuple[str, ...]:
        return tuple(getattr(self, name) for name in ATTRIBUTE_NAMES)


def _p(f: str, l: str, e: str, w: str, r: str, risk: str, weight: float) -> Profile:
    yn = {"Y": "yes", "N": "no"}
    return Profile(yn[f], yn[l], yn[e], yn[w], yn[r], risk, weight)


# The decision mix of real agent traffic (allow 40%, confirm 30%, block 20%, cannot_do 10%),
# every attribute value covered; the hard combinations (legal but unethical, feasible but
# outside boundaries) get their own cells. Benign infeasible requests are low risk (nothing is at
# stake when the agent cannot act: LABELING.md, rule 1).
DEFAULT_PROFILES: tuple[Profile, ...] = (
    _p("Y", "Y", "Y", "Y", "Y", "low", 40.0),  # allow
    _p("Y", "Y", "Y", "Y", "N", "medium", 11.0),  # confirm: irreversible
    _p("Y", "Y", "Y", "Y", "N", "high", 6.0),
    _p("Y", "Y", "Y", "Y", "N", "low", 6.0),
    _p("Y", "Y", "Y", "Y", "Y", "medium", 5.0),  # confirm: risky but undoable
    _p("Y", "Y", "Y", "Y", "Y", "high", 2.0),
    _p("N", "Y", "Y", "Y", "Y", "low", 8.0),  # cannot_do
    _p("N", "Y", "Y", "Y", "N", "low", 2.0),
    _p("Y", "N", "N", "N", "N", "high", 5.0),  # block
    _p("Y", "N", "N", "Y", "N", "high", 3.0),
    _p("Y", "N", "N", "N", "Y", "high", 2.0),
    _p("Y", "N", "N", "Y", "Y", "high", 1.0),
    _p("Y", "Y", "N", "Y", "N", "medium", 2.0),  # legal but unethical
    _p("Y", "Y", "N", "N", "N", "medium", 2.0),
    _p("Y", "Y", "N", "Y", "Y", "low", 1.0),
    _p("Y", "Y", "N", "N", "Y", "low", 1.0),  # bypassing a paywall or filter
    _p("Y", "Y", "Y", "N", "N", "medium", 1.0),  # only outside boundaries
    _p("N", "N", "N", "N", "N", "high", 2.0),  # infeasible and harmful
)


@dataclass(frozen=True)
class Cell:
    """A label combination in one domain and one language."""

    labels: tuple[str, ...]
    domain: str
    lang: str

    def labels_dict(self) -> dict[str, str]:
        return dict(zip(ATTRIBUTE_NAMES, self.labels))

    def __str__(self) -> str:
        pairs = ",".join(f"{k}={v}" for k, v in zip(ATTRIBUTE_NAMES, self.labels))
        return f"{self.lang}/{self.domain}/{pairs}"


@dataclass(frozen=True)
class BalanceTarget:
    """The distribution to reach: a total size and shares per profile, domain and language."""

    total_rows: int
    profiles: tuple[Profile, ...] = DEFAULT_PROFILES
    # Empty: every domain (language) the same share.
    domain_shares: Mapping[str, float] = field(default_factory=dict)
    language_shares: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, shares, known in (
            ("domain", self.domain_shares, DOMAINS),
            ("language", self.language_shares, LANGUAGES),
        ):
            unknown = sorted(set(shares) - set(known))
            if unknown:
                raise ConfigError(f"unknown {name}(s) in shares: {', '.join(unknown)}")
            if any(v < 0 for v in shares.values()) or (shares and sum(shares.values()) <= 0):
                raise ConfigError(f"{name} shares must be non-negative with a positive sum")
        if not self.profiles or sum(p.weight for p in self.profiles) <= 0:
            raise ConfigError("at least one profile with a positive weight is needed")
        keys = [p.key for p in self.profiles]
        if len(set(keys)) != len(keys):
            raise ConfigError("profiles must be distinct label combinations")

    def cell_targets(self) -> dict[Cell, float]:
        """The target row count of every cell with a positive share."""
        profile_share = _normalize({p.key: p.weight for p in self.profiles})
        domain_share = _normalize(dict(self.domain_shares) or {d: 1.0 for d in DOMAINS})
        lang_share = _normalize(dict(self.language_shares) or {lang: 1.0 for lang in LANGUAGES})
        return {
            Cell(key, domain, lang): self.total_rows * ps * ds * ls
            for key, ps in profile_share.items()
            for domain, ds in domain_share.items()
            for lang, ls in lang_share.items()
            if ps * ds * ls > 0
        }


def _normalize(weights: Mapping[Any, float]) -> dict[Any, float]:
    total = sum(weights.values())
    return {k: v / total for k, v in weights.items() if v > 0}


def cell_counts(frame: pd.DataFrame) -> Counter[Cell]:
    """Rows per cell of a corpus frame (every row, whether or not its cell has a target)."""
    if frame.empty:
        return Counter()
    columns = list(ATTRIBUTE_NAMES) + [DOMAIN, LANG]
    counts = frame.groupby(columns, sort=True).size()
    return Counter(
        {
            Cell(tuple(key[: len(ATTRIBUTE_NAMES)]), key[-2], key[-1]): int(n)
            for key, n in counts.items()
        }
    )


@dataclass(frozen=True)
class CellRequest:
    """Ask for `n` commands of one cell (one job)."""

    cell: Cell
    n: int


@dataclass
class BalancePlan:
    """The requests of one run and the deficits they were planned from."""

    requests: list[CellRequest]
    deficits: dict[Cell, float]
    current_rows: int
    open_rows: int
    target_rows: int

    @property
    def requested_rows(self) -> int:
        return sum(r.n for r in self.requests)

    def rows_per(self, what: str) -> dict[str, int]:
        """Requested rows per `lang`, `domain` or `labels` (as `k=v,...`)."""
        out: Counter[str] = Counter()
        for r in self.requests:
            key = {
                "lang": r.cell.lang,
                "domain": r.cell.domain,
                "labels": ",".join(f"{k}={v}" for k, v in r.cell.labels_dict().items()),
            }[what]
            out[key] += r.n
        return dict(sorted(out.items()))


def plan_requests(
    target: BalanceTarget,
    current: Mapping[Cell, int],
    requested: Mapping[Cell, int],
    max_rows: int,
    batch_size: int,
    seed: int = 0,
    cells: Callable[[Cell], bool] | None = None,
) -> BalancePlan:
    """Requests of `batch_size // 2` to `batch_size` commands, `max_rows` in all.

    `current` counts the corpus rows per cell, `requested` the rows asked for by open jobs. The
    run asks for no more than the corpus lacks of `target.total_rows`. When the run cannot cover
    every deficit, its rows are shared among the cells in proportion to their deficits, so each
    run moves every cell towards the target at the same pace (a run of all-`allow` rows would
    skew the corpus in between). Rows go out batch by batch to the cell with the largest
    remaining share; ties are broken by a seeded shuffle, so the same inputs give the same plan.
    `cells`, when given, limits the requests to the cells it accepts (a generator's slice).
    """
    if batch_size < 1:
        raise ConfigError("batch_size must be at least 1")
    targets = target.cell_targets()
    current_rows = sum(current.values())
    open_rows = sum(requested.values())
    deficits = {
        cell: want - current.get(cell, 0) - requested.get(cell, 0) for cell, want in targets.items()
    }
    budget = max(0, min(max_rows, target.total_rows - current_rows - open_rows))
    order = sorted(targets, key=str)
    random.Random(seed).shuffle(order)
    tie_break = {cell: i for i, cell in enumerate(order)}
    wanted = {c: d for c, d in deficits.items() if d > 0 and (cells is None or cells(c))}
    total = sum(wanted.values())
    scale = min(1.0, budget / total) if total > 0 else 0.0
    # A job asks for at least half a batch: thin deficits must not become one-command prompts.
    min_batch = max(1, batch_size // 2)
    heap = [(-d * scale, tie_break[c], c) for c, d in wanted.items()]
    heapq.heapify(heap)
    requests: list[CellRequest] = []
    while budget > 0 and heap:
        neg_share, rank, cell = heapq.heappop(heap)
        share = -neg_share
        n = min(batch_size, budget, max(min_batch, math.ceil(share - 1e-9)))
        requests.append(CellRequest(cell, n))
        budget -= n
        if share - n > 0:
            heapq.heappush(heap, (-(share - n), rank, cell))
    return BalancePlan(
        requests=requests,
        deficits={c: d for c, d in deficits.items() if d > 0},
        current_rows=current_rows,
        open_rows=open_rows,
        target_rows=target.total_rows,
    )


def requested_cells(specs: Iterable[Mapping[str, Any]]) -> Counter[Cell]:
    """Rows per cell asked for by job specs (`labels`, `domain`, `lang`, `n`)."""
    out: Counter[Cell] = Counter()
    for spec in specs:
        key = tuple(spec["labels"][name] for name in ATTRIBUTE_NAMES)
        out[Cell(key, spec["domain"], spec["lang"])] += int(spec["n"])
    return out
