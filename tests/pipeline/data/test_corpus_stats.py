"""The bundled seed corpus loads with zero schema errors and meets its balance, domain,
language, length and contrast-pair rules, computed from the files themselves."""

from __future__ import annotations

import json
import subprocess
import sys

from pipeline.core.config import REPO_ROOT
from pipeline.core.decision import DECISIONS
from pipeline.core.schema import ATTRIBUTES
from pipeline.core.text_forms import CORPUS_GOALS
from pipeline.data.corpus_stats import CorpusRules, contrast_pairs, corpus_stats, rule_violations


def test_seed_corpus_meets_every_rule(seed_corpus):
    assert rule_violations(seed_corpus) == []


def test_seed_corpus_language_domain_and_balance(seed_corpus):
    rules = CorpusRules()
    stats = corpus_stats(seed_corpus)
    assert stats.languages["en"] >= 4000 and stats.languages["ar"] >= 1000
    assert len(stats.domains) >= 15
    assert max(stats.domains.values()) / stats.rows <= rules.max_domain_share
    for attribute in ATTRIBUTES:
        for value in attribute.values:
            assert stats.attributes[attribute.name][value] / stats.rows >= 0.20, (attribute.name, value)
    assert all(stats.decisions[d] > 0 for d in DECISIONS)
    assert set(stats.sources) == {"seed"}


def test_contrast_pairs_differ_on_some_attribute(seed_corpus):
    pairs = contrast_pairs(seed_corpus)
    assert len(pairs) >= 800
    written = (seed_corpus["contrast_of"] != "").sum()
    assert len(pairs) == written, "every row marked as a contrast must differ from its partner"


def test_corpus_stats_cli_prints_counts_and_fails_on_schema_violation(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "pipeline", "corpus-stats"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "within_boundaries" in out.stdout and "domain" in out.stdout and "all corpus rules hold" in out.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "id,text,lang,domain,feasible,legal,ethical,within_boundaries,reversible,risk\n"
        "x-1,empty my trash,en,files,yes,yes,yes,yes,no,severe\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "pipeline", "corpus-stats", str(bad)], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert out.returncode == 2
    assert f"{bad}:2: column 'risk' = 'severe'" in out.stderr


# The bundled corpus reaches every corpus goal; each must keep holding as it grows.
REACHED_GOALS = tuple(goal.name for goal in CORPUS_GOALS)


def test_bundled_corpus_keeps_the_goals_it_has_reached():
    from pipeline.core.config import bundled_corpus_files
    from pipeline.core.schema import load_corpus
    from pipeline.core.text_forms import corpus_figures, goal_report

    frame = load_corpus(bundled_corpus_files())
    report = {goal.name: (value, met) for goal, value, met in goal_report(corpus_figures(frame))}
    assert {name for name in REACHED_GOALS if not report[name][1]} == set(), report
    assert report["rows"][0] == len(frame) >= 20_000
    out = subprocess.run(
        [sys.executable, "-m", "pipeline", "corpus-stats", "--json", "--no-rules"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    printed = json.loads(out.stdout)["goals"]
    assert printed == {name: value for name, (value, _) in report.items()}
