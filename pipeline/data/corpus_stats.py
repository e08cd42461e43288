"""`corpus-stats`: validate the seed corpus and print its label, domain, language and length
statistics, plus the corpus rules it must satisfy (balance, domain share, contrast pairs)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from pipeline.core.decision import DECISIONS, decisions_from_frame
from pipeline.core.schema import (
    ATTRIBUTE_NAMES,
    ATTRIBUTES,
    BINARY_ATTRIBUTES,
    CONTRAST_OF,
    DOMAIN,
    ID,
    LANG,
    RISK,
    TEXT,
)
from pipeline.core.text_forms import goal_report

LENGTH_BUCKETS: tuple[tuple[int, int], ...] = ((1, 2), (3, 5), (6, 10), (11, 20), (21, 40), (41, 60), (61, 200))


@dataclass(frozen=True)
class CorpusRules:
    """The shape the bundled corpus must have (issue: seed corpus)."""

    min_rows: dict[str, int] = field(default_factory=lambda: {"en": 4000, "ar": 1000})
    # Every attribute value at least this share of rows (the v2 decision mix, allow 40%, keeps
    # feasible=no and legal=no near 12%).
    min_minority_share: float = 0.10
    min_domains: int = 15
    max_domain_share: float = 0.15
    min_contrast_pairs: int = 800
    min_words: int = 3
    max_words: int = 80


def length_bucket(words: int) -> str:
    for lo, hi in LENGTH_BUCKETS:
        if lo <= words <= hi:
            return f"{lo}-{hi}"
    return f">{LENGTH_BUCKETS[-1][1]}"


@dataclass
class CorpusStats:
    """Counts of a corpus frame, as plain dicts ready for JSON, tables and plots."""

    rows: int
    attributes: dict[str, dict[str, int]]
    domains: dict[str, int]
    languages: dict[str, int]
    lengths: dict[str, int]
    decisions: dict[str, int]
    sources: dict[str, int]
    contrast_pairs: int

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def corpus_stats(frame: pd.DataFrame) -> CorpusStats:
    """Counts per attribute value, domain, language, length bucket, decision and source."""
    words = frame[TEXT].str.split().str.len()
    buckets = words.map(length_bucket)
    decisions = pd.Series(decisions_from_frame(frame))
    return CorpusStats(
        rows=len(frame),
        attributes={
            a.name: {v: int((frame[a.name] == v).sum()) for v in a.values} for a in ATTRIBUTES
        },
        domains={k: int(v) for k, v in frame[DOMAIN].value_counts().sort_index().items()},
        languages={k: int(v) for k, v in frame[LANG].value_counts().sort_index().items()},
        lengths={
            b: int((buckets == b).sum())
            for b in [f"{lo}-{hi}" for lo, hi in LENGTH_BUCKETS]
            if (buckets == b).any()
        },
        decisions={d: int((decisions == d).sum()) for d in DECISIONS},
        sources={k: int(v) for k, v in frame["source"].value_counts().items()},
        contrast_pairs=len(contrast_pairs(frame)),
    )


def contrast_pairs(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """(id, contrast_of) for every row written as a contrast that differs in some attribute."""
    by_id = frame.set_index(ID)
    pairs = []
    for _, row in frame[frame[CONTRAST_OF] != ""].iterrows():
        other = by_id.loc[row[CONTRAST_OF]]
        if any(row[a] != other[a] for a in ATTRIBUTE_NAMES):
            pairs.append((row[ID], row[CONTRAST_OF]))
    return pairs


def rule_violations(frame: pd.DataFrame, rules: CorpusRules = CorpusRules()) -> list[str]:
    """Every way the corpus breaks `rules`, in words; empty when it meets them all."""
    out: list[str] = []
    n = len(frame)
    for lang, minimum in rules.min_rows.items():
        have = int((frame[LANG] == lang).sum())
        if have < minimum:
            out.append(f"{lang}: {have} rows, need at least {minimum}")
    for attribute in ATTRIBUTES:
        for value in attribute.values:
            share = float((frame[attribute.name] == value).mean())
            if share < rules.min_minority_share:
                out.append(
                    f"{attribute.name}={value}: {share:.1%} of rows, need {rules.min_minority_share:.0%}"
                )
    domains = frame[DOMAIN].value_counts()
    if len(domains) < rules.min_domains:
        out.append(f"{len(domains)} domains, need at least {rules.min_domains}")
    for domain, count in domains.items():
        if count / n > rules.max_domain_share:
            out.append(f"domain {domain}: {count / n:.1%} of rows, at most {rules.max_domain_share:.0%}")
    pairs = len(contrast_pairs(frame))
    if pairs < rules.min_contrast_pairs:
        out.append(f"{pairs} contrast pairs, need at least {rules.min_contrast_pairs}")
    words = frame[TEXT].str.split().str.len()
    bad_len = frame[(words < rules.min_words) | (words > rules.max_words)]
    for _, row in bad_len.iterrows():
        out.append(f"{row['_file']}:{row['_line']}: {len(row[TEXT].split())} words, need {rules.min_words}-{rules.max_words}")
    keys = frame[TEXT].str.lower().str.strip()
    for _, row in frame[keys.duplicated()].iterrows():
        out.append(f"{row['_file']}:{row['_line']}: text repeats an earlier row")
    return out


def format_stats(stats: CorpusStats) -> str:
    lines = [f"rows: {stats.rows}"]

    def block(title: str, counts: dict[str, int]) -> None:
        lines.append(f"\n{title}")
        for key, count in counts.items():
            lines.append(f"  {key:<24} {count:>6}  {count / max(stats.rows, 1):6.1%}")

    for name in BINARY_ATTRIBUTES + (RISK.name,):
        block(name, stats.attributes[name])
    block("decision", stats.decisions)
    block("language", stats.languages)
    block("domain", stats.domains)
    block("length (words)", stats.lengths)
    block("source", stats.sources)
    lines.append(f"\ncontrast pairs: {stats.contrast_pairs}")
    return "\n".join(lines)


def format_goals(figures: dict[str, float]) -> str:
    """The corpus goals table: figure, measured value, goal, met."""
    lines = [f"\n{'corpus goal':<48} {'measured':>10} {'goal':>12}"]
    for goal, value, met in goal_report(figures):
        lines.append(f"  {goal.meaning:<46} {goal.show(value):>10} {goal.bounds():>12}  {'met' if met else 'NOT MET'}")
    return "\n".join(lines)
